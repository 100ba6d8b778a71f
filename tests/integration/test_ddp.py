"""DDP: `torchrun --nproc_per_node 2 -m pss train` with gloo on CPU completes, only rank 0 writes, and
its per-step losses match a single-process run on the same global batch.

Same global batch: `batch_size` is global, and the sharded sampler gives rank r the indices
[r::2] of the same (seed, epoch) permutation, so the two ranks' 4 + 4 images are exactly the
single process's 8. Everything else random is off (no augmentation, no dropout / drop path,
deterministic magnitude selection), so the only difference is float summation order.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pss.checkpoint import load_checkpoint
from conftest import pss_train, read_jsonl, write_recipe

DDP_RECIPE = dict(
    data={"path": None, "builtin_num_train": 64, "builtin_num_val": 32, "in_memory": True, "num_workers": 0,
          "crop_padding": 0, "hflip": 0.0},
    select="magnitude",
    batch_size=8,  # global: 4 per rank
    epochs=1,
    log_interval=3,
    checkpoint_interval_steps=5,
)


def test_two_gloo_processes_match_one_process(tmp_path):
    recipe = write_recipe(tmp_path, **DDP_RECIPE)
    assert pss_train("--config", recipe, "--output", tmp_path / "single") == 0

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pss", "train", "--quiet", "--config", str(recipe), "--output", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Only rank 0 reports.
    assert proc.stderr.count("training pss_vit_tiny_patch4_32") == 1, proc.stderr

    single, ddp = read_jsonl(tmp_path / "single" / "train_log.jsonl"), read_jsonl(tmp_path / "ddp" / "train_log.jsonl")
    assert [r["step"] for r in ddp] == list(range(8))  # one line per step, not one per rank
    assert [r["keep_ratio"] for r in ddp] == [r["keep_ratio"] for r in single]
    assert [r["lr"] for r in ddp] == [r["lr"] for r in single]
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in single], rel=1e-4)
    v_single, v_ddp = read_jsonl(tmp_path / "single" / "val_log.jsonl"), read_jsonl(tmp_path / "ddp" / "val_log.jsonl")
    assert v_ddp[-1]["loss"] == pytest.approx(v_single[-1]["loss"], rel=1e-4)
    assert v_ddp[-1]["acc1"] == pytest.approx(v_single[-1]["acc1"], abs=100 / 32 + 1e-9)  # at most one image flips

    ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoint-last.pt")
    assert len(ckpt["rng"]) == 2  # every rank's RNG state, for an exact resume
    assert not any(k.startswith("module.") for k in ckpt["model"])  # the bare model, loadable anywhere
    assert {p.name for p in (tmp_path / "ddp").iterdir()} == {p.name for p in (tmp_path / "single").iterdir()}
