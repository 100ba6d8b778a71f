"""Speed benchmarks: training-step time per keep ratio against the FLOP ratio of the same shapes
(`speed_benchmark`, `pss bench speed`), and the recipe's input pipeline (`data_benchmark`, `pss bench data`).

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

import contextlib
import os
import re
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

import pss
from pss.control import num_tokens
from pss.errors import ConfigError
from pss.flops import check_batch_fits, count_flops, example_input
from pss.models import attention_impl
from pss.models.attention import ATTN_IMPLS
from pss.runinfo import run_info
from pss.preflight import MIN_QUANTILE_BATCHES
from pss.runtime import resolve_amp, resolve_device, synchronize
from pss.select import DEFAULT_SELECT, check_keep_ratio


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


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send what C++ code writes to file descriptor 2 to /dev/null for the block: the profiler's
    library (Kineto) logs ``USDT: profiler_start`` and, on machines without a GPU, ``gpuGetDeviceCount
    failed``, ignoring its log-level variable. Python's own errors still raise as usual."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def attention_kernels(fn) -> tuple[str, ...]:
    """Names of the attention ops and kernels that one call of `fn` runs, as the profiler sees them."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with _native_stderr_silenced(), profile(activities=acts) as prof:
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


class TrainingStep:
    """One full training step (forward, backward, AdamW, GradScaler) of `model` on a fixed batch, and its
    timings: the step at each keep ratio, inference, and the optimizer step alone."""

    def __init__(self, model: torch.nn.Module, batch_size: int, dev: torch.device, amp_mode: Any, compile: bool,
                 warmup: int, iters: int) -> None:
        self.model, self.dev, self.amp, self.warmup, self.iters = model, dev, amp_mode, warmup, iters
        self.x = example_input(model, batch_size)
        self.y = torch.randint(0, getattr(model, "num_classes", 1000), (batch_size,), device=dev)
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type == "cuda")
        self.scaler = torch.amp.GradScaler(dev.type, enabled=amp_mode.dtype == torch.float16)
        # dynamic=False: one static graph per sequence length (as training compiles), not one symbolic graph
        self.run = torch.compile(model, dynamic=False) if compile else model

    def _backward(self) -> None:
        with self.amp.autocast():
            loss = F.cross_entropy(self.run(self.x), self.y)
        self.scaler.scale(loss).backward()

    def _optimizer(self) -> None:
        self.scaler.step(self.opt)
        self.scaler.update()

    def train_step(self) -> None:
        self._backward()
        self._optimizer()
        self.opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def infer_step(self) -> None:
        with self.amp.autocast():
            self.run(self.x)

    def time(self, fn: Any) -> float:
        return _time(fn, self.dev, self.warmup, self.iters)

    def optimizer_time(self) -> float:
        """Median time of the optimizer step alone, on the gradients of one backward (kept between
        calls, so every call does the full update); the same at every keep ratio."""
        self._backward()
        t = self.time(self._optimizer)
        self.opt.zero_grad(set_to_none=True)
        return t

    def row(self, rho: float, select: str, inference: bool) -> dict:
        """Step time, FLOPs, peak memory, attention kernels (and inference images/s) at keep ratio `rho`."""
        model, dev = self.model, self.dev
        pss.set_keep_ratio(model, rho, select)
        model.train()
        flops = count_flops(model, self.x, rho, backward=True)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        step_time = self.time(self.train_step)
        peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
        kernels = attention_kernels(self.train_step)
        ips = None
        if inference:
            model.eval()
            with pss.use_keep_ratio(model, rho, select):  # explicit: eval() alone runs every token
                ips = self.x.shape[0] / self.time(self.infer_step)
        return dict(keep_ratio=rho, tokens=num_tokens(model, rho), step_time_s=step_time, step_flops=flops,
                    infer_images_per_s=ips, peak_memory_mb=peak, attention_kernels=kernels)


