"""`pss train`: turn a resolved TrainConfig into objects, run the engine, write the run folder.

    cfg, resume_from = resolve_config("configs/demo.yaml", ["epochs=2"], output="runs/demo")
    summary = train(cfg, resume_from=resume_from)

A run folder (`output_dir`) holds:

    config.yaml          the resolved config (every default filled in; loads with `load_config`)
    train_log.jsonl      one line per optimizer step: epoch, step, loss, lr, keep_ratio, num_tokens,
                         step_time_s, data_time_s (+ grad_norm when clipping)
    val_log.jsonl        one line per evaluation: epoch, step, acc1, acc5, loss, keep_ratio,
                         elapsed_s, eval_time_s (+ ema_acc1 ... with EMA)
    summary.json         train_time_s, wall_time_s, epochs, steps, best_acc1, best_epoch, final_acc1,
                         final_acc5, final_loss, mean_keep_ratio, images_per_s, data_wait_fraction,
                         device, torch, timm, commit, world_size, amp, model, num_params, schedule, ...
    checkpoint-last.pt   full training state (resume); written at every epoch end and every
                         `checkpoint_interval_steps` steps
    checkpoint-best.pt   model (+ EMA) weights of the best evaluation, with config and progress
    model.safetensors    the best model's weights only (config in its metadata)
    .pss.lock            the run's lock: held (fcntl.flock) by the process writing the folder

Epochs and steps in the logs are 0-based indices; a val line's `step` is the number of steps done.
`train_time_s` counts training epochs only (no evaluation, no checkpoint writing) and adds up over
resumed segments; `wall_time_s` counts everything. `images_per_s` = steps * batch_size / train_time_s.

Resume (`--resume`) restores model, optimizer, LR scheduler, GradScaler, EMA, every rank's RNG
states (torch, CUDA, numpy, python), epoch and step, and replays the current epoch's data order up
to the step. What is then identical to an uninterrupted run:
  * always: the keep ratio, learning rate and data order of every step, and the step / epoch
    numbering of the logs (lines past the checkpoint are dropped, so none is missing or doubled);
  * every random draw: augmentation, random erasing, mixup / cutmix, dropout, drop-path and
    random token selection come from restored or (seed, epoch)-derived generators, with
    `data.num_workers: 0` and with worker processes alike (workers are seeded per epoch);
  * on CPU with `deterministic: true`, every loss and every weight, bit for bit (tested). Without
    it, multi-threaded kernels (e.g. the attention backward) sum in a varying order, so even two
    uninterrupted runs differ in the last bits (~1e-6 after a few steps) and a resumed run matches
    to that tolerance, no better;
  * on CUDA: the same random numbers, but kernels with atomics (and cuDNN / SDPA choices) make
    the losses agree closely rather than bit for bit; `deterministic: true` picks deterministic
    kernels where PyTorch has them (not verified on a GPU here).
Multi-node: every process reads the checkpoint it resumes from, so the run folder must be on a
file system all nodes share. Changing `epochs`, the learning rate or `lr_sched` on resume rebuilds
the LR schedule for the new settings: every later step gets the learning rate a run started with
them would have at that step (how a run is extended, or a diverged run continues at a lower rate);
the keep-ratio schedule follows the new length too. A warning lists every setting that differs
from the checkpoint's.
Not restored: the timings (step_time_s, data_time_s of the resumed steps are new measurements), and
the work since the last checkpoint is redone (its time is not counted twice: train_time_s comes
from the checkpoint).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pss.budget import apply_budget_epochs
from pss.checkpoint import (
    CheckpointError,
    is_training_checkpoint,
    load_checkpoint,
    remove_stale_temp_files,
    restore_training_state,
)
from pss.config import (
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    diff_configs,
    find_recipe,
    load_yaml,
    save_config,
    task_builder,
)
from pss.engine import ClassificationTask, LoopConfig, Progress, Task, Trainer
from pss.errors import ConfigError, PssError
from pss.models.convert import load_init_weights
from pss.runfolder import Checkpointer, StepLogger, TrainState
from pss.budget import FREE_PARAMETER
from pss.outputs import hold_run_folder
from pss.runtime import Amp, DistInfo, resolve_amp, resolve_device
from pss.tracking import TrackingWriter, build_trackers
from pss.models import attention_impl

log = logging.getLogger("pss.train")

__all__ = [
    "OUTPUT_FILES",
    "build_model_for",
    "classification_task",
    "init_distributed",
    "recovery_hint",
    "resolve_config",
    "train",
]

# Files a run writes; a fresh run refuses to start in a folder holding any of them.
OUTPUT_FILES = (
    "checkpoint-last.pt", "checkpoint-best.pt", "model.safetensors", "train_log.jsonl", "val_log.jsonl",
    "summary.json", "config.yaml", "summary.csv",
)


# ---------------------------------------------------------------------------------------------
# config resolution (CLI arguments -> TrainConfig)


def resolve_config(
    config: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    data: str | None = None,
    output: str | None = None,
    init: str | None = None,
    resume: str | bool | None = None,
    from_dict: Callable[[dict[str, Any]], TrainConfig] = config_from_dict,
) -> tuple[TrainConfig, Path | None]:
    """The run's config and, when resuming, the checkpoint to resume from.

    Fresh run: recipe (or defaults) + `--set` overrides + `--data/--output/--init`.
    Resume: the checkpoint's config is the base unless a recipe is given; `--set` etc. apply on top,
    and keys that differ from the checkpoint's config are reported (a changed model or batch
    geometry then fails with a clear message when the state is loaded).
    `resume=True` means `<output>/checkpoint-last.pt`; a string is a checkpoint path.
    `from_dict` builds the config class (`pss pretrain` passes its PretrainConfig's).
    """
    raw = load_yaml(find_recipe(config)) if config is not None else {}
    resume_from: Path | None = None
    ckpt_config: dict[str, Any] | None = None
    if resume:
        if isinstance(resume, str) and resume:
            resume_from = Path(resume).expanduser()
            if resume_from.is_dir():
                resume_from = resume_from / "checkpoint-last.pt"
        else:
            folder = output or raw.get("output_dir") or (_default_output(config) if config else None)
            if folder is None:
                raise ConfigError("--resume without a checkpoint path needs --output (the run folder) or --config")
            resume_from = Path(folder).expanduser() / "checkpoint-last.pt"
        if not resume_from.is_file():
            raise CheckpointError(f"nothing to resume: {str(resume_from)!r} does not exist; "
                                  f"{recovery_hint(resume_from.parent, fresh='start the run without --resume')}")
        ckpt = load_checkpoint(resume_from)
        if not is_training_checkpoint(ckpt) or ckpt.get("optimizer") is None:
            raise CheckpointError(f"{str(resume_from)!r} is not a resumable pss checkpoint; use checkpoint-last.pt")
        ckpt_config = ckpt["config"]
        if config is None:
            raw = dict(ckpt_config)
        if output is None:
            output = str(resume_from.parent)
    raw = apply_overrides(raw, overrides)
    if data is not None:
        raw.setdefault("data", {})
        raw["data"] = {**(raw["data"] or {}), "path": data}
    if init is not None:
        raw["init"] = init
    if output is not None:
        raw["output_dir"] = output
    elif not raw.get("output_dir"):
        raw["output_dir"] = _default_output(config)
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


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


def _default_output(config: str | Path | None) -> str:
    return str(Path("runs") / (Path(config).stem if config else "train"))


# ---------------------------------------------------------------------------------------------
# processes (devices and precision: pss.runtime)


def init_distributed(device: str) -> DistInfo:
    """Join the torchrun job described by the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*).

    NCCL on CUDA, gloo on CPU. A plain `python -m pss train` is a one-process job.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _agree(dist_info: DistInfo, error: BaseException | None) -> None:
    """Raise on every rank if any rank failed a rank-local check (so no rank waits forever)."""
    if not dist_info.enabled:
        if error is not None:
            raise error
        return
    errors: list[Any] = [None] * dist_info.world_size
    dist.all_gather_object(errors, None if error is None else (type(error).__name__, str(error)))
    for e in errors:
        if e is not None:
            if error is not None:
                raise error
            raise PssError(f"another process failed: {e[1]}")


