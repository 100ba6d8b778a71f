"""Dynamic-inference sweep: accuracy, throughput and FLOPs of trained models at several keep ratios.

A model trained with a patch sampling schedule keeps most of its accuracy when run with fewer
patches; a baseline trained at rho = 1.0 does not. `sweep_checkpoints` (or `sweep_model` for a
model in memory) measures both on the same validation set, and `plot_sweep` draws the paper's
dynamic-inference figure from the result.
"""
from __future__ import annotations

import json
import math
import statistics
import textwrap
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

import pss
from pss.control import inference_select, num_tokens
from pss.analysis.labels import annotate_apart
from pss.analysis.evaldata import labelled_loader
from pss.errors import ConfigError
from pss.models.merge import TokenMerging, merge_rates
from pss.models.resize import InputResize, resize_sides
from pss.flops import check_batch_fits, count_flops, example_input
from pss.runtime import autocast, resolve_amp, resolve_device, synchronize, topk_correct
from pss.select import SELECT_RULES, check_select

DEFAULT_KEEP_RATIOS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
# What `pss sweep --reduce` runs: dropping tokens (the keep-ratio dial), merging them (ToMe), both of these,
# a lower input resolution (resize: one side per keep ratio, sqrt(rho) of the side), or all three.
REDUCE_MODES = ("drop", "merge", "both", "resize", "all")


