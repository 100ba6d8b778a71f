"""Shared pytest fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def tiny_image_folder(tmp_path: Path) -> Path:
    """A small ImageNet-style folder of the built-in glyph set: ``root/{train,val}/glyph{0,1,2}/*.png``.

    3 classes, 12 train and 6 val images of 32x32 px (4 and 2 per class). Returns the root; use it as
    ``DataConfig(path=str(root))``.
    """
    from pss.config import DataConfig
    from pss.data import write_builtin_folder

    cfg = DataConfig(builtin_num_train=12, builtin_num_val=6, builtin_num_classes=3, seed=0)
    return write_builtin_folder(tmp_path / "tiny_images", cfg)
