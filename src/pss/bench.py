"""Speed benchmark: training-step time per keep ratio against the FLOP ratio of the same shapes.

A training step is forward + backward + optimizer step on a fixed random batch that already sits on
the device, so the figures measure the model alone (no input pipeline). Times are medians over
`iters` steps after `warmup` steps at each keep ratio; on CUDA every timed step is bracketed by
device synchronisation, so the figure is the true device time of the step.

The optimizer step (AdamW over every parameter) costs the same at every
keep ratio; at small batches or narrow models it is a large share of the step and holds the
step-time ratio above the FLOP ratio. The report times it on its own (`optimizer_time_s`) and gives,
per keep ratio, the time ratio of the rest of the step (`model_relative_time`: forward + backward),
so a shortfall can be told apart from one in the model.

Each row also names the attention kernels one training step ran (from the profiler: SDPA's flash /
efficient / math kernel, or FlexAttention) and, on CUDA, the peak memory of a step.
"""
from __future__ import annotations

import re
import statistics
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

import pss
from pss.control import num_tokens
from pss.errors import ConfigError
from pss.flops import count_flops, example_input
from pss.models import attention_impl
from pss.models.attention import ATTN_IMPLS
from pss.runinfo import run_info
from pss.runtime import resolve_amp, resolve_device, synchronize
from pss.select import check_keep_ratio


@dataclass
class SpeedResult:
    keep_ratio: float
    tokens: int  # tokens through the blocks per image (prefix + kept patches)
    step_time_s: float  # median training-step time
    relative_time: float  # step time / step time at rho = 1.0
    flop_ratio: float  # training-step FLOPs / FLOPs at rho = 1.0
    step_flops: int  # training-step FLOPs for the whole batch
    model_relative_time: float  # (step time - optimizer time) / the same at rho = 1.0
    infer_images_per_s: float | None = None  # forward only, eval mode, when asked for
    peak_memory_mb: float | None = None  # peak device memory of a training step (CUDA only)
    attention_kernels: tuple[str, ...] = ()  # attention ops / kernels a training step ran (profiler)


# Profiler names of attention kernels (forward): the SDPA backend's aten op (flash, efficient, cudnn,
# math), CUDA kernels (flash, cutlass fmha), and FlexAttention (its eager op, or its Triton template
# when compiled). The dispatcher's own `aten::scaled_dot_product_attention` and backward ops are left out.
_ATTN_KERNEL = re.compile(r"^aten::_scaled_dot_product_\w+$|flash_fwd|fmha_cutlassF|flex_attention|triton_tem", re.I)