def interpolate(points: list[tuple[float, float]], x: float) -> float | None:
    """y at x, linear between the measured (x, y) points (e.g. top-1 against measured images/s along one reduce
    rule's curve); None outside their range: a dial is never extrapolated."""
    pts = sorted(points)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def parse_keep_ratios(text: str) -> list[float]:
    """"1.0,0.8,0.6" -> [1.0, 0.8, 0.6]; each value must be in (0, 1]."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"keep ratios must be comma-separated numbers like 1.0,0.8,0.6, got {text!r}") from None
    if not values:
        raise ConfigError("no keep ratios given")
    for v in values:
        if not 0.0 < v <= 1.0:
            raise ConfigError(f"keep ratio must be in (0, 1], got {v:g}")
    return values


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    keep_ratio: float = 1.0,
    select: str | None = None,
    amp_dtype: torch.dtype | None = None,
    max_batches: int | None = None,
    on_batch: Callable[[int], Any] | None = None,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%) and mean cross-entropy of `model` on `loader` at `keep_ratio`
    (`on_batch(1)` after each batch: a progress bar's update)."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    # sums stay on the device (no host sync per batch): [loss, top-1 hits, top-5 hits]
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    n = 0
    try:
        with pss.use_keep_ratio(model, keep_ratio, select), autocast(device, amp_dtype):
            for i, (images, targets) in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                images = images.to(device, non_blocking=True)
                targets = targets.to(device, non_blocking=True)
                logits = model(images).float()
                top1, top5 = topk_correct(logits, targets, (1, 5))
                sums += torch.stack([F.cross_entropy(logits, targets, reduction="sum"), top1, top5]).double()
                n += targets.shape[0]
                if on_batch is not None:
                    on_batch(1)
    finally:
        model.train(was_training)
    if n == 0:
        raise ConfigError("the validation set is empty")
    loss, top1, top5 = sums.tolist()
    return {"acc1": 100.0 * top1 / n, "acc5": 100.0 * top5 / n, "loss": loss / n, "num_images": n}


@torch.inference_mode()
def measure_throughput_points(
    points: list[tuple[nn.Module, float, str | None]],
    batch_size: int = 64,
    amp_dtype: torch.dtype | None = None,
    warmup: int = 3,
    iters: int = 10,
    on_batch: Callable[[int], Any] | None = None,
) -> list[float]:
    """Images per second of each point (model, keep ratio, selection rule or None for the model's
    default) alone (no data loading), on a random batch (`on_batch(1)` after each batch, warm-up included).

    After `warmup` batches per point, `iters` rounds each time one batch per point (round-robin),
    every batch between device synchronisations; the median is used. Interleaving and the median keep
    a load change or a stray slow batch (another process on a shared CPU, a GC pause) from favouring
    one point (a keep ratio, a merge rate, one of several checkpoints) over another.
    """
    models = list({id(m): m for m, _, _ in points}.values())
    states = {id(m): m.training for m in models}
    inputs = {}
    for m in models:
        m.eval()
        inputs[id(m)] = example_input(m, batch_size)
    times: list[list[float]] = [[] for _ in points]
    try:
        for m, rho, select in points:
            with autocast(model_device(m), amp_dtype), pss.use_keep_ratio(m, rho, select):
                for _ in range(warmup):  # allocator, kernel selection / autotuning, lazy init
                    m(inputs[id(m)])
                    if on_batch is not None:
                        on_batch(1)
        for _ in range(iters):
            for (m, rho, select), t in zip(points, times):
                device = model_device(m)
                with autocast(device, amp_dtype), pss.use_keep_ratio(m, rho, select):
                    synchronize(device)
                    t0 = time.perf_counter()
                    m(inputs[id(m)])
                    synchronize(device)
                    t.append(time.perf_counter() - t0)
                if on_batch is not None:
                    on_batch(1)
    finally:
        for m in models:
            m.train(states[id(m)])
    return [batch_size / statistics.median(t) for t in times]


def measure_throughput_models(
    models: list[nn.Module],
    batch_size: int = 64,
    keep_ratios: Iterable[float] = (1.0,),
    select: str | None = None,
    amp_dtype: torch.dtype | None = None,
    warmup: int = 3,
    iters: int = 10,
) -> list[dict[float, float]]:
    """Images per second of each model at each keep ratio (`measure_throughput_points`, interleaved)."""
    rhos = [float(r) for r in keep_ratios]
    points = {(i, rho): (m, rho, select) for rho in rhos for i, m in enumerate(models)}  # ratio by ratio
    speed = _timed(points, batch_size, amp_dtype, warmup, iters)
    return [{rho: speed[(i, rho)] for rho in rhos} for i in range(len(models))]


def ensure_sampler(model: nn.Module) -> nn.Module:
    """Attach a PatchSampler to a plain timm ViT (a model trained without PSS), in place."""
    if not pss.samplers(model):
        pss.attach(model)
    return model


def sweep_model(
    model: nn.Module,
    loader: Iterable | None,
    keep_ratios: Iterable[float] = DEFAULT_KEEP_RATIOS,
    select: str | None = None,
    batch_size: int = 64,
    amp_dtype: torch.dtype | None = None,
    warmup: int = 3,
    iters: int = 10,
    max_batches: int | None = None,
    speed: dict[float, float] | None = None,
    on_batch: Callable[[int], Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per keep ratio: acc1, acc5, loss (None without a loader), images/s, GFLOPs/image, tokens.

    `select`: the selection rule; None = the model's deterministic default for the rule it was trained
    with (`pss.control.inference_select`). `speed`: images/s per keep ratio measured beforehand (e.g.
    interleaved with other models); measured here when not given. `on_batch`: see `evaluate`."""
    ensure_sampler(model)
    select = inference_select(model, select)
    keep_ratios = [float(r) for r in keep_ratios]
    if speed is None:
        speed = measure_throughput_models([model], batch_size, keep_ratios, select, amp_dtype, warmup, iters)[0]
    rows = []
    for rho in keep_ratios:
        row: dict[str, Any] = {"keep_ratio": rho}
        if loader is not None:
            row.update(evaluate(model, loader, rho, select, amp_dtype, max_batches, on_batch))
        row["images_per_s"] = speed[rho]
        row["gflops_per_image"] = _gflops(model, rho, select)
        row["tokens"] = num_tokens(model, rho)
        rows.append(row)
    return rows


