"""`DataReport`: what `pss.data.check_data` found in a recipe's data, and what `build_datasets` reads."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DataReport"]


@dataclass
class DataReport:
    """What `check_data` found. ``corrupt`` lists unreadable files (left out when on_corrupt='skip')."""

    source: str  # the kind of data (`pss.data.sources`): "builtin", "folder", "archive", "hf", ...
    root: str | None  # the folder (an archive's: where it was extracted); for "hf" the dataset's name
    classes: list[str]
    train_counts: dict[str, int]  # readable images per class
    val_counts: dict[str, int]
    corrupt: list[str] = field(default_factory=list)
    scanned: int = 0  # files opened by the corrupt-image scan
    sampled: bool = False  # True when only a sample was scanned (large datasets)
    # (what the source reads an image by: a file path, a row; class index), class-major
    train_samples: list[tuple[Any, int]] = field(default_factory=list, repr=False)
    val_samples: list[tuple[Any, int]] = field(default_factory=list, repr=False)
    splits: tuple[str, str] = ("train", "val")  # the (train, evaluation) splits read (data.val_split, or the fallback)
    opened: dict[str, Any] = field(default_factory=dict, repr=False)  # what the source opened for its datasets()

    @property
    def num_train(self) -> int:
        return sum(self.train_counts.values())

    @property
    def num_val(self) -> int:
        return sum(self.val_counts.values())

    def describe(self) -> str:
        """One line for a run's header: images, classes, and the unreadable ones left out."""
        line = f"{self.num_train} train / {self.num_val} val images in {len(self.classes)} classes"
        if self.source == "builtin":
            return f"{line} (the built-in set)"
        scan = ("every file scanned" if not self.sampled else
                f"a sample of {self.scanned} files scanned; others that fail to load are skipped then, each logged")
        if not self.scanned:
            scan = "not scanned (data.scan_images: false)"
        return f"{line}; {len(self.corrupt)} unreadable image(s) left out ({scan})"
