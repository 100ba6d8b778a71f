"""DDP: `torchrun --nproc_per_node 2 -m pss train` with gloo on CPU completes, only rank 0 writes, and
its per-step losses match a single-process run on the same global batch.

Same global batch: `batch_size` is global, and the sharded sampler gives rank r the indices
[r::2] of the same (seed, epoch) permutation, so the two ranks' 4 + 4 images are exactly the
single process's 8. Everything else random is off (no augmentation, no dropout / drop path,
deterministic magnitude selection), so the only difference is float summation order.
"""
from __future__ import annotations

import json
import os
import socket
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


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The one-process run both DDP forms are compared with: (recipe, run folder)."""
    tmp = tmp_path_factory.mktemp("single")
    recipe = write_recipe(tmp, **DDP_RECIPE)
    assert pss_train("--config", recipe, "--output", tmp / "single") == 0
    return recipe, tmp / "single"


def test_two_gloo_processes_match_one_process(tmp_path, single):
    recipe, single_run = single
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pss", "train", "--quiet", "--config", str(recipe), "--output", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Only rank 0 reports.
    assert proc.stderr.count("training pss_vit_tiny_patch4_32") == 1, proc.stderr

    single, ddp = read_jsonl(single_run / "train_log.jsonl"), read_jsonl(tmp_path / "ddp" / "train_log.jsonl")
    assert [r["step"] for r in ddp] == list(range(8))  # one line per step, not one per rank
    assert [r["keep_ratio"] for r in ddp] == [r["keep_ratio"] for r in single]
    assert [r["lr"] for r in ddp] == [r["lr"] for r in single]
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in single], rel=1e-4)
    v_single, v_ddp = read_jsonl(single_run / "val_log.jsonl"), read_jsonl(tmp_path / "ddp" / "val_log.jsonl")
    assert v_ddp[-1]["loss"] == pytest.approx(v_single[-1]["loss"], rel=1e-4)
    assert v_ddp[-1]["acc1"] == pytest.approx(v_single[-1]["acc1"], abs=100 / 32 + 1e-9)  # at most one image flips

    ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoint-last.pt")
    assert len(ckpt["rng"]) == 2  # every rank's RNG state, for an exact resume
    assert not any(k.startswith("module.") for k in ckpt["model"])  # the bare model, loadable anywhere
    assert {p.name for p in (tmp_path / "ddp").iterdir()} == {p.name for p in single_run.iterdir()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_nodes_rendezvous_like_one_process(tmp_path, single):
    """Two torchrun agents, as on two machines (--nnodes 2, one process each), meeting at a c10d
    rendezvous on localhost: the job trains like the one-process run, and only rank 0 writes."""
    recipe, single_run = single
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    endpoint = f"localhost:{free_port()}"
    agents = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
             "--node_rank", str(node), "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", "two-nodes",
             "-m", "pss", "train", "--quiet", "--config", str(recipe), "--output", str(tmp_path / "run")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for node in (0, 1)
    ]
    results = []
    for agent in agents:
        try:
            results.append(agent.communicate(timeout=300))
        finally:
            if agent.poll() is None:
                agent.kill()
    assert [a.returncode for a in agents] == [0, 0], [err[-3000:] for _, err in results]
    assert sum(err.count("training pss_vit_tiny_patch4_32 ") for _, err in results) == 1  # rank 0 reports
    assert any("on cpu x2" in err for _, err in results)

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2
    ours, one = read_jsonl(tmp_path / "run" / "train_log.jsonl"), read_jsonl(single_run / "train_log.jsonl")
    assert [r["step"] for r in ours] == list(range(8)) and [r["keep_ratio"] for r in ours] == [r["keep_ratio"] for r in one]
    assert [r["loss"] for r in ours] == pytest.approx([r["loss"] for r in one], rel=1e-4)
    assert len(load_checkpoint(tmp_path / "run" / "checkpoint-last.pt")["rng"]) == 2
