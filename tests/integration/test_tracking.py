"""Experiment tracking in `pss train`: summary.csv, TensorBoard event files, W&B (offline, faked),
progress lines when stderr is not a terminal, and resume."""
from __future__ import annotations

import csv
import logging
import sys
import types
from pathlib import Path

import pytest

from conftest import pss_train, read_jsonl, read_scalars, write_recipe


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_train_writes_summary_csv_and_tensorboard_and_resumes(tmp_path):
    pytest.importorskip("tensorboard")
    recipe = write_recipe(tmp_path, epochs=1, logging={"tensorboard": True, "csv": True})
    out = tmp_path / "run"
    assert pss_train("--config", recipe, "--output", out) == 0
    rows = read_csv(out / "summary.csv")
    assert len(rows) == 1
    assert {"epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr", "keep_ratio"} <= set(rows[0])
    val = read_jsonl(out / "val_log.jsonl")[-1]
    assert float(rows[0]["eval_top1"]) == pytest.approx(val["acc1"])
    train = read_jsonl(out / "train_log.jsonl")
    assert float(rows[0]["train_loss"]) == pytest.approx(sum(r["loss"] for r in train) / len(train))

    # resume for a second epoch: one more row, the event files continue
    assert pss_train("--output", out, "--resume", "--set", "epochs=2") == 0
    rows = read_csv(out / "summary.csv")
    assert [r["epoch"] for r in rows] == ["0", "1"]
    scalars = read_scalars(out / "tensorboard")
    steps = [s for s, _ in scalars["train/loss"]]
    assert steps == list(range(8))  # 4 steps per epoch, 2 epochs, none doubled
    assert {"train/loss", "train/lr", "train/keep_ratio", "val/acc1", "val/loss"} <= set(scalars)
    keep = dict(scalars["train/keep_ratio"])
    assert keep == {r["step"]: pytest.approx(r["keep_ratio"]) for r in read_jsonl(out / "train_log.jsonl")}
    assert min(keep.values()) < 1.0  # the cyclic schedule is visible


def test_wandb_offline_gets_the_same_scalars(tmp_path, monkeypatch):
    calls: list = []

    class Run:
        id = "abc123"

        def log(self, data, step):
            calls.append(("log", step, data))

        def finish(self):
            calls.append(("finish",))

    def init(**kw):
        calls.append(("init", kw))
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    recipe = write_recipe(tmp_path, epochs=1, logging={"wandb": True, "wandb_mode": "offline", "csv": False})
    out = tmp_path / "run"
    assert pss_train("--config", recipe, "--output", out) == 0
    init_kw = calls[0][1]
    assert init_kw["mode"] == "offline" and init_kw["project"] == "pss" and init_kw["config"]["epochs"] == 1
    logged = [c for c in calls if c[0] == "log"]
    assert {"train/loss", "train/lr", "train/keep_ratio"} <= set(logged[0][2])
    assert any("val/acc1" in c[2] for c in logged)
    assert calls[-1] == ("finish",)
    assert (out / "wandb_run_id.txt").read_text().strip() == "abc123"
    assert not (out / "summary.csv").exists()


def test_wandb_missing_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
    recipe = write_recipe(tmp_path, epochs=1, logging={"wandb": True})
    assert pss_train("--config", recipe, "--output", tmp_path / "run") == 2
    assert 'pip install wandb (in a clone of pss: pip install -e ".[wandb]")' in capsys.readouterr().err


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path, caplog):
    recipe = write_recipe(tmp_path, epochs=1)
    with caplog.at_level(logging.INFO, logger="pss.train"):
        # no --quiet: under pytest stderr is not a terminal, so lines replace the bar
        from pss.cli import main

        assert main(["train", "--config", str(recipe), "--output", str(tmp_path / "run")]) == 0
    lines = [r.getMessage() for r in caplog.records if "img/s" in r.getMessage() and "keep_ratio" in r.getMessage()]
    assert len(lines) == 2  # log_interval 3 over 4 steps: flushes at steps 3 and 4
    assert lines[0].startswith("epoch 1/1  step 3/4  loss ")
