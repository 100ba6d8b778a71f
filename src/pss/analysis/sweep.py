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
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

import pss
from pss.control import num_tokens
from pss.errors import ConfigError
from pss.flops import count_flops, example_input
from pss.runtime import autocast, resolve_amp, resolve_device, synchronize, topk_correct

DEFAULT_KEEP_RATIOS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


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
) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%) and mean cross-entropy of `model` on `loader` at `keep_ratio`."""
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
    finally:
        model.train(was_training)
    if n == 0:
        raise ConfigError("the validation set is empty")
    loss, top1, top5 = sums.tolist()
    return {"acc1": 100.0 * top1 / n, "acc5": 100.0 * top5 / n, "loss": loss / n, "num_images": n}


@torch.inference_mode()
def measure_throughput_models(
    models: list[nn.Module],
    batch_size: int = 64,
    keep_ratios: Iterable[float] = (1.0,),
    select: str | None = None,
    amp_dtype: torch.dtype | None = None,
    warmup: int = 3,
    iters: int = 10,
) -> list[dict[float, float]]:
    """Images per second of each model alone (no data loading) at each keep ratio, on a random batch.

    After `warmup` batches per (model, keep ratio), `iters` rounds each time one batch per
    (model, keep ratio) (round-robin), every batch between device synchronisations; the median is
    used. Interleaving and the median keep a load change or a stray slow batch (another process on a
    shared CPU, a GC pause) from favouring one keep ratio, or one of several checkpoints of the same
    architecture, over another.
    """
    rhos = [float(r) for r in keep_ratios]
    states = [m.training for m in models]
    inputs = []
    for m in models:
        m.eval()
        inputs.append(example_input(m, batch_size))
    times: list[dict[float, list[float]]] = [{r: [] for r in rhos} for _ in models]
    try:
        for rho in rhos:
            for m, x in zip(models, inputs):
                with autocast(model_device(m), amp_dtype), pss.use_keep_ratio(m, rho, select):
                    for _ in range(warmup):  # allocator, kernel selection / autotuning, lazy init
                        m(x)
        for _ in range(iters):
            for rho in rhos:
                for m, x, t in zip(models, inputs, times):
                    device = model_device(m)
                    with autocast(device, amp_dtype), pss.use_keep_ratio(m, rho, select):
                        synchronize(device)
                        t0 = time.perf_counter()
                        m(x)
                        synchronize(device)
                        t[rho].append(time.perf_counter() - t0)
    finally:
        for m, was_training in zip(models, states):
            m.train(was_training)
    return [{rho: batch_size / statistics.median(ts) for rho, ts in t.items()} for t in times]


def ensure_sampler(model: nn.Module) -> nn.Module:
    """Attach a PatchSampler to a plain timm ViT (a model trained without PSS), in place."""
    if not pss.samplers(model):
        pss.attach(model)
    return model


def sweep_model(
    model: nn.Module,
    loader: Iterable | None,
    keep_ratios: Iterable[float] = DEFAULT_KEEP_RATIOS,
    select: str = "magnitude",
    batch_size: int = 64,
    amp_dtype: torch.dtype | None = None,
    warmup: int = 3,
    iters: int = 10,
    max_batches: int | None = None,
    speed: dict[float, float] | None = None,
) -> list[dict[str, Any]]:
    """One row per keep ratio: acc1, acc5, loss (None without a loader), images/s, GFLOPs/image, tokens.

    `speed`: images/s per keep ratio measured beforehand (e.g. interleaved with other models);
    measured here when not given."""
    ensure_sampler(model)
    keep_ratios = [float(r) for r in keep_ratios]
    if speed is None:
        speed = measure_throughput_models([model], batch_size, keep_ratios, select, amp_dtype, warmup, iters)[0]
    rows = []
    for rho in keep_ratios:
        row: dict[str, Any] = {"keep_ratio": rho}
        if loader is not None:
            row.update(evaluate(model, loader, rho, select, amp_dtype, max_batches))
        row["images_per_s"] = speed[rho]
        was_training = model.training
        model.eval()
        row["gflops_per_image"] = count_flops(model, example_input(model, 1), rho, select=select) / 1e9
        model.train(was_training)
        row["tokens"] = num_tokens(model, rho)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- plot


def plot_sweep(result: dict[str, Any], path: str | Path) -> Path:
    """Left: top-1 vs keep ratio, one line per model, images/s annotated; right: top-1 vs images/s."""
    fig = Figure(figsize=(12.0, 5.0), dpi=100, layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    entries = result["checkpoints"]
    for i, entry in enumerate(entries):
        rows = [r for r in entry["results"] if r.get("acc1") is not None]
        if not rows:
            continue
        color = f"C{i}"
        rho = [r["keep_ratio"] for r in rows]
        acc = [r["acc1"] for r in rows]
        ips = [r["images_per_s"] for r in rows]
        ax.plot(rho, acc, marker="o", color=color, label=entry["name"])
        # throughput under (first line) / over (others) each point, so the labels do not collide
        dy = -12 if i % 2 == 0 else 8
        for x, y, t in zip(rho, acc, ips):
            ax.annotate(f"{t:.0f}/s", (x, y), textcoords="offset points", xytext=(0, dy), ha="center",
                        fontsize=7, color=color)
        ax2.plot(ips, acc, marker="o", color=color, label=entry["name"])
        for x, y, r in zip(ips, acc, rho):
            ax2.annotate(f"{r:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
    select = result.get("select", result.get("method", ""))  # records before 2026-11-24 say "method"
    ax.set_title(f"Dynamic inference: accuracy vs keep ratio ({select} selection)")
    ax.set_xlabel("keep ratio rho (fraction of patch tokens kept; labels: images/s)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.invert_xaxis()  # fewer patches (faster) to the right
    ax.margins(y=0.08)  # room for the throughput labels
    ax.grid(alpha=0.3)
    ax2.set_title(f"Accuracy vs throughput ({result.get('device', '')}, batch {result.get('batch_size', '')})")
    ax2.set_xlabel("throughput (images/s, model only; labels: keep ratio)")
    ax2.set_ylabel("top-1 accuracy (%)")
    ax2.grid(alpha=0.3)
    for a in (ax, ax2):
        if a.get_legend_handles_labels()[0]:
            a.legend(title="model")
    fig.savefig(path)
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


def val_loader_for(config: dict[str, Any], data: str | None, batch_size: int, max_images: int | None = None):
    """Validation loader from a checkpoint's resolved config (`data` overrides its data path), and
    the data's class names."""
    from pss.config import DataConfig
    from pss.data import build_datasets, build_loader

    d = dict(config.get("data") or {})
    if data is not None:
        d["path"] = data
    # Only the validation split is used: do not decode the training set into memory, nor scan it.
    d.update(in_memory=False, scan_images=False)
    dcfg = DataConfig.from_dict(d)
    _, val, classes = build_datasets(dcfg)
    if max_images is not None and max_images < len(val):
        val = torch.utils.data.Subset(val, range(max_images))
    return build_loader(val, batch_size, train=False, cfg=dcfg), list(classes)


