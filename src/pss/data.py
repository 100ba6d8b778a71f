"""Datasets and loaders: ImageNet-style folders, CIFAR-style archives, and a built-in synthetic set.

Three sources, one interface (`build_datasets` -> train, val, class names; `build_loader` -> batches
of normalised float images (B, 3, H, W) and long targets (B,)):

- ``path: null`` -> the built-in *glyph* set, generated in memory from a seed (no files). Each
  32x32 image is a smooth random colour field with low noise; the class is carried only by the
  *shape* of 1-3 small high-contrast 6x6 glyphs at random positions (on average 16 % of the 4x4
  patches, 6-38 % per image). Glyph colours, background colours and glyph counts are independent
  of the class, so global colour statistics do not identify it, and the few informative patches
  are the high-magnitude ones: patch choice matters, which is what a Patch Sampling Schedule
  exploits. Learnability, measured once: a 3-block, 64-wide ViT (patch 4, AdamW 1e-3, batch 64,
  crop+flip) sits at chance for ~250 steps, then reaches 88 % val accuracy at ~470 steps and
  ~99 % at ~900 (about 2 minutes on 2 idle CPU cores): recipes should give it several hundred steps.
- ``path: /data/imagenet`` -> ``<path>/<train_split>/<class>/*.jpg`` and the same for ``val_split``
  (torchvision `ImageFolder`, timm transforms).
- ``path: ../shared/data/cifar10-jpg.tar.gz`` -> extracted once into a cache (`extract_archive`),
  then read as folders (CIFAR-10 names its eval split ``test``: set ``val_split: test``).

`check_data` validates all of it quickly before any long work and raises `DataError` naming the
problem and the fix. With ``in_memory: true`` images are decoded once into a uint8 tensor (on the
GPU if asked) and augmented batch-wise on that device, so the input pipeline never starves the GPU.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms as T
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

from pss.config import GLYPH_IMG_SIZE, IMAGENET_MEAN, IMAGENET_STD, DataConfig
from pss.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")
SMALL_IMAGE_MAX = 64  # at or below this size, train crops are CIFAR-style (pad + random crop), not RRC
DEFAULT_CACHE_DIR = "~/.cache/pss-data"
_MARKER_SUFFIX = ".pss-extracted.json"


# --------------------------------------------------------------------------------------------------
# Built-in glyph set
# --------------------------------------------------------------------------------------------------

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


def _builtin_split(cfg: DataConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
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
        images, labels = _builtin_split(cfg, split)
        for name in names:
            (root / folder / name).mkdir(parents=True, exist_ok=True)
        pixels = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, 3) for PIL
        for i, (px, y) in enumerate(zip(pixels, labels.tolist())):  # one file per image
            Image.fromarray(px).save(root / folder / names[y] / f"{i:05d}.{fmt}")
    return root


# --------------------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------------------


def is_archive(path: str | os.PathLike) -> bool:
    """True for the tar archives `extract_archive` understands."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _archive_stem(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _dataset_root(folder: Path) -> Path:
    # Descend through single-folder levels (a/b/train, a/b/test) to the folder that holds the splits.
    while True:
        entries = [e for e in folder.iterdir() if not e.name.startswith("._")]  # skip macOS AppleDouble files
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
        else:
            return folder


