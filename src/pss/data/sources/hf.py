"""Hugging Face datasets as a data source (in a clone of pss: ``pip install -e ".[hf]"``).

``data.path`` (or ``--data``) names the dataset:

- ``hf:uoft-cs/cifar10``, ``hf:ILSVRC/imagenet-1k``, ``hf:NAME:CONFIG``: from the hub, downloaded and
  cached by `datasets.load_dataset` (under ``$HF_HOME``, default ``~/.cache/huggingface``);
- ``hf:path/to/folder`` or a plain path to a `Dataset.save_to_disk` / `DatasetDict.save_to_disk`
  folder (`datasets.load_from_disk`), or to a folder of parquet files named by split
  (``train.parquet``, ``test-00000-of-00001.parquet``, ``data/validation/*.parquet``: what
  `datasets.load_dataset` infers), or ``hf:file.parquet`` (one split, ``train``).

The image column is the dataset's `datasets.Image` feature and the label column its `datasets.ClassLabel`
feature (override with ``data.hf_image_column`` / ``data.hf_label_column``); class names come from the
ClassLabel (labels of another type: their sorted distinct values). The train split is
``data.train_split``; the evaluation split is ``data.val_split`` if the dataset has it, else the first of
validation / val / valid / test it has (the rule of every source, `pss.data.sources.base.eval_split`). Images are read as bytes (``Image(decode=False)``) and decoded
by `HFImageDataset` in the loader workers. Samples are ordered class by class, row order within a
class - the order an ImageNet-style folder written from the dataset in row order gives - so a folder
and its hub form give the same images for the same seed. Nothing is ever unpickled.
"""
from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from pss.config import DataConfig
from pss.data.readable import first_readable, image_error, load_rgb
from pss.data.report import DataReport
from pss.data.sources.base import Found, Source, eval_split, missing_classes, same_classes
from pss.errors import DataError

log = logging.getLogger("pss.data")

__all__ = ["HFImageDataset", "HFSource", "is_hf_source", "open_hf"]

HF_PREFIX = "hf:"
_SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk writes (DatasetDict / Dataset)
_SCAN_CHUNK = 4096  # rows read at a time by the unreadable-image scan


def is_hf_source(path: str | None) -> bool:
    """True for what `HFSource` reads: ``hf:...``, a save_to_disk folder, parquet files."""
    if path is None:
        return False
    if path.startswith(HF_PREFIX):
        return True
    p = Path(path).expanduser()
    if p.is_file():
        return p.suffix == ".parquet"
    return p.is_dir() and (any((p / m).is_file() for m in _SAVED_MARKERS) or _parquet_files(p) != [])


def _parquet_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet")) + sorted(folder.glob("data/**/*.parquet"))


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as e:
        raise DataError('Hugging Face datasets need the `datasets` package: pip install datasets (in a clone of pss: '
                        'pip install -e ".[hf]"), or pass an ImageNet-style folder') from e
    return datasets


def _offline_fix(name: str) -> str:
    return (f"go online once (datasets caches it under $HF_HOME, default ~/.cache/huggingface), or set HF_HOME to a "
            f"cache that holds it with HF_DATASETS_OFFLINE=1, or pass a local copy: --data hf:/path/to/{name.split('/')[-1]} "
            "(a save_to_disk folder or parquet files) or an ImageNet-style folder")


