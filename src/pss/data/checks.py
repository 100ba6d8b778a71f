"""`check_data`: validate a recipe's data quickly, before any long work (`DataError` names problem and fix).

The source of ``data.path`` (`pss.data.sources`) lists the splits and classes, checks the batch against
the training images, and scans for unreadable images; the result, a `DataReport`, is what
`build_datasets` reads.
"""
from __future__ import annotations

from pss.config import DataConfig
from pss.data.report import DataReport
from pss.data.sources import source_for
from pss.errors import ConfigError

__all__ = ["DataReport", "check_augment", "check_data"]


def check_data(cfg: DataConfig, batch_size: int | None = None, world_size: int = 1) -> DataReport:
    """Validate the data in ``cfg`` quickly, before any long work; `DataError` names problem and fix.

    Checks the path, the splits (the evaluation split: ``data.val_split``, else the first of validation /
    val / valid / test the data has, logged), the classes (each with images, the same in both splits),
    that a training batch of ``batch_size`` per process fits in each of ``world_size`` processes' share of
    the training images (before the scan), and scans for unreadable images (all of them, or a sample for
    very large sets; see `DataConfig.scan_max_files`). With ``on_corrupt: fail`` any unreadable image
    raises. An archive is extracted to the cache first; an ``auto_augment`` policy is parsed by timm.
    """
    check_augment(cfg)
    return source_for(cfg).check(batch_size, world_size)


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