# How a sweep treats data whose classes are not the checkpoint's (`pss sweep --classes`).
CLASS_MODES = ("exact", "by-name", "as-is")


def match_classes(trained: list[str] | None, num_outputs: int, data: list[str], mode: str = "exact",
                  label: str = "the checkpoint") -> torch.Tensor | None:
    """Check the data's classes against those the model was trained on.

    exact: the same names in the same order (or, with no names recorded, the same number);
    by-name: every data class must be a trained one, and the returned table maps data label ->
    model output index; as-is: no check (the data's label indices are taken as the model's).
    Raises ConfigError (one line, naming both sides and the option) on a mismatch.
    """
    if mode not in CLASS_MODES:
        raise ConfigError(f"unknown class mode {mode!r}; choose one of {', '.join(CLASS_MODES)}")
    if mode == "as-is":
        return None

    def shown(names: list[str]) -> str:
        return ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")

    if trained is None:
        if mode == "by-name":
            raise ConfigError(f"{label} records no class names, so --classes by-name cannot map them; "
                              "use --classes as-is to take the data's labels as they are")
        if len(data) != num_outputs:
            raise ConfigError(f"{label} has {num_outputs} outputs but the data has {len(data)} classes "
                              f"({shown(data)}): use the data it was trained on, or --classes as-is")
        return None
    if mode == "exact":
        if list(trained) != list(data):
            raise ConfigError(
                f"the data's classes ({shown(data)}) are not those {label} was trained on ({shown(trained)}): "
                "use the data it was trained on, --classes by-name to map classes by name, or --classes as-is"
            )
        return None
    unknown = [c for c in data if c not in trained]
    if unknown:
        raise ConfigError(f"data classes unknown to {label}: {shown(unknown)} (trained on {shown(trained)}); "
                          "remove those class folders, or use --classes as-is")
    return torch.tensor([trained.index(c) for c in data])