# ---------------------------------------------------------------------------------------------
# building the pieces


def build_model_for(cfg: TrainConfig, num_classes: int) -> nn.Module:
    from pss.control import set_trained_select
    from pss.models import build_model

    m = cfg.model
    model = build_model(
        m.name, num_classes=num_classes, img_size=m.img_size,
        drop_path_rate=m.drop_path_rate, drop_rate=m.drop_rate, **m.kwargs,
    )
    set_trained_select(model, cfg.trained_select)  # the deterministic rule eval.keep_ratio < 1 uses
    return model


def classification_task(cfg: TrainConfig, class_names: list[str]) -> Task:
    """The engine's Task for `task: classification` (pss.config.TASKS)."""
    if len(class_names) < 2:
        raise ConfigError(f"the data has {len(class_names)} class ({', '.join(class_names)}): a classifier needs at "
                          "least 2 class folders in each split; add the other classes")
    return ClassificationTask(len(class_names), cfg.mixup, cfg.label_smoothing)


def recovery_hint(folder: Path, fresh: str = "") -> str:
    """What to do with the run folder `folder` after its run stopped, the one advice every message gives:
    --resume from its last checkpoint; --overwrite when it stopped before writing one (its logs and
    config alone cannot be continued); `fresh` when it holds no run (nothing, or only the lock file)."""
    if (folder / "checkpoint-last.pt").is_file():
        return "continue from the last checkpoint with --resume"
    if any((folder / n).exists() for n in OUTPUT_FILES):
        return "it stopped before writing a checkpoint: start it again with --overwrite"
    return fresh


