"""Shared fixtures and helpers of both tiers (`from conftest import write_recipe, pss_train, ...`).

tests/unit/         one module's behaviour, in process; fast (`pytest -m "not slow"` runs these, less
                    the few marked slow: torch.compile, signals, a training run)
tests/integration/  commands and training runs end to end (subprocesses, signals, DDP, files on disk);
                    every test here is marked slow (below)
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from pss.cli import main

ROOT = Path(__file__).resolve().parents[1]  # the repository

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n N` runs N worker processes: one thread each (and in the commands they start), so N workers
    # share N cores instead of each taking every core and all of them slowing to a crawl.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Everything under tests/integration/ is slow; unit tests that are slow say so themselves."""
    integration = Path(__file__).parent / "integration"
    for item in items:
        if integration in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)


# A tiny recipe: built-in data in memory, 4 steps per epoch, 2 epochs, cyclic schedule.
TINY_RECIPE = {
    "model": {"name": "pss_vit_tiny_patch4_32", "kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2}},
    "data": {"path": None, "builtin_num_train": 64, "builtin_num_val": 32, "in_memory": True, "num_workers": 0},
    "schedule": {"name": "cyclic", "low": 0.2, "high": 1.0},
    "optim": {"lr": 1.0e-3},
    "lr_sched": {"warmup_epochs": 1},
    "epochs": 2,
    "batch_size": 16,
    "log_interval": 3,
    "device": "cpu",
}
TRAIN_KEYS = {"epoch", "step", "loss", "lr", "keep_ratio", "num_tokens", "step_time_s", "data_time_s"}
VAL_KEYS = {"epoch", "step", "acc1", "acc5", "loss", "elapsed_s"}
SUMMARY_KEYS = {
    "train_time_s", "epochs", "steps", "best_acc1", "final_acc1", "mean_keep_ratio", "images_per_s", "device",
    "torch", "timm", "commit", "data_wait_fraction",
}


def write_recipe(folder: Path, **changes) -> Path:
    recipe = json.loads(json.dumps(TINY_RECIPE))
    for k, v in changes.items():
        recipe[k] = v
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def pss_train(*args: str) -> int:
    return main(["train", "--quiet", *map(str, args)])


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard event files under `folder`: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


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


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The size review (tests/unit/test_structure.py `size_report`): rooms and functions past the review
    signals, a prompt for review, never a failure."""
    import importlib.util

    path = Path(__file__).parent / "unit" / "test_structure.py"
    spec = importlib.util.spec_from_file_location("_pss_structure", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = module.size_report()
    if lines:
        terminalreporter.section("size review (signals, not limits)")
        for line in lines:
            terminalreporter.write_line(line)
