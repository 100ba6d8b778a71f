"""`task: classification`: cross-entropy on labels, with timm's Mixup / CutMix and label smoothing (the DeiT
recipe), evaluated by top-1 / top-5 accuracy.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pss.engine import BaseTask
from pss.errors import ConfigError
from pss.runtime import Amp, DistInfo, topk_correct, unwrap_model
from pss.settings import TrainConfig

__all__ = ["ClassificationTask", "build", "check"]


class ClassificationTask(BaseTask):
    """Cross-entropy on labels, with timm's Mixup / CutMix and label smoothing (the DeiT recipe)."""

    metric = "acc1"
    higher_is_better = True
    supports_resolution = True

    def __init__(self, num_classes: int, mixup: Any = None, label_smoothing: float = 0.0) -> None:
        from timm.data import Mixup
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

        self.num_classes = num_classes
        self.mixup_fn = None
        if mixup is not None and mixup.enabled:
            # Mixup turns labels into (smoothed) soft targets, hence the soft-target loss.
            self.mixup_fn = Mixup(
                mixup_alpha=mixup.mixup_alpha,
                cutmix_alpha=mixup.cutmix_alpha,
                prob=mixup.prob,
                switch_prob=mixup.switch_prob,
                mode=mixup.mode,
                label_smoothing=label_smoothing,
                num_classes=num_classes,
            )
            self.criterion: nn.Module = SoftTargetCrossEntropy()
        elif label_smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(smoothing=label_smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()

    def resize(self, batch: tuple[torch.Tensor, torch.Tensor], side: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images resized to `side` (antialiased bilinear, the whole image: the field of view stays), labels as
        they are; a batch already at that side passes through."""
        images, targets = batch
        if images.shape[-2:] != (side, side):
            images = F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        return images, targets

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, targets = batch
        if self.mixup_fn is not None:
            images, targets = self.mixup_fn(images, targets)
        return self.criterion(model(images), targets), {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable, amp: Amp, dist_info: DistInfo) -> dict[str, float]:
        model.eval()
        device = next(unwrap_model(model).parameters()).device
        # Running sums stay on the device: one host sync after the loop, not one per batch.
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # correct@1, correct@5, loss sum, count
        for images, targets in loader:
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            with amp.autocast():
                logits = model(images)
            c1, c5 = topk_correct(logits, targets, (1, 5))
            sums += torch.stack([
                c1, c5,
                F.cross_entropy(logits.float(), targets, reduction="sum"),
                torch.tensor(targets.numel(), device=device),
            ]).double()
        if dist_info.enabled:
            dist.all_reduce(sums)  # shards differ in size by at most one image: reduce sums, not means
        c1, c5, loss_sum, n = sums.tolist()
        n = max(n, 1.0)
        return {"acc1": 100.0 * c1 / n, "acc5": 100.0 * c5 / n, "loss": loss_sum / n}


def check(cfg: TrainConfig) -> None:
    """The task's checks before any data is read: a classifier needs nothing beyond the recipe's own
    (the class count comes from the data, `build`)."""


def build(cfg: TrainConfig, class_names: list[str]) -> ClassificationTask:
    """The engine's Task for `task: classification`, on the data's classes."""
    if len(class_names) < 2:
        raise ConfigError(f"the data has {len(class_names)} class ({', '.join(class_names)}): a classifier needs at "
                          "least 2 class folders in each split; add the other classes")
    return ClassificationTask(len(class_names), cfg.mixup, cfg.label_smoothing)