def _check_output(folder: Path, resume: bool, overwrite: bool) -> None:
    """A fresh run must not write into another run's folder (unless told to replace it)."""
    existing = [n for n in OUTPUT_FILES if (folder / n).exists()]
    if existing and not (resume or overwrite):
        if not (folder / "checkpoint-last.pt").is_file():
            raise ConfigError(f"output folder {str(folder)!r} holds a run ({', '.join(existing)}); "
                              f"{recovery_hint(folder)}, or choose another --output")
        raise ConfigError(
            f"output folder {str(folder)!r} already holds a run ({', '.join(existing)}): pass --resume to "
            "continue it, --overwrite to replace it, or choose another --output"
        )
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output {str(folder)!r} is a file, not a folder; choose another --output")


def _clear_output(folder: Path) -> None:
    """--overwrite: remove the old run's files, only once every check has passed."""
    for n in OUTPUT_FILES:
        with contextlib.suppress(FileNotFoundError):
            (folder / n).unlink()


def _batch_geometry(cfg: TrainConfig, world: int) -> int:
    """Per-process batch per optimizer step (split further into `accum_steps` micro-batches)."""
    if cfg.batch_size % world:
        raise ConfigError(
            f"batch_size {cfg.batch_size} (global) is not divisible by the {world} processes; "
            f"use a multiple of {world}"
        )
    per_rank = cfg.batch_size // world
    if per_rank % cfg.accum_steps:
        raise ConfigError(
            f"the per-process batch ({per_rank} = batch_size / {world} processes) is not divisible by "
            f"accum_steps {cfg.accum_steps}"
        )
    return per_rank


# ---------------------------------------------------------------------------------------------
# the run


