"""`build_datasets`: a recipe's train and val datasets, through its source (`pss.data.sources`), per image
or, with ``data.in_memory``, decoded once into uint8 tensors on the device."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset
from torchvision import transforms as T

from pss.config import DataConfig
from pss.data.datasets import InMemoryDataset, build_transforms, decode_all, timm_eval_transform
from pss.data.report import DataReport
from pss.data.sources import source_for

__all__ = ["build_datasets"]


def build_datasets(cfg: DataConfig, device: torch.device | str | None = None,
                   report: DataReport | None = None) -> tuple[Dataset, Dataset, list[str]]:
    """Build (train, val, class names) for ``cfg``; runs the source's check (`pss.data.check_data`) unless a
    ``report`` is given.

    ``device`` only matters with ``in_memory``: the uint8 tensors are placed there (e.g. cuda).
    """
    device = torch.device(device or "cpu")
    source = source_for(cfg)
    report = report or source.check()
    if not cfg.in_memory:
        train, val = source.datasets(report, *build_transforms(cfg))
        return train, val, report.classes
    held = source.held(report, device)
    if held is not None:
        return held[0], held[1], report.classes
    # Decode once at img_size: train images resized + centre-cropped to img_size (random crops and flips
    # happen on the device later), val images exactly as the eval transform would, minus normalisation.
    interp = T.InterpolationMode.BICUBIC if cfg.interpolation == "random" else T.InterpolationMode(cfg.interpolation)
    to_u8 = T.Compose([T.Resize(cfg.img_size, interpolation=interp), T.CenterCrop(cfg.img_size), T.PILToTensor()])
    out = []
    for ds in source.datasets(report, to_u8, timm_eval_transform(cfg, normalize=False)):
        x, y = decode_all(ds, cfg.img_size, cfg.num_workers, device)
        out.append(InMemoryDataset(x, y, report.classes, cfg.mean, cfg.std))
    return out[0], out[1], report.classes