def merge_model_rows(
    merged: list[TokenMerging],
    loader: Iterable | None,
    speeds: list[float],
    amp_dtype: torch.dtype | None = None,
    max_batches: int | None = None,
    on_batch: Callable[[int], Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per merge rate (token merging at every patch, `pss.models.merge`): like `sweep_model`'s,
    with `merge_r` and `tokens` = mean tokens entering a block."""
    rows = []
    for m, ips in zip(merged, speeds):
        row: dict[str, Any] = {"merge_r": m.r, "keep_ratio": 1.0}
        if loader is not None:
            row.update(evaluate(m, loader, 1.0, None, amp_dtype, max_batches, on_batch))
        row["images_per_s"] = ips
        row["gflops_per_image"] = _gflops(m, 1.0, None)
        row["tokens"] = round(m.mean_tokens(), 2)
        rows.append(row)
    return rows


def _gflops(model: nn.Module, rho: float, select: str | None) -> float:
    was_training = model.training
    model.eval()
    try:
        return count_flops(model, example_input(model, 1), rho, select=select) / 1e9
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------- plot


def sweep_figure(result: dict[str, Any]) -> Figure:
    """The figure `plot_sweep` saves. Left: top-1 vs keep ratio (token merging: vs its mean share of tokens
    per block), one line per model and mechanism, images/s by the points; right: top-1 vs measured images/s
    (the Pareto view), the keep ratio or merge rate by the points. Point labels that would print on top of
    another label or a marker are left out (`pss.analysis.labels`); sweep.json has every figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    entries = [e for e in result["checkpoints"] if any(r.get("acc1") is not None for r in e["results"])]
    legend_cols = min(4, max(1, len(entries)))
    legend_rows = -(-len(entries) // legend_cols)
    fig = Figure(figsize=(12.0, 5.0 + 0.2 * max(0, legend_rows - 1)), dpi=100, layout="constrained")  # legend below
    FigureCanvasAgg(fig)  # a renderer to measure the labels with
    ax, ax2 = fig.subplots(1, 2)
    labels: dict[Axes, list[tuple[tuple[float, float], str, str]]] = {ax: [], ax2: []}
    for i, entry in enumerate(entries):
        rows = [r for r in entry["results"] if r.get("acc1") is not None]
        color, merge = f"C{i % 10}", entry.get("reduce") == "merge"
        style = dict(marker="s" if merge else "o", linestyle="--" if merge else "-", color=color, label=entry["name"])
        if merge:  # share of the full model's tokens per block, comparable with a keep ratio
            full = max(r["tokens"] for r in rows)
            xs = [r["tokens"] / full for r in rows]
            tags = [f"r={r['merge_r']}" for r in rows]
        elif entry.get("reduce") == "resize":
            xs = [r["keep_ratio"] for r in rows]
            tags = [f"{r['side']}px" for r in rows]
        else:
            xs = [r["keep_ratio"] for r in rows]
            tags = [f"{r['keep_ratio']:g}" for r in rows]
        acc = [r["acc1"] for r in rows]
        ips = [r["images_per_s"] for r in rows]
        ax.plot(xs, acc, **style)
        ax2.plot(ips, acc, **style)
        labels[ax] += [((x, y), f"{t:.0f}/s", color) for x, y, t in zip(xs, acc, ips)]
        labels[ax2] += [((x, y), tag, color) for x, y, tag in zip(ips, acc, tags)]
    select = result.get("select", result.get("method", ""))  # records before 2026-11-24 say "method"
    select = "each model's default" if select == "default" else select
    ax.set_title(_wrapped("Top-1 against tokens kept", f"{select} selection"))
    ax.set_xlabel("keep ratio rho (ToMe, dashed: mean share of tokens per block); labels: images/s")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.invert_xaxis()  # fewer patches (faster) to the right
    ax2.set_title(_wrapped("Top-1 against measured throughput",
                           f"{result.get('device', '')}, batch {result.get('batch_size', '')}"))
    ax2.set_xlabel("images/s (model only); labels: keep ratio or merge rate r")
    ax2.set_ylabel("top-1 accuracy (%)")
    for a in (ax, ax2):
        a.margins(x=0.06, y=0.1)  # room for the labels of the outer points
        a.grid(alpha=0.3)
    legend = fig.legend(*ax.get_legend_handles_labels(), title="model", loc="outside lower center",
                        ncols=legend_cols, fontsize=8) if entries else None
    fig.draw_without_rendering()  # the constrained layout, once; then the axes stay where they are
    fig.set_layout_engine("none")
    left_out = 0
    for a, items in labels.items():
        if items:
            points, texts, colors = zip(*items)
            left_out += annotate_apart(a, points, texts, colors, obstacles=points)
    if left_out and legend is not None:  # said where it takes no room from the plots
        legend.set_title(f"model ({left_out} point labels left out where they would overlap; sweep.json has every figure)")
    return fig


def _wrapped(title: str, detail: str, width: int = 62) -> str:
    """A panel title on its first line, its details below (wrapped), so two panels' titles never meet."""
    return "\n".join([title, *textwrap.wrap(f"({detail})", width)])


def plot_sweep(result: dict[str, Any], path: str | Path) -> Path:
    """Draw `sweep_figure(result)` into `path` (sweep.png)."""
    sweep_figure(result).savefig(path)
    return Path(path)


def write_sweep(result: dict[str, Any], output: str | Path) -> dict[str, str]:
    """Write `sweep.json` and `sweep.png` into `output`."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(_finite(result), indent=2) + "\n")
    plot_sweep(result, out / "sweep.png")
    return {"json": str(out / "sweep.json"), "png": str(out / "sweep.png")}


def _finite(obj: Any) -> Any:
    """Replace NaN/inf by None so the JSON is valid for every reader."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_label(path: str | Path) -> str:
    """"runs/pss/checkpoint-best.pt" -> "pss" (the run folder names the model), else the file stem."""
    p = Path(path)
    if p.stem.startswith("checkpoint") or p.stem == "model":
        return p.resolve().parent.name
    return p.stem


def sweep_rules(select: str | None) -> list[str | None]:
    """--select: None = each model's default rule, "all" = every rule, else that rule."""
    if select is None:
        return [None]
    if select == "all":
        return list(SELECT_RULES)
    check_select(select)
    return [select]


def _check_sweep(batch_size: int, iters: int, warmup: int, reduce: str, names: list[str] | None,
                 paths: list[str | Path]) -> None:
    if batch_size < 1 or iters < 1 or warmup < 0:
        raise ConfigError(f"need batch_size >= 1, iters >= 1, warmup >= 0; got {batch_size}, {iters}, {warmup}")
    if reduce not in REDUCE_MODES:
        raise ConfigError(f"unknown --reduce {reduce!r}; choose one of {', '.join(REDUCE_MODES)}")
    if names is not None and len(names) != len(paths):
        raise ConfigError(f"got {len(names)} names for {len(paths)} checkpoints")


def _checkpoint_info(path: str | Path, model: nn.Module, config: dict[str, Any]) -> dict[str, Any]:
    """What a sweep entry says about its checkpoint: model, how it was trained, its default rule."""
    return {
        "checkpoint": str(path),
        "model": (config.get("model") or {}).get("name"),
        "trained_schedule": config.get("schedule"),
        "trained_select": pss.samplers(model)[0].trained_select,  # None: trained at every token
        "default_select": inference_select(model),
        "num_params": sum(p.numel() for p in model.parameters()),
    }


def _points(models: list[nn.Module], drops: list[list[str | None]], variants: list[list[nn.Module]],
            keep_ratios: list[float]) -> dict[tuple[Any, ...], tuple[nn.Module, float, str | None]]:
    """Every (model, keep ratio, rule) a sweep times, keyed by what it is: ``(i, "drop", j, rho)`` for model i's
    j-th rule at keep ratio rho, ``(i, "variant", k)`` for its k-th merging or resizing variant."""
    points: dict[tuple[Any, ...], tuple[nn.Module, float, str | None]] = {}
    for i, (m, used, wrapped) in enumerate(zip(models, drops, variants)):
        points.update({(i, "drop", j, rho): (m, rho, rule) for j, rule in enumerate(used) for rho in keep_ratios})
        points.update({(i, "variant", k): (w, 1.0, None) for k, w in enumerate(wrapped)})
    return points


def _timed(points: dict[tuple[Any, ...], tuple[nn.Module, float, str | None]], batch_size: int,
           amp_dtype: torch.dtype | None, warmup: int, iters: int,
           on_batch: Callable[[int], Any] | None = None) -> dict[tuple[Any, ...], float]:
    """Images per second of each point, under the point's key (`measure_throughput_points`, interleaved)."""
    keys = list(points)
    return dict(zip(keys, measure_throughput_points([points[k] for k in keys], batch_size, amp_dtype, warmup, iters,
                                                    on_batch=on_batch)))


def _resized_variants(paths: list[str | Path], models: list[nn.Module], reduce: str,
                      keep_ratios: list[float]) -> list[list[InputResize]]:
    """Per model, its lower-resolution variants: one side per keep ratio's share of the patches."""
    out: list[list[InputResize]] = [[] for _ in models]
    if reduce in ("resize", "all"):
        for i, (path, model) in enumerate(zip(paths, models)):
            try:
                out[i] = [InputResize(model, side) for side in resize_sides(model, keep_ratios)]
            except ConfigError as e:
                raise ConfigError(f"{path}: {e}") from None
    return out


def resize_model_rows(resized: list[InputResize], loader: Iterable | None, speeds: list[float],
                      amp_dtype: torch.dtype | None = None,
                      on_batch: Callable[[int], Any] | None = None) -> list[dict[str, Any]]:
    """One row per input side: like `sweep_model`'s, with `side` and `keep_ratio` = the share of patches."""
    rows = []
    for m, ips in zip(resized, speeds):
        row: dict[str, Any] = {"side": m.side, "keep_ratio": round(m.token_share, 4)}
        if loader is not None:
            row.update(evaluate(m, loader, 1.0, None, amp_dtype, on_batch=on_batch))
        row["images_per_s"] = ips
        row["gflops_per_image"] = _gflops(m, 1.0, None)
        row["tokens"] = int(getattr(m.model, "num_prefix_tokens", 0)) + (m.side // m.patch_size) ** 2
        rows.append(row)
    return rows


def _merged_variants(paths: list[str | Path], models: list[nn.Module], reduce: str,
                     merge_r: Iterable[int] | None) -> list[list[TokenMerging]]:
    """Per model, its token-merging variants (one per rate of `merge_r`, default the model's `merge_rates`)."""
    merged: list[list[TokenMerging]] = [[] for _ in models]
    if reduce in ("merge", "both", "all"):
        for i, (path, model) in enumerate(zip(paths, models)):
            try:
                rates = list(merge_r) if merge_r is not None else [0, *merge_rates(
                    model.patch_embed.num_patches, len(model.blocks))]
                merged[i] = [TokenMerging(model, r) for r in rates]
            except ConfigError as e:
                raise ConfigError(f"{path}: {e}") from None
    return merged


def sweep_checkpoints(
    paths: list[str | Path],
    data: str | None = None,
    keep_ratios: Iterable[float] = DEFAULT_KEEP_RATIOS,
    select: str | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    precision: str = "auto",
    names: list[str] | None = None,
    warmup: int = 3,
    iters: int = 10,
    max_images: int | None = None,
    classes: str = "exact",
    reduce: str = "drop",
    merge_r: Iterable[int] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Sweep every checkpoint on its validation set; the result `write_sweep` saves.

    reduce: "drop" sweeps `keep_ratios` with `select` (None: each model's deterministic default for
    the rule it was trained with; "all": every rule); "merge" runs token merging (ToMe) at every
    patch with each rate of `merge_r` (default: `merge_rates` of the model); "both" does both;
    "resize" runs the model at lower input sides (one per keep ratio's share of the patches); "all"
    does drop, merge and resize. All
    points of all checkpoints are timed interleaved, on the same batch size.
    `classes`: how data whose classes differ from the checkpoint's is treated (see `pss.analysis.evaldata.match_classes`).
    `progress`: one bar on stderr over every batch the sweep runs (the timing, then each checkpoint's
    points on its validation set)."""
    from tqdm.auto import tqdm

    from pss.models.hub import load_model
    from pss.runinfo import run_info

    _check_sweep(batch_size, iters, warmup, reduce, names, paths)
    rules = sweep_rules(select)
    device = resolve_device(device)
    amp_dtype = resolve_amp(precision, device).dtype
    keep_ratios = [float(r) for r in keep_ratios]
    # Every model first, so that their throughput is measured interleaved (one model's figures are
    # not taken at a quieter or busier moment than another's), then each one's accuracy.
    loaded = [load_model(path, device) for path in paths]
    models = [ensure_sampler(model) for model, _ in loaded]
    for model in models:  # a batch far beyond the device's memory: one line, not a process the kernel kills
        check_batch_fits(model, batch_size)
    # Bad merge settings, the data's classes against each checkpoint's: before any long work.
    merged = _merged_variants(paths, models, reduce, merge_r)
    loaders = [labelled_loader(path, config, data, batch_size, max_images, classes)
               for path, (_, config) in zip(paths, loaded)]
    # (model, rule) variants of the drop dial, each rule resolved (None -> the model's default)
    drops = [[inference_select(m, rule) for rule in rules] if reduce in ("drop", "both", "all") else []
             for m in models]
    resized = _resized_variants(paths, models, reduce, keep_ratios)
    variants = [[*mv, *rv] for mv, rv in zip(merged, resized)]  # variant k: merging first, then resizing
    points = _points(models, drops, variants, keep_ratios)
    labels = names or [checkpoint_label(path) for path in paths]
    # every batch: each point's warm-up and timed batches, then each point on its model's validation set
    total = len(points) * (warmup + iters) + sum(sum(1 for k in points if k[0] == i) * len(loader)
                                                 for i, loader in enumerate(loaders))
    with tqdm(total=total, desc=f"sweep: timing {len(points)} points", unit="batch", disable=not progress,
              dynamic_ncols=True) as bar:
        speeds = _timed(points, batch_size, amp_dtype, warmup, iters, on_batch=bar.update)
        entries = []
        for i, (path, (model, config), loader) in enumerate(zip(paths, loaded, loaders)):
            label = labels[i]
            bar.set_description(f"sweep: {label}")
            common = _checkpoint_info(path, model, config)
            for j, rule in enumerate(drops[i]):
                speed = {rho: speeds[(i, "drop", j, rho)] for rho in keep_ratios}
                rows = sweep_model(model, loader, keep_ratios, rule, batch_size, amp_dtype, speed=speed,
                                   on_batch=bar.update)
                name = label if len(rules) == 1 and reduce == "drop" else f"{label} ({rule})"
                entries.append({"name": name, **common, "reduce": "drop", "select": rule, "results": rows})
            tome = [speeds[(i, "variant", k)] for k in range(len(merged[i]))]
            lower = [speeds[(i, "variant", len(merged[i]) + k)] for k in range(len(resized[i]))]
            if merged[i]:
                rows = merge_model_rows(merged[i], loader, tome, amp_dtype, on_batch=bar.update)
                entries.append({"name": f"{label} (ToMe)", **common, "reduce": "merge", "select": None, "results": rows})
            if resized[i]:
                rows = resize_model_rows(resized[i], loader, lower, amp_dtype, on_batch=bar.update)
                entries.append({"name": f"{label} (resize)", **common, "reduce": "resize", "select": None, "results": rows})
    precision = "fp32" if amp_dtype is None else str(amp_dtype).removeprefix("torch.")
    return {"keep_ratios": keep_ratios, "select": "default" if select is None else select, "reduce": reduce,
            "batch_size": batch_size, "precision": precision, **run_info(device), "checkpoints": entries}