def train(
    cfg: TrainConfig,
    *,
    resume_from: str | Path | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    trackers: list[Any] | None = None,
) -> dict[str, Any]:
    """Train as `cfg` says; returns summary.json's content. `trackers` (pss.tracking.Tracker) get
    every log record besides those the recipe's `logging` section turns on. Every check on the input (config, data,
    model, init weights, output folder) runs before the first step; nothing is overwritten unless
    `overwrite` (fresh run into a used folder) or `resume_from` (continue that run)."""
    dist_info = init_distributed(cfg.device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if cfg.deterministic:
        # Multi-threaded CPU kernels (and many CUDA ones) reduce in a varying order, so two runs
        # differ in the last bits; these settings pick order-stable kernels instead.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    try:
        with contextlib.ExitStack() as held:  # the run folder's lock, released on any exit
            return _train(cfg, dist_info, resume_from, overwrite, quiet, held, trackers)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        if dist_info.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, dist_info: DistInfo, resume_from: str | Path | None, overwrite: bool, quiet: bool,
           held: contextlib.ExitStack, extra_trackers: list[Any] | None = None) -> dict[str, Any]:
    """The run, step by step: every check on the input comes before the first write and the first step."""
    from pss.data import check_data

    if not dist_info.is_main:
        logging.getLogger("pss").setLevel(logging.WARNING)  # rank 0 alone reports
    device = resolve_device(cfg.device, dist_info)
    amp = resolve_amp(cfg.amp, device)
    cfg = apply_budget_epochs(cfg)  # a config built in Python, not through resolve_config
    cfg.validate()
    folder = _prepare_output(cfg, dist_info, resume_from, overwrite, held)
    ckpt = load_checkpoint(resume_from) if resume_from is not None else None  # a bad file fails fast

    report = check_data(cfg.data)  # paths, class folders, unreadable images: quick, before any decoding
    log.info("data: %s", report.describe())
    class_names = list(report.classes)
    cfg = resolve_data_geometry(cfg, len(class_names))
    per_rank = _batch_geometry(cfg, dist_info.world_size)
    task = task_builder(cfg.task)(cfg, class_names)
    model = _build_model(cfg, task, device, init=cfg.init if ckpt is None else None)
    train_loader, val_loader = _build_loaders(cfg, report, per_rank, device, dist_info)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch < 1:
        raise ConfigError(f"no full batch of {per_rank} images per process: lower batch_size or use more data")
    cfg.schedule.check_run(steps_per_epoch, cfg.epochs * steps_per_epoch)
    files = _measurements_from_files(cfg, report, per_rank, device)
    cfg, budget = _solve_budget(cfg, model, steps_per_epoch, cfg.epochs * steps_per_epoch, files)
    state = _build_optimisation(cfg, model, amp, steps_per_epoch)
    resume_rng = _restore(ckpt, state, cfg, steps_per_epoch, dist_info, resume_from) if ckpt is not None else None
    del ckpt
    seed_everything(cfg.seed + dist_info.rank + state.progress.step)  # per-rank streams; resume_rng replaces them
    state.model = _wrap(model, cfg, dist_info, device, steps_per_epoch)
    cfg, budget, prediction = _preflight(cfg, budget, files, state, task, train_loader, amp, dist_info, device,
                                         steps_per_epoch, per_rank)
    config = config_to_dict(cfg)  # the resolved recipe: in the run header, the trackers and every checkpoint
    writer = _open_run_folder(cfg, config, folder, dist_info, state.progress, resume_from, overwrite, quiet,
                              steps_per_epoch, extra_trackers)
    log.info(
        "training %s (%.1fM params) on %s x%d, %s, %d epochs x %d steps, batch %d, lr %.3g, schedule %s -> %s",
        cfg.model.name, _num_params(model) / 1e6, device, dist_info.world_size, amp.name, cfg.epochs,
        steps_per_epoch, cfg.batch_size, cfg.peak_lr(), cfg.schedule.name, folder,
    )
    log.info("attention: %s", attention_impl(model, device))  # flex | sdpa, as chosen by model attn_impl

    loop = _loop_config(cfg, steps_per_epoch)
    checkpointer = Checkpointer(folder, config=config, class_names=class_names, dist_info=dist_info,
                                resume_rng=resume_rng)
    logger = StepLogger(writer, dist_info=dist_info, global_batch_size=cfg.batch_size, quiet=quiet,
                        last_good=checkpointer.last_good)
    trainer = Trainer(
        state=state, task=task, schedule=cfg.schedule, train_loader=train_loader, val_loader=val_loader, loop=loop,
        amp=amp, logger=logger, checkpointer=checkpointer, dist_info=dist_info, device=device,
    )
    try:
        p = trainer.fit()
    finally:
        writer.close()

    summary = _summary(cfg, p, task, steps_per_epoch, device, amp, dist_info, _num_params(model))
    summary["skipped_images"] = len(report.corrupt)  # unreadable files left out (data.on_corrupt: skip)
    summary["budget"] = _budget_summary(budget, folder, device, cfg.budget_reference) if budget is not None and dist_info.is_main else None
    summary["preflight"] = _preflight_summary(prediction, folder, device) if prediction and dist_info.is_main else None
    summary["equal_time_of"] = cfg.equal_time_of
    if hasattr(task, "on_train_end"):  # task-specific outputs (pre-training: the encoder for fine-tuning)
        summary.update(task.on_train_end(
            model, folder=folder, val_loader=val_loader, amp=amp, dist_info=dist_info, step=p.step,
            config=config,
        ) or {})
    writer.write_json("summary.json", summary)
    log.info(
        "done: %s %.2f (best %.2f at epoch %s), %.1f s training, %.0f img/s, mean keep ratio %.3f -> %s",
        task.metric, summary.get(f"final_{task.metric}") or math.nan, summary.get(f"best_{task.metric}") or math.nan,
        _human_epoch(summary.get("best_epoch")), p.train_time_s, summary["images_per_s"] or 0, summary["mean_keep_ratio"] or 0, folder,
    )
    return summary


# ---------------------------------------------------------------------------------------------
# the steps of a run, in order


def _prepare_output(cfg: TrainConfig, dist_info: DistInfo, resume_from: str | Path | None, overwrite: bool,
                    held: contextlib.ExitStack) -> Path:
    """The output folder: writable, locked for the run's life (rank 0 holds it; a second run into it
    stops here, before touching anything), and not another run's unless resuming / overwriting."""
    folder = Path(cfg.output_dir or "runs/train").expanduser()
    error = None
    if dist_info.is_main:
        try:
            held.enter_context(hold_run_folder(folder))
            _check_output(folder, resume_from is not None, overwrite)
        except PssError as e:
            error = e
    _agree(dist_info, error)
    return folder


def _human_epoch(epoch: int | None) -> int | str:
    """An epoch as people count it (from 1); the files keep their 0-based ``epoch`` fields."""
    return "-" if epoch is None else epoch + 1