def _top_folder(archive: Path) -> str | None:
    """First path component of the archive's first member (reads one header, not the whole archive)."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.next()
    except (tarfile.TarError, EOFError, OSError):
        return None
    top = member.name.lstrip("./").split("/")[0] if member is not None else ""
    return top or None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Ranks of one torchrun job call this together: one extracts, the others wait and reuse it.
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename below still keeps the cache consistent
        yield
        return
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def extract_archive(archive: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """Extract a tar archive once into ``cache_dir`` and return the dataset root (the folder with the splits).

    An archive wrapped in one top folder (``cifar10/train``, ``cifar10/test``) lands at
    ``cache_dir/cifar10``, exactly where ``tar -xzf ... -C cache_dir`` would put it, so a folder
    extracted by hand that way is found and reused; other archives land at ``cache_dir/<archive name>``.
    Idempotent: a marker ``cache_dir/.<archive name>.pss-extracted.json`` records the archive's size
    and mtime, and a later call returns at once (a changed archive is extracted again). Atomic: files
    go to a temporary folder in the cache that is renamed into place when complete, so an interrupted
    run never leaves a half-extracted set. Concurrent callers (torchrun ranks) wait on a lock file and
    extract once. ``cache_dir`` defaults to ``$PSS_DATA_CACHE`` or ``~/.cache/pss-data``.
    """
    src = Path(archive).expanduser().resolve()
    if not src.is_file():
        raise DataError(f"archive {src} does not exist: set data.path to an existing .tar.gz or to a folder")
    cache = Path(cache_dir or os.environ.get("PSS_DATA_CACHE") or DEFAULT_CACHE_DIR).expanduser()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data cache {cache} ({e}): set data.cache_dir to a writable folder") from e
    stat = src.stat()
    stamp = {"archive": str(src), "size": stat.st_size, "mtime": int(stat.st_mtime)}
    stem = _archive_stem(src)
    marker = cache / f".{stem}{_MARKER_SUFFIX}"

    def recorded() -> tuple[Path | None, bool]:
        """(folder this archive was extracted to, whether that extraction is current)."""
        try:
            old = json.loads(marker.read_text())
            target = cache / old["folder"]
        except (OSError, ValueError, KeyError, TypeError):
            return None, False
        current = old.get("size") == stamp["size"] and old.get("mtime") == stamp["mtime"] and target.is_dir()
        return target, current

    target, current = recorded()
    if current:
        return str(_dataset_root(target))
    with _file_lock(cache / f".{stem}.lock"):
        target, current = recorded()
        if current:  # another process finished while we waited for the lock
            return str(_dataset_root(target))
        top = _top_folder(src)
        if target is None and top and (cache / top).is_dir():
            log.info("using %s, already extracted (not by pss); delete it to extract %s again", cache / top, src)
            return str(_dataset_root(cache / top))
        tmp = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=cache))
        try:
            log.info("extracting %s to %s (once; later runs reuse it)", src, cache)
            t0 = time.perf_counter()
            try:
                with tarfile.open(src) as tar:
                    if hasattr(tarfile, "data_filter"):  # refuses absolute paths, '..', device files
                        tar.extractall(tmp, filter="data")
                    else:  # pragma: no cover - Python without extraction filters
                        tar.extractall(tmp)
            except (tarfile.TarError, EOFError, OSError) as e:
                raise DataError(f"cannot extract {src} ({e}): the archive looks damaged; download it again") from e
            entries = list(tmp.iterdir())
            single = len(entries) == 1 and entries[0].is_dir()
            source, name = (entries[0], entries[0].name) if single else (tmp, stem)
            dest = cache / name
            if dest.exists():
                if dest != target:  # not ours: never delete a user's folder
                    raise DataError(f"{dest} exists but was not extracted from {src} by pss: move it away, "
                                    "or set data.cache_dir to another folder")
                old = dest.with_name(f".{name}-old-{os.getpid()}")  # the changed archive's previous contents
                dest.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            source.rename(dest)
            marker.write_text(json.dumps({**stamp, "folder": name}))
            log.info("extracted in %.1f s", time.perf_counter() - t0)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return str(_dataset_root(dest))


# --------------------------------------------------------------------------------------------------
# Checking folders
# --------------------------------------------------------------------------------------------------


@dataclass
class DataReport:
    """What `check_data` found. ``corrupt`` lists unreadable files (left out when on_corrupt='skip')."""

    source: str  # "builtin" or "folder"
    root: str | None
    classes: list[str]
    train_counts: dict[str, int]  # readable images per class
    val_counts: dict[str, int]
    corrupt: list[str] = field(default_factory=list)
    scanned: int = 0  # files opened by the corrupt-image scan
    sampled: bool = False  # True when only a sample was scanned (large datasets)
    train_samples: list[tuple[str, int]] = field(default_factory=list, repr=False)
    val_samples: list[tuple[str, int]] = field(default_factory=list, repr=False)

    @property
    def num_train(self) -> int:
        return sum(self.train_counts.values())

    @property
    def num_val(self) -> int:
        return sum(self.val_counts.values())

    def summary(self) -> str:
        """A few human-readable lines for the CLI."""
        where = "built-in glyph set" if self.source == "builtin" else self.root
        lines = [f"data: {where}",
                 f"  {len(self.classes)} classes, {self.num_train} train / {self.num_val} val images"]
        if self.source == "folder":
            scan = f"  scanned {self.scanned} files" + (" (a sample)" if self.sampled else "")
            lines.append(f"{scan}, {len(self.corrupt)} unreadable")
            lines += [f"    unreadable: {p}" for p in self.corrupt[:10]]
            if len(self.corrupt) > 10:
                lines.append(f"    ... and {len(self.corrupt) - 10} more")
        return "\n".join(lines)


def _image_error(path: str) -> str | None:
    """None if PIL can parse the file's header and structure, else the reason."""
    try:
        with Image.open(path) as im:
            im.verify()  # cheap: checks structure (and PNG CRCs) without decoding all pixels
    except Exception as e:  # noqa: BLE001 - any failure means "unreadable"; the reason is reported
        return f"{type(e).__name__}: {e}"
    return None


