"""`check_data`: validate a recipe's data quickly, before any long work (`DataError` names problem and fix).

Lists the split and class folders (in torchvision's ImageFolder order, following safe folder links)
and scans for unreadable images; the result, a `DataReport`, is what `build_datasets` reads.
"""
from __future__ import annotations

import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor

from pathlib import Path

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

from pss.config import DataConfig
from pss.data.archives import ARCHIVE_SUFFIXES, extract_archive, is_archive
from pss.data.builtin import builtin_class_names
from pss.data.report import DataReport
from pss.errors import ConfigError, DataError

log = logging.getLogger("pss.data")


def _image_error(path: str) -> str | None:
    """None if PIL can parse the file's header and structure, else the reason."""
    try:
        with Image.open(path) as im:
            if im.mode == "F":
                return "a floating-point image (mode F): save it as 8- or 16-bit"
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
        # regular files only: a named pipe called x.png would block the scan's open() for ever
        found.append((dirpath, sorted(f for f in filenames if f.lower().endswith(IMG_EXTENSIONS)
                                      and os.path.isfile(os.path.join(dirpath, f)))))
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
        if not alt and split_key == "val_split" and present and all(p in ("train", "training") for p in present):
            raise DataError(f"the data holds a training split only ({', '.join(present)}/) and no validation images: "
                            f"add a {split}/<class>/ folder beside it (e.g. a held-out part of the training images)")
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
    An archive path is extracted to the cache first; a Hugging Face dataset is checked by `check_hf`; an
    `auto_augment` policy is parsed by timm.
    """
    check_augment(cfg)
    if cfg.path is None:
        names = builtin_class_names(cfg.builtin_num_classes)
        per_class = lambda n: {c: n // len(names) + (i < n % len(names)) for i, c in enumerate(names)}  # noqa: E731
        return DataReport("builtin", None, names, per_class(cfg.builtin_num_train), per_class(cfg.builtin_num_val))
    from pss.data.hf import check_hf, is_hf_source

    if is_hf_source(cfg.path):  # hf:NAME, a save_to_disk folder, parquet files
        return check_hf(cfg)

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

    corrupt, scanned, sampled = _scan(cfg, [p for files in (train_files, val_files) for ps in files.values() for p in ps])
    bad_set = set(corrupt)
    report = DataReport("folder", str(path), train_classes, {}, {}, corrupt, scanned, sampled)
    for files, counts, samples, split in ((train_files, report.train_counts, report.train_samples, cfg.train_split),
                                          (val_files, report.val_counts, report.val_samples, cfg.val_split)):
        for idx, c in enumerate(train_classes):
            good = [p for p in files[c] if p not in bad_set]
            if not good:
                raise DataError(f"every image in {path / split / c} is unreadable: replace them or remove the folder")
            counts[c] = len(good)
            samples += [(p, idx) for p in good]
    return report


def _scan(cfg: DataConfig, all_files: list[str]) -> tuple[list[str], int, bool]:
    """Unreadable images among `all_files` (all of them, or a seeded sample of a very large set): the
    sorted list, how many files were scanned, whether it was a sample. Raises with on_corrupt: fail."""
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
    return corrupt, len(to_scan), sampled


def check_augment(cfg: DataConfig) -> None:
    """Let timm parse the recipe's auto_augment policy now rather than mid-run (ConfigError if it cannot)."""
    if not cfg.auto_augment:
        return
    from timm.data import create_transform

    try:
        create_transform(cfg.img_size, is_training=True, auto_augment=cfg.auto_augment, interpolation=cfg.interpolation)
    except (AssertionError, ValueError, KeyError, IndexError) as e:
        raise ConfigError(f"data.auto_augment {cfg.auto_augment!r} is not understood by timm ({e}); "
                          "use e.g. 'rand-m9-mstd0.5-inc1'") from e