def resolve_data_geometry(cfg: TrainConfig, num_classes: int) -> TrainConfig:
    """The config with the model's class count and image size taken from the data (where the recipe
    leaves them null); a recipe that sets them differently is refused."""
    m = cfg.model
    if m.num_classes is not None and m.num_classes != num_classes:
        raise ConfigError(
            f"model.num_classes is {m.num_classes} but the data has {num_classes} classes; "
            "set model.num_classes: null to take it from the data"
        )
    if m.img_size is not None and m.img_size != cfg.data.img_size:
        raise ConfigError(
            f"model.img_size {m.img_size} differs from data.img_size {cfg.data.img_size}: "
            "the model sees what the data gives; set one, and model.img_size: null"
        )
    return dataclasses.replace(cfg, model=dataclasses.replace(m, num_classes=num_classes, img_size=cfg.data.img_size))


def _build_model(cfg: TrainConfig, task: Task, device: torch.device, init: str | None) -> nn.Module:
    """The recipe's model, with its fine-tuning weights (shape mismatches fail here, before any data is
    decoded), adapted by the task (SimMIM wraps the initialised classifier's encoder), on `device`."""
    seed_everything(cfg.seed)  # the same initial weights on every rank
    model = build_model_for(cfg, cfg.model.num_classes)
    if init:
        load_init_weights(model, init)
    if hasattr(task, "prepare_model"):
        model = task.prepare_model(model)
    return model.to(device)


def _build_loaders(cfg: TrainConfig, report: Any, per_rank: int, device: torch.device,
                   dist_info: DistInfo) -> tuple[Any, Any]:
    """Train and validation loaders (each rank reads its shard; the order depends on (seed, epoch))."""
    from pss.data import build_datasets, build_loader

    train_ds, val_ds, _ = build_datasets(cfg.data, device if cfg.data.in_memory else None, report=report)
    train_loader = build_loader(train_ds, per_rank, True, cfg.data, distributed=dist_info.enabled, seed=cfg.seed)
    eval_bs = cfg.eval.batch_size or per_rank // cfg.accum_steps
    val_loader = build_loader(val_ds, eval_bs, False, cfg.data, distributed=dist_info.enabled, seed=cfg.seed)
    return train_loader, val_loader


def _build_optimisation(cfg: TrainConfig, model: nn.Module, amp: Amp, steps_per_epoch: int) -> TrainState:
    """timm's optimizer factory (weight-decay groups, layer decay), a per-step LR schedule, the fp16
    GradScaler and the EMA, around the bare model, at step 0."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    from pss.ema import Ema

    o, ls = cfg.optim, cfg.lr_sched
    opt_kwargs: dict[str, Any] = {}
    if o.betas is not None:
        opt_kwargs["betas"] = tuple(o.betas)
    if o.eps is not None:
        opt_kwargs["eps"] = o.eps
    optimizer = create_optimizer_v2(
        model, opt=o.opt, lr=cfg.peak_lr(), weight_decay=o.weight_decay, momentum=o.momentum,
        layer_decay=o.layer_decay, **opt_kwargs, **_fast_optimizer(o.opt, next(model.parameters()).device),
    )
    lr_scheduler = None
    if ls.name != "none":
        lr_scheduler, _ = create_scheduler_v2(
            optimizer, sched=ls.name, num_epochs=cfg.epochs - ls.cooldown_epochs,
            warmup_epochs=ls.warmup_epochs, warmup_lr=ls.warmup_lr, min_lr=ls.min_lr,
            cooldown_epochs=ls.cooldown_epochs, decay_rate=ls.decay_rate,
            **({"decay_epochs": ls.decay_epochs} if ls.decay_epochs is not None else {}),
            step_on_epochs=False, updates_per_epoch=steps_per_epoch,
        )
    return TrainState(
        model=model, optimizer=optimizer, progress=Progress(), lr_scheduler=lr_scheduler,
        scaler=torch.amp.GradScaler(amp.device_type, enabled=amp.dtype == torch.float16),
        ema=Ema(model, decay=cfg.ema.decay, use_warmup=cfg.ema.warmup) if cfg.ema.enabled else None,
    )


def _fast_optimizer(opt: str, device: torch.device) -> dict[str, Any]:
    """The optimizer's one-kernel path where torch has it (`fused`: Adam, AdamW, SGD, Adagrad, on CPU and
    CUDA), else its multi-tensor path (`foreach`) where the class offers one: the optimizer step is the
    largest part of a step's cost that does not shrink with the tokens."""
    import inspect

    from timm.optim import get_optimizer_class

    try:
        cls = get_optimizer_class(opt.lower().split("_")[-1], bind_defaults=False)
    except (ValueError, KeyError):
        return {}  # timm reports the unknown name when it builds the optimizer
    params = inspect.signature(cls).parameters
    if device.type in ("cpu", "cuda") and "fused" in params and cls.__module__.startswith("torch.optim"):
        return {"fused": True}
    return {"foreach": True} if "foreach" in params and device.type in ("cpu", "cuda") else {}