def _image_files(class_dir: Path, root: Path, skipped: list[str]) -> list[str]:
    """Image files under `class_dir`, in torchvision's ImageFolder order (sorted folders, sorted names).

    Folder links are followed unless they leave the dataset (`root`) or point back at a folder that
    holds them (a loop: the walk would repeat the same images); those are skipped and listed in
    `skipped`. A file reached twice (two links to one folder) is listed once.
    """
    root_real = os.path.realpath(root)
    found: list[tuple[str, list[str]]] = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        here = os.path.realpath(dirpath)
        keep = []
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                target = os.path.realpath(full)
                inside = os.path.commonpath([target, root_real]) == root_real
                loops = os.path.commonpath([target, here]) == target  # the target holds this folder
                if not inside or loops:
                    skipped.append(f"{full} -> {target}")
                    continue
            keep.append(d)
        dirnames[:] = keep
        found.append((dirpath, sorted(f for f in filenames if f.lower().endswith(IMG_EXTENSIONS))))
    out, seen = [], set()
    for dirpath, names in sorted(found):
        for name in names:
            path = os.path.join(dirpath, name)
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                out.append(path)
    return out


def _list_split(root: Path, split: str, split_key: str) -> tuple[list[str], dict[str, list[str]]]:
    """Classes and their image files in ``root/split``; DataError on a missing split or empty class."""
    folder = root / split
    if not folder.is_dir():
        present = sorted(e.name for e in root.iterdir() if e.is_dir()) if root.is_dir() else []
        hint = f"; folders present: {', '.join(present)}" if present else ""
        # Only names of the same kind: a missing val split is never pointed at the training images.
        kind = ("train", "training") if split_key == "train_split" else ("val", "test", "validation", "valid")
        alt = next((p for p in present if p in kind and p != split), None)
        fix = (f"set data.{split_key}: {alt}" if alt
               else f"set data.{split_key} to the name of your {split_key[:-6]} folder")
        raise DataError(f"split folder {folder} does not exist{hint}: {fix} "
                        f"(expected {root}/{split}/<class>/*.jpg, ImageNet layout)")
    classes, class_to_idx = find_classes(folder) if any(e.is_dir() for e in folder.iterdir()) else ([], {})
    if not classes:
        raise DataError(f"no class folders in {folder}: expected {split}/<class>/*.jpg (ImageNet layout); "
                        f"set data.{split_key} if your folder is named differently, or move the images into "
                        "one sub-folder per class")
    skipped: list[str] = []
    files = {c: _image_files(folder / c, root, skipped) for c in classes}
    if skipped:
        log.warning("skipped %d folder link(s) in %s that leave the dataset or loop back (their images would be "
                    "missing from other runs or counted twice): %s", len(skipped), folder, ", ".join(skipped[:5]))
    empty = [c for c in classes if not files[c]]
    if empty:
        shown = ", ".join(str(folder / c) for c in empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise DataError(f"class folder(s) with no images: {shown} (image extensions: {', '.join(IMG_EXTENSIONS)}); "
                        "add images or remove the empty folder(s)")
    return classes, files


def check_data(cfg: DataConfig) -> DataReport:
    """Validate the data in ``cfg`` quickly, before any long work; `DataError` names problem and fix.

    Checks the path, the split folders, class folders (each with images, the same classes in both
    splits) and scans for unreadable images (all of them, or a sample for very large sets; see
    `DataConfig.scan_max_files`). With ``on_corrupt: fail`` any unreadable image raises.
    An archive path is extracted to the cache first.
    """
    if cfg.path is None:
        names = builtin_class_names(cfg.builtin_num_classes)
        per_class = lambda n: {c: n // len(names) + (i < n % len(names)) for i, c in enumerate(names)}  # noqa: E731
        return DataReport("builtin", None, names, per_class(cfg.builtin_num_train), per_class(cfg.builtin_num_val))

    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise DataError(f"data path {path} does not exist: set data.path to a folder with "
                        f"{cfg.train_split}/<class>/*.jpg and {cfg.val_split}/<class>/*.jpg, to a .tar.gz "
                        "archive of one, or to null for the built-in synthetic set")
    if path.is_file():
        if not is_archive(path):
            raise DataError(f"data path {path} is a file but not a tar archive ({', '.join(ARCHIVE_SUFFIXES)}): "
                            "point data.path at the dataset folder or its archive")
        path = Path(extract_archive(path, cfg.cache_dir))

    train_classes, train_files = _list_split(path, cfg.train_split, "train_split")
    val_classes, val_files = _list_split(path, cfg.val_split, "val_split")
    if cfg.max_train_per_class is not None:
        train_files = {c: ps[: cfg.max_train_per_class] for c, ps in train_files.items()}
    if cfg.max_val_per_class is not None:
        val_files = {c: ps[: cfg.max_val_per_class] for c, ps in val_files.items()}
    if train_classes != val_classes:
        only_train = sorted(set(train_classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(train_classes))
        raise DataError(f"train and val classes differ in {path}: only in {cfg.train_split}: {only_train[:10] or '-'}; "
                        f"only in {cfg.val_split}: {only_val[:10] or '-'}; both splits need the same class folders "
                        "(labels are assigned from the sorted folder names)")

    all_files = [p for files in (train_files, val_files) for ps in files.values() for p in ps]
    to_scan: list[str] = []
    sampled = False
    if cfg.scan_images:
        if len(all_files) <= cfg.scan_max_files:
            to_scan = all_files
        else:  # a seeded sample finds systematic problems; stray bad files are caught at load time
            sampled = True
            to_scan = random.Random(cfg.seed).sample(all_files, min(cfg.scan_sample_size, len(all_files)))
    corrupt: list[str] = []
    if to_scan:
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            errors = list(pool.map(_image_error, to_scan, chunksize=256))
        bad = [(p, e) for p, e in zip(to_scan, errors) if e is not None]
        corrupt = sorted(p for p, _ in bad)
        if bad and cfg.on_corrupt == "fail":
            shown = "; ".join(f"{p} ({e})" for p, e in bad[:5]) + (" ..." if len(bad) > 5 else "")
            raise DataError(f"{len(bad)} unreadable image(s): {shown}; remove or replace them, or set "
                            "data.on_corrupt: skip to leave them out")
        for p, e in bad[:20]:
            log.warning("skipping unreadable image %s (%s)", p, e)
        if len(bad) > 20:
            log.warning("... and %d more unreadable images skipped", len(bad) - 20)

    bad_set = set(corrupt)
    report = DataReport("folder", str(path), train_classes, {}, {}, corrupt, len(to_scan), sampled)
    for files, counts, samples, split in ((train_files, report.train_counts, report.train_samples, cfg.train_split),
                                          (val_files, report.val_counts, report.val_samples, cfg.val_split)):
        for idx, c in enumerate(train_classes):
            good = [p for p in files[c] if p not in bad_set]
            if not good:
                raise DataError(f"every image in {path / split / c} is unreadable: replace them or remove the folder")
            counts[c] = len(good)
            samples += [(p, idx) for p in good]
    return report


# --------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------


class InMemoryDataset(Dataset):
    """Images held as one uint8 tensor (N, 3, H, W) with long targets (N,), on any device.

    With ``transform`` (a PIL transform) items go through it like a folder dataset would; without,
    items are the normalised image, and `build_loader` serves whole batches from the tensor with
    on-device augmentation (`InMemoryLoader`).
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, classes: list[str],
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 transform: Callable[[Image.Image], torch.Tensor] | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.targets = targets.to(images.device, torch.long)
        self.classes = list(classes)
        self.mean = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
        # (x / 255 - mean) / std folded into one multiply-subtract
        self._scale, self._shift = 1 / (255 * self.std), self.mean / self.std
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> normalised float32."""
        return images.float().mul_(self._scale).sub_(self._shift)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.transform is not None:
            pil = Image.fromarray(self.images[index].permute(1, 2, 0).cpu().numpy())
            return self.transform(pil), int(self.targets[index])
        return self.normalize(self.images[index : index + 1])[0], int(self.targets[index])


class CheckedImageFolder(ImageFolder):
    """`ImageFolder` over the files `check_data` accepted (no second directory walk).

    A file that fails to decode mid-epoch (possible when only a sample was scanned, or a file changed
    since) is logged and replaced by the next readable sample with ``on_corrupt='skip'``, and raises
    `DataError` with ``on_corrupt='fail'`` - it never kills an epoch with a PIL traceback.
    """

    def __init__(self, root: str, samples: list[tuple[str, int]], transform: Callable | None = None,
                 on_corrupt: str = "skip") -> None:
        self._checked = samples
        self.on_corrupt = on_corrupt
        super().__init__(root, transform=transform)

    def make_dataset(self, directory: Any, class_to_idx: dict[str, int], extensions: Any = None,
                     is_valid_file: Any = None, allow_empty: bool = False) -> list[tuple[str, int]]:
        return list(self._checked)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        for attempt in range(len(self.samples)):
            i = (index + attempt) % len(self.samples)
            try:
                return super().__getitem__(i)
            except (OSError, SyntaxError, ValueError) as e:  # PIL's ways of saying "not an image"
                path = self.samples[i][0]
                if self.on_corrupt == "fail":
                    raise DataError(f"cannot read image {path} ({e}): remove or replace it, or set "
                                    "data.on_corrupt: skip") from e
                log.warning("skipping unreadable image %s (%s)", path, e)
        raise DataError(f"no readable image in {self.root}")


def timm_train_transform(cfg: DataConfig) -> Callable:
    """Train transform from timm's factory; small images get a CIFAR-style crop instead of RRC.

    RandomResizedCrop with timm's default area range (0.08-1) throws away most of a 32 px image,
    so at or below SMALL_IMAGE_MAX px we keep timm's colour/RandAugment and normalise/RandomErasing
    stages but replace the first stage with resize -> random crop with zero padding -> h-flip
    (the standard CIFAR recipe, as in DeiT's CIFAR fine-tuning).
    """
    from timm.data import create_transform

    common = dict(input_size=cfg.img_size, is_training=True, auto_augment=cfg.auto_augment,
                  color_jitter=cfg.color_jitter or None, interpolation=cfg.interpolation,
                  mean=cfg.mean, std=cfg.std, re_prob=cfg.re_prob, re_mode=cfg.re_mode, re_count=cfg.re_count)
    if cfg.img_size > SMALL_IMAGE_MAX:
        return create_transform(**common, hflip=cfg.hflip, scale=cfg.scale)
    _, secondary, final = create_transform(**common, hflip=0.0, separate=True)
    interp = T.InterpolationMode.BICUBIC if cfg.interpolation == "random" else T.InterpolationMode(cfg.interpolation)
    primary = [T.Resize(cfg.img_size, interpolation=interp), T.CenterCrop(cfg.img_size),  # no-ops at native size
               T.RandomCrop(cfg.img_size, padding=cfg.crop_padding)]
    if cfg.hflip > 0:
        primary.append(T.RandomHorizontalFlip(cfg.hflip))
    return T.Compose(primary + list(secondary.transforms) + list(final.transforms))


def timm_eval_transform(cfg: DataConfig, normalize: bool = True) -> Callable:
    """Eval transform: resize + centre crop (small images: crop_pct 1, i.e. just resize) -> tensor."""
    from timm.data import create_transform

    crop_pct = cfg.crop_pct if cfg.crop_pct is not None else (1.0 if cfg.img_size <= SMALL_IMAGE_MAX else None)
    interp = "bicubic" if cfg.interpolation == "random" else cfg.interpolation
    return create_transform(cfg.img_size, is_training=False, interpolation=interp, mean=cfg.mean, std=cfg.std,
                            crop_pct=crop_pct, normalize=normalize)


def build_transforms(cfg: DataConfig) -> tuple[Callable, Callable]:
    """(train, eval) per-image transforms: PIL image -> normalised float tensor (3, img_size, img_size)."""
    return timm_train_transform(cfg), timm_eval_transform(cfg)


def _check_memory(num: int, size: int, device: torch.device) -> None:
    need = num * 3 * size * size
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return
    if need > 0.5 * free:  # leave room for the model, activations and the other split
        raise DataError(f"data.in_memory needs {need / 2**30:.1f} GiB for {num} images at {size} px but only "
                        f"{free / 2**30:.1f} GiB is free on {device}: set data.in_memory: false "
                        "(or a smaller img_size)")


def _decode_all(ds: Dataset, size: int, num_workers: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every item (a uint8 (3, size, size) tensor) once into one (N, 3, size, size) tensor."""
    from tqdm.auto import tqdm

    _check_memory(len(ds), size, device)
    images = torch.empty(len(ds), 3, size, size, dtype=torch.uint8)
    targets = torch.empty(len(ds), dtype=torch.long)
    loader = DataLoader(ds, batch_size=256, num_workers=num_workers, shuffle=False)
    start = 0
    for x, y in tqdm(loader, desc="decoding images", unit="batch", disable=len(ds) < 20_000, leave=False):
        images[start : start + len(x)] = x
        targets[start : start + len(x)] = y
        start += len(x)
    return images.to(device), targets.to(device)


def build_datasets(cfg: DataConfig, device: torch.device | str | None = None,
                   report: DataReport | None = None) -> tuple[Dataset, Dataset, list[str]]:
    """Build (train, val, class names) for ``cfg``; runs `check_data` unless a ``report`` is given.

    ``device`` only matters with ``in_memory``: the uint8 tensors are placed there (e.g. cuda).
    """
    device = torch.device(device or "cpu")
    train_tf, eval_tf = build_transforms(cfg)
    if cfg.path is None:
        names = builtin_class_names(cfg.builtin_num_classes)
        (xt, yt), (xv, yv) = _builtin_split(cfg, "train"), _builtin_split(cfg, "val")
        if cfg.in_memory:
            return (InMemoryDataset(xt.to(device), yt, names, cfg.mean, cfg.std),
                    InMemoryDataset(xv.to(device), yv, names, cfg.mean, cfg.std), names)
        return (InMemoryDataset(xt, yt, names, cfg.mean, cfg.std, transform=train_tf),
                InMemoryDataset(xv, yv, names, cfg.mean, cfg.std, transform=eval_tf), names)

    report = report or check_data(cfg)
    root = Path(report.root)
    train_root, val_root = str(root / cfg.train_split), str(root / cfg.val_split)
    if not cfg.in_memory:
        return (CheckedImageFolder(train_root, report.train_samples, train_tf, cfg.on_corrupt),
                CheckedImageFolder(val_root, report.val_samples, eval_tf, cfg.on_corrupt), report.classes)
    # Decode once at img_size: train images resized + centre-cropped to img_size (random crops and flips
    # happen on the device later), val images exactly as the eval transform would, minus normalisation.
    interp = T.InterpolationMode.BICUBIC if cfg.interpolation == "random" else T.InterpolationMode(cfg.interpolation)
    to_u8 = T.Compose([T.Resize(cfg.img_size, interpolation=interp), T.CenterCrop(cfg.img_size), T.PILToTensor()])
    out = []
    for folder, samples, tf in ((train_root, report.train_samples, to_u8),
                                (val_root, report.val_samples, timm_eval_transform(cfg, normalize=False))):
        ds = CheckedImageFolder(folder, samples, tf, cfg.on_corrupt)
        x, y = _decode_all(ds, cfg.img_size, cfg.num_workers, device)
        out.append(InMemoryDataset(x, y, report.classes, cfg.mean, cfg.std))
    return out[0], out[1], report.classes


# --------------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------------


def _epoch_seed(seed: int, epoch: int, salt: int = 0) -> int:
    return int(np.random.SeedSequence([seed, epoch, salt]).generate_state(1)[0])


class ShardSampler(Sampler[int]):
    """Indices for one rank: a (seed, epoch)-seeded permutation (or the identity), then ``[rank::world_size]``.

    ``pad=True`` (training) wraps the permutation so every rank gets the same count, as
    DistributedSampler does - ranks must take the same number of optimizer steps. ``pad=False``
    (evaluation) shards exactly, without duplicates: shard sizes then differ by at most one, so reduce
    eval metrics once after the loop rather than per batch.
    """

    def __init__(self, num: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 pad: bool = True) -> None:
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in [0, world_size={world_size})")
        self.num, self.shuffle, self.seed, self.pad = num, shuffle, seed, pad
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
            order = torch.randperm(self.num, generator=g)
        else:
            order = torch.arange(self.num)
        if self.pad and self.num % self.world_size:
            extra = self.world_size - self.num % self.world_size
            order = torch.cat([order, order.repeat(math.ceil(extra / self.num))[:extra]])
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        if self.pad:
            return math.ceil(self.num / self.world_size)
        return len(range(self.rank, self.num, self.world_size))


def random_erase(images: torch.Tensor, prob: float, mode: str = "pixel", max_count: int = 1,
                 g: torch.Generator | None = None) -> torch.Tensor:
    """timm's RandomErasing for a normalised batch (B, C, H, W), vectorised over the batch.

    Same parameterisation as `timm.data.RandomErasing` (per image with probability ``prob``: 1 to
    ``max_count`` rectangles, area 2-33 % of the image split between them, aspect ratio 0.3-3.3, the
    first of 10 draws that fits; fill: per-pixel normal noise, one normal colour, or zeros), but
    built from masks rather than a Python loop over images, which matters on a GPU. Rectangle
    geometry comes from the (CPU) generator ``g``; the noise fill from the device's generator.
    """
    b, c, h, w = images.shape
    dev = images.device
    draw = lambda *shape: torch.rand(shape, generator=g)  # noqa: E731 - small tensors, on the CPU
    erase = draw(b) < prob
    count = torch.randint(1, max_count + 1, (b,), generator=g) if max_count > 1 else torch.ones(b, dtype=torch.long)
    ys, xs = torch.arange(h, device=dev).view(1, h, 1), torch.arange(w, device=dev).view(1, 1, w)
    out = images
    for k in range(max_count):  # a loop over rectangles, not images
        area = (0.02 + (1 / 3 - 0.02) * draw(b, 10)) * (h * w) / count[:, None]
        ratio = torch.exp(math.log(0.3) + (math.log(1 / 0.3) - math.log(0.3)) * draw(b, 10))
        eh, ew = (area * ratio).sqrt().round().long(), (area / ratio).sqrt().round().long()
        fits = (eh < h) & (ew < w)
        first = fits.long().argmax(1, keepdim=True)  # first fitting draw, as timm's retry loop picks
        eh, ew = eh.gather(1, first).squeeze(1), ew.gather(1, first).squeeze(1)
        top = (draw(b) * (h - eh + 1)).long()
        left = (draw(b) * (w - ew + 1)).long()
        on = erase & (k < count) & fits.any(1)
        # Only the (B,)-sized box parameters cross to the device; the mask is built there.
        on, top, left, eh, ew = (t.to(dev, non_blocking=True).view(b, 1, 1) for t in (on, top, left, eh, ew))
        mask = on & (ys >= top) & (ys < top + eh) & (xs >= left) & (xs < left + ew)  # (B, H, W)
        if mode == "pixel":
            fill = torch.randn(b, c, h, w, device=dev, dtype=images.dtype)
        elif mode == "rand":
            fill = torch.randn(b, c, 1, 1, device=dev, dtype=images.dtype)
        else:
            fill = torch.zeros((), device=dev, dtype=images.dtype)
        out = torch.where(mask[:, None], fill, out)
    return out


class InMemoryLoader:
    """Batches straight from an `InMemoryDataset`, augmented on its device.

    Train augmentation, vectorised over the batch: random crop of the zero-padded image and
    horizontal flip (one gather with per-image row/column indices), normalisation, then random
    erasing if ``re_prob`` > 0 (`random_erase`). Order depends only on (seed, epoch, rank, world_size);
    crop/flip offsets on (seed, epoch, rank) too, so a resumed run sees the same batches.
    """

    def __init__(self, ds: InMemoryDataset, batch_size: int, train: bool, cfg: DataConfig,
                 sampler: ShardSampler, drop_last: bool) -> None:
        self.dataset, self.batch_size, self.train, self.cfg = ds, batch_size, train, cfg
        self.sampler, self.drop_last = sampler, drop_last

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def augment(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Random padded crop + h-flip of a uint8 batch (B, 3, H, W): one gather, no loop over images."""
        b, c, h, w = images.shape
        p, dev = self.cfg.crop_padding, images.device
        padded = F.pad(images, (p, p, p, p)).flatten(2)  # zeros; (B, 3, (H+2p)*(W+2p))
        oy = torch.randint(0, 2 * p + 1, (b, 1, 1), generator=g).to(dev, non_blocking=True)
        ox = torch.randint(0, 2 * p + 1, (b, 1, 1), generator=g).to(dev, non_blocking=True)
        flip = (torch.rand(b, 1, 1, generator=g) < self.cfg.hflip).to(dev, non_blocking=True)
        cols = torch.arange(w, device=dev)
        cols = ox + torch.where(flip, cols.flip(0), cols)  # (B, 1, W): flipping = reading columns backwards
        rows = oy + torch.arange(h, device=dev)[:, None]  # (B, H, 1)
        src = (rows * (w + 2 * p) + cols).view(b, 1, h * w).expand(b, c, h * w)  # flat source pixel
        return padded.gather(2, src).view(b, c, h, w)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ds = self.dataset
        idx = self.sampler.indices().to(ds.device)
        # Offsets drawn on the CPU (tiny), seeded per (seed, epoch, rank): no device generator needed.
        g = torch.Generator().manual_seed(_epoch_seed(self.sampler.seed, self.sampler.epoch, 1 + self.sampler.rank))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = idx[start : start + self.batch_size]
            images = ds.images[batch]
            if self.train:
                images = self.augment(images, g)
            images = ds.normalize(images)
            if self.train and self.cfg.re_prob > 0:
                images = random_erase(images, self.cfg.re_prob, self.cfg.re_mode, self.cfg.re_count, g)
            yield images, ds.targets[batch]


class FolderLoader:
    """A `DataLoader` over a per-image dataset with a `ShardSampler`, exposing ``set_epoch``.

    Workers are re-created each epoch and seeded from (seed, epoch), so augmentations too are
    reproducible on resume (with num_workers > 0).
    """

    def __init__(self, ds: Dataset, batch_size: int, train: bool, cfg: DataConfig, sampler: ShardSampler,
                 drop_last: bool) -> None:
        self.dataset, self.sampler, self.batch_size, self.drop_last = ds, sampler, batch_size, drop_last
        self.generator = torch.Generator()
        self.loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=cfg.num_workers,
                                 drop_last=drop_last, pin_memory=torch.cuda.is_available(),
                                 generator=self.generator, persistent_workers=False)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.generator.manual_seed(_epoch_seed(self.sampler.seed, self.sampler.epoch, 1 + self.sampler.rank))
        return iter(self.loader)


def build_loader(ds: Dataset, batch_size: int, train: bool, cfg: DataConfig, distributed: bool = False,
                 seed: int = 0, drop_last: bool | None = None, *, rank: int | None = None,
                 world_size: int | None = None) -> InMemoryLoader | FolderLoader:
    """Iterable of (images float (B, 3, H, W) normalised, targets long (B,)); call ``set_epoch(e)`` each epoch.

    ``train``: shuffle (seeded by (seed, epoch)), augment, and drop the last partial batch by default.
    ``distributed``: shard by the torch.distributed rank/world size (or pass ``rank``/``world_size``).
    In-memory datasets yield batches on their own device; folder datasets yield CPU tensors.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if rank is None or world_size is None:
        if distributed:
            if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
                raise ConfigError("build_loader(distributed=True) needs torch.distributed initialised "
                                  "(run under torchrun), or explicit rank= and world_size=")
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world_size = 0, 1
    drop_last = train if drop_last is None else drop_last
    sampler = ShardSampler(len(ds), shuffle=train, seed=seed, rank=rank, world_size=world_size, pad=train)
    if drop_last and len(sampler) < batch_size:
        raise ConfigError(f"batch_size {batch_size} is larger than this rank's {len(sampler)} images, so no "
                          "full batch exists: lower the batch size or use more data")
    if isinstance(ds, InMemoryDataset) and ds.transform is None:
        return InMemoryLoader(ds, batch_size, train, cfg, sampler, drop_last)
    return FolderLoader(ds, batch_size, train, cfg, sampler, drop_last)
