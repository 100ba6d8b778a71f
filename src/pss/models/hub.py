"""Rebuilding a model trained by pss (for analysis and inference: `pss sweep`, `pss viz`, the demo).

`load_model` reads a run folder or one of our checkpoints (file IO in `pss.checkpoint`), builds the
architecture its config records (`pss.models.build_model`) and loads the weights strictly. Foreign
weights (timm, SimMIM, MAE, BEiT) are for fine-tuning instead: `pss.models.convert`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pss.checkpoint import (
    check_training_checkpoint,
    load_checkpoint,
    load_safetensors,
    load_strict,
    safetensors_metadata,
)
from pss.errors import CheckpointError, ConfigError
from pss.runfolder import RunDir

__all__ = ["load_model"]


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained model (eval mode) and its resolved config dict. Its keep-ratio dial picks
    tokens with the deterministic default for the rule it was trained with (`pss.use_keep_ratio`).

    `path`: a `pss train` output folder (uses model.safetensors + config.yaml, else the
    checkpoints), one of our .pt checkpoints, or a .safetensors file with config.yaml beside it.
    """
    from pss.config import config_from_dict
    from pss.control import set_keep_ratio, set_trained_select
    from pss.models import build_model

    path = Path(path).expanduser()
    if path.is_dir():
        path = RunDir(path).model_file()
    if path.suffix == ".safetensors":
        meta = safetensors_metadata(path)  # a missing or unreadable file: one line saying so
        config = meta.get("pss_config")
        if config is None:
            config = RunDir(path.parent).read_config()
            if not config:
                raise CheckpointError(f"{str(path)!r} has no config in its metadata and no {RunDir.CONFIG} beside it")
        sd = load_safetensors(path)
    else:
        ckpt = check_training_checkpoint(load_checkpoint(path), path)
        config, sd = ckpt["config"], ckpt["model"]
    try:
        cfg = config_from_dict(config)
    except ConfigError as e:  # a checkpoint's config is checked as a recipe is (sizes bounded: pss.bounds)
        raise CheckpointError(f"the config recorded in {str(path)!r} is refused: {e}") from None
    if cfg.task != "classification":
        enc = RunDir(path.parent).encoder
        raise CheckpointError(
            f"{str(path)!r} is from a pre-training run (task: {cfg.task}), not a classifier: fine-tune it first, "
            f"e.g. pss train --config configs/cifar10_finetune_pss.yaml --init {enc}"
        )
    m = cfg.model
    if m.num_classes is None:
        raise CheckpointError(f"the config of {str(path)!r} does not record model.num_classes")
    model = build_model(m.name, num_classes=m.num_classes, img_size=m.img_size, **m.kwargs)
    set_trained_select(model, cfg.trained_select)  # its default rule at inference follows its training
    load_strict(model, sd, "model")
    set_keep_ratio(model, 1.0, cfg.select)  # the selection rule it was trained with (viz, sweep draw and use it)
    return model.to(device).eval(), config
