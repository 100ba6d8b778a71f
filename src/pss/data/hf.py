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
``data.train_split``; the evaluation split is ``data.val_split`` if the dataset has it, else its only
one of validation / val / valid / test. Images are read as bytes (``Image(decode=False)``) and decoded
by `HFImageDataset` in the loader workers. Samples are ordered class by class, row order within a
class - the order an ImageNet-style folder written from the dataset in row order gives - so a folder
and its hub form give the same images for the same seed. Nothing is ever unpickled.
"""
from __future__ import annotations

import io
import logging
import os
import random
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from pss.config import DataConfig
from pss.data.readable import first_readable, load_rgb
from pss.data.report import DataReport
from pss.errors import DataError

log = logging.getLogger("pss.data")

HF_PREFIX = "hf:"
EVAL_SPLITS = ("validation", "val", "valid", "test")  # preferred in this order when data.val_split is absent
_SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk writes (DatasetDict / Dataset)
_SCAN_CHUNK = 4096  # rows read at a time by the unreadable-image scan


def is_hf_source(path: str | None) -> bool:
    """True for what `check_hf` reads: ``hf:...``, a save_to_disk folder, parquet files."""
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


def _pick_split(splits: list[str], wanted: str, key: str, name: str, eval_kind: bool) -> str:
    if wanted in splits:
        return wanted
    if eval_kind:
        alt = next((s for s in EVAL_SPLITS if s in splits), None)
        if alt is not None:
            log.info("%s has no split %r: evaluating on %r (set data.val_split to choose)", name, wanted, alt)
            return alt
    raise DataError(f"{name} has no split {wanted!r} (splits: {', '.join(splits)}): set data.{key} to one of them")


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


def _image_error(item: Any) -> str | None:
    """None if the encoded image (``{"bytes", "path"}``) parses, else the reason."""
    try:
        with Image.open(_image_source(item)) as im:
            im.verify()
    except Exception as e:  # noqa: BLE001 - any failure means "unreadable"; the reason is reported
        return f"{type(e).__name__}: {e}"
    return None


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

    def read(self, index: int) -> tuple[Any, int]:
        image = self.load(index)
        return (self.transform(image) if self.transform is not None else image), self.samples[index][1]

    def read(self, index: int) -> tuple[Any, int]:
        image = self.load(index)
        return (self.transform(image) if self.transform is not None else image), self.samples[index][1]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return first_readable(self.read, index, len(self.samples), lambda i: f"{self.name} row {self.samples[i][0]}",
                              self.on_corrupt, "fix the dataset", self.name)


def check_hf(cfg: DataConfig) -> DataReport:
    """`check_data` for a Hugging Face dataset: splits, columns, classes (the same in both splits),
    labels in range, unreadable images (all, or a seeded sample past ``scan_max_files``)."""
    datasets = _import_datasets()
    name, splits = open_hf(os.fspath(cfg.path))
    train_split, val_split, image_col, label_col = _splits_and_columns(cfg, name, splits)
    classes = _class_names(splits[train_split], label_col, datasets)
    val_classes = _class_names(splits[val_split], label_col, datasets)
    if classes != val_classes:
        only_train = sorted(set(classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(classes))
        if only_val or isinstance(splits[val_split].features[label_col], datasets.ClassLabel):
            raise DataError(f"train and val classes differ in {name}: only in {train_split}: {only_train[:10] or '-'}; "
                            f"only in {val_split}: {only_val[:10] or '-'}; both splits need the same classes")
    train = _first_per_class(_labelled(splits, train_split, label_col, classes, name, datasets), cfg.max_train_per_class)
    val = _first_per_class(_labelled(splits, val_split, label_col, classes, name, datasets), cfg.max_val_per_class)
    for split, samples in ((train_split, train), (val_split, val)):
        empty = _missing_classes(samples, classes)
        if empty:
            raise DataError(f"split {split!r} of {name} has no images of class(es) {empty}: use a split with every "
                            "class, or a dataset without them")

    corrupt, scanned, sampled = _scan(cfg, splits, image_col, name, ((train_split, train), (val_split, val)))
    bad = {split: {r for s, r in corrupt if s == split} for split in (train_split, val_split)}
    train = [s for s in train if s[0] not in bad[train_split]]
    val = [s for s in val if s[0] not in bad[val_split]]
    for split, samples in ((train_split, train), (val_split, val)):  # the folder rule: a class keeps an image
        empty = _missing_classes(samples, classes)
        if empty:
            hint = "" if isinstance(splits[split].features[image_col], datasets.Image) else \
                f"; column {image_col!r} is no datasets.Image column: is data.hf_image_column the image column?"
            raise DataError(f"every image of class(es) {empty} in split {split!r} of {name} is unreadable "
                            f"({len(bad[split])} of {len(bad[split]) + len(samples)} rows left out){hint}; fix the "
                            "dataset, or choose another split or column")

    def counts(samples: list[tuple[int, int]]) -> dict[str, int]:
        per_label = Counter(y for _, y in samples)
        return {c: per_label[i] for i, c in enumerate(classes)}

    return DataReport("hf", name, classes, counts(train), counts(val), [f"{name} {s}[{r}]" for s, r in corrupt], scanned,
                      sampled, train, val, hf={"train": splits[train_split], "val": splits[val_split],
                                               "image_column": image_col, "splits": (train_split, val_split)})


def _missing_classes(samples: list[tuple[int, int]], classes: list[str]) -> str:
    """The classes without a sample, named for a message ('' when every class has one)."""
    present = {y for _, y in samples}
    empty = [c for i, c in enumerate(classes) if i not in present]
    return ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")


def _splits_and_columns(cfg: DataConfig, name: str, splits: dict[str, Any]) -> tuple[str, str, str, str]:
    """The train and evaluation splits and the image and label columns; each split non-empty, with both."""
    names = list(splits)
    train_split = _pick_split(names, cfg.train_split, "train_split", name, eval_kind=False)
    val_split = _pick_split(names, cfg.val_split, "val_split", name, eval_kind=True)
    if train_split == val_split:
        raise DataError(f"{name}: train and evaluation split are both {train_split!r} "
                        f"(splits: {', '.join(names)}): set data.val_split to another one")
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


def _first_per_class(samples: list[tuple[int, int]], cap: int | None) -> list[tuple[int, int]]:
    """The first `cap` samples of each class (all with None): data.max_*_per_class."""
    if cap is None:
        return samples
    seen: dict[int, int] = {}
    out = []
    for r, y in samples:
        seen[y] = seen.get(y, 0) + 1
        if seen[y] <= cap:
            out.append((r, y))
    return out


def _scan(cfg: DataConfig, splits: dict[str, Any], image_col: str, name: str,
          chosen: tuple[tuple[str, list[tuple[int, int]]], ...]) -> tuple[list[tuple[str, int]], int, bool]:
    """Unreadable images as (split, row), with the folder scan's rules (``scan_images``,
    ``scan_max_files``, ``scan_sample_size``, ``on_corrupt``); read in chunks, so memory stays flat."""
    datasets = _import_datasets()
    if not cfg.scan_images:
        return [], 0, False
    keys = [(split, r) for split, samples in chosen for r, _ in samples]
    sampled = len(keys) > cfg.scan_max_files
    if sampled:
        keys = random.Random(cfg.seed).sample(keys, min(cfg.scan_sample_size, len(keys)))
    errors: list[tuple[tuple[str, int], str]] = []
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        for split, _ in chosen:
            rows = sorted(r for s, r in keys if s == split)
            table = splits[split].select_columns([image_col])
            if isinstance(table.features[image_col], datasets.Image):
                table = table.cast_column(image_col, datasets.Image(decode=False))
            for start in range(0, len(rows), _SCAN_CHUNK):
                chunk = rows[start : start + _SCAN_CHUNK]
                found = pool.map(_image_error, table.select(chunk)[image_col], chunksize=64)
                errors += [((split, r), e) for r, e in zip(chunk, found) if e is not None]
    if errors and cfg.on_corrupt == "fail":
        shown = "; ".join(f"{name} {s}[{r}] ({e})" for (s, r), e in errors[:5]) + (" ..." if len(errors) > 5 else "")
        raise DataError(f"{len(errors)} unreadable image(s): {shown}; fix the dataset, or set data.on_corrupt: skip "
                        "to leave them out")
    for (s, r), e in errors[:20]:
        log.warning("skipping unreadable image %s %s[%d] (%s)", name, s, r, e)
    if len(errors) > 20:
        log.warning("... and %d more unreadable images skipped", len(errors) - 20)
    return sorted(k for k, _ in errors), len(keys), sampled


def hf_datasets(report: DataReport, train_tf: Callable, val_tf: Callable, on_corrupt: str) -> tuple[HFImageDataset, HFImageDataset]:
    """Per-image (train, val) datasets over what `check_hf` accepted."""
    h = report.hf
    return (HFImageDataset(h["train"], h["image_column"], report.train_samples, train_tf, on_corrupt,
                           f"{report.root} {h['splits'][0]}"),
            HFImageDataset(h["val"], h["image_column"], report.val_samples, val_tf, on_corrupt,
                           f"{report.root} {h['splits'][1]}"))
