"""The built-in glyph set (``data.path: null``, `pss.data.builtin`): generated in memory from the seed, no
files to list or scan."""
from __future__ import annotations

from collections.abc import Callable

import torch

from pss.data.builtin import builtin_class_names, builtin_split
from pss.data.datasets import InMemoryDataset
from pss.data.report import DataReport
from pss.data.sources.base import Source, check_batch

__all__ = ["BuiltinSource"]


class BuiltinSource(Source):
    """``data.path: null``: `data.builtin_num_train` / `builtin_num_val` images of `builtin_num_classes`."""

    kind = "builtin"

    @staticmethod
    def claims(path: str | None) -> bool:
        return path is None

    def check(self, batch_size: int | None = None, world_size: int = 1) -> DataReport:
        cfg = self.cfg
        names = builtin_class_names(cfg.builtin_num_classes)
        check_batch(cfg.builtin_num_train, batch_size, world_size, "the built-in set")

        def per_class(n: int) -> dict[str, int]:  # labels cycle through the classes
            return {c: n // len(names) + (i < n % len(names)) for i, c in enumerate(names)}

        return DataReport(self.kind, None, names, per_class(cfg.builtin_num_train), per_class(cfg.builtin_num_val))

    def datasets(self, report: DataReport, train_transform: Callable, eval_transform: Callable
                 ) -> tuple[InMemoryDataset, InMemoryDataset]:
        cfg = self.cfg
        (xt, yt), (xv, yv) = builtin_split(cfg, "train"), builtin_split(cfg, "val")
        return (InMemoryDataset(xt, yt, report.classes, cfg.mean, cfg.std, transform=train_transform),
                InMemoryDataset(xv, yv, report.classes, cfg.mean, cfg.std, transform=eval_transform))

    def held(self, report: DataReport, device: torch.device) -> tuple[InMemoryDataset, InMemoryDataset]:
        cfg = self.cfg
        (xt, yt), (xv, yv) = builtin_split(cfg, "train"), builtin_split(cfg, "val")
        return (InMemoryDataset(xt.to(device), yt, report.classes, cfg.mean, cfg.std),
                InMemoryDataset(xv.to(device), yv, report.classes, cfg.mean, cfg.std))
