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
import types

from timm.layers import PatchDropout
from torch import nn

from pss.errors import ConfigError
from pss.select import DEFAULT_SELECT, PatchSampler, check_keep_ratio, check_select

log = logging.getLogger(__name__)


def model_kind(model: nn.Module) -> str | None:
    from timm.models.eva import Eva
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, Eva):
        return "eva"
    if isinstance(model, VisionTransformer):
        return "vit"
    return None


def _unsupported_message(model: nn.Module) -> str:
    cls = type(model)
    family = cls.__module__.rsplit(".", 1)[-1]
    supported = (
        "Supported: models of timm's VisionTransformer class (most vit_* and deit_*, DINOv2/v3 with registers, "
        "SigLIP, CLIP, FlexiViT, hybrid vit_*_r50_*) and Eva class (eva02_*, vit_*_rope_*); not vit_relpos_*, "
        "samvit_*, beit*, swin*, or convolutional models. `timm.create_model(name).__class__` tells which"
    )
    if not hasattr(model, "patch_embed"):  # a CNN or anything else without patch tokens
        return (f"cannot attach PSS to {cls.__name__} ({cls.__module__}): it is not a Vision Transformer - it has no "
                "patch embedding (`patch_embed`) and so no patch tokens to drop. " + supported)
    lacks = "no patch-drop stage (`patch_drop`)" if not hasattr(model, "patch_drop") else \
        "a patch-drop stage (`patch_drop`) that its attention cannot follow"
    return (
        f"cannot attach PSS to {cls.__name__} (timm.models.{family}): it has patch tokens but {lacks} after the "
        "position embedding, so tokens cannot be dropped without changing its attention (relative-position tables, "
        "windows) or patch merging. " + supported
    )


def _dense_features_guard(self: nn.Module, *args, **kwargs):
    """forward_intermediates with every token only: its feature maps are reshaped to the full patch grid."""
    rho = self.patch_drop.effective_keep_ratio
    if rho < 1.0:
        raise ConfigError(
            f"forward_intermediates returns dense feature maps, which need every patch token, but this "
            f"{type(self).__name__} would run at keep ratio {rho:g} ({'train' if self.training else 'eval'} mode). "
            "Call it in eval() mode without an explicit keep ratio, or inside `with pss.use_keep_ratio(model, 1.0):`"
        )
    return type(self).forward_intermediates(self, *args, **kwargs)


_dense_features_guard.__name__ = "forward_intermediates"  # a pickled bound method then resolves by name


def attach(model: nn.Module, keep_ratio: float | None = None, select: str | None = None) -> nn.Module:
    """Replace the patch-drop stage of a timm ViT / DeiT / EVA with a PatchSampler, in place.

    Returns the same model. On a model that already carries a PatchSampler, `keep_ratio` and
    `select`, when given, are set as its training keep ratio and selection rule. Attach before
    `torch.compile` and DDP: a wrapped model is refused. `forward_intermediates` (dense feature
    maps; also behind `get_intermediate_layers`) raises if it would run with fewer tokens.
    """
    if hasattr(model, "_orig_mod"):
        raise ConfigError(
            "pss.attach got a torch.compile'd model: attach before compile, "
            "i.e. model = torch.compile(pss.attach(model))"
        )
    if isinstance(model, nn.parallel.DistributedDataParallel) or type(model).__name__ == "DataParallel":
        raise ConfigError("pss.attach got a DDP-wrapped model: attach before wrapping, i.e. DDP(pss.attach(model))")
    sampler = getattr(model, "patch_drop", None)
    if isinstance(sampler, PatchSampler):
        if keep_ratio is not None:
            sampler.keep_ratio = check_keep_ratio(keep_ratio)
        if select is not None:
            check_select(select)
            sampler.select = select
        return model
    kind = model_kind(model)
    if kind is None:
        raise ConfigError(_unsupported_message(model))
    old = model.patch_drop
    if isinstance(old, PatchDropout) and old.prob > 0:
        log.warning("pss.attach: replacing the model's PatchDropout(prob=%s) by the keep-ratio schedule", old.prob)
    model.patch_drop = PatchSampler(
        num_prefix_tokens=model.num_prefix_tokens,
        keep_ratio=1.0 if keep_ratio is None else keep_ratio,
        select=select or DEFAULT_SELECT,
        return_indices=kind == "eva",  # Eva gathers its rotary embedding with the returned indices
    )
    if hasattr(type(model), "forward_intermediates"):
        model.forward_intermediates = types.MethodType(_dense_features_guard, model)
    return model