def open_hf(spec: str) -> tuple[str, dict[str, Any]]:
    """(display name, {split: datasets.Dataset}) for ``spec`` (``hf:NAME[:CONFIG]`` or a local path);
    `DataError` in one line when it cannot be had (offline, gated, unknown name)."""
    datasets = _import_datasets()
    target = spec[len(HF_PREFIX):] if spec.startswith(HF_PREFIX) else spec
    if not target:
        raise DataError("data.path 'hf:' names no dataset: use hf:OWNER/NAME[:CONFIG] (e.g. hf:uoft-cs/cifar10) "
                        "or hf:/path/to/saved_dataset")
    local = Path(target).expanduser()
    if local.exists() or target.startswith((".", "/", "~")):
        if not local.exists():
            raise DataError(f"data path {local} does not exist: point --data at a save_to_disk folder, parquet "
                            "files, or use hf:OWNER/NAME for a hub dataset")
        try:
            if local.is_dir() and any((local / m).is_file() for m in _SAVED_MARKERS):
                loaded = datasets.load_from_disk(str(local))
            elif local.is_file():
                if local.suffix != ".parquet":
                    raise DataError(f"{local} is not a parquet file nor a save_to_disk folder: point --data at one "
                                    "(or at an ImageNet-style folder)")
                loaded = datasets.load_dataset("parquet", data_files={"train": str(local)})
            else:
                loaded = datasets.load_dataset(str(local))
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - datasets' many ways of saying "not a dataset"
            raise DataError(f"cannot read {local} as a Hugging Face dataset ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}): point --data at a save_to_disk folder, "
                            "parquet files named by split, or an ImageNet-style folder") from e
        name = str(local)
    else:
        name, _, config = target.partition(":")
        from pss.hubnet import cache_only_when_offline

        cache_only_when_offline()  # an unreachable hub: the cache at once, not a minute of retries
        try:
            loaded = datasets.load_dataset(name, config or None)
        except Exception as e:  # noqa: BLE001 - classified below into one line each
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "gated" in msg:
                raise DataError(f"{name} is a gated dataset on the Hugging Face hub: accept its terms on "
                                f"https://huggingface.co/datasets/{name} and log in (`hf auth login`, formerly "
                                "`huggingface-cli login`, or set HF_TOKEN), or pass a local copy with --data") from e
            if isinstance(e, ConnectionError) or "offline" in msg.lower() or "Couldn't reach" in msg:
                raise DataError(f"cannot reach {name} on the Hugging Face hub and it is not in the local cache "
                                f"({msg}): {_offline_fix(name)}") from e
            if type(e).__name__ == "DatasetNotFoundError":
                raise DataError(f"no dataset {name} on the Hugging Face hub ({msg}): check the name "
                                "(hf:OWNER/NAME[:CONFIG]), or pass a local folder with --data") from e
            raise DataError(f"cannot load {name} from the Hugging Face hub ({type(e).__name__}: {msg}); "
                            "name a config with hf:NAME:CONFIG if it has several, or pass a local copy with --data") from e
        if config:
            name = f"{name}:{config}"
    if isinstance(loaded, datasets.Dataset):  # a single saved split
        loaded = {"train": loaded}
    return name, dict(loaded)


def _columns(ds: Any, cfg: DataConfig, name: str) -> tuple[str, str]:
    """(image column, label column) from the features, or the configured names (checked)."""
    datasets = _import_datasets()
    feats = ds.features
    cols = ", ".join(f"{c} ({type(f).__name__})" for c, f in feats.items())

    def find(override: str | None, kind: type, key: str, what: str) -> str:
        if override is not None:
            if override not in feats:
                raise DataError(f"{name} has no column {override!r} (columns: {cols}): set data.{key} to its {what} column")
            return override
        found = [c for c, f in feats.items() if isinstance(f, kind)]
        if len(found) == 1:
            return found[0]
        if not found:
            raise DataError(f"{name} has no {kind.__name__} column (columns: {cols}): set data.{key} to its {what} column")
        raise DataError(f"{name} has several {kind.__name__} columns ({', '.join(found)}): set data.{key} to the one to use")

    image = find(cfg.hf_image_column, datasets.Image, "hf_image_column", "image")
    label = find(cfg.hf_label_column, datasets.ClassLabel, "hf_label_column", "label")
    kind = lambda f: getattr(f, "dtype", "")  # noqa: E731 - a Value's type name
    if not (isinstance(feats[image], datasets.Image) or kind(feats[image]) in ("binary", "large_binary", "string")):
        raise DataError(f"column {image!r} of {name} holds {type(feats[image]).__name__}, not images: "
                        "set data.hf_image_column to the image column")
    if not (isinstance(feats[label], datasets.ClassLabel)
            or (isinstance(feats[label], datasets.Value) and (kind(feats[label]).startswith("int") or kind(feats[label]) == "string"))):
        raise DataError(f"column {label!r} of {name} holds {type(feats[label]).__name__}, not class "
                        "labels: set data.hf_label_column to the label column")
    return image, label