class _MappedLabels:
    """A loader whose labels go through a lookup table (data label -> model output)."""

    def __init__(self, loader: Any, table: torch.Tensor) -> None:
        self.loader, self.table = loader, table

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Any:
        for images, targets in self.loader:
            yield images, self.table.to(targets.device)[targets]


def sweep_checkpoints(
    paths: list[str | Path],
    data: str | None = None,
    keep_ratios: Iterable[float] = DEFAULT_KEEP_RATIOS,
    select: str = "magnitude",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    precision: str = "auto",
    names: list[str] | None = None,
    warmup: int = 3,
    iters: int = 10,
    max_images: int | None = None,
    classes: str = "exact",
) -> dict[str, Any]:
    """Sweep every checkpoint over `keep_ratios` on its validation set; the result `write_sweep` saves.
    `classes`: how data whose classes differ from the checkpoint's is treated (see `match_classes`)."""
    from pss.runfolder import stored_class_names
    from pss.models.hub import load_model
    from pss.runinfo import run_info

    if batch_size < 1 or iters < 1 or warmup < 0:
        raise ConfigError(f"need batch_size >= 1, iters >= 1, warmup >= 0; got {batch_size}, {iters}, {warmup}")
    device = resolve_device(device)
    amp_dtype = resolve_amp(precision, device).dtype
    keep_ratios = [float(r) for r in keep_ratios]
    if names is not None and len(names) != len(paths):
        raise ConfigError(f"got {len(names)} names for {len(paths)} checkpoints")
    # Every model first, so that their throughput is measured interleaved (one model's figures are
    # not taken at a quieter or busier moment than another's), then each one's accuracy.
    loaded = [load_model(path, device) for path in paths]
    # The data's classes against each checkpoint's, before any long work.
    loaders = []
    for path, (model, config) in zip(paths, loaded):
        loader, data_classes = val_loader_for(config, data, batch_size, max_images)
        num_outputs = int((config.get("model") or {}).get("num_classes") or len(data_classes))
        table = match_classes(stored_class_names(path), num_outputs, data_classes, classes, label=str(path))
        loaders.append(loader if table is None else _MappedLabels(loader, table))
    models = [ensure_sampler(model) for model, _ in loaded]
    speeds = measure_throughput_models(models, batch_size, keep_ratios, select, amp_dtype, warmup, iters)
    entries = []
    for i, (path, (model, config), speed, loader) in enumerate(zip(paths, loaded, speeds, loaders)):
        rows = sweep_model(model, loader, keep_ratios, select, batch_size, amp_dtype, warmup, iters, speed=speed)
        entries.append({
            "name": names[i] if names else checkpoint_label(path),
            "checkpoint": str(path),
            "model": (config.get("model") or {}).get("name"),
            "trained_schedule": config.get("schedule"),
            "trained_select": config.get("select"),
            "num_params": sum(p.numel() for p in model.parameters()),
            "results": rows,
        })
    return {
        "keep_ratios": keep_ratios,
        "select": select,
        "batch_size": batch_size,
        "precision": "fp32" if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
        **run_info(device),
        "checkpoints": entries,
    }