def _with_attn_impl(model_name: str, model_kwargs: dict | None, attn_impl: str | None) -> dict:
    """The model's kwargs with `attn_impl` (auto | flex | sdpa), which only pss_vit_* models take."""
    model_kwargs = dict(model_kwargs or {})
    if attn_impl is not None:
        if attn_impl not in ATTN_IMPLS:
            raise ConfigError(f"unknown attn_impl {attn_impl!r}; choose one of {', '.join(ATTN_IMPLS)}")
        if not model_name.startswith("pss_vit"):
            raise ConfigError(f"--attn-impl applies to pss_vit_* models; {model_name} uses timm's attention (SDPA)")
        model_kwargs["attn_impl"] = attn_impl
    return model_kwargs


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
    select: str = DEFAULT_SELECT,
    model_kwargs: dict | None = None,
    attn_impl: str | None = None,
) -> dict:
    """Time training steps of `model_name` at each keep ratio; see the module docstring.
    `device` and `amp` (auto included) are resolved by `pss.runtime`; the report names the precision
    that ran. `attn_impl` (auto | flex | sdpa) is passed to pss_vit_* models; None keeps the model's default."""
    for r in keep_ratios:
        check_keep_ratio(r)
    model_kwargs = _with_attn_impl(model_name, model_kwargs, attn_impl)
    dev = resolve_device(device)  # auto -> cuda when there is one; a missing GPU is a one-line error
    amp_mode = resolve_amp(amp, dev)  # validates the name too
    keep_ratios = tuple(sorted(set(keep_ratios) | {1.0}, reverse=True))  # rho = 1.0 is the reference

    model = pss.build_model(model_name, num_classes=1000, img_size=img_size, **model_kwargs).to(dev)
    check_batch_fits(model, batch_size)  # far too large a batch: one line, not a process the kernel kills
    bench = TrainingStep(model, batch_size, dev, amp_mode, compile, warmup, iters)
    rows = [bench.row(rho, select, inference) for rho in keep_ratios]
    pss.set_keep_ratio(model, 1.0, select)
    model.train()
    opt_time = bench.optimizer_time()
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
        "kind": "speed", "model": model_name,
        "model_kwargs": dict(model_kwargs or {}),  # lets a `budget_cost: FILE` check it is for the same model
        "img_size": model.patch_embed.img_size[0], "batch_size": batch_size, "amp": amp_mode.name, "compile": compile,
        "attention": attention_impl(model, dev), "pos_embed": getattr(model, "pos_embed_type", None), "select": select,
        "warmup": warmup, "iters": iters, "optimizer_time_s": opt_time, **run_info(dev),
        "date": time.strftime("%Y-%m-%d"), "results": results,
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


# ---------------------------------------------------------------------------------------------
# the input pipeline


