"""`pss.attach`: make an existing timm ViT a PSS model by replacing its patch-drop stage.

timm's VisionTransformer (and DeiT, which subclasses it) runs
`patch_embed -> _pos_embed -> patch_drop -> norm_pre -> blocks`, and timm's Eva (EVA-02, and the
RoPE ViTs built on it) calls `patch_drop` inside `_pos_embed` and gathers its rotary embedding with
the indices it returns. Putting a PatchSampler in that slot gives both the same keep-ratio control
as our own models, with selection after the position embedding and prefix tokens always kept.

Models without that slot (BEiT, Swin, hierarchical or convolutional stems) are refused: dropping
tokens there needs changes inside their attention or their patch merging.
"""
from __future__ import annotations

import logging

from timm.layers import PatchDropout
from torch import nn

from pss.errors import ConfigError
from pss.select import PatchSampler

log = logging.getLogger(__name__)


def _kind(model: nn.Module) -> str | None:
    from timm.models.eva import Eva
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, Eva):
        return "eva"
    if isinstance(model, VisionTransformer):
        return "vit"
    return None


def attach(model: nn.Module, keep_ratio: float = 1.0, method: str = "magnitude") -> nn.Module:
    """Replace the patch-drop stage of a timm ViT / DeiT / EVA with a PatchSampler, in place.

    Returns the same model. Models already carrying a PatchSampler are returned unchanged.
    """
    if isinstance(getattr(model, "patch_drop", None), PatchSampler):
        return model
    kind = _kind(model)
    if kind is None:
        raise ConfigError(
            f"cannot attach PSS to {type(model).__name__}: it has no patch-drop stage after the position "
            "embedding; supported are timm VisionTransformer (vit_*, deit_*) and Eva (eva02_*, vit_*_rope_*) models"
        )
    old = model.patch_drop
    if isinstance(old, PatchDropout) and old.prob > 0:
        log.warning("pss.attach: replacing the model's PatchDropout(prob=%s) by the keep-ratio schedule", old.prob)
    model.patch_drop = PatchSampler(
        num_prefix_tokens=model.num_prefix_tokens,
        keep_ratio=keep_ratio,
        method=method,
        return_indices=kind == "eva",  # Eva gathers its rotary embedding with the returned indices
    )
    return model
