"""An ImageNet-style folder (``data.path: /data/imagenet``): ``<path>/<split>/<class>/*.jpg``.

The split and class folders are listed in torchvision's ImageFolder order (sorted folders, sorted names),
following folder links that stay inside the dataset; the datasets are `CheckedImageFolder`s over the
files the check accepted, which decode at a lower side in the loader workers when asked (`set_side`).
"""
from __future__ import annotations

import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

from pss.data.archives import ARCHIVE_SUFFIXES
from pss.data.datasets import CheckedImageFolder, train_transform_at
from pss.data.readable import image_error
from pss.data.report import DataReport
from pss.data.sources.base import Found, Source, eval_split, same_classes
from pss.errors import DataError

log = logging.getLogger("pss.data")

__all__ = ["FolderSource"]


class FolderSource(Source):
    """Any path no other source claims: a folder of split folders of class folders."""

    kind = "folder"
    empty_class_fix = "replace them or remove the class folder"

    @staticmethod
    def claims(path: str | None) -> bool:
        return path is not None

    def root(self) -> Path:
        """The folder holding the split folders."""
        cfg = self.cfg
        path = Path(cfg.path).expanduser()
        if not path.exists():
            raise DataError(f"data path {path} does not exist: set data.path to a folder with "
                            f"{cfg.train_split}/<class>/*.jpg and {cfg.val_split}/<class>/*.jpg, to a .tar.gz "
                            "archive of one, or to null for the built-in synthetic set")
        if not path.is_dir():
            raise DataError(f"data path {path} is a file but not a tar archive ({', '.join(ARCHIVE_SUFFIXES)}): "
                            "point data.path at the dataset folder or its archive")
        return path

    def find(self) -> Found:
        cfg, root = self.cfg, self.root()
        present = sorted(e.name for e in root.iterdir() if e.is_dir())
        val_split = eval_split(present, cfg.val_split, cfg.train_split, str(root)) or cfg.val_split
        train_classes, train_files = _list_split(root, cfg.train_split, "train_split", present)
        val_classes, val_files = _list_split(root, val_split, "val_split", present)
        same_classes(str(root), (cfg.train_split, val_split), train_classes, val_classes,
                     "both splits need the same class folders (labels are assigned from the sorted folder names)")
        return Found(str(root), str(root), (cfg.train_split, val_split), train_classes,
                     [(p, i) for i, c in enumerate(train_classes) for p in train_files[c]],
                     [(p, i) for i, c in enumerate(val_classes) for p in val_files[c]])

    def unreadable(self, keys: list[tuple[str, Any]], pool: ThreadPoolExecutor) -> list[str | None]:
        return list(pool.map(image_error, [path for _, path in keys], chunksize=256))

    def datasets(self, report: DataReport, train_transform: Any, eval_transform: Any) -> tuple[Any, Any]:
        cfg, root = self.cfg, Path(report.root)
        return (CheckedImageFolder(str(root / report.splits[0]), report.train_samples, train_transform, cfg.on_corrupt,
                                   side_transform=functools.partial(train_transform_at, cfg)),
                CheckedImageFolder(str(root / report.splits[1]), report.val_samples, eval_transform, cfg.on_corrupt))


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


def _list_split(root: Path, split: str, split_key: str, present: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Classes and their image files in ``root/split``; DataError on a missing split or empty class."""
    folder = root / split
    if not folder.is_dir():
        hint = f"; folders present: {', '.join(present)}" if present else ""
        # Only names of the same kind: a missing val split is never pointed at the training images.
        alt = next((p for p in present if p in ("train", "training") and p != split), None) \
            if split_key == "train_split" else None  # (an evaluation split present was taken: pss.data.sources.base)
        fix = (f"set data.{split_key}: {alt}" if alt
               else f"set data.{split_key} to the name of your {split_key[:-6]} folder")
        if split_key == "val_split" and present and all(p in ("train", "training") for p in present):
            raise DataError(f"the data holds a training split only ({', '.join(present)}/) and no validation images: "
                            f"add a {split}/<class>/ folder beside it (e.g. a held-out part of the training images)")
        raise DataError(f"split folder {folder} does not exist{hint}: {fix} "
                        f"(expected {root}/{split}/<class>/*.jpg, ImageNet layout)")
    classes, _ = find_classes(folder) if any(e.is_dir() for e in folder.iterdir()) else ([], {})
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