def _restore(ckpt: dict[str, Any], state: TrainState, cfg: TrainConfig, steps_per_epoch: int,
             dist_info: DistInfo, resume_from: str | Path | None) -> list[dict[str, Any]] | None:
    """Resume: every state into `state` (its progress replaced by the checkpoint's); returns every
    rank's RNG states, which the loop restores where the epoch resumes (None: reseed instead)."""
    saved = ckpt.get("progress", {})
    if saved.get("steps_per_epoch") != steps_per_epoch:
        raise CheckpointError(
            f"cannot resume: the checkpoint has {saved.get('steps_per_epoch')} steps per epoch, this set-up "
            f"{steps_per_epoch}; keep batch_size and the data as they were"
        )
    # The LR schedule is the config's: the checkpoint's is continued when they agree, and rebuilt for the
    # new settings when epochs, the learning rate or lr_sched changed (a finished cosine would stay at its floor).
    fresh = state.lr_scheduler.state_dict() if state.lr_scheduler is not None else None
    rebuilt = fresh is not None and ckpt.get("lr_scheduler") not in (None, fresh)
    restore_training_state(
        ckpt, model=state.model, optimizer=state.optimizer, lr_scheduler=None if rebuilt else state.lr_scheduler,
        scaler=state.scaler, ema=state.ema_module, peak_lr=cfg.peak_lr(),
    )
    state.progress = Progress.from_dict(saved)
    state.progress.resumed += 1
    if state.lr_scheduler is not None:
        state.lr_scheduler.step_update(num_updates=state.progress.step)
    if rebuilt:
        log.warning("the LR schedule differs from the checkpoint's (epochs, optim or lr_sched changed): rebuilt for "
                    "%d epochs at peak %.3g; step %d continues at lr %.3g", cfg.epochs, cfg.peak_lr(),
                    state.progress.step, state.optimizer.param_groups[0]["lr"])
    log.info("resuming %s at step %d (epoch %d)", resume_from, state.progress.step,
             state.progress.step // steps_per_epoch + 1)  # epochs count from 1 for people, from 0 in the files
    rng = ckpt.get("rng") or []
    if len(rng) == dist_info.world_size:
        return rng
    log.warning("checkpoint has RNG states for %d processes, this job has %d: reseeding instead",
                len(rng), dist_info.world_size)
    return None


def _wrap(model: nn.Module, cfg: TrainConfig, dist_info: DistInfo, device: torch.device,
          steps_per_epoch: int) -> nn.Module:
    """DDP, then torch.compile (PyTorch's recommended order: the compiler then splits graphs at DDP's
    bucket boundaries). set_keep_ratio and checkpoints see through both."""
    train_model: nn.Module = model
    if dist_info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile_options() is not None:
        # The keep ratio is a Python attribute that dynamo guards on: each distinct rho (few, on
        # the schedule's grid) is one more graph, and evaluation one more. Allow exactly those.
        from pss.dynamo import compile_friendly

        compile_friendly(cfg.schedule, steps_per_epoch=steps_per_epoch, epochs=cfg.epochs,
                         eval_keep_ratios=(cfg.eval.keep_ratio,))
        train_model = torch.compile(train_model, **cfg.compile_options())
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return train_model


def _open_run_folder(cfg: TrainConfig, config: dict[str, Any], folder: Path, dist_info: DistInfo, progress: Progress,
                     resume_from: str | Path | None, overwrite: bool, quiet: bool, steps_per_epoch: int,
                     extra_trackers: list[Any] | None) -> TrackingWriter:
    """The run header: the resolved config written, an overwritten run's files removed, logs continued
    after the checkpoint's step, the trackers the recipe's `logging` section asks for."""
    trackers: list[Any] = []
    if dist_info.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(folder)  # left by a process killed while saving
        if resume_from is None and overwrite:
            _clear_output(folder)
        save_config(cfg, folder / "config.yaml")
        # summary.csv / TensorBoard / W&B / progress lines, as the recipe's `logging` section says
        trackers = build_trackers(
            cfg.logging, folder, config=config,
            resume_step=progress.step if resume_from is not None else None, epochs=cfg.epochs,
            steps_per_epoch=steps_per_epoch, batch_size=cfg.batch_size, quiet=quiet, run_name=folder.name,
        ) + list(extra_trackers or [])
    writer = TrackingWriter(folder, enabled=dist_info.is_main, trackers=trackers)
    if dist_info.is_main and resume_from is not None:
        writer.truncate(progress.step)
    return writer


def _loop_config(cfg: TrainConfig, steps_per_epoch: int) -> LoopConfig:
    return LoopConfig(
        epochs=cfg.epochs, steps_per_epoch=steps_per_epoch, accum_steps=cfg.accum_steps,
        clip_grad=cfg.optim.clip_grad, log_interval=cfg.log_interval,
        checkpoint_interval_epochs=cfg.checkpoint_interval_epochs,
        checkpoint_interval_steps=cfg.checkpoint_interval_steps, eval_interval=cfg.eval.interval,
        eval_keep_ratio=cfg.eval.keep_ratio, select=cfg.select,
    )


# Runs shorter than this skip the pre-flight under `preflight: auto` (its few dozen steps would be a
# visible share of the run).
PREFLIGHT_MIN_STEPS = 500


def _measurements_from_files(cfg: TrainConfig, report: Any, per_rank: int, device: torch.device):
    """`budget_cost: measured:SPEED.json,DATA.json`: the measurements the files hold (checked against this
    run's model, batch and data pipeline before anything trains); None otherwise."""
    if cfg.budget is None or not cfg.budget_cost.startswith("measured:"):
        return None
    from pss.preflight import loader_placement, measurements_from_files

    return measurements_from_files(cfg.budget_cost, cfg, report.root, per_rank, loader_placement(cfg.data, device))


def _preflight(cfg: TrainConfig, budget: Any, meas: Any, state: TrainState, task: Task, train_loader: Any, amp: Amp,
               dist_info: DistInfo, device: torch.device, steps_per_epoch: int, per_rank: int):
    """Will PSS pay on this machine (pss.preflight): the model's step time at the keep ratios the run
    needs and the loader's supply (measured here on the run's own model and loader, every state restored,
    or read from the budget's cost files), the run's predicted wall-clock ratio to the full-token run with
    its cause, logged once; with `budget_cost: measured` (in the run) the budget is solved on them.
    Returns (cfg, budget, prediction or None)."""
    from pss.preflight import Measurements, loader_placement, measurement_ratios, predict

    total = cfg.epochs * steps_per_epoch
    solve_here = cfg.budget is not None and cfg.budget_cost == "measured"
    wanted = cfg.preflight is True or (cfg.preflight == "auto" and total >= PREFLIGHT_MIN_STEPS)
    if meas is None and not (solve_here or wanted):
        return cfg, budget, None
    if meas is None:
        if solve_here:  # the solver may pick any value: measure the grid (or a spread of keep ratios)
            grid = cfg.schedule.grid or 0.2
            values = [round(k * grid, 6) for k in range(1, round(1 / grid) + 1)]
            ratios = measurement_ratios(values, at_most=len(values) if cfg.schedule.grid else 5)
        else:
            ratios = measurement_ratios(cfg.schedule.values(steps_per_epoch, total))
        if cfg.compile_options() is not None:
            from pss.dynamo import raise_recompile_limit
            import torch._dynamo

            cfg_d = torch._dynamo.config
            limit = getattr(cfg_d, "recompile_limit", getattr(cfg_d, "cache_size_limit", 8))
            raise_recompile_limit(limit + len(ratios))
        probe = Trainer(state=state, task=task, schedule=cfg.schedule, train_loader=train_loader, val_loader=None,
                        loop=_loop_config(cfg, steps_per_epoch), amp=amp, logger=None, checkpointer=None,
                        dist_info=dist_info, device=device)
        times, data = probe.measure(ratios)
        if dist_info.enabled:  # every rank solves and predicts on rank 0's figures, so all agree
            shared = [(times, data)]
            dist.broadcast_object_list(shared, src=0)
            times, data = shared[0]
        overlap, where = loader_placement(cfg.data, device)
        meas = Measurements(times, data["mean_batch_s"], per_rank, overlap, loader=where)
    if solve_here or (cfg.budget is not None and cfg.budget_cost.startswith("measured:")):
        if solve_here:
            try:
                cfg, budget = _solve_budget(cfg, None, steps_per_epoch, total, meas)
            except ConfigError as e:  # name the loader when it is what holds the cost up
                if not meas.overlap or meas.data_bound(min(meas.step_time_s)):
                    e = ConfigError(f"{e}. budget_cost: measured includes the loader ({meas.loader}, "
                                    f"{1000 * meas.data_time_s:.0f} ms per batch, the model "
                                    f"{1000 * meas.model_time(min(meas.step_time_s)):.0f} ms at rho "
                                    f"{min(meas.step_time_s):g}): raise data.num_workers or use data.in_memory")
                raise e from None
        _, cost = budget
        meas = cost.meas
    pred = predict(meas, cfg.schedule.values(steps_per_epoch, total))
    level = logging.WARNING if pred.bound in ("data", "mixed") else logging.INFO
    log.log(level, "pre-flight: %s", pred.message)
    return cfg, budget, pred


def _preflight_summary(pred: Any, folder: Path, device: torch.device) -> dict[str, Any]:
    """The prediction next to the realised ratio (on CPU: the run's step times, the loader's waits
    included, relative to its own full-token steps; see pss.budget.realised_time_ratio)."""
    from pss.analysis.report import load_run
    from pss.budget import realised_time_ratio

    out = pred.to_dict()
    out["realised_time_ratio"] = realised_time_ratio(load_run(folder).train_log) if device.type == "cpu" else None
    if out["realised_time_ratio"] is not None:
        log.info("pre-flight: predicted time ratio %.3f, realised %.3f", pred.time_ratio, out["realised_time_ratio"])
    return out


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _solve_budget(cfg: TrainConfig, model: nn.Module | None, steps_per_epoch: int, total_steps: int,
                  measurements: Any = None):
    """With `budget`, the config with its schedule solved to that cost (pss.budget), and the plan.
    `budget_cost: measured` (in the run) is solved later, by the pre-flight, on its measurements."""
    if cfg.budget is None:
        return cfg, None
    from pss.budget import cost_model_for, solve_budget

    if cfg.task != "classification":
        raise ConfigError(f"budget applies to classification training, not task {cfg.task!r}; set budget: null")
    if cfg.budget_cost == "measured" and measurements is None:
        return cfg, None
    cost = cost_model_for(cfg, model, measurements)
    plan = solve_budget(cfg.schedule, cfg.budget, cost, steps_per_epoch, total_steps)
    log.info(
        "budget %g: %s %s = %g, predicted cost %.4f of the full-token run (cost model: %s)",
        cfg.budget, plan.schedule.name, plan.parameter, plan.value, plan.predicted_cost, plan.cost_model,
    )
    return dataclasses.replace(cfg, schedule=plan.schedule), (plan, cost)


def _budget_summary(budget: tuple[Any, Any], folder: Path, device: torch.device,
                    reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """The plan, and what the run really cost: the cost model over the steps it ran, and (on CPU, where
    step times are synchronous) its step times relative to its own full-token steps."""
    from pss.analysis.report import load_run
    from pss.budget import realised_time_ratio

    plan, cost = budget
    rows = [r for r in load_run(folder).train_log if r.get("keep_ratio") is not None]
    out = plan.to_dict()
    out["realised_cost"] = math.fsum(cost(float(r["keep_ratio"])) for r in rows) / len(rows) if rows else None
    out["realised_time_ratio"] = realised_time_ratio(rows) if device.type == "cpu" else None
    if reference is not None and out["realised_cost"] is not None:  # tokens for epochs: against the recipe's run
        out["reference"] = reference
        out["realised_cost_vs_reference"] = out["realised_cost"] * reference["epochs_factor"]
        log.info("tokens for epochs: %g epochs instead of %d, realised cost %.4f of the %d-epoch full-token run",
                 reference["epochs_factor"] * reference["epochs"], reference["epochs"],
                 out["realised_cost_vs_reference"], reference["epochs"])
    log.info(
        "budget %g: predicted cost %.4f, realised %.4f (%s)%s", plan.budget, plan.predicted_cost,
        out["realised_cost"] or math.nan, plan.cost_model,
        "" if out["realised_time_ratio"] is None else f", step time vs this run's full-token steps {out['realised_time_ratio']:.3f}",
    )
    return out


def _summary(cfg: TrainConfig, p: Progress, task: Task, spe: int, device: torch.device, amp: Amp,
             dist_info: DistInfo, num_params: int) -> dict[str, Any]:
    from pss.runinfo import run_info

    steps = p.step
    train_s = p.train_time_s
    summary: dict[str, Any] = {
        "train_time_s": train_s,
        "wall_time_s": p.wall_time_s,
        "epochs": steps // spe,
        "steps": steps,
        f"best_{task.metric}": p.best_metric,
        "best_epoch": p.best_epoch,
        **{f"final_{k}": v for k, v in p.last_eval.items()},
        "mean_keep_ratio": p.keep_ratio_sum / steps if steps else None,
        "images_per_s": steps * cfg.batch_size / train_s if train_s > 0 else None,
        "data_wait_fraction": p.data_time_s / train_s if train_s > 0 else None,
        **run_info(device),
        "world_size": dist_info.world_size,
        "amp": amp.name,
        "model": cfg.model.name,
        "num_params": num_params,
        "batch_size": cfg.batch_size,
        "schedule": cfg.schedule.to_dict(),
        "select": cfg.select,
        "resumed": p.resumed,
    }
    return summary
