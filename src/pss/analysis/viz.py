"""Pictures: which patches a model keeps at each keep ratio, and keep-ratio schedules over a run.

`plot_patch_grid` runs the model itself and greys out the patches it dropped, using the keep
indices its PatchSampler recorded in that very forward pass (`pss.recording`), so the picture shows
exactly what the model used. `plot_schedules` draws rho against the epoch for several schedules, each as its
run trains it (`trained_schedule`: a recipe's budget solved, its training sides beside).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

import pss
from pss.control import inference_select
from pss.errors import DataError
from pss.schedule import Schedule

GREY = 0.85  # light grey for a dropped patch (lighter than typical mid-tone backgrounds)
GHOST = 0.15  # how much of the dropped patch's luminance stays visible


# ----------------------------------------------------------------------------- patches


def patch_grid(model: nn.Module) -> tuple[tuple[int, int], tuple[int, int]]:
    """((grid_h, grid_w), (patch_h, patch_w)) from the model's timm-style `patch_embed`."""
    pe = getattr(model, "patch_embed", None)
    if pe is None or getattr(pe, "grid_size", None) is None:
        raise TypeError(f"{type(model).__name__} has no patch_embed.grid_size; cannot map patches to pixels")
    ps = pe.patch_size
    ps = (ps, ps) if isinstance(ps, int) else tuple(ps)
    return tuple(pe.grid_size), ps  # type: ignore[return-value]


def kept_mask(keep_idx: torch.Tensor | None, grid: tuple[int, int]) -> torch.Tensor:
    """(K,) patch indices in raster order (None = all kept) -> (grid_h, grid_w) bool mask of kept patches."""
    n = grid[0] * grid[1]
    mask = torch.ones(n, dtype=torch.bool) if keep_idx is None else torch.zeros(n, dtype=torch.bool)
    if keep_idx is not None:
        mask[keep_idx.cpu().long()] = True
    return mask.view(grid)


def grey_out(image: torch.Tensor, mask: torch.Tensor, patch_size: tuple[int, int]) -> torch.Tensor:
    """image (H, W, 3) in [0, 1], mask (gh, gw) kept -> image with dropped patches greyed out."""
    pix = mask.repeat_interleave(patch_size[0], 0).repeat_interleave(patch_size[1], 1)  # (gh*ph, gw*pw)
    h, w = image.shape[:2]
    pix = pix[:h, :w, None]
    lum = image.mean(dim=-1, keepdim=True)
    ghost = (1 - GHOST) * GREY + GHOST * lum  # faint grey version, so the layout stays readable
    return torch.where(pix, image, ghost.expand_as(image))


