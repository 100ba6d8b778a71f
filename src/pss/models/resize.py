"""The simplest dial of all: run the model at a lower input resolution (`pss sweep --reduce resize`).

    small = InputResize(model, 16)      # images resized to 16 x 16 px (antialiased bilinear) before the model
    sides = resize_sides(model, [1.0, 0.5, 0.25])   # 32, 24 (0.56 of the patches), 16 px for a 32 px / 4 px model

The wrapper shares the model's weights; the resize runs inside its forward, so measured images/s include it
(a deployment that decodes at the smaller side would be a little faster). Needs a model that runs smaller
patch grids (pss.resolution.model_geometry: ours, or timm ViTs with dynamic_img_size=True).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from pss.errors import ConfigError
from pss.resolution import model_geometry, patch_side

__all__ = ["InputResize", "resize_sides"]


def resize_sides(model: nn.Module, keep_ratios: Iterable[float]) -> list[int]:
    """The input sides whose patch count is nearest each keep ratio's share of the patches (side = sqrt(rho) x
    img_size, whole patches), distinct, largest first."""
    geometry = model_geometry(model)
    if geometry is None:
        raise ConfigError(f"{type(model).__name__} has fixed-size position tables and cannot run smaller inputs: "
                          "--reduce resize needs a pss_vit_* model or a timm ViT with dynamic_img_size=True")
    img, patch = geometry
    return sorted({patch_side(math.sqrt(r), img, patch) for r in keep_ratios}, reverse=True)


class InputResize(nn.Module):
    """`model` run on its inputs resized to `side` x `side` pixels (`side` = the model's: exactly `model`)."""

    def __init__(self, model: nn.Module, side: int) -> None:
        super().__init__()
        geometry = model_geometry(model)
        if geometry is None:
            raise ConfigError(f"{type(model).__name__} cannot run smaller inputs; use --reduce drop or merge for it")
        img, patch = geometry
        if side % patch or not patch <= side <= img:
            raise ConfigError(f"resize side {side} px: give whole {patch} px patches from {patch} to {img} px")
        self.model, self.side, self.img_size, self.patch_size = model, int(side), img, patch

    @property
    def patch_embed(self) -> nn.Module:  # the input size, for pss.flops.example_input
        return self.model.patch_embed

    @property
    def token_share(self) -> float:
        """Patches at this side over the model's."""
        return (self.side // self.patch_size) ** 2 / (self.img_size // self.patch_size) ** 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.side, self.side):
            images = F.interpolate(images, size=(self.side, self.side), mode="bilinear", antialias=True,
                                   align_corners=False)
        return self.model(images)