def data_benchmark(cfg: Any, *, workers: tuple[int, ...] | None = None, warmup: int = 3, batches: int = 20,
                   device: str | None = None, sides: tuple[float, ...] = (1.0,), model_iters: int = 5) -> dict:
    """Time the training loader a recipe builds (its dataset, transforms, batch size, sampler; each batch
    moved to the device), for each worker count in `workers` (default: the recipe's). Every check on the
    input runs first: a missing or empty dataset, or a worker sweep of in-memory data, is one line.

    Per worker count: images/s delivered in all and per worker, and the time per batch the consumer
    waits (mean, median, p90), after `warmup` batches (which pay the workers' start-up). The consumer
    does nothing else, so this is what the loader can supply; `pss train` compares it with the model's
    step time (pss.preflight). `sides`: fractions of img_size to time each at (a lower training resolution,
    pss.resolution: a folder of images decodes and augments at the side in its workers, JPEGs through
    PIL's draft; other loaders deliver the recipe's size and the loop resizes on the device).

    Will it pay (`model_iters` > 0, `will_it_pay`): the recipe's model is timed `model_iters` training steps
    at each keep ratio its run needs, and each loader row at the full side gets the run's predicted
    wall-clock ratio to the full-token run (pss.preflight.predict), as `pss train`'s pre-flight gives it."""
    import dataclasses

    from pss.data import build_datasets, build_loader, check_data
    from pss.preflight import data_pipeline, time_loader

    if warmup < 0 or batches < 1 or model_iters < 0:
        raise ConfigError("--warmup and --model-iters must be >= 0 and --batches >= 1")
    if not sides or any(not 0 < f <= 1 for f in sides):
        raise ConfigError(f"--sides takes fractions of img_size in (0, 1], e.g. 1.0,0.5; got {sides}")
    if workers is not None:
        if any(w < 0 for w in workers) or not workers:
            raise ConfigError(f"--workers takes worker counts >= 0, e.g. 2,4,8; got {workers}")
        if cfg.data.in_memory:
            raise ConfigError("data.in_memory batches are cut and augmented on the device in the training process, "
                              "so worker counts do not apply (with in_memory, num_workers only decode the set once, "
                              "before training): drop --workers, or --set data.in_memory=false to time a worker pipeline")
    dev = resolve_device(device or cfg.device)
    # a missing or empty dataset, or a batch larger than it, fails here: before the scan and any decoding
    report = check_data(cfg.data, cfg.batch_size)
    workers = (cfg.data.num_workers,) if workers is None or cfg.data.in_memory else tuple(workers)
    train_ds, _, _ = build_datasets(cfg.data, dev if cfg.data.in_memory else None, report=report)
    from pss.resolution import patch_side

    rows = []
    for w in workers:
        data_cfg = dataclasses.replace(cfg.data, num_workers=w)
        loader = build_loader(train_ds, cfg.batch_size, True, data_cfg, seed=cfg.seed)
        steps_per_epoch = len(loader)
        for f in sides:
            side = patch_side(f, cfg.data.img_size, 1)
            in_workers = bool(getattr(loader, "set_side", lambda s: False)(None if side == cfg.data.img_size else side))
            stats, _ = time_loader(loader, dev, warmup=warmup, batches=batches)
            ran = getattr(getattr(loader, "loader", None), "num_workers", w)  # capped at the CPU cores (pss.data)
            name = "in memory" if cfg.data.in_memory else f"{ran} workers" + (f" (asked {w})" if ran != w else "")
            rows.append({"num_workers": w, "loader": name, "side": side, "decoded_at_side": in_workers, **stats,
                         "images_per_s_per_worker": stats["images_per_s"] / ran if ran and not cfg.data.in_memory else None})
    full_side = any(r["side"] == cfg.data.img_size for r in rows)
    model = will_it_pay(cfg, len(report.classes), rows, steps_per_epoch, dev, model_iters) \
        if model_iters and full_side else None
    why_not = None if model else "--model-iters 0" if not model_iters else "no loader row at the full side (--sides 1.0)"
    return {
        "kind": "data",
        "pipeline": data_pipeline(cfg.data, cfg.batch_size, report.root),
        "data_path": cfg.data.path,
        "num_train": report.num_train,
        **run_info(dev),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "results": rows,
        "model": model,  # the recipe's model step times and schedule behind each row's prediction (None: not timed)
        "not_predicted": why_not,
    }


def will_it_pay(cfg: Any, num_classes: int, rows: list[dict], steps_per_epoch: int, dev: torch.device, iters: int,
                warmup: int = 2) -> dict:
    """Time the recipe's model (a training step: forward, backward, AdamW, as `pss bench speed`; `iters` steps
    after `warmup` at each keep ratio the run needs) and give each loader row at the full side its predicted
    wall-clock ratio to the full-token run (`prediction`: pss.preflight.predict on the model's step times and the
    row's time per batch, the loader beside or inside the training process as the run would place it). The
    run's schedule is the one it trains (pss.analysis.viz.trained_schedule: budget_epochs applied, a budget
    solved; `budget_cost: measured` on each row's own measurements). Returns what the predictions rest on."""
    import dataclasses

    from pss.analysis.viz import trained_schedule
    from pss.preflight import Measurements, loader_placement, predict, ratios_to_time, with_loader_named
    from pss.train import build_model_for, resolve_data_geometry

    cfg = resolve_data_geometry(cfg, num_classes)
    model = build_model_for(cfg, num_classes).to(dev)
    micro = cfg.batch_size // cfg.accum_steps  # a step of accum_steps micro-batches: timed as that many of one
    check_batch_fits(model, micro)
    total = cfg.epochs * steps_per_epoch
    on_times = cfg.budget is not None and cfg.budget_cost.kind == "measured"  # solved on the times, per row
    run = None if on_times else trained_schedule(cfg, steps_per_epoch, model=model)
    ratios = ratios_to_time(cfg.schedule if on_times else run.schedule, steps_per_epoch, total, whole_grid=on_times)
    step = TrainingStep(model, micro, dev, resolve_amp(cfg.amp, dev), False, warmup, iters)
    times = {}
    for rho in ratios:
        pss.set_keep_ratio(model, rho, cfg.select)
        times[rho] = cfg.accum_steps * step.time(step.train_step)
    for row in rows:
        if row["side"] != cfg.data.img_size:  # the model is timed at the full side only
            continue
        overlap, where = loader_placement(dataclasses.replace(cfg.data, num_workers=row["num_workers"]), dev)
        meas = Measurements(times, row["mean_batch_s"], cfg.batch_size, overlap, source="pss bench data", loader=where)
        if on_times:
            try:
                run = trained_schedule(cfg, steps_per_epoch, model=model, measurements=meas)
            except ConfigError as e:  # this loader cannot feed the budget; another row's may
                row["prediction"] = {"time_ratio": None, "model_time_ratio": None, "bound": None, "schedule": None,
                                     "message": f"no run: {with_loader_named(e, meas)}"}
                continue
        counts = run.schedule.counts(steps_per_epoch, total)
        pred = predict(meas, (r for r, n in counts.items() for _ in range(n)))
        row["prediction"] = {"time_ratio": pred.time_ratio, "model_time_ratio": pred.model_time_ratio,
                             "bound": pred.bound, "message": pred.message, "schedule": run.schedule.to_dict()}
    sched = None if run is None else run.schedule  # None: no loader could feed a budget measured with it
    return {"name": cfg.model.name, "batch_size": cfg.batch_size, "amp": resolve_amp(cfg.amp, dev).name,
            "warmup": warmup, "iters": iters, "step_time_s": {f"{r:g}": t for r, t in times.items()},
            "schedule": None if sched is None else sched.to_dict(), "epochs": cfg.epochs,
            "steps_per_epoch": steps_per_epoch, "budget": None if run is None else run.note or None,
            "mean_keep_ratio": None if sched is None else sched.mean(steps_per_epoch, total),
            "resolution": None if cfg.resolution is None else cfg.resolution.to_dict()}


