"""The built-in *glyph* set (``data.path: null``): generated in memory from a seed, no files.

Each 32x32 image is a smooth random colour field with low noise; the class is carried only by the
*shape* of 1-3 small high-contrast 6x6 glyphs at random positions (on average 16 % of the 4x4
patches, 6-38 % per image). Glyph colours, background colours and glyph counts are independent of
the class, so global colour statistics do not identify it, and the few informative patches are the
high-magnitude ones: patch choice matters, which is what a Patch Sampling Schedule exploits.
Learnability, measured once: a 3-block, 64-wide ViT (patch 4, AdamW 1e-3, batch 64, crop+flip) sits
at chance for ~250 steps, then reaches 88 % val accuracy at ~470 steps and ~99 % at ~900 (about
2 minutes on 2 idle CPU cores): recipes should give it several hundred steps.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pss.config import GLYPH_IMG_SIZE, DataConfig

GLYPH_SIZE = 6  # glyph side in pixels: mostly 2x2 patches of 4 px, sometimes 2x3 or 3x3
_GLYPH_SLOTS = 3  # glyphs sit in distinct cells of a 3x3 grid, so they never overlap
_GLYPH_MAX_COUNT = 3
_BG_RANGE = (70.0, 170.0)  # smooth background colour field (mid tones, near the ImageNet mean)
_NOISE_STD = 4.0
_BRIGHT_RANGE = (200.0, 255.0)  # glyph colours: bright strokes on a dark box
_DARK_RANGE = (0.0, 40.0)
_PATTERN_SEED = 20220819  # fixed: the class definitions do not depend on the data seed


def glyph_patterns(num_classes: int) -> torch.Tensor:
    """Class glyphs: bool (C, 6, 6), left-right symmetric, exactly half the pixels on.

    Symmetric so that horizontal-flip augmentation preserves the label; a fixed on-count so the mean
    colour of a glyph does not depend on its class; kept far apart in Hamming distance from each other
    *and from each other's complements*, so that colour inversion (RandAugment's Invert) cannot turn
    one class into another.
    """
    rng = np.random.default_rng(_PATTERN_SEED)
    half = GLYPH_SIZE * (GLYPH_SIZE // 2)  # free cells in the left half
    chosen: list[np.ndarray] = []
    for min_dist in (6, 5, 4, 3, 2, 1):  # distance on the half; the full glyph distance is twice that
        for _ in range(20_000):
            if len(chosen) == num_classes:
                break
            cand = np.zeros(half, dtype=bool)
            cand[rng.choice(half, half // 2, replace=False)] = True
            if all(min((cand != c).sum(), (cand == c).sum()) >= min_dist for c in chosen):
                chosen.append(cand)
        if len(chosen) == num_classes:
            break
    left = np.stack(chosen).reshape(num_classes, GLYPH_SIZE, GLYPH_SIZE // 2)
    return torch.from_numpy(np.concatenate([left, left[:, :, ::-1]], axis=2).copy())


def _split_seed(seed: int, split: str) -> int:
    # Independent streams for (seed, split): train and val never share images.
    return int(np.random.SeedSequence([seed, {"train": 0, "val": 1}[split]]).generate_state(1)[0])


def make_glyph_images(
    num: int, num_classes: int = 10, seed: int = 0, split: str = "train", return_mask: bool = False
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generate the built-in set: uint8 images (N, 3, 32, 32), long labels (N,) [, bool glyph mask (N, 32, 32)].

    Deterministic in (num, num_classes, seed, split); class-balanced (counts differ by at most one).
    Vectorised over images and pixels.
    """
    g = torch.Generator().manual_seed(_split_seed(seed, split))
    size, gs = GLYPH_IMG_SIZE, GLYPH_SIZE
    labels = (torch.arange(num) % num_classes)[torch.randperm(num, generator=g)]

    def uniform(shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=g)

    # Background: a 3x3 grid of random colours, bilinearly upsampled (smooth), plus low noise.
    coarse = uniform((num, 3, 3, 3), *_BG_RANGE)
    img = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True)
    img = img + _NOISE_STD * torch.randn(img.shape, generator=g)

    # Glyph placement: k in {1,2,3} distinct cells of a 3x3 grid, random pixel offset inside the cell
    # (so glyphs are not aligned with the patch grid).
    count = torch.randint(1, _GLYPH_MAX_COUNT + 1, (num,), generator=g)
    cells = torch.rand(num, _GLYPH_SLOTS**2, generator=g).argsort(dim=1)[:, :_GLYPH_MAX_COUNT]  # (N, 3)
    cell = size // _GLYPH_SLOTS + 1  # 11 px: cells start at 0, 11, 22
    jitter = size - cell * (_GLYPH_SLOTS - 1) - gs  # max offset that stays inside the image (4)
    y0 = (cells // _GLYPH_SLOTS) * cell + torch.randint(0, jitter + 1, cells.shape, generator=g)
    x0 = (cells % _GLYPH_SLOTS) * cell + torch.randint(0, jitter + 1, cells.shape, generator=g)
    active = torch.arange(_GLYPH_MAX_COUNT)[None] < count[:, None]  # (N, 3)

    # Colours: per glyph a random bright colour draws the "on" pixels on a random dark one. (A random
    # polarity per glyph also works but a tiny ViT learns it slower: 64 % vs 88 % after 465 steps.)
    on_col = uniform((num, _GLYPH_MAX_COUNT, 3), *_BRIGHT_RANGE)
    off_col = uniform((num, _GLYPH_MAX_COUNT, 3), *_DARK_RANGE)

    # Paste each glyph slot with one indexed assignment over its 6x6 block (no loop over images).
    patterns = glyph_patterns(num_classes)[labels]  # (N, 6, 6)
    mask = torch.zeros(num, size, size, dtype=torch.bool)
    offs = torch.arange(gs)
    for j in range(_GLYPH_MAX_COUNT):
        n = active[:, j].nonzero().squeeze(1)  # images that have a glyph in slot j
        rows = (y0[n, j, None] + offs)[:, :, None]  # (n, 6, 1)
        cols = (x0[n, j, None] + offs)[:, None, :]  # (n, 1, 6)
        colour = torch.where(patterns[n, :, :, None], on_col[n, None, None, j], off_col[n, None, None, j])
        img[n[:, None, None], :, rows, cols] = colour  # (n, 6, 6, 3): advanced dims come first
        mask[n[:, None, None], rows, cols] = True
    images = img.round().clamp(0, 255).to(torch.uint8)
    return (images, labels, mask) if return_mask else (images, labels)


def builtin_class_names(num_classes: int) -> list[str]:
    """Folder names of the built-in classes; zero-padded so sorted order equals label order."""
    width = len(str(num_classes - 1))
    return [f"glyph{i:0{width}d}" for i in range(num_classes)]


def builtin_split(cfg: DataConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``cfg``'s split of the built-in set: uint8 images (N, 3, img_size, img_size), long labels (N,)."""
    num = cfg.builtin_num_train if split == "train" else cfg.builtin_num_val
    images, labels = make_glyph_images(num, cfg.builtin_num_classes, cfg.seed, split)
    if cfg.img_size != GLYPH_IMG_SIZE:  # nearest keeps the glyphs sharp
        images = F.interpolate(images, size=(cfg.img_size, cfg.img_size), mode="nearest-exact")
    return images, labels


def write_builtin_folder(root: str | os.PathLike, cfg: DataConfig | None = None, fmt: str = "png") -> Path:
    """Write the built-in set as ImageNet-style folders ``root/<split>/<class>/NNNNN.<fmt>``; returns root.

    PNG by default (lossless: the files decode to exactly the in-memory tensors).
    """
    cfg = cfg or DataConfig()
    root = Path(root)
    names = builtin_class_names(cfg.builtin_num_classes)
    for split, folder in (("train", cfg.train_split), ("val", cfg.val_split)):
        images, labels = builtin_split(cfg, split)
        for name in names:
            (root / folder / name).mkdir(parents=True, exist_ok=True)
        pixels = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, 3) for PIL
        for i, (px, y) in enumerate(zip(pixels, labels.tolist())):  # one file per image
            Image.fromarray(px).save(root / folder / names[y] / f"{i:05d}.{fmt}")
    return root
