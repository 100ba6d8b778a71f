"""Bad input fails before training starts, with a one-line message naming the problem and the fix,
and leaves no run files behind (or the previous run's files untouched)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import pss
from pss.config import DataConfig
from pss.data import write_builtin_folder
from conftest import pss_train, write_recipe

RUN_FILES = ("train_log.jsonl", "val_log.jsonl", "config.yaml", "checkpoint-last.pt", "summary.json")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """ImageNet-style folders of the built-in set: 3 classes, 24 train / 6 val PNGs."""
    root = tmp_path_factory.mktemp("images") / "set"
    return write_builtin_folder(root, DataConfig(builtin_num_train=24, builtin_num_val=6, builtin_num_classes=3))


def copy_of(folder: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(folder, dst)
    return dst


def fails(tmp_path: Path, capsys, *args: str, words: tuple[str, ...]) -> None:
    recipe = write_recipe(tmp_path)
    out = tmp_path / "run"
    assert pss_train("--config", recipe, "--output", out, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("pss train: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    assert not any((out / f).exists() for f in RUN_FILES)


def corrupt_one(folder: Path) -> Path:
    bad = sorted((folder / "train" / "glyph0").iterdir())[0]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return bad


def test_data_path_missing(tmp_path, capsys):
    fails(tmp_path, capsys, "--data", str(tmp_path / "nowhere"), words=("nowhere", "does not exist", "data.path"))


def test_data_without_class_folders(tmp_path, capsys):
    (tmp_path / "flat" / "train").mkdir(parents=True)
    (tmp_path / "flat" / "val").mkdir()
    fails(tmp_path, capsys, "--data", str(tmp_path / "flat"), words=("no class folders", "train"))


def test_wrong_split_name(image_folder, tmp_path, capsys):
    """A training split that is not there is named (an evaluation split falls back to the first of validation /
    val / valid / test the data has: tests/unit/test_data.py)."""
    fails(tmp_path, capsys, "--data", str(image_folder), "--set", "data.train_split=training",
          words=("training", "does not exist", "data.train_split"))


def test_class_folder_without_images(image_folder, tmp_path, capsys):
    data = copy_of(image_folder, tmp_path)
    (data / "train" / "glyph9").mkdir()
    (data / "val" / "glyph9").mkdir()
    fails(tmp_path, capsys, "--data", str(data), words=("no images", "glyph9"))


def test_corrupt_image_fails_by_option(image_folder, tmp_path, capsys):
    data = copy_of(image_folder, tmp_path)
    bad = corrupt_one(data)
    fails(tmp_path, capsys, "--data", str(data), "--set", "data.on_corrupt=fail",
          words=("unreadable", bad.name, "on_corrupt: skip"))


def test_corrupt_image_skipped_and_counted(image_folder, tmp_path):
    """on_corrupt: skip (the default) trains on the readable images and records how many were left out."""
    data = copy_of(image_folder, tmp_path)
    corrupt_one(data)
    recipe = write_recipe(tmp_path, epochs=1, batch_size=8)
    out = tmp_path / "run"
    assert pss_train("--config", recipe, "--output", out, "--data", data, "--set", "data.in_memory=false") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_images"] == 1 and summary["steps"] == 2  # 23 readable images -> 2 batches of 8


@pytest.mark.parametrize(
    "sets, words",
    [
        (["model.name=pss_vit_tiny_patch4_23"], ("unknown model.name", "pss_vit_tiny_patch4_32")),
        (["model.name=resnet50", "model.kwargs={}"], ("resnet50",)),  # not a ViT: refused at build time
        (["schedule.name=zigzag"], ("unknown schedule", "cyclic")),
        (["schedule={name: fixed, rho: 1.5}"], ("rho", "(0, 1]")),
        (["epochs=0"], ("epochs must be >= 1",)),
        (["optim.lr=-1"], ("optim.lr must be > 0",)),
        (["optim.lrr=1"], ("unknown config key 'optim.lrr'", "did you mean 'lr'")),
        (["batch_size=128"], ("batch_size 128", "64 training images")),
        (["model.num_classes=5"], ("num_classes is 5", "10 classes")),
        (["model.img_size=64"], ("model.img_size 64", "data.img_size 32")),
        (["model.kwargs.num_heads=3"], ("embed_dim 32 is not divisible by num_heads 3",)),
        (["schedule={name: cyclic, warmup_epochs: 2}"], ("warm-up", "no steps")),
        (["device=cuda"], ("cuda", "device: auto")) if not torch.cuda.is_available() else (["epochs=-1"], ("epochs",)),
    ],
    ids=lambda x: x[0] if isinstance(x, list) else None,
)
def test_impossible_settings(tmp_path, capsys, sets, words):
    fails(tmp_path, capsys, *[a for s in sets for a in ("--set", s)], words=words)


def test_init_checkpoint_that_does_not_fit(tmp_path, capsys):
    wide = pss.build_model("pss_vit_tiny_patch4_32", num_classes=10, depth=2, embed_dim=64, num_heads=2)
    torch.save(wide.state_dict(), tmp_path / "wide.pth")
    fails(tmp_path, capsys, "--init", str(tmp_path / "wide.pth"),
          words=("do not fit", "patch_embed.proj.weight", "(64, 3, 4, 4)", "(32, 3, 4, 4)"))
    fails(tmp_path, capsys, "--init", str(tmp_path / "missing.pth"), words=("missing.pth", "not found"))


def test_overwrite_only_after_every_check(tmp_path, capsys):
    """--overwrite replaces a finished run, but a run that fails its checks leaves the old one alone."""
    recipe = write_recipe(tmp_path, epochs=1)
    out = tmp_path / "run"
    assert pss_train("--config", recipe, "--output", out) == 0
    before = (out / "train_log.jsonl").read_text()
    assert pss_train("--config", recipe, "--output", out, "--overwrite", "--data", str(tmp_path / "nowhere")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert (out / "train_log.jsonl").read_text() == before and (out / "checkpoint-last.pt").exists()
    assert pss_train("--config", recipe, "--output", out, "--overwrite", "--set", "schedule=0.6") == 0
    assert json.loads((out / "summary.json").read_text())["mean_keep_ratio"] == pytest.approx(0.6)
