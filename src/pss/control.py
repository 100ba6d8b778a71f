"""Set the keep ratio and selection rule of a PSS model: for training steps, or explicitly.

Works on our models, on timm ViTs after `pss.attach`, and through DDP / torch.compile wrappers,
because it walks the module tree and sets the `PatchSampler` stages it finds.

The eval rule (the same as timm's PatchDropout, so a user's loop evaluates what it expects):

    pss.set_keep_ratio(model, 0.4)     # training keep ratio: used in model.train() mode only
    model.eval(); model(x)             # every token (rho = 1.0): eval, "best" checkpoints, EMA copies
    pss.use_keep_ratio(model, 0.5)     # explicit dial: rho = 0.5 in train and eval mode until cleared,
                                       # in eval mode with the model's deterministic default rule
                                       # (pss.select.DEFAULT_INFERENCE_SELECT, by its training rule)
    pss.use_keep_ratio(model, None)    # clear the dial: back to the rule above
    with pss.use_keep_ratio(model, 0.5):  # the dial for one block only (dynamic inference, sweeps)
        model(x)

An explicit setting always wins: `pss train` evaluates at `eval.keep_ratio` and `pss sweep` at each
swept ratio through `pss.use_keep_ratio`, whatever the training ratio was.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from pss.runtime import unwrap_model
from pss.select import PatchSampler, check_keep_ratio, check_select, default_inference_select, num_kept


def samplers(model: nn.Module) -> list[PatchSampler]:
    """All PatchSampler stages of `model` (unwraps DDP `.module` and compiled `._orig_mod` implicitly)."""
    return [m for m in model.modules() if isinstance(m, PatchSampler)]


def _samplers_or_raise(model: nn.Module) -> list[PatchSampler]:
    found = samplers(model)
    if not found:
        raise TypeError(f"{type(model).__name__} has no PatchSampler: build it with pss or call pss.attach(model)")
    return found


def set_train_keep_ratio(found: list[PatchSampler], keep_ratio: float, select: str | None = None) -> None:
    """`set_keep_ratio` on an already collected sampler list (no module walk: for per-step use)."""
    keep_ratio = check_keep_ratio(keep_ratio)
    if select is not None:
        check_select(select)
    for s in found:
        s.keep_ratio = keep_ratio
        if select is not None:
            s.select = select
        if keep_ratio < 1.0:  # the weights now learn with this rule: inference defaults follow it
            s.trained_select = s.select


def set_trained_select(model: nn.Module, trained_select: str | None) -> None:
    """Record the rule `model`'s weights were trained with (None: at every token), which sets its
    deterministic default rule at inference (`pss.select.default_inference_select`). pss calls it when
    it builds a model for a recipe or loads a trained one; a KeepRatioScheduler sets it as it trains."""
    default_inference_select(trained_select)  # refuses a rule unknown to this version, in one line
    for s in _samplers_or_raise(model):
        s.trained_select = trained_select


def inference_select(model: nn.Module, select: str | None = None) -> str:
    """The rule `model` uses at inference: `select` when given, else its default for its training rule."""
    if select is not None:
        check_select(select)
        return select
    s = _samplers_or_raise(model)[0]
    return s.explicit_select or default_inference_select(s.trained_select)


def set_keep_ratio(model: nn.Module, keep_ratio: float, select: str | None = None) -> None:
    """Set the *training* keep ratio rho (and optionally the selection rule) of `model`.

    It applies to forward passes in `train()` mode; in `eval()` mode the model runs every token
    unless an explicit ratio is set with `pss.use_keep_ratio(model, rho)`.
    """
    set_train_keep_ratio(_samplers_or_raise(model), keep_ratio, select)


def get_keep_ratio(model: nn.Module) -> float:
    """The keep ratio the next forward pass of `model` uses, in its current train / eval mode."""
    return _samplers_or_raise(model)[0].effective_keep_ratio


class use_keep_ratio(contextlib.AbstractContextManager):  # noqa: N801  (used like a function, as torch.no_grad)
    """The explicit keep-ratio dial: `rho` in train and eval mode alike, winning over the eval rule.

        pss.use_keep_ratio(model, 0.5)            # from now on (dynamic inference at half the patches)
        pss.use_keep_ratio(model, None)           # back to: training ratio in train(), 1.0 in eval()
        with pss.use_keep_ratio(model, 0.4):      # only inside the block; the previous state comes back
            logits = model(images)

    `select` (optional) also sets the selection rule, in both modes (restored on leaving a `with`
    block); without it, eval mode uses the model's deterministic default for the rule it was trained
    with (`pss.select.DEFAULT_INFERENCE_SELECT`) and train mode its training rule. `rho=None` clears
    both.
    """

    def __init__(self, model: nn.Module, rho: float | None, select: str | None = None) -> None:
        if rho is not None:
            rho = check_keep_ratio(rho)
        if select is not None:
            check_select(select)
        self.model = model
        self._samplers = _samplers_or_raise(model)
        self._old = [(s.explicit_keep_ratio, s.explicit_select) for s in self._samplers]
        for s in self._samplers:
            s.explicit_keep_ratio = None if rho is None else float(rho)
            if rho is None or select is not None:
                s.explicit_select = select

    def __enter__(self) -> nn.Module:
        return self.model

    def __exit__(self, *exc) -> None:
        for s, (r, m) in zip(self._samplers, self._old):
            s.explicit_keep_ratio, s.explicit_select = r, m


def num_tokens(model: nn.Module, keep_ratio: float, side: int | None = None) -> int | None:
    """Tokens through the blocks per image at `keep_ratio` (and a training side of `side` px; None: the
    model's): the prefix tokens (CLS, registers: always kept) plus the kept patches (`pss.select.num_kept`).
    Sees through DDP / torch.compile wrappers and a pre-training wrapper holding the ViT as `.encoder`
    (SimMIM); None for a model without a patch embedding."""
    bare = unwrap_model(model)
    vit = getattr(bare, "encoder", bare)
    pe = getattr(vit, "patch_embed", None)
    num_patches = getattr(pe, "num_patches", None)
    if num_patches is None:
        return None
    if side is not None:
        p = pe.patch_size
        num_patches = (side // p[0]) * (side // p[1])
    return int(getattr(vit, "num_prefix_tokens", 0)) + num_kept(num_patches, keep_ratio)


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