def attention_kernels(fn) -> tuple[str, ...]:
    """Names of the attention ops and kernels that one call of `fn` runs, as the profiler sees them."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        fn()
    names = {e.key[:80] for e in prof.key_averages() if _ATTN_KERNEL.search(e.key) and "backward" not in e.key.lower()}
    return tuple(sorted(names))


def _time(fn, device: torch.device, warmup: int, iters: int) -> float:
    """Median wall time of `fn()` over `iters` calls after `warmup` calls, device-synchronised."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def speed_benchmark(
    model_name: str,
    *,
    img_size: int | None = None,
    batch_size: int = 64,
    keep_ratios: tuple[float, ...] = (1.0, 0.8, 0.6, 0.4, 0.2),
    device: str = "cpu",
    amp: str = "fp32",
    compile: bool = False,
    warmup: int = 3,
    iters: int = 10,
    inference: bool = False,
    select: str = "magnitude",
    model_kwargs: dict | None = None,
    attn_impl: str | None = None,
) -> dict:
    """Time training steps of `model_name` at each keep ratio; see the module docstring.
    `device` and `amp` (auto included) are resolved by `pss.runtime`; the report names the precision
    that ran. `attn_impl` (auto | flex | sdpa) is passed to pss_vit_* models; None keeps the model's default."""
    for r in keep_ratios:
        check_keep_ratio(r)
    model_kwargs = dict(model_kwargs or {})
    if attn_impl is not None:
        if attn_impl not in ATTN_IMPLS:
            raise ConfigError(f"unknown attn_impl {attn_impl!r}; choose one of {', '.join(ATTN_IMPLS)}")
        if not model_name.startswith("pss_vit"):
            raise ConfigError(f"--attn-impl applies to pss_vit_* models; {model_name} uses timm's attention (SDPA)")
        model_kwargs["attn_impl"] = attn_impl
    dev = resolve_device(device)  # auto -> cuda when there is one; a missing GPU is a one-line error
    amp_mode = resolve_amp(amp, dev)  # validates the name too
    keep_ratios = tuple(sorted(set(keep_ratios) | {1.0}, reverse=True))  # rho = 1.0 is the reference

    model = pss.build_model(model_name, num_classes=1000, img_size=img_size, **model_kwargs).to(dev)
    x = example_input(model, batch_size)
    y = torch.randint(0, 1000, (batch_size,), device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type == "cuda")
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_mode.dtype == torch.float16)
    # dynamic=False: one static graph per sequence length (as training compiles), not one symbolic graph
    run = torch.compile(model, dynamic=False) if compile else model

    def train_step() -> None:
        with amp_mode.autocast():
            loss = F.cross_entropy(run(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def infer_step() -> None:
        with amp_mode.autocast():
            run(x)

    def optimizer_time() -> float:
        """Median time of the optimizer step alone, on the gradients of one backward (kept between
        calls, so every call does the full update); the same at every keep ratio."""
        with amp_mode.autocast():
            loss = F.cross_entropy(run(x), y)
        scaler.scale(loss).backward()

        def step() -> None:
            scaler.step(opt)
            scaler.update()

        t = _time(step, dev, warmup, iters)
        opt.zero_grad(set_to_none=True)
        return t

    rows: list[dict] = []
    for rho in keep_ratios:
        pss.set_keep_ratio(model, rho, select)
        model.train()
        flops = count_flops(model, x, rho, backward=True)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        step_time = _time(train_step, dev, warmup, iters)
        peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
        kernels = attention_kernels(train_step)
        ips = None
        if inference:
            model.eval()
            with pss.use_keep_ratio(model, rho, select):  # explicit: eval() alone runs every token
                ips = batch_size / _time(infer_step, dev, warmup, iters)
        rows.append(dict(keep_ratio=rho, tokens=num_tokens(model, rho),
                         step_time_s=step_time, step_flops=flops, infer_images_per_s=ips, peak_memory_mb=peak,
                         attention_kernels=kernels))
    pss.set_keep_ratio(model, 1.0, select)
    model.train()
    opt_time = optimizer_time()
    ref = rows[0]
    results = [
        asdict(SpeedResult(
            relative_time=r["step_time_s"] / ref["step_time_s"],
            flop_ratio=r["step_flops"] / ref["step_flops"],
            model_relative_time=max(r["step_time_s"] - opt_time, 0.0) / max(ref["step_time_s"] - opt_time, 1e-12),
            **r,
        ))
        for r in rows
    ]
    return {
        "kind": "speed",
        "model": model_name,
        "model_kwargs": dict(model_kwargs or {}),  # lets a `budget_cost: FILE` check it is for the same model
        "img_size": model.patch_embed.img_size[0],
        "batch_size": batch_size,
        "amp": amp_mode.name,
        "compile": compile,
        "attention": attention_impl(model, dev),
        "pos_embed": getattr(model, "pos_embed_type", None),
        "select": select,
        "warmup": warmup,
        "iters": iters,
        "optimizer_time_s": opt_time,
        **run_info(dev),
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }


def format_speed_table(report: dict) -> str:
    """Markdown table of a speed report."""
    head = (f"{report['model']} @ {report['img_size']} px, batch {report['batch_size']}, {report['amp']}"
            f"{', compiled' if report['compile'] else ''} on {report['device']}")
    if report.get("pos_embed"):
        head += f", pos_embed {report['pos_embed']}"
    kernels: dict[tuple, list[str]] = {}
    for r in report["results"]:
        kernels.setdefault(tuple(r.get("attention_kernels") or ()), []).append(f"{r['keep_ratio']:g}")
    head += f"\nattention: {report.get('attention', '?')}; kernels " + "; ".join(
        f"{', '.join(k) or 'none seen'} (rho {', '.join(v)})" for k, v in kernels.items())
    lines = [head, ""]
    if report.get("optimizer_time_s") is not None:  # records before it was measured have no optimizer time
        opt_ms = 1000 * report["optimizer_time_s"]
        lines += [f"optimizer step alone: {opt_ms:.1f} ms ({100 * opt_ms / (1000 * report['results'][0]['step_time_s']):.0f}% "
                  "of the step at rho = 1.0, the same at every rho); 'model' columns leave it out.", ""]
    lines += ["| keep ratio | tokens | step time (ms) | time / rho=1 | FLOP ratio | time / FLOP ratio "
              "| model time / rho=1 | model time / FLOP ratio | infer img/s | peak mem (MB) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        ips = f"{r['infer_images_per_s']:.0f}" if r.get("infer_images_per_s") else "-"
        mem = f"{r['peak_memory_mb']:.0f}" if r.get("peak_memory_mb") else "-"
        model = r.get("model_relative_time")
        model_cols = "- | -" if model is None else f"{model:.3f} | {model / r['flop_ratio']:.2f}"
        lines.append(
            f"| {r['keep_ratio']:.2f} | {r['tokens']} | {1000 * r['step_time_s']:.1f} | {r['relative_time']:.3f} | "
            f"{r['flop_ratio']:.3f} | {r['relative_time'] / r['flop_ratio']:.2f} | {model_cols} | {ips} | {mem} |"
        )
    return "\n".join(lines)
