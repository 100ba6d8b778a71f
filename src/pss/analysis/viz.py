"""Pictures: which patches a model keeps at each keep ratio, and keep-ratio schedules over a run.

`plot_patch_grid` runs the model itself and greys out the patches it dropped, using the keep
indices its PatchSampler recorded in that very forward pass (`pss.recording`), so the picture shows
exactly what the model used. `plot_schedules` draws rho against the iteration for several schedules.
"""
from __future__ import annotations

from collections.abc import Sequence
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
    from pss.config import DataConfig

    d = dict(config.get("data") or {})
    (grid_h, _), (patch_h, _) = patch_grid(model)
    d["img_size"] = grid_h * patch_h
    return DataConfig.from_dict(d)


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


def plot_schedules(
    schedules: dict[str, Schedule],
    steps_per_epoch: int,
    total_steps: int,
    path: str | Path,
    figsize: tuple[float, float] = (9.0, 4.5),
    dpi: int = 100,
) -> dict[str, Any]:
    """Keep ratio against iteration for each schedule on one plot; returns mean rho per schedule."""
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    ax = fig.subplots()
    means = {}
    for i, (label, sched) in enumerate(schedules.items()):
        values = sched.values(steps_per_epoch, total_steps)
        means[label] = sum(values) / len(values)
        # distinct dash patterns, widest first, so identical schedules stay visible on top of each other
        ax.plot(range(total_steps), values, drawstyle="steps-post", linewidth=max(0.8, 2.4 - 0.5 * i),
                linestyle=("-", "--", ":", "-.")[i % 4], label=f"{label} (mean rho {means[label]:.2f})")
    epochs = total_steps / steps_per_epoch
    if epochs <= 30:  # epoch boundaries, while they are few enough to read
        for e in range(1, int(epochs) + (0 if epochs == int(epochs) else 1)):
            ax.axvline(e * steps_per_epoch, color="0.8", linewidth=0.8, linestyle=":", zorder=0)
    ax.set_title(f"Keep-ratio schedules ({epochs:g} epochs x {steps_per_epoch} steps/epoch)")
    ax.set_xlabel("iteration (optimizer step)")
    ax.set_ylabel("keep ratio rho (fraction of patches kept)")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(0, total_steps)
    ax.grid(alpha=0.3)
    fig.legend(title="schedule", loc="outside lower center", ncols=min(2, len(schedules)), fontsize=9)
    fig.savefig(path)
    return {"path": str(path), "mean_keep_ratio": means}
