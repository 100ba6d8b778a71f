"""The CIFAR-10 recipes on Hugging Face data: a local copy of the hub set trains, and without network
the hub default says what to do in one line (nothing downloads here)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")  # the [hf] extra; part of [dev]
from PIL import Image  # noqa: E402

from conftest import pss_train, read_jsonl  # noqa: E402

TINY = ["--set", "model.kwargs={depth: 2, embed_dim: 32, num_heads: 2, pos_embed: rope}", "--set", "epochs=1",
        "--set", "batch_size=8", "--set", "data.num_workers=0", "--set", "lr_sched.warmup_epochs=0",
        "--set", "device=cpu", "--set", "log_interval=1", "--set", "checkpoint_interval_epochs=1",
        "--set", "budget_epochs=null"]  # the recipe's epochs (tokens for epochs is tested in test_budget)


def cifar_like(n: int, seed: int) -> "datasets.Dataset":
    """CIFAR-10's hub layout (uoft-cs/cifar10: columns img, label; ClassLabel names), 32x32 PNGs."""
    rng = np.random.default_rng(seed)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    feats = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
    return datasets.Dataset.from_dict({"img": images, "label": [i % 10 for i in range(n)]}, features=feats)


def test_cifar10_recipe_trains_on_a_local_copy_of_the_hub_set(tmp_path, caplog):
    datasets.DatasetDict({"train": cifar_like(40, 0), "test": cifar_like(20, 1)}).save_to_disk(str(tmp_path / "c10"))
    run = tmp_path / "run"
    caplog.set_level(logging.INFO, logger="pss")
    assert pss_train("--config", "cifar10_pss", "--data", f"hf:{tmp_path / 'c10'}", "--output", run, *TINY) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 5 and summary["final_acc1"] is not None  # 40 images / batch 8, evaluated on 20
    assert len(read_jsonl(run / "train_log.jsonl")) == 5
    # One epoch numbering for people (from 1), while the files keep their 0-based fields.
    printed = caplog.text
    assert "epoch 1/1  step 5 " in printed and " at epoch 1)" in printed and "epoch 0" not in printed
    assert summary["best_epoch"] == 0 and read_jsonl(run / "val_log.jsonl")[-1]["epoch"] == 0
    config = (run / "config.yaml").read_text()
    assert f"path: hf:{tmp_path / 'c10'}" in config and "num_classes: 10" in config


def test_cifar10_recipe_spends_its_budget_as_tokens_for_epochs(tmp_path, caplog):
    """The recommended from-scratch recipe as shipped: budget 0.6 of 2 epochs trains 3 epochs at a fixed
    random keep ratio, and costs at most 0.6 of the 2-epoch full-token run."""
    datasets.DatasetDict({"train": cifar_like(40, 0), "test": cifar_like(20, 1)}).save_to_disk(str(tmp_path / "c10"))
    run = tmp_path / "run"
    caplog.set_level(logging.INFO, logger="pss")
    tiny = [*TINY[:-2], "--set", "epochs=2"]
    assert pss_train("--config", "cifar10_pss", "--data", f"hf:{tmp_path / 'c10'}", "--output", run, *tiny) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 15  # 3 epochs x 5 steps
    assert "budget 0.6 of 2 epochs spent as 3 epochs (budget_epochs auto: from scratch at budget 0.6" in caplog.text
    rhos = {row["keep_ratio"] for row in read_jsonl(run / "train_log.jsonl")}
    assert len(rhos) == 1 and 0.3 < rhos.pop() < 0.5  # one fixed keep ratio, solved for a cost of 0.4 per epoch
    budget = summary["budget"]
    assert budget["reference"]["epochs"] == 2 and 0.5 < budget["realised_cost_vs_reference"] <= 0.6 + 1e-6


def test_cifar10_recipe_offline_says_what_to_do_in_one_line(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pss", "train", "--quiet", "--config", "cifar10_pss", "--output",
                           str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    line = lines[0]
    assert "cannot reach uoft-cs/cifar10 on the Hugging Face hub" in line
    for hint in ("HF_HOME", "HF_DATASETS_OFFLINE=1", "--data hf:/path/to/cifar10", "ImageNet-style folder"):
        assert hint in line
    assert not (tmp_path / "run").exists()  # the output folder it made for the run is gone again
