"""`pss pretrain`: SimMIM masked-image-modelling pre-training of the PSS ViT encoder.

The pre-training run is a `pss train` run whose task is masked-image modelling: the same engine
(step order, logging, checkpointing, exact resume, DDP, AMP), the same recipe format plus a `mim:`
section (`pss.settings.PretrainConfig`), the same run folder. Only what is learned differs (the task:
`pss.tasks.simmim.MIMTask`):

    cfg, resume_from = resolve_pretrain_config("configs/cifar10_pretrain_simmim.yaml", output="runs/mim")
    summary = pretrain(cfg, resume_from=resume_from)
    # then fine-tune, with or without PSS:
    #   pss train --config configs/cifar10_finetune_pss.yaml --init runs/mim/encoder.safetensors

SimMIM (Xie et al., 2022; `pss.models.simmim`): random square regions of `mim.mask_patch_size`
pixels (default share 0.6) are replaced by a learned mask token before the position embedding,
the encoder runs on every token, a linear decoder predicts raw (normalised) pixels, and the loss is
the L1 error on masked pixels only. Patch sampling is for fine-tuning: pre-training runs every
patch (the schedule must stay at keep ratio 1.0).

Besides `pss train`'s files (config.yaml, train_log.jsonl, val_log.jsonl with the masked-pixel L1
loss on validation images, summary.json, checkpoint-last.pt, checkpoint-best.pt, and
model.safetensors = the whole SimMIM model of the lowest validation loss), the run folder gets, at
the end of pre-training:

    encoder.safetensors   the encoder after the last step, under the classifier's parameter names and
                          without a head: what `pss train --init` loads (metadata: architecture)
    reconstructions.png   input / masked input / prediction / prediction pasted into the visible
                          pixels, for a few validation images with fixed masks

The validation loss uses fixed masks (drawn from `mim.eval_seed`), so values are comparable across
evaluations and runs, and evaluating never disturbs the random stream of training.

A recipe with `task: simmim` is a PretrainConfig wherever it is loaded (`pss.config.load_config`),
so `pss train --config configs/cifar10_pretrain_simmim.yaml` pre-trains too; `pss pretrain` also
accepts recipes without `task:` and refuses classification ones.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pss.config import PretrainConfig, build_config, tasks_of
from pss.errors import ConfigError

__all__ = ["pretrain", "pretrain_config_from_dict", "resolve_pretrain_config"]


# ---------------------------------------------------------------------------------------------
# entry points


def pretrain_config_from_dict(d: dict[str, Any]) -> PretrainConfig:
    """A PretrainConfig from a recipe mapping; `task` defaults to simmim, a classification recipe is refused."""
    if not isinstance(d, dict):
        raise ConfigError(f"the pre-training config must be a mapping of settings, got {type(d).__name__}")
    d = {**d, "task": d.get("task") or "simmim"}
    if d["task"] not in tasks_of(PretrainConfig):
        raise ConfigError(
            f"pss pretrain runs masked-image modelling (task: simmim), but the recipe says task: {d['task']}: "
            "train it with `pss train`, or pass a pre-training recipe such as configs/cifar10_pretrain_simmim.yaml"
        )
    return build_config(PretrainConfig, d)


def resolve_pretrain_config(
    config: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    data: str | None = None,
    output: str | None = None,
    init: str | None = None,
    resume: str | bool | None = None,
) -> tuple[PretrainConfig, Path | None]:
    """As `pss.resolve.resolve_config`, for a pre-training recipe (see there)."""
    from pss.resolve import resolve_config

    return resolve_config(
        config, overrides, data=data, output=output, init=init, resume=resume, from_dict=pretrain_config_from_dict
    )


def pretrain(cfg: PretrainConfig, *, resume_from: str | Path | None = None, overwrite: bool = False,
             quiet: bool = False) -> dict[str, Any]:
    """Pre-train as `cfg` says; returns summary.json's content (see the module docstring)."""
    from pss.train import train

    if not isinstance(cfg, PretrainConfig):
        raise ConfigError("pretrain() needs a PretrainConfig (resolve_pretrain_config); use pss.train.train for classification")
    return train(cfg, resume_from=resume_from, overwrite=overwrite, quiet=quiet)
