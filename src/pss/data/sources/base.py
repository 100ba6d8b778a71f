"""What every data source is (`Source`: `check()` and `datasets()`), the checks they all share, and the
registry that `pss.data.sources.source_for` picks a source from.

A source lists what ``data.path`` holds (`Source.find`: the splits, the classes, every image as a
(key, class index) sample), and the shared `Source.check` does the rest in the same order for every
kind: a class-balanced subset (``data.max_*_per_class``), the batch against the training split (before
the scan, so a batch larger than the data fails in a second), the unreadable-image scan (all, or a seeded
sample past ``data.scan_max_files``; ``data.on_corrupt``), and every class keeping a readable image.
The result is a `DataReport`, what `Source.datasets` builds the train and val datasets from.
"""
from __future__ import annotations

import logging
import math
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from pss.config import DataConfig
from pss.data.report import DataReport
from pss.errors import ConfigError, DataError

log = logging.getLogger("pss.data")

__all__ = ["EVAL_SPLITS", "Found", "KINDS", "Source", "check_batch", "eval_split", "first_per_class", "register",
           "same_classes"]

# The evaluation split when data.val_split names none the data has: the first of these it has.
EVAL_SPLITS = ("validation", "val", "valid", "test")

Sample = tuple[Any, int]  # (what the source reads an image by: a file path, a row; class index)


@dataclass
class Found:
    """What `Source.find` lists: the data's name (for messages), its splits as found (train, eval), the class
    names, every sample of each split in class-major order, and whatever the source opened to read them."""

    name: str
    root: str | None
    splits: tuple[str, str]
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    opened: dict[str, Any] = field(default_factory=dict)


class Source:
    """One kind of data (``data.path``): `claims(path)` says whether it is this kind; `check()` runs the quick
    pre-flight checks (`DataError` / `ConfigError` in one line naming the problem and the fix) and returns
    the `DataReport`; `datasets(report, train_transform, eval_transform)` builds the per-image train and val
    datasets over what the check accepted.

    A kind that lists files or rows implements `find`, `unreadable` and `where`, and inherits `check`;
    one holding its images already (the built-in set) overrides `check` and `held`.
    """

    kind = ""  # DataReport.source
    items = "files"  # what a sample is, in messages
    unreadable_fix = "remove or replace them"  # what to do about unreadable images
    empty_class_fix = "replace them or remove the class"  # ... about a class whose every image is unreadable

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg

    @staticmethod
    def claims(path: str | None) -> bool:
        """True when `data.path` is data of this kind."""
        raise NotImplementedError

    # -- the two things every source does -----------------------------------------------------------------

    def check(self, batch_size: int | None = None, world_size: int = 1) -> DataReport:
        """The pre-flight checks: list, take the class-balanced subset, check `batch_size` (per process, over
        `world_size` processes) against the training images, scan for unreadable images, and leave those out."""
        cfg, found = self.cfg, self.find()
        train = first_per_class(found.train, cfg.max_train_per_class)
        val = first_per_class(found.val, cfg.max_val_per_class)
        check_batch(len(train), batch_size, world_size, found.name)
        keys = [(found.splits[0], k) for k, _ in train] + [(found.splits[1], k) for k, _ in val]
        bad, scanned, sampled = self._scan(keys)
        kept = []
        for split, samples in zip(found.splits, (train, val)):
            good = [s for s in samples if (split, s[0]) not in bad]
            empty = missing_classes(good, found.classes)
            if empty:
                left_out = len(samples) - len(good)
                raise DataError(f"every image of class(es) {empty} in split {split!r} of {found.name} is unreadable "
                                f"({left_out} of {len(samples)} {self.items} left out){self.unreadable_hint(split, found)}; "
                                f"{self.empty_class_fix}")
            kept.append(good)

        def counts(samples: list[Sample]) -> dict[str, int]:
            per_label = Counter(y for _, y in samples)
            return {c: per_label[i] for i, c in enumerate(found.classes)}

        return DataReport(self.kind, found.root, found.classes, counts(kept[0]), counts(kept[1]),
                          [self.where(*k) for k in sorted(bad)], scanned, sampled, kept[0], kept[1],
                          splits=found.splits, opened=found.opened)

    def datasets(self, report: DataReport, train_transform: Callable, eval_transform: Callable) -> tuple[Dataset, Dataset]:
        """Per-image (train, val) datasets over what `check` accepted; items are (transform(image), class index)."""
        raise NotImplementedError

    def held(self, report: DataReport, device: torch.device) -> tuple[Dataset, Dataset] | None:
        """(train, val) as `pss.data.InMemoryDataset`s on `device`, without transforms, when the images are held
        as uint8 tensors already (``data.in_memory`` uses them as they are); None: decoded once from `datasets`."""
        return None

    # -- what a listing source provides ---------------------------------------------------------------------

    def find(self) -> Found:
        """List the splits, classes and samples (`DataError` on a missing split, a class without images)."""
        raise NotImplementedError

    def unreadable(self, keys: list[tuple[str, Any]], pool: ThreadPoolExecutor) -> list[str | None]:
        """Per (split, key): None if its image parses (header and structure, not every pixel), else the reason."""
        raise NotImplementedError

    def where(self, split: str, key: Any) -> str:
        """A sample named for a message or `DataReport.corrupt`."""
        return str(key)

    def unreadable_hint(self, split: str, found: Found) -> str:
        """A likely cause when every image of a class is unreadable ('' for none)."""
        return ""

    def _scan(self, keys: list[tuple[str, Any]]) -> tuple[set[tuple[str, Any]], int, bool]:
        """Unreadable samples among `keys` (all of them, or a seeded sample of a very large set), how many were
        scanned, whether it was a sample. Raises with ``on_corrupt: fail``; logs what is left out."""
        cfg = self.cfg
        if not cfg.scan_images or not keys:
            return set(), 0, False
        sampled = len(keys) > cfg.scan_max_files
        if sampled:  # a seeded sample finds systematic problems; stray bad files are caught at load time
            keys = random.Random(cfg.seed).sample(keys, min(cfg.scan_sample_size, len(keys)))
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            reasons = self.unreadable(keys, pool)
        bad = [(k, e) for k, e in zip(keys, reasons) if e is not None]
        if bad and cfg.on_corrupt == "fail":
            shown = "; ".join(f"{self.where(*k)} ({e})" for k, e in bad[:5]) + (" ..." if len(bad) > 5 else "")
            raise DataError(f"{len(bad)} unreadable image(s): {shown}; {self.unreadable_fix}, or set "
                            "data.on_corrupt: skip to leave them out")
        for k, e in bad[:20]:
            log.warning("skipping unreadable image %s (%s)", self.where(*k), e)
        if len(bad) > 20:
            log.warning("... and %d more unreadable images skipped", len(bad) - 20)
        return {k for k, _ in bad}, len(keys), sampled


