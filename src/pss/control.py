"""The one way to set the keep ratio and selection method of a PSS model for its next forward passes.

Works on our models, on timm ViTs after `pss.attach`, and through DDP / torch.compile wrappers,
because it walks the module tree and sets the `PatchSampler` stages it finds.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from pss.select import PatchSampler, check_keep_ratio, check_method


def samplers(model: nn.Module) -> list[PatchSampler]:
    """All PatchSampler stages of `model` (unwraps DDP `.module` and compiled `._orig_mod` implicitly)."""
    return [m for m in model.modules() if isinstance(m, PatchSampler)]


def set_keep_ratio(model: nn.Module, keep_ratio: float, method: str | None = None) -> None:
    """Set rho (and optionally the selection method) for every following forward pass of `model`."""
    check_keep_ratio(keep_ratio)
    if method is not None:
        check_method(method)
    found = samplers(model)
    if not found:
        raise TypeError(f"{type(model).__name__} has no PatchSampler: build it with pss or call pss.attach(model)")
    for s in found:
        s.keep_ratio = float(keep_ratio)
        if method is not None:
            s.method = method


def get_keep_ratio(model: nn.Module) -> float:
    return samplers(model)[0].keep_ratio


@contextlib.contextmanager
def keep_ratio(model: nn.Module, rho: float, method: str | None = None) -> Iterator[nn.Module]:
    """Temporarily run `model` at keep ratio `rho`: `with pss.keep_ratio(model, 0.5): model(x)`."""
    s = samplers(model)
    old = [(x.keep_ratio, x.method) for x in s]
    set_keep_ratio(model, rho, method)
    try:
        yield model
    finally:
        for x, (r, m) in zip(s, old):
            x.keep_ratio, x.method = r, m


@contextlib.contextmanager
def recording(model: nn.Module) -> Iterator[list[PatchSampler]]:
    """Record the keep indices each sampler used (in `sampler.last_keep_idx`) while inside the block."""
    s = samplers(model)
    for x in s:
        x.record = True
    try:
        yield s
    finally:
        for x in s:
            x.record = False
            x.last_keep_idx = None
