"""From a command line to a run's config: recipe + `--set` overrides + `--data/--output/--init`, and
when resuming, the checkpoint's config as the base and the checkpoint to continue from.

    cfg, resume_from = resolve_config("configs/demo.yaml", ["epochs=2"], output="runs/demo")
    summary = pss.train.train(cfg, resume_from=resume_from)
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pss.budget_spec import FREE_PARAMETER
from pss.checkpoint import ResumePoint, check_training_checkpoint, load_checkpoint
from pss.config import TrainConfig, apply_overrides, config_from_dict, config_to_dict, diff_configs, find_recipe, load_yaml
from pss.errors import CheckpointError, ConfigError
from pss.runfolder import RunDir, recovery_hint
from pss.tokens_for_epochs import apply_budget_epochs

log = logging.getLogger("pss.train")

__all__ = ["resolve_config"]


def resolve_config(
    config: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    data: str | None = None,
    output: str | None = None,
    init: str | None = None,
    resume: str | bool | None = None,
    from_dict: Callable[[dict[str, Any]], TrainConfig] = config_from_dict,
) -> tuple[TrainConfig, ResumePoint | None]:
    """The run's config and, when resuming, the checkpoint to resume from (a ResumePoint: its path, and the
    checkpoint as read here, which `pss.train.train` takes over rather than reading the file again).

    Fresh run: recipe (or defaults) + `--set` overrides + `--data/--output/--init`.
    Resume: the checkpoint's config is the base unless a recipe is given; `--set` etc. apply on top,
    and keys that differ from the checkpoint's config are reported (a changed model or batch
    geometry then fails with a clear message when the state is loaded).
    `resume=True` means `<output>/checkpoint-last.pt`; a string is a checkpoint path (or a run folder).
    `from_dict` builds the config class (`pss pretrain` passes its PretrainConfig's).
    """
    raw = load_yaml(find_recipe(config)) if config is not None else {}
    resume_from: ResumePoint | None = None
    ckpt_config: dict[str, Any] | None = None
    if resume:
        resume_from = _checkpoint_to_resume(resume, output or raw.get("output_dir"), config)
        ckpt_config = resume_from.config
        if config is None:
            raw = dict(ckpt_config)
        if output is None:
            output = str(resume_from.path.parent)
    recipe_epochs = raw.get("epochs")
    raw = apply_overrides(raw, overrides)
    # epochs changed by the command (also on resume, against the checkpoint's: the same warm-up as a run
    # started with these settings) scale the LR warm-up / cool-down alike
    raw = _scale_lr_phases(raw, recipe_epochs, overrides or [])
    if data is not None and not str(data).strip():
        raise ConfigError("--data is empty (an unset variable?): give a folder, a .tar.gz or hf:NAME, or leave "
                          "--data out for the recipe's data")
    if data is not None:
        raw.setdefault("data", {})
        raw["data"] = {**(raw["data"] or {}), "path": data}
    if init is not None:
        raw["init"] = init
    if output is not None:
        raw["output_dir"] = output
    elif not raw.get("output_dir"):
        raw["output_dir"] = default_output(config)
    cfg = apply_budget_epochs(from_dict(raw))  # tokens for epochs: the longer run, resolved once
    if ckpt_config is not None:
        changed = [k for k in diff_configs(ckpt_config, config_to_dict(cfg)) if k not in ("output_dir", "init")]
        # Resolved-at-start keys (num_classes, img_size) are null in a recipe: not a real change.
        changed = [k for k in changed if not (k in ("model.num_classes", "model.img_size") and _get(raw, k) is None)]
        if cfg.budget is not None and ckpt_config.get("budget") == cfg.budget:  # solved again from the budget
            changed = [k for k in changed if k != f"schedule.{FREE_PARAMETER.get(cfg.schedule.name)}"]
        if changed:
            log.warning("resuming with settings that differ from the checkpoint's: %s", ", ".join(changed))
    return cfg, resume_from


def _scale_lr_phases(raw: dict[str, Any], recipe_epochs: Any, overrides: list[str]) -> dict[str, Any]:
    """A user's epochs (`--epochs N`, `--set epochs=N`) on a recipe scale its LR warm-up and cool-down alike,
    as tokens for epochs does, unless the command sets them too: a recipe's 15 warm-up epochs must not fill
    a 2-epoch run. Logged, with how to choose them instead."""
    from pss.config import LRSchedConfig, TrainConfig

    before = TrainConfig.epochs if recipe_epochs is None else recipe_epochs
    after = raw.get("epochs", before)
    keys = {o.partition("=")[0].strip() for o in overrides}
    valid = all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (before, after))
    if not valid or after == before or keys & {"lr_sched", "lr_sched.warmup_epochs", "lr_sched.cooldown_epochs"}:
        return raw  # bad values are the config's to refuse; phases the command sets are kept
    sched = dict(raw.get("lr_sched") or {})
    scaled = []
    for key in ("warmup_epochs", "cooldown_epochs"):
        value = sched.get(key, getattr(LRSchedConfig, key))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            sched[key] = round(value * after / before, 4)
            scaled.append(f"{key} {value:g} -> {sched[key]:g}")
    if scaled:
        log.info("epochs %d instead of the recipe's %d: LR %s, scaled alike (set lr_sched.warmup_epochs / "
                 "cooldown_epochs to choose them)", after, before, ", ".join(scaled))
    return {**raw, "lr_sched": sched}


def _checkpoint_to_resume(resume: str | bool, folder: str | None, config: str | Path | None) -> ResumePoint:
    """`--resume [CKPT]`: the checkpoint named (a run folder means its last checkpoint), else the output
    folder's last checkpoint, read once; it must be a resumable pss checkpoint."""
    if isinstance(resume, str) and resume:
        path = Path(resume).expanduser()
        if path.is_dir():
            path = RunDir(path).last
    else:
        folder = folder or (default_output(config) if config else None)
        if folder is None:
            raise ConfigError("--resume without a checkpoint path needs --output (the run folder) or --config")
        path = RunDir(folder).last
    if not path.is_file():
        raise CheckpointError(f"nothing to resume: {str(path)!r} does not exist; "
                              f"{recovery_hint(path.parent, fresh='start the run without --resume')}")
    return ResumePoint(path, check_training_checkpoint(load_checkpoint(path), path, resumable=True))


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


def default_output(config: str | Path | None) -> str:
    """Where a run goes without --output: runs/<recipe name>."""
    return str(Path("runs") / (Path(config).stem if config else "train"))
