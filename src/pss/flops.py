"""FLOP counting at a keep ratio with `torch.utils.flop_counter.FlopCounterMode`.

FlopCounterMode counts the matrix products (linear, conv, bmm, attention); elementwise ops,
norms and softmax are not counted, as in the paper and most ViT FLOP tables. One multiply-add
counts as 2 FLOPs.

    from pss.flops import count_flops, example_input
    count_flops(model, example_input(model, 8), keep_ratio=0.5, backward=True)   # one training step, batch 8
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from pss.control import use_keep_ratio
from pss.control import samplers


def _register_cpu_attention() -> None:
    """Count SDPA on the CPU too: torch runs it there as `_scaled_dot_product_flash_attention_for_cpu`
    (and its backward), which FlopCounterMode has no formula for in some releases, so attention
    would silently count as zero and the FLOP ratio would be that of the linear layers alone."""
    aten = torch.ops.aten
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is not None and fwd not in flop_counter.flop_registry:
        flop_counter.register_flop_formula(fwd)(
            lambda q, k, v, *args, out_shape=None, **kw: flop_counter.sdpa_flop_count(q, k, v)
        )
    if bwd is not None and bwd not in flop_counter.flop_registry:
        flop_counter.register_flop_formula(bwd)(
            lambda g, q, k, v, *args, out_shape=None, **kw: flop_counter.sdpa_backward_flop_count(g, q, k, v)
        )


_register_cpu_attention()


def count_flops(
    model: nn.Module,
    x: torch.Tensor,
    keep_ratio: float = 1.0,
    backward: bool = False,
    select: str | None = None,
) -> int:
    """FLOPs of one forward (or forward + backward, a training step) of `model` on the batch `x`.

    The total is for the whole batch; divide by `x.shape[0]` for FLOPs per image (or use
    `flops_per_image`). The model's train/eval mode is left as it is; gradients are computed with
    `torch.autograd.grad`, so no `.grad` is touched. Models without a PatchSampler (plain timm
    ViTs) can only be counted at keep_ratio 1.0.
    """
    has_sampler = bool(samplers(model))
    if not has_sampler and keep_ratio != 1.0:
        raise TypeError(f"{type(model).__name__} has no PatchSampler: build it with pss or call pss.attach(model)")
    counter = FlopCounterMode(display=False)
    with torch.set_grad_enabled(backward):
        with use_keep_ratio(model, keep_ratio, select) if has_sampler else contextlib.nullcontext():
            with counter:
                out = model(x)
                if backward:
                    params = [p for p in model.parameters() if p.requires_grad]
                    # sum of logits as a stand-in loss: its own cost is not a matmul, so not counted
                    torch.autograd.grad(out.float().sum(), params, allow_unused=True)
    return int(counter.get_total_flops())


def flops_per_image(
    model: nn.Module,
    keep_ratio: float = 1.0,
    backward: bool = False,
    select: str | None = None,
    img_size: int | tuple[int, int] | None = None,
    in_chans: int | None = None,
) -> int:
    """FLOPs for one image at `keep_ratio`, input size taken from the model's patch embedding."""
    x = example_input(model, batch_size=1, img_size=img_size, in_chans=in_chans)
    return count_flops(model, x, keep_ratio, backward=backward, select=select)


def model_input_size(model: nn.Module) -> tuple[int, int, int]:
    """(channels, height, width) the model expects, from timm's `patch_embed` (or `pretrained_cfg`)."""
    pe = getattr(model, "patch_embed", None)
    img_size = getattr(pe, "img_size", None)
    in_chans = getattr(getattr(pe, "proj", None), "in_channels", None)
    if img_size is None:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        if "input_size" not in cfg:
            raise TypeError(f"cannot tell the input size of {type(model).__name__}; pass img_size")
        return tuple(cfg["input_size"])  # type: ignore[return-value]
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    return int(in_chans or 3), int(h), int(w)


def example_input(
    model: nn.Module,
    batch_size: int = 1,
    img_size: int | tuple[int, int] | None = None,
    in_chans: int | None = None,
) -> torch.Tensor:
    """A random (B, C, H, W) batch on the model's device and dtype, for counting and timing.

    Random normal values give every token a distinct magnitude, so magnitude selection does the
    same work as on real images.
    """
    c, h, w = model_input_size(model)
    if img_size is not None:
        h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    c = in_chans or c
    p = next(model.parameters())
    return torch.randn(batch_size, c, h, w, device=p.device, dtype=p.dtype)



def forward_bytes_per_image(model: nn.Module) -> int:
    """About the memory one image takes at the peak of an inference forward pass of `model`: the input, and
    four times the largest layer output (that output, the layer's input and the residual stream beside them,
    with room to spare) plus an attention's scores (heads x tokens^2). Measured with forward hooks on one
    image; an estimate for refusing a batch far too large for the device (`check_batch_fits`), not a bound
    to plan against."""
    x = example_input(model, 1)
    largest, scores = 0, 0

    def hook(module: nn.Module, args: tuple, out: object) -> None:
        nonlocal largest, scores
        if isinstance(out, torch.Tensor):
            largest = max(largest, out.numel())
            heads = getattr(module, "num_heads", None)
            if isinstance(heads, int) and out.dim() == 3:
                scores = max(scores, heads * out.shape[1] ** 2)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return (x.numel() + 4 * largest + scores) * x.element_size()


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on `device`: the GPU's free memory, or the host's available memory
    (MemAvailable, Linux); None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_batch_fits(model: nn.Module, batch_size: int, flag: str = "--batch-size") -> None:
    """ConfigError (one line) when a forward pass of `batch_size` images would take more memory than the
    model's device has free (`forward_bytes_per_image`), naming the largest batch that fits."""
    from pss.errors import ConfigError

    device = next(model.parameters()).device
    free = free_memory_bytes(device)
    if free is None:
        return
    per_image = forward_bytes_per_image(model)
    if batch_size * per_image > free:
        gb = 2**30
        raise ConfigError(
            f"{flag} {batch_size} needs about {batch_size * per_image / gb:.1f} GB for one forward pass "
            f"({per_image / 2**20:.1f} MB per image) and {device.type} has {free / gb:.1f} GB free: use {flag} "
            f"{max(1, free // per_image // 2)} or less"
        )