# -- the registry ----------------------------------------------------------------------------------------

KINDS: list[type[Source]] = []  # asked newest first: a new kind may claim paths an older one would take


def register(kind: type[Source]) -> type[Source]:
    """Make `kind` one of the sources `source_for` picks from (it is asked before those registered earlier)."""
    KINDS.insert(0, kind)
    return kind


# -- the checks every source shares ----------------------------------------------------------------------


def eval_split(present: Sequence[str], wanted: str, train: str, name: str) -> str | None:
    """The evaluation split, one rule for every source: `wanted` (``data.val_split``) where the data has it,
    else the first of `EVAL_SPLITS` it has (logged); None when it has neither."""
    if wanted in present:
        return wanted
    alt = next((s for s in EVAL_SPLITS if s in present and s != train), None)
    if alt is not None:
        log.info("%s has no %r split: evaluating on %r, the first of %s it has (set data.val_split to choose)",
                 name, wanted, alt, " / ".join(EVAL_SPLITS))
    return alt


def check_batch(num_train: int, batch_size: int | None, world_size: int, name: str) -> None:
    """A training batch (`batch_size` per process) must fit in each process's share of the training images:
    checked on the listing, before the scan."""
    if batch_size is None:
        return
    per_process = math.ceil(num_train / world_size)
    if per_process < batch_size:
        share = f" ({per_process} per process over {world_size})" if world_size > 1 else ""
        raise ConfigError(f"batch_size {batch_size} per process is larger than the {num_train} training images of "
                          f"{name}{share}, so no full batch exists: lower batch_size or use more data")


def same_classes(name: str, splits: tuple[str, str], train: list[str], val: list[str], why: str) -> None:
    """Both splits hold the same classes (labels follow the class order); `why` ends the message."""
    if train != val:
        only_train = sorted(set(train) - set(val))
        only_val = sorted(set(val) - set(train))
        raise DataError(f"train and val classes differ in {name}: only in {splits[0]}: {only_train[:10] or '-'}; "
                        f"only in {splits[1]}: {only_val[:10] or '-'}; {why}")


def first_per_class(samples: list[Sample], cap: int | None) -> list[Sample]:
    """The first `cap` samples of each class (all with None): ``data.max_*_per_class``."""
    if cap is None:
        return samples
    seen: Counter[int] = Counter()
    out = []
    for key, y in samples:
        seen[y] += 1
        if seen[y] <= cap:
            out.append((key, y))
    return out


def missing_classes(samples: list[Sample], classes: list[str]) -> str:
    """The classes without a sample, named for a message ('' when every class has one)."""
    present = {y for _, y in samples}
    empty = [c for i, c in enumerate(classes) if i not in present]
    return ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")
