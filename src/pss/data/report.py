"""`DataReport`: what `pss.data.check_data` found in a recipe's data, and what `build_datasets` reads."""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DataReport"]


@dataclass
class DataReport:
    """What `check_data` found. ``corrupt`` lists unreadable files (left out when on_corrupt='skip')."""

    source: str  # "builtin", "folder" or "hf" (a Hugging Face dataset, `pss.data.hf`)
    root: str | None  # the folder; for "hf" the dataset's name
    classes: list[str]
    train_counts: dict[str, int]  # readable images per class
    val_counts: dict[str, int]
    corrupt: list[str] = field(default_factory=list)
    scanned: int = 0  # files opened by the corrupt-image scan
    sampled: bool = False  # True when only a sample was scanned (large datasets)
    train_samples: list[tuple[str, int]] = field(default_factory=list, repr=False)  # "hf": (row, label)
    val_samples: list[tuple[str, int]] = field(default_factory=list, repr=False)
    hf: dict | None = field(default=None, repr=False)  # "hf": the opened splits and the image column

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
