"""Resume: a run killed with SIGKILL mid-epoch and resumed matches an uninterrupted run.

What is compared (see the docstring of pss.train for the claim): the per-step keep ratio, learning
rate, step and epoch numbering (no gaps, no duplicates), and on CPU with `deterministic: true` the
losses and final weights bit for bit, with every source of randomness switched on (augmentation,
random erasing, mixup, drop path, random token selection, EMA).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from pss.checkpoint import load_checkpoint
from conftest import pss_train, read_jsonl, write_recipe

RANDOM_EVERYTHING = dict(
    mixup={"mixup_alpha": 0.8, "cutmix_alpha": 1.0},
    label_smoothing=0.1,
    ema={"enabled": True, "decay": 0.9},
    select="random",
    batch_size=8,  # 8 steps per epoch
    epochs=2,
    checkpoint_interval_steps=3,  # mid-epoch checkpoints at steps 3, 6, 11, 14
    log_interval=1,
    deterministic=True,  # order-stable kernels: without them two uninterrupted CPU runs differ in the last bits
)
COMPARED = ("epoch", "step", "keep_ratio", "lr", "num_tokens", "loss")


def _sets(in_memory: bool) -> list[str]:
    out = ["--set", "model.drop_path_rate=0.1", "--set", "data.re_prob=0.5"]
    if not in_memory:  # per-image PIL transforms in 2 worker processes
        out += ["--set", "data.in_memory=false", "--set", "data.num_workers=2"]
    return out


def _same_run(a: Path, b: Path) -> None:
    log_a, log_b = read_jsonl(a / "train_log.jsonl"), read_jsonl(b / "train_log.jsonl")
    assert [r["step"] for r in log_b] == list(range(16))  # no gap, no duplicate
    assert [[r[k] for k in COMPARED] for r in log_a] == [[r[k] for k in COMPARED] for r in log_b]
    val_a, val_b = read_jsonl(a / "val_log.jsonl"), read_jsonl(b / "val_log.jsonl")
    assert [(r["step"], r["acc1"], r["loss"], r["ema_acc1"]) for r in val_a] == [
        (r["step"], r["acc1"], r["loss"], r["ema_acc1"]) for r in val_b
    ]
    ca, cb = load_checkpoint(a / "checkpoint-last.pt"), load_checkpoint(b / "checkpoint-last.pt")
    for part in ("model", "ema"):
        for k, v in ca[part].items():
            assert torch.equal(v, cb[part][k]), (part, k)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    recipe = write_recipe(tmp_path, **RANDOM_EVERYTHING)
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert pss_train("--config", recipe, "--output", ref, *_sets(True)) == 0

    # The same run in a child process, slowed down so that the kill lands mid-epoch.
    child = (
        "import sys, time\n"
        "from pss.tasks import classification\n"
        "real = classification.ClassificationTask.loss\n"
        "def slow(self, model, batch):\n"
        "    time.sleep(0.25)\n"
        "    return real(self, model, batch)\n"
        "classification.ClassificationTask.loss = slow\n"
        "from pss.cli import main\n"
        f"sys.exit(main({['train', '--quiet', '--config', str(recipe), '--output', str(run), *_sets(True)]!r}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stderr=subprocess.PIPE)
    try:
        # Kill once the step-3 checkpoint exists and two more steps were logged (steps 3 and 4),
        # so the log holds lines past the checkpoint that the resume must drop.
        deadline = time.time() + 120
        while not ((run / "checkpoint-last.pt").exists() and (run / "train_log.jsonl").exists()
                   and len((run / "train_log.jsonl").read_text().splitlines()) >= 5):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "the child run never reached step 5"
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(run / "checkpoint-last.pt")["progress"]["step"]
    assert killed_at in (3, 6)  # mid-epoch (8 steps per epoch)
    logged = [r["step"] for r in read_jsonl(run / "train_log.jsonl")]
    assert max(logged) >= killed_at  # lines past the checkpoint, to be dropped
    assert not (run / "summary.json").exists()

    assert pss_train("--output", run, "--resume") == 0
    _same_run(ref, run)
    assert json.loads((run / "summary.json").read_text())["resumed"] == 1


def test_resume_with_worker_processes_and_per_image_augmentation(tmp_path, monkeypatch):
    """The folder-style loader (PIL transforms in 2 workers): a crash (here an exception) after the
    step-6 checkpoint, then --resume, gives the same run again."""
    recipe = write_recipe(tmp_path, **RANDOM_EVERYTHING)
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert pss_train("--config", recipe, "--output", ref, *_sets(False)) == 0

    from pss.tasks import classification

    real, calls = classification.ClassificationTask.loss, {"n": 0}

    def crash_at_step_7(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt  # what Ctrl-C would do
        return real(self, model, batch)

    monkeypatch.setattr(classification.ClassificationTask, "loss", crash_at_step_7)
    assert pss_train("--config", recipe, "--output", run, *_sets(False)) == 130
    monkeypatch.setattr(classification.ClassificationTask, "loss", real)
    assert load_checkpoint(run / "checkpoint-last.pt")["progress"]["step"] == 6
    assert pss_train("--config", recipe, "--output", run, "--resume", *_sets(False)) == 0
    _same_run(ref, run)


def test_resume_errors(tmp_path, capsys):
    assert pss_train("--output", tmp_path / "none", "--resume") == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert pss_train("--resume") == 2
    assert "needs --output" in capsys.readouterr().err


def test_a_checkpoint_from_before_the_loop_counters_resumes_exactly(tmp_path):
    """Checkpoints written before Progress counted steps per keep ratio (no steps_at / time_at in their
    progress) still resume, and the resumed run is the uninterrupted one (deterministic CPU)."""
    from pss.resolve import resolve_config
    from pss.train import train

    recipe = write_recipe(tmp_path, epochs=2, log_interval=1, deterministic=True, select="random", budget=0.7)
    cfg, _ = resolve_config(recipe, output=str(tmp_path / "full"))
    train(cfg, quiet=True)
    cfg, _ = resolve_config(recipe, ["epochs=1"], output=str(tmp_path / "old"))
    train(cfg, quiet=True)  # one epoch of the same run (its LR schedule is the 1-epoch one: compare steps 0-3 only)
    last = tmp_path / "old" / "checkpoint-last.pt"
    ckpt = load_checkpoint(last)
    for key in ("steps_at", "time_at"):  # the progress of a checkpoint written before the counters existed
        del ckpt["progress"][key]
    torch.save(ckpt, last)
    cfg, resume_from = resolve_config(None, ["epochs=2"], resume=True, output=str(tmp_path / "old"))
    summary = train(cfg, resume_from=resume_from, quiet=True)
    assert summary["steps"] == 8 and summary["resumed"] == 1
    assert summary["budget"]["realised_cost"] is not None  # from the steps since the resume
    full, old = (read_jsonl(tmp_path / d / "train_log.jsonl") for d in ("full", "old"))
    assert [r["step"] for r in old] == list(range(8))
    assert [(r["keep_ratio"], r["num_tokens"]) for r in old[4:]] == [(r["keep_ratio"], r["num_tokens"]) for r in full[4:]]


def test_resume_across_a_resolution_change_matches_uninterrupted_run(tmp_path, monkeypatch):
    """A run whose first epoch trains at 16 px and its second at 32 px (pss.resolution), stopped mid-way
    through the first epoch and resumed, crosses the change exactly as the uninterrupted run: the same sides,
    keep ratios, tokens, losses and weights bit for bit (deterministic CPU)."""
    recipe = write_recipe(tmp_path, **RANDOM_EVERYTHING,
                          resolution={"name": "step", "start": 0.5, "full_from": 0.5})
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert pss_train("--config", recipe, "--output", ref, *_sets(True)) == 0
    sides = [r["side"] for r in read_jsonl(ref / "train_log.jsonl")]
    assert sides == [16] * 8 + [32] * 8
    from pss.select import num_kept

    for r in read_jsonl(ref / "train_log.jsonl"):  # CLS + the kept share of 16 patches at 16 px, of 64 at 32 px
        assert r["num_tokens"] == 1 + num_kept((r["side"] // 4) ** 2, r["keep_ratio"])

    from pss.tasks import classification

    real, calls = classification.ClassificationTask.loss, {"n": 0}

    def crash_at_step_7(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real(self, model, batch)

    monkeypatch.setattr(classification.ClassificationTask, "loss", crash_at_step_7)
    assert pss_train("--config", recipe, "--output", run, *_sets(True)) == 130
    monkeypatch.setattr(classification.ClassificationTask, "loss", real)
    assert load_checkpoint(run / "checkpoint-last.pt")["progress"]["step"] == 6  # before the change
    assert pss_train("--config", recipe, "--output", run, "--resume", *_sets(True)) == 0
    _same_run(ref, run)
    assert [r["side"] for r in read_jsonl(run / "train_log.jsonl")] == sides


def test_a_resume_with_a_changed_resolution_schedule_follows_the_new_one(tmp_path):
    """The side is a pure function of (step, run length, resolution schedule): a resume that extends the run and
    changes the schedule trains each later step at the side a run started with the new settings has there."""
    recipe = write_recipe(tmp_path, epochs=1, batch_size=16, log_interval=1,
                          resolution={"name": "step", "start": 0.5, "full_from": 1.0})
    run, fresh = tmp_path / "run", tmp_path / "fresh"
    assert pss_train("--config", recipe, "--output", run) == 0
    assert [r["side"] for r in read_jsonl(run / "train_log.jsonl")] == [16] * 4  # 4 steps, all at half side
    new = ["--set", "epochs=4", "--set", "resolution={name: linear, start: 0.25, full_from: 0.75}"]
    assert pss_train("--output", run, "--resume", *new) == 0
    assert pss_train("--config", recipe, "--output", fresh, *new) == 0
    log, ref = read_jsonl(run / "train_log.jsonl"), read_jsonl(fresh / "train_log.jsonl")
    # 8 patches x (0.25 + 0.75 e / 3): epoch 1 at 16 px, epoch 2 at 24 px, epoch 3 (0.75 x 4) on at full side
    assert [r["side"] for r in log[4:]] == [r["side"] for r in ref[4:]] == [16] * 4 + [24] * 4 + [32] * 4


def test_a_resume_reads_its_checkpoint_once(tmp_path, monkeypatch):
    """`--resume` read checkpoint-last.pt twice (for its config, then for the state); the command hands the
    checkpoint it read to the run (pss.checkpoint.ResumePoint). A path given in Python is read by the run."""
    recipe = write_recipe(tmp_path, epochs=1)
    out = tmp_path / "run"
    assert pss_train("--config", recipe, "--output", out) == 0
    reads = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: reads.append(Path(f).name) or real(f, *a, **k))
    assert pss_train("--output", out, "--resume", "--set", "epochs=2") == 0
    assert reads.count("checkpoint-last.pt") == 1
    assert json.loads((out / "summary.json").read_text())["resumed"] == 1

    from pss.resolve import resolve_config
    from pss.train import train

    reads.clear()
    cfg, point = resolve_config(None, ["epochs=3"], resume=True, output=str(out))
    assert Path(point) == out / "checkpoint-last.pt" and point.config["epochs"] == 2
    train(cfg, resume_from=Path(point), quiet=True)  # a plain path: the run reads it itself, once more
    assert reads.count("checkpoint-last.pt") == 2 and point.take() is not None
