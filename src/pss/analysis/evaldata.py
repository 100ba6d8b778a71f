"""Validation data for a trained checkpoint: its recipe's validation set (or another folder), and the
labels of data whose classes differ from the checkpoint's mapped onto its outputs (`match_classes`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pss.errors import ConfigError

__all__ = ["CLASS_MODES", "MappedLabels", "labelled_loader", "match_classes", "val_loader_for"]


def val_loader_for(config: dict[str, Any], data: str | None, batch_size: int, max_images: int | None = None):
    """Validation loader from a checkpoint's resolved config (`data` overrides its data path), and
    the data's class names."""
    from pss.config import DataConfig, build_config
    from pss.data import build_datasets, build_loader

    d = dict(config.get("data") or {})
    if data is not None:
        d["path"] = data
    # Only the validation split is used: do not decode the training set into memory, nor scan it.
    d.update(in_memory=False, scan_images=False)
    dcfg = build_config(DataConfig, d, "data")
    _, val, classes = build_datasets(dcfg)
    if max_images is not None and max_images < len(val):
        # evenly spread over the set: a folder dataset lists its images class by class
        val = torch.utils.data.Subset(val, torch.linspace(0, len(val) - 1, max_images).round().long().tolist())
    return build_loader(val, batch_size, train=False, cfg=dcfg), list(classes)


# How a sweep treats data whose classes are not the checkpoint's (`pss sweep --classes`).
CLASS_MODES = ("exact", "by-name", "as-is")


def match_classes(trained: list[str] | None, num_outputs: int, data: list[str], mode: str = "exact",
                  label: str = "the checkpoint") -> torch.Tensor | None:
    """Check the data's classes against those the model was trained on.

    exact: the same names in the same order (or, with no names recorded, the same number);
    by-name: every data class must be a trained one, and the returned table maps data label ->
    model output index; as-is: the data's label indices are taken as the model's (checked only to be
    in range: no more data classes than model outputs).
    Raises ConfigError (one line, naming both sides and the option) on a mismatch.
    """
    if mode not in CLASS_MODES:
        raise ConfigError(f"unknown class mode {mode!r}; choose one of {', '.join(CLASS_MODES)}")
    if mode == "as-is":
        if len(data) > num_outputs:
            raise ConfigError(f"the data has {len(data)} classes (labels 0-{len(data) - 1}) but {label} has "
                              f"{num_outputs} outputs: --classes as-is needs every label below {num_outputs}; "
                              "use data with at most that many classes, or --classes by-name")
        return None

    def shown(names: list[str]) -> str:
        return ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")

    if trained is None:
        if mode == "by-name":
            raise ConfigError(f"{label} records no class names, so --classes by-name cannot map them; "
                              "use --classes as-is to take the data's labels as they are")
        if len(data) != num_outputs:
            raise ConfigError(f"{label} has {num_outputs} outputs but the data has {len(data)} classes "
                              f"({shown(data)}): use the data it was trained on, or --classes as-is")
        return None
    if mode == "exact":
        if list(trained) != list(data):
            raise ConfigError(
                f"the data's classes ({shown(data)}) are not those {label} was trained on ({shown(trained)}): "
                "use the data it was trained on, --classes by-name to map classes by name, or --classes as-is"
            )
        return None
    unknown = [c for c in data if c not in trained]
    if unknown:
        raise ConfigError(f"data classes unknown to {label}: {shown(unknown)} (trained on {shown(trained)}); "
                          "remove those class folders, or use --classes as-is")
    return torch.tensor([trained.index(c) for c in data])


class MappedLabels:
    """A loader whose labels go through a lookup table (data label -> model output)."""

    def __init__(self, loader: Any, table: torch.Tensor) -> None:
        self.loader, self.table = loader, table

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Any:
        for images, targets in self.loader:
            yield images, self.table.to(targets.device)[targets]



def labelled_loader(path: str | Path, config: dict[str, Any], data: str | None, batch_size: int,
                     max_images: int | None, classes: str) -> Any:
    """The validation loader for one checkpoint, its labels mapped to the checkpoint's classes."""
    from pss.runfolder import stored_class_names

    loader, data_classes = val_loader_for(config, data, batch_size, max_images)
    num_outputs = int((config.get("model") or {}).get("num_classes") or len(data_classes))
    table = match_classes(stored_class_names(path), num_outputs, data_classes, classes, label=str(path))
    return loader if table is None else MappedLabels(loader, table)
