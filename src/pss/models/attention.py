"""Attention kernels for the PSS ViT: which one runs, and the FlexAttention relative-bias lookup.

Two implementations compute the same attention (`attn_impl`):
  * "sdpa": `F.scaled_dot_product_attention`. With a relative position bias the bias goes in as a
            float mask gathered to (B, heads, L, L) for the kept pairs, which rules out the flash
            kernel; without one (rope, learned) SDPA picks its flash / efficient kernel on CUDA.
  * "flex": `torch.nn.attention.flex_attention` with a `score_mod` that looks the bias up per kept
            (query, key) pair inside the kernel, through the keep indices: no (B, heads, L, L)
            tensor is made, and gradients reach the bias tables.
"auto" (the default) takes flex for a relative bias where FlexAttention compiles to a fused kernel
(CUDA, torch >= 2.6, no attention dropout), and sdpa elsewhere (also for rope / learned positions,
which need no mask, so SDPA runs its own fused kernels). On CPU FlexAttention has no backward pass, so flex there only
runs forward (inference); training on CPU uses sdpa.
"""
from __future__ import annotations

import functools
from typing import Callable, Literal

import torch

from pss.errors import ConfigError

AttnImpl = Literal["auto", "flex", "sdpa"]
ATTN_IMPLS = ("auto", "flex", "sdpa")
FLEX_MIN_TORCH = (2, 6)  # first release whose compiled FlexAttention computes gradients of captured biases
# Devices on which FlexAttention compiles to a fused kernel with a backward pass ("auto" picks flex there).
FLEX_FUSED_DEVICES = frozenset({"cuda"})
# Devices on which torch refuses FlexAttention's backward (tests lift this to check gradients on CPU).
FLEX_NO_BACKWARD = {"cpu", "mps"}


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def _flex_available() -> bool:
    if _torch_version() < FLEX_MIN_TORCH:
        return False
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


# This torch has FlexAttention with gradients through captured bias tensors (read once, at import).
FLEX_AVAILABLE = _flex_available()


def check_attn_impl(attn_impl: str, attn_drop: float = 0.0) -> None:
    """Refuse an unknown name, and `flex` where this torch cannot run it (one line, with the fix)."""
    if attn_impl not in ATTN_IMPLS:
        raise ConfigError(f"unknown attn_impl {attn_impl!r}; choose one of {', '.join(ATTN_IMPLS)}")
    if attn_impl == "flex" and not FLEX_AVAILABLE:
        need = ".".join(map(str, FLEX_MIN_TORCH))
        raise ConfigError(
            f"attn_impl 'flex' needs torch >= {need} (FlexAttention with bias gradients); this is torch "
            f"{torch.__version__}: set attn_impl: auto to use SDPA"
        )
    if attn_impl == "flex" and attn_drop > 0:
        raise ConfigError("attn_impl 'flex' has no attention dropout; set attn_drop_rate: 0 or attn_impl: auto")


def resolve_attn_impl(attn_impl: str, device_type: str, attn_drop: float = 0.0, has_bias: bool = True) -> str:
    """The implementation that runs on `device_type`: "flex" or "sdpa". "auto" takes flex only for a
    layer with a relative bias: without one (rope, learned) SDPA's flash / cuDNN kernels are at least
    as fast. Plain Python on constants, so a compiled model specialises on it (no per-step cost)."""
    if attn_impl == "auto":
        fused = device_type in FLEX_FUSED_DEVICES and FLEX_AVAILABLE
        return "flex" if fused and has_bias and attn_drop == 0 else "sdpa"
    return attn_impl


@functools.lru_cache(maxsize=None)
def _compiled_flex() -> Callable:
    """FlexAttention compiled on its own, for eager models: one graph per sequence length
    (`dynamic=False`), so a keep-ratio grid of a few values gives a few kernels, built once each."""
    from torch.nn.attention.flex_attention import flex_attention

    # Each length is one graph per grad mode (train / eval) and dtype: allow more than dynamo's default 8.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    return torch.compile(flex_attention, dynamic=False)


def flex_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, score_mod: Callable | None) -> torch.Tensor:
    """FlexAttention on (B, h, L, d) tensors: fused where the device compiles it, the eager (unfused)
    reference elsewhere; inside a compiled model the outer compile fuses it."""
    from torch.nn.attention.flex_attention import flex_attention as flex

    if q.requires_grad and q.device.type in FLEX_NO_BACKWARD:
        raise ConfigError(
            f"attn_impl 'flex' cannot train on {q.device.type}: torch {torch.__version__} has no FlexAttention "
            "backward there; set attn_impl: auto (SDPA on this device)"
        )
    if q.device.type in FLEX_FUSED_DEVICES and not torch.compiler.is_compiling():
        return _compiled_flex()(q, k, v, score_mod=score_mod)
    return flex(q, k, v, score_mod=score_mod)


def rel_bias_score_mod(full_bias: torch.Tensor, seq_idx: torch.Tensor | None) -> Callable:
    """score_mod adding the relative position bias of each kept (query, key) pair.

    full_bias: (h, N0, N0), the full sequence's bias (table rows gathered by the full relative index,
    batch-independent, differentiable); seq_idx: (B, L) position in the full sequence of each kept
    token (prefix tokens first), or None when all tokens are kept in order. Looking the kept pair up
    in the full bias (not in the table itself) keeps the backward's scatter spread over N0^2 slots per
    head instead of piling atomic adds onto a few hundred table rows.
    """
    if seq_idx is None:
        def score_mod(score, b, h, q_idx, kv_idx):
            return score + full_bias[h, q_idx, kv_idx]
    else:
        def score_mod(score, b, h, q_idx, kv_idx):
            return score + full_bias[h, seq_idx[b, q_idx], seq_idx[b, kv_idx]]
    return score_mod


def key_bias_score_mod(inner: Callable | None, key_bias: torch.Tensor) -> Callable:
    """score_mod adding a per-key bias `key_bias` (B, L) on top of `inner` (token merging's log sizes)."""
    def score_mod(score, b, h, q_idx, kv_idx):
        score = score if inner is None else inner(score, b, h, q_idx, kv_idx)
        return score + key_bias[b, kv_idx]
    return score_mod