@torch.inference_mode()
def predict_kept(
    model: nn.Module, x: torch.Tensor, keep_ratio: float, select: str | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Class probabilities (B, classes) at `keep_ratio` and the (B, K) patch indices the model kept."""
    was_training = model.training
    model.eval()
    try:
        with pss.use_keep_ratio(model, keep_ratio, select), pss.recording(model) as samplers:
            probs = model(x).float().softmax(dim=-1)
            keep_idx = samplers[0].last_keep_idx
    finally:
        model.train(was_training)
    return probs, keep_idx


def plot_patch_grid(
    model: nn.Module,
    images: torch.Tensor,
    display: torch.Tensor,
    keep_ratios: Sequence[float],
    path: str | Path,
    class_names: Sequence[str] | None = None,
    select: str | None = None,
    row_labels: Sequence[str] | None = None,
    panel_inches: float = 2.0,
    dpi: int = 100,
) -> dict[str, Any]:
    """Grid of panels, one row per image and one column per keep ratio, dropped patches greyed out.

    images: (N, C, H, W) model inputs (normalised); display: (N, H, W, 3) the same images in [0, 1]
    for drawing. Each panel is titled with the predicted class and its probability. Returns the
    predictions per panel (class index, name, probability, patches kept) and the path written.
    """
    if not pss.samplers(model):  # a plain timm ViT trained without PSS
        pss.attach(model)
    n, cols = images.shape[0], len(keep_ratios)
    grid, patch_size = patch_grid(model)
    device = next(model.parameters()).device
    fig = Figure(figsize=(panel_inches * cols + 0.6, panel_inches * n + 0.5), dpi=dpi, layout="constrained")
    axes = fig.subplots(n, cols, squeeze=False)
    preds: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for j, rho in enumerate(keep_ratios):
        probs, keep_idx = predict_kept(model, images.to(device), rho, select)
        for i in range(n):
            mask = kept_mask(None if keep_idx is None else keep_idx[i], grid)
            p, c = probs[i].max(dim=0)
            name = class_names[c] if class_names is not None and c < len(class_names) else f"class {int(c)}"
            preds[i].append({"keep_ratio": float(rho), "class": int(c), "name": name,
                             "prob": float(p), "kept": int(mask.sum())})
            ax = axes[i][j]
            ax.imshow(grey_out(display[i].float(), mask, patch_size).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            title = f"{name} ({float(p):.0%})"
            if i == 0:
                title = f"rho = {rho:g} ({int(mask.sum())}/{mask.numel()} patches)\n{title}"
            ax.set_title(title, fontsize=9)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=8)
    fig.suptitle(f"Patches kept by the model ({inference_select(model, select)} selection; grey = dropped)")
    fig.savefig(path)
    return {"path": str(path), "predictions": preds}


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def find_images(items: Sequence[str | Path]) -> list[Path]:
    """Image files named directly, or found (sorted, recursively) in the folders named."""
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"image {str(p)!r} does not exist")
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(map(str, items))}")
    return files


def eval_data_config(model: nn.Module, config: dict[str, Any]):
    """The checkpoint's `data` settings (normalisation, interpolation, crop) at the model's input size."""
    from pss.config import DataConfig, build_config

    d = dict(config.get("data") or {})
    (grid_h, _), (patch_h, _) = patch_grid(model)
    d["img_size"] = grid_h * patch_h
    return build_config(DataConfig, d, "data")


def load_images(files: Sequence[Path], data_cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """(model inputs (N, C, H, W) through the training run's eval transform, the same images (N, H, W, 3) in [0, 1])."""
    from pss.data import build_transforms
    from pss.data.readable import load_rgb

    eval_tf = build_transforms(data_cfg)[1]
    xs = []
    for f in files:
        try:
            xs.append(eval_tf(load_rgb(f)))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read image {str(f)!r}: {e}") from e
    x = torch.stack(xs)
    mean = torch.tensor(data_cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(data_cfg.std).view(1, 3, 1, 1)
    display = (x * std + mean).clamp(0, 1).permute(0, 2, 3, 1)  # exactly what the model sees
    return x, display


def class_names(config: dict[str, Any], checkpoint: str | Path | None = None) -> list[str] | None:
    """Class names for a checkpoint: stored in it, the built-in set's, or the training folder's sub-folders."""
    if checkpoint is not None:
        from pss.runfolder import stored_class_names

        stored = stored_class_names(checkpoint)
        if stored:
            return stored
    data = config.get("data") or {}
    if data.get("path") is None:
        from pss.data import builtin_class_names

        return builtin_class_names(int(data.get("builtin_num_classes", 10)))
    train = Path(data["path"]) / str(data.get("train_split", "train"))
    if train.is_dir():
        return sorted(d.name for d in train.iterdir() if d.is_dir())
    return None


# ----------------------------------------------------------------------------- schedules

# Runs up to this many epochs are drawn step by step (a cyclic wave per epoch stays readable); longer ones
# per epoch: a band from each epoch's lowest to its highest keep ratio and a line through its mean.
PER_STEP_EPOCHS = 30


@dataclass(frozen=True)
class ScheduleRun:
    """A keep-ratio schedule as a run trains it: its `schedule`, the run's `total_steps` (None: the
    length the picture is given) and, with a resolution schedule, the training side of each epoch
    (`sides`, pixels) of a model of `img_size` px."""

    schedule: Schedule
    total_steps: int | None = None
    sides: list[int] | None = None
    img_size: int | None = None
    note: str = ""  # what was solved, for the command's output


def trained_schedule(cfg: Any, steps_per_epoch: int, model: nn.Module | None = None,
                     measurements: Any = None) -> ScheduleRun:
    """The keep-ratio schedule (and sides per epoch) a resolved training config (pss.resolve.resolve_config:
    budget_epochs applied) trains with: with a `budget`, solved by the entry a run and `pss schedule` use
    (pss.budget.plan) on the cost model the recipe names; `budget_cost: measured` on `measurements` (a
    pss.preflight.Measurements), which the run times itself: without them, on the FLOP cost. `model`: the
    recipe's model where already built (else built here when a budget or resolution needs it)."""
    import dataclasses

    from pss.budget import plan
    from pss.budget_spec import CostSpec
    from pss.resolution import model_geometry
    from pss.tokens_for_epochs import describe_budget_epochs
    from pss.train import build_model_for

    total = cfg.epochs * steps_per_epoch
    schedule, resolution, note = cfg.schedule, cfg.resolution, ""
    if model is None and (cfg.budget is not None or resolution is not None):
        # the model's FLOPs and patch grid at the data's side (the class count barely moves the cost)
        m = dataclasses.replace(cfg.model, img_size=cfg.model.img_size or cfg.data.img_size)
        model = build_model_for(dataclasses.replace(cfg, model=m), cfg.model.num_classes or 10)
    if cfg.budget is not None:
        how = ""
        if measurements is None and cfg.budget_cost.kind == "measured":
            how = f"; budget_cost {cfg.budget_cost} is solved in the run on its timed steps, here by FLOPs"
            cfg = dataclasses.replace(cfg, budget_cost=CostSpec("flops"))
        solved = plan(cfg, model, steps_per_epoch, measurements)
        schedule, resolution = solved.schedule, solved.resolution or resolution
        longer = describe_budget_epochs(cfg) if (cfg.budget_reference or {}).get("epochs_factor", 1) != 1 else None
        note = (f"{longer}; " if longer else "") + solved.describe() + how
    sides = img = None
    geometry = model_geometry(model) if resolution is not None else None
    if geometry is not None:
        img = geometry[0]
        sides = resolution.epoch_sides(math.ceil(total / steps_per_epoch), *geometry)
    return ScheduleRun(schedule, total, sides, img, note)


def _per_epoch(values: list[float], steps_per_epoch: int) -> tuple[list[float], list[float], list[float]]:
    """(mean, lowest, highest) keep ratio of each epoch (the last one may be partial)."""
    chunks = [values[i:i + steps_per_epoch] for i in range(0, len(values), steps_per_epoch)]
    return [sum(c) / len(c) for c in chunks], [min(c) for c in chunks], [max(c) for c in chunks]


def plot_schedules(
    schedules: dict[str, Schedule | ScheduleRun],
    steps_per_epoch: int,
    total_steps: int,
    path: str | Path,
    figsize: tuple[float, float] = (9.0, 4.5),
    dpi: int = 100,
) -> dict[str, Any]:
    """Keep ratio against the epoch for each schedule on one plot, each over its own run (a `ScheduleRun`
    with its `total_steps`; a plain Schedule runs `total_steps`); runs of up to PER_STEP_EPOCHS epochs
    step by step, longer ones per epoch (band: the epoch's lowest to highest keep ratio; line: its mean).
    Training sides (`ScheduleRun.sides`) go on a second axis. Returns mean rho and epochs per schedule
    and how the keep ratios were drawn ("per step" or "per epoch")."""
    runs = {k: v if isinstance(v, ScheduleRun) else ScheduleRun(v) for k, v in schedules.items()}
    totals = {k: r.total_steps or total_steps for k, r in runs.items()}
    longest = max(totals.values()) / steps_per_epoch
    per_step = longest <= PER_STEP_EPOCHS
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    ax = fig.subplots()
    side_ax = ax.twinx() if any(r.sides for r in runs.values()) else None
    means, epochs = {}, {}
    for i, (label, run) in enumerate(runs.items()):
        total = totals[label]
        values = run.schedule.values(steps_per_epoch, total)
        means[label] = sum(values) / len(values)
        epochs[label] = total / steps_per_epoch
        # distinct dash patterns, widest first, so identical schedules stay visible on top of each other
        style = dict(color=f"C{i % 10}", linewidth=max(0.8, 2.4 - 0.5 * i), linestyle=("-", "--", ":", "-.")[i % 4],
                     label=f"{label} (mean rho {means[label]:.2f}, {epochs[label]:g} epochs)")
        if per_step:
            ax.plot([s / steps_per_epoch for s in range(total)], values, drawstyle="steps-post", **style)
        else:
            mean, low, high = _per_epoch(values, steps_per_epoch)
            edges = [min(e, total / steps_per_epoch) for e in range(len(mean) + 1)]
            ax.fill_between(edges, [*low, low[-1]], [*high, high[-1]], step="post", color=style["color"], alpha=0.18,
                            linewidth=0)
            ax.plot(edges, [*mean, mean[-1]], drawstyle="steps-post", **style)
        if run.sides and side_ax is not None:
            side_ax.plot(range(len(run.sides) + 1), [*run.sides, run.sides[-1]], drawstyle="steps-post",
                         color=style["color"], linewidth=1.0, linestyle=(0, (1, 2)),
                         label=f"{label}: training side (px)")
    if per_step:  # epoch boundaries, while they are few enough to read
        for e in range(1, math.ceil(longest)):
            ax.axvline(e, color="0.8", linewidth=0.8, linestyle=":", zorder=0)
    how = "every step" if per_step else "per epoch: band = each epoch's lowest to highest keep ratio, line = its mean"
    ax.set_title(f"Keep-ratio schedules ({steps_per_epoch} steps/epoch)\n({how})", fontsize=11)
    ax.set_xlabel("epoch")
    ax.set_ylabel("keep ratio rho (fraction of patches kept)")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(0, longest)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if side_ax is not None:
        full = max(r.img_size or max(r.sides or [0]) for r in runs.values())
        side_ax.set_ylim(0, 1.05 * full)
        side_ax.set_ylabel("training side (px, dotted)")
        more = side_ax.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    cols = 2 if len(labels) > 1 and max(map(len, labels)) <= 48 else 1  # two columns of long labels overflow
    fig.legend(handles, labels, title="schedule", loc="outside lower center", ncols=cols, fontsize=9)
    fig.savefig(path)
    return {"path": str(path), "mean_keep_ratio": means, "epochs": epochs, "drawn": "per step" if per_step else "per epoch"}