def format_data_table(report: dict) -> str:
    """Markdown table of a data report."""
    p = report["pipeline"]
    head = (f"loader of {report['data_path'] or 'the built-in set'} ({report['num_train']} training images) @ "
            f"{p['img_size']} px, batch {p['batch_size']}, {'in memory' if p['in_memory'] else 'from files'}, "
            f"to {report['device']} ({report['cpu_cores']} CPU cores)")
    lines = [head, "", "| loader | side (px) | img/s | img/s per worker | mean wait per batch (ms) | median (ms) | p90 (ms) |",
             "|---|---|---|---|---|---|---|"]

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{1000 * v:.1f}"

    for r in report["results"]:
        per = f"{r['images_per_s_per_worker']:.0f}" if r["images_per_s_per_worker"] else "-"
        side = r.get("side", p["img_size"])
        where = "" if side == p["img_size"] or r.get("decoded_at_side") else " (resized in the loop)"
        lines.append(f"| {r['loader']} | {side}{where} | {r['images_per_s']:.0f} | {per} | {ms(r['mean_batch_s'])} | "
                     f"{ms(r['median_wait_s'])} | {ms(r['p90_wait_s'])} |")
    few = min(r["batches"] for r in report["results"])
    if few < MIN_QUANTILE_BATCHES:
        lines.append(f"\nmedian and p90: not given from {few} timed batches (they need {MIN_QUANTILE_BATCHES}; "
                     f"--batches {MIN_QUANTILE_BATCHES}, or a larger data set)")
    return "\n".join(lines + _prediction_lines(report))


def _prediction_lines(report: dict) -> list[str]:
    """Will it pay: the run's predicted time ratio per loader row (`will_it_pay`), or why there is none."""
    m = report.get("model")
    if m is None:
        return ["", f"will it pay: not predicted ({report.get('not_predicted') or '--model-iters 0'})"]
    sched = m["schedule"]
    if sched is None:  # a budget on measured times that no loader's times can meet
        run = f"no run meets the budget with these loaders ({m['epochs']} epochs of {m['steps_per_epoch']} steps)"
    else:
        params = ", ".join(f"{k}={v:g}" for k, v in sched.items() if k != "name" and isinstance(v, (int, float)) and v)
        run = (f"the run trains {sched['name']}({params}), mean keep ratio {m['mean_keep_ratio']:.3f} over "
               f"{m['epochs']} epochs of {m['steps_per_epoch']} steps")
    lines = ["", f"will it pay: {run}"
                 + (f" ({m['budget']})" if m.get("budget") else "")
                 + f"; {m['name']} timed {m['iters']} training steps per keep ratio at batch {m['batch_size']}, {m['amp']}"
                 + (" (at the full side: a resolution schedule's smaller sides cost less)" if m.get("resolution") else "")]
    lines += [f"  {r['loader']}: {r['prediction']['message']}" for r in report["results"] if r.get("prediction")]
    return lines
