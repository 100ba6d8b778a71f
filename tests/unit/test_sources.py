"""The data-source seam (`pss.data.sources`): a new kind is one class and one registration line; the checks
every kind shares (the batch against the data, before the scan) hold for each; folders and archives
decode at a lower side in their workers."""
from __future__ import annotations

import tarfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch
from PIL import Image

from pss.config import DataConfig
from pss.data import build_datasets, build_loader, check_data
from pss.data.datasets import InMemoryDataset
from pss.data.report import DataReport
from pss.data.sources import base, source_for
from pss.data.sources.base import Found, Source, register
from pss.errors import ConfigError, DataError


class TinySource(Source):
    """``tiny:N``: N solid-colour 8x8 images of two classes ("dark", "light"), held in memory; every fifth
    one unreadable (what the shared scan finds and leaves out)."""

    kind = "tiny"
    items = "images"

    @staticmethod
    def claims(path: str | None) -> bool:
        return path is not None and path.startswith("tiny:")

    def images(self) -> dict[tuple[str, int], Image.Image | None]:
        n = int(self.cfg.path.removeprefix("tiny:"))
        return {(split, i): None if i % 5 == 4 else Image.new("RGB", (8, 8), (40 + 200 * (i % 2),) * 3)
                for split in ("fit", "holdout") for i in range(n)}

    def find(self) -> Found:
        n = int(self.cfg.path.removeprefix("tiny:"))
        by_class = sorted(range(n), key=lambda i: i % 2)  # class-major
        samples = [(i, i % 2) for i in by_class]
        return Found(self.cfg.path, None, ("fit", "holdout"), ["dark", "light"], samples, list(samples))

    def unreadable(self, keys: list[tuple[str, Any]], pool: ThreadPoolExecutor) -> list[str | None]:
        held = self.images()
        return [None if held[k] is not None else "no pixels" for k in keys]

    def datasets(self, report: DataReport, train_transform: Any, eval_transform: Any) -> tuple[Any, Any]:
        held = self.images()

        class Split(torch.utils.data.Dataset):
            def __init__(self, split: str, samples: list[tuple[int, int]], transform: Any) -> None:
                self.split, self.samples, self.transform = split, samples, transform

            def __len__(self) -> int:
                return len(self.samples)

            def __getitem__(self, i: int) -> tuple[Any, int]:
                key, y = self.samples[i]
                return self.transform(held[(self.split, key)]), y

        return (Split(report.splits[0], report.train_samples, train_transform),
                Split(report.splits[1], report.val_samples, eval_transform))


@pytest.fixture
def tiny_registered(monkeypatch):
    monkeypatch.setattr(base, "KINDS", list(base.KINDS))  # the registration is undone after the test
    register(TinySource)  # the one line a new kind adds


def test_a_new_source_is_one_class_and_one_registration(tiny_registered):
    cfg = DataConfig(path="tiny:10", img_size=8, num_workers=0, hflip=0.0, crop_padding=0)
    assert isinstance(source_for(cfg), TinySource)
    assert type(source_for(DataConfig())).__name__ == "BuiltinSource"  # the other kinds still answer
    report = check_data(cfg)  # the shared checks: scan, left-out images, counts
    assert report.source == "tiny" and report.classes == ["dark", "light"]
    assert report.corrupt == ["4", "9", "4", "9"] and report.scanned == 20
    assert report.train_counts == {"dark": 4, "light": 4} and report.num_val == 8
    with pytest.raises(DataError, match=r"4 unreadable image\(s\): 4 \(no pixels\); .*data.on_corrupt: skip"):
        check_data(DataConfig(path="tiny:10", on_corrupt="fail"))
    with pytest.raises(ConfigError, match=r"batch_size 9 per process is larger than the 8 training images of tiny:10"):
        check_data(DataConfig(path="tiny:10", max_train_per_class=4), batch_size=9)
    train, val, names = build_datasets(cfg)
    assert names == ["dark", "light"] and len(train) == 8 and len(val) == 8
    x, y = next(iter(build_loader(val, 8, False, cfg)))
    assert x.shape == (8, 3, 8, 8) and y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert (x[:4].mean() < x[4:].mean()).item()  # dark before light, as labelled
    mem_train, _, _ = build_datasets(DataConfig(path="tiny:10", img_size=8, num_workers=0, in_memory=True))
    assert isinstance(mem_train, InMemoryDataset) and mem_train.images.shape == (8, 3, 8, 8)
    assert set(mem_train.images[:4].flatten().tolist()) == {40} and set(mem_train.images[4:].flatten().tolist()) == {240}


def test_the_batch_is_checked_against_the_data_before_the_scan(tiny_image_folder, monkeypatch):
    import pss.data.sources.folder as folder

    def no_scan(*a, **k):
        raise AssertionError("scanned before the batch check")

    monkeypatch.setattr(folder, "image_error", no_scan)
    cfg = DataConfig(path=str(tiny_image_folder))
    with pytest.raises(ConfigError, match=r"batch_size 13 per process is larger than the 12 training images of .*"
                                          r"tiny_images, so no full batch exists: lower batch_size"):
        check_data(cfg, batch_size=13)
    with pytest.raises(ConfigError, match=r"batch_size 7 per process is larger than the 12 training images .* \(6 per "
                                          r"process over 2\)"):
        check_data(cfg, batch_size=7, world_size=2)
    with pytest.raises(ConfigError, match=r"batch_size 4 .* than the 3 training images"):  # 1 per class
        check_data(DataConfig(path=str(tiny_image_folder), max_train_per_class=1, scan_images=False), batch_size=4)
    with pytest.raises(ConfigError, match=r"larger than the 2000 training images of the built-in set"):
        check_data(DataConfig(), batch_size=2001)
    monkeypatch.undo()
    assert check_data(cfg, batch_size=6, world_size=2).num_train == 12  # 6 per process: a full batch each


def test_each_path_goes_to_its_kind(tiny_image_folder, tmp_path):
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_image_folder, arcname="tiny")
    kinds = {None: "builtin", str(tiny_image_folder): "folder", str(archive): "archive",
             str(tmp_path / "missing.tar.gz"): "folder", "hf:owner/name": "hf"}
    for path, kind in kinds.items():
        assert source_for(DataConfig(path=path)).kind == kind, path
    with pytest.raises(DataError, match="missing.tar.gz does not exist: set data.path"):
        check_data(DataConfig(path=str(tmp_path / "missing.tar.gz")))
    (tmp_path / "notes.txt").write_text("not data")
    with pytest.raises(DataError, match="is a file but not a tar archive"):
        check_data(DataConfig(path=str(tmp_path / "notes.txt")))


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_folders_and_archives_decode_at_a_lower_side_in_the_workers(tmp_path, kind):
    root = tmp_path / "data"
    for split, n in (("train", 4), ("val", 2)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (i * 20, 0, 0)).save(root / split / c / f"{i}.jpg")
    path = root
    if kind == "archive":
        path = tmp_path / "data.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            tar.add(root, arcname="data")
    cfg = DataConfig(path=str(path), img_size=32, num_workers=0, cache_dir=str(tmp_path / "cache"))
    report = check_data(cfg)
    assert report.source == kind and report.num_train == 8
    train, val, _ = build_datasets(cfg, report=report)
    assert train.set_side(16) is True and train[0][0].shape == (3, 16, 16)
    assert train.set_side(None) is True and train[0][0].shape == (3, 32, 32)
    assert val.set_side(16) is False  # evaluation stays at the recipe's side