def _image_source(item: Any) -> str | io.BytesIO:
    """What PIL opens for one cell of the image column: its bytes, else its file path."""
    if isinstance(item, dict):
        data, path = item.get("bytes"), item.get("path")
    else:  # a binary or string column named by data.hf_image_column
        data, path = (item, None) if isinstance(item, bytes) else (None, item)
    if data is not None:
        return io.BytesIO(data)
    if path:
        return path
    raise ValueError("no image bytes nor path")


class HFImageDataset(Dataset):
    """Rows of a `datasets.Dataset` as (transformed image, label); images decoded here, in the loader
    workers. Unreadable images are skipped (logged) or raise `DataError`, as `CheckedImageFolder` does."""

    def __init__(self, table: Any, image_column: str, samples: list[tuple[int, int]],
                 transform: Callable | None = None, on_corrupt: str = "skip", name: str = "") -> None:
        datasets = _import_datasets()
        self.table = table.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False)) \
            if isinstance(table.features[image_column], datasets.Image) else table.select_columns([image_column])
        self.column, self.samples, self.transform = image_column, samples, transform
        self.on_corrupt, self.name = on_corrupt, name
        self.targets = [y for _, y in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> Image.Image:
        row, _ = self.samples[index]
        return load_rgb(_image_source(self.table[row][self.column]))  # as folders: 16-bit grey scaled, float refused

    def _load(self, index: int) -> tuple[Image.Image, int]:
        return self.load(index), self.samples[index][1]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        # only the decode is guarded: an augmentation that fails is the augmentation's error, not the image's
        image, target = first_readable(self._load, index, len(self.samples),
                                       lambda i: f"{self.name} row {self.samples[i][0]}", self.on_corrupt,
                                       "fix the dataset", self.name)
        return (self.transform(image) if self.transform is not None else image), target


class HFSource(Source):
    """A Hugging Face dataset: ``hf:NAME[:CONFIG]``, ``hf:path``, a save_to_disk folder, parquet files."""

    kind = "hf"
    items = "rows"
    unreadable_fix = "fix the dataset"
    empty_class_fix = "fix the dataset, or choose another split or column"

    @staticmethod
    def claims(path: str | None) -> bool:
        return is_hf_source(path)

    def find(self) -> Found:
        """Splits, columns, classes (the same in both splits), every row with a valid label, class-major."""
        cfg, datasets = self.cfg, _import_datasets()
        name, splits = open_hf(os.fspath(cfg.path))
        train_split, val_split, image_col, label_col = _splits_and_columns(cfg, name, splits)
        classes = _class_names(splits[train_split], label_col, datasets)
        val_classes = _class_names(splits[val_split], label_col, datasets)
        # labels that are not a ClassLabel name classes by value: a split may lack some of the training classes
        if set(val_classes) - set(classes) or isinstance(splits[val_split].features[label_col], datasets.ClassLabel):
            same_classes(name, (train_split, val_split), classes, val_classes, "both splits need the same classes")
        found = Found(name, name, (train_split, val_split), classes,
                      _labelled(splits, train_split, label_col, classes, name, datasets),
                      _labelled(splits, val_split, label_col, classes, name, datasets),
                      opened={"train": splits[train_split], "val": splits[val_split], "image_column": image_col})
        for split, samples in zip(found.splits, (found.train, found.val)):
            empty = missing_classes(samples, classes)
            if empty:
                raise DataError(f"split {split!r} of {name} has no images of class(es) {empty}: use a split with every "
                                "class, or a dataset without them")
        self.found = found  # what the scan reads and names
        return found

    def where(self, split: str, key: Any) -> str:
        return f"{self.found.name} {split}[{key}]"

    def unreadable_hint(self, split: str, found: Found) -> str:
        table = found.opened["train" if split == found.splits[0] else "val"]
        col = found.opened["image_column"]
        if isinstance(table.features[col], _import_datasets().Image):
            return ""
        return f"; column {col!r} is no datasets.Image column: is data.hf_image_column the image column?"

    def unreadable(self, keys: list[tuple[str, Any]], pool: ThreadPoolExecutor) -> list[str | None]:
        """The images read as bytes in chunks of rows, so memory stays flat."""
        datasets, found = _import_datasets(), self.found
        col = found.opened["image_column"]
        reasons: dict[tuple[str, Any], str | None] = {}
        for split in dict.fromkeys(s for s, _ in keys):
            table = found.opened["train" if split == found.splits[0] else "val"].select_columns([col])
            if isinstance(table.features[col], datasets.Image):
                table = table.cast_column(col, datasets.Image(decode=False))
            rows = sorted(r for s, r in keys if s == split)
            for start in range(0, len(rows), _SCAN_CHUNK):
                chunk = rows[start : start + _SCAN_CHUNK]
                errors = pool.map(_cell_error, table.select(chunk)[col], chunksize=64)
                reasons.update(((split, r), e) for r, e in zip(chunk, errors))
        return [reasons[k] for k in keys]

    def datasets(self, report: DataReport, train_transform: Callable, eval_transform: Callable) -> tuple[HFImageDataset, HFImageDataset]:
        o, (train_split, val_split) = report.opened, report.splits
        return (HFImageDataset(o["train"], o["image_column"], report.train_samples, train_transform, self.cfg.on_corrupt,
                               f"{report.root} {train_split}"),
                HFImageDataset(o["val"], o["image_column"], report.val_samples, eval_transform, self.cfg.on_corrupt,
                               f"{report.root} {val_split}"))


def _cell_error(item: Any) -> str | None:
    """None if one cell of the image column (``{"bytes", "path"}``, bytes or a path) holds a readable image."""
    try:
        source = _image_source(item)
    except ValueError as e:
        return f"ValueError: {e}"
    return image_error(source)


def _splits_and_columns(cfg: DataConfig, name: str, splits: dict[str, Any]) -> tuple[str, str, str, str]:
    """The train and evaluation splits and the image and label columns; each split non-empty, with both."""
    names = list(splits)
    if cfg.train_split not in names:
        raise DataError(f"{name} has no split {cfg.train_split!r} (splits: {', '.join(names)}): set data.train_split "
                        "to one of them")
    train_split = cfg.train_split
    val_split = eval_split(names, cfg.val_split, train_split, name)
    if val_split is None:
        raise DataError(f"{name} has no split {cfg.val_split!r} (splits: {', '.join(names)}): set data.val_split "
                        "to one of them")
    image_col, label_col = _columns(splits[train_split], cfg, name)
    for split in (train_split, val_split):
        table = splits[split]
        if len(table) == 0:
            raise DataError(f"split {split!r} of {name} is empty: choose another with data.{'train' if split == train_split else 'val'}_split")
        missing = [c for c in (image_col, label_col) if c not in table.features]
        if missing:
            raise DataError(f"split {split!r} of {name} has no column {missing[0]!r} (columns: "
                            f"{', '.join(table.features)}): set data.hf_image_column / data.hf_label_column")
    return train_split, val_split, image_col, label_col


def _class_names(table: Any, label_col: str, datasets: Any) -> list[str]:
    """A split's class names: its ClassLabel's, else its distinct label values, sorted."""
    feat = table.features[label_col]
    if isinstance(feat, datasets.ClassLabel):
        return list(feat.names)
    return [str(v) for v in sorted(set(table[label_col]) - {None})]


def _labelled(splits: dict[str, Any], split: str, label_col: str, classes: list[str], name: str,
              datasets: Any) -> list[tuple[int, int]]:
    """(row, class index) in class-major order, row order within a class; a row without a valid label fails."""
    raw = splits[split][label_col]
    if isinstance(splits[split].features[label_col], datasets.ClassLabel):
        labels = raw
    else:
        index = {c: i for i, c in enumerate(classes)}
        labels = [index.get(str(v), -1) if v is not None else -1 for v in raw]
    bad = [r for r, y in enumerate(labels) if y is None or not 0 <= y < len(classes)]
    if bad:
        raise DataError(f"split {split!r} of {name} has {len(bad)} row(s) without a valid label (e.g. row {bad[0]}: "
                        f"{raw[bad[0]]!r}); it cannot be used for training or evaluation: choose another split")
    return sorted(((r, y) for r, y in enumerate(labels)), key=lambda s: s[1])
