"""Hostile round three: every size and count is bounded where it is read (pss.bounds), checkpoints are checked
for the shape pss writes, and each case below once gave a traceback. Each is one line naming the problem,
before any work; all in-process and fast (no training)."""
from __future__ import annotations

import pytest
import torch

from pss.analysis.evaldata import match_classes
from pss.bounds import MAX_IMG_SIZE, check_count, check_epochs, check_img_size
from pss.checkpoint import FORMAT
from pss.cli import main
from pss.config import DataConfig, load_config
from pss.errors import ConfigError

TINY = ["--set", "data.builtin_num_train=20", "--set", "data.builtin_num_val=10", "--set", "batch_size=4",
        "--set", "model.kwargs={depth: 1, embed_dim: 32, num_heads: 2}", "--set", "epochs=1"]


def test_the_bounds_by_value():
    assert check_count("n", 3) == 3 and check_count("n", 4.0) == 4 and check_count("n", 0, low=0) == 0
    for bad in (0, -5, 2.5, float("inf"), float("nan"), True, "3", None):
        with pytest.raises(ConfigError, match=r"^n must be an integer >= 1"):
            check_count("n", bad)
    assert check_epochs("e", 2.5) == 2.5
    for bad in (0, -1, float("inf"), float("nan"), 1e7, "x"):
        with pytest.raises(ConfigError, match=r"^e must be a number of epochs > 0 and at most 1000000"):
            check_epochs("e", bad)
    assert check_img_size("s", 224) == 224 and check_img_size("s", MAX_IMG_SIZE) == MAX_IMG_SIZE
    with pytest.raises(ConfigError, match=r"s 100000 px is beyond .* one such image alone is 120 GB"):
        check_img_size("s", 100000)
    with pytest.raises(ConfigError, match=r"s must be an integer from 1 to 4096 \(pixels a side\), got 0"):
        check_img_size("s", 0)


@pytest.mark.parametrize("argv, message", [
    # before: OverflowError (cannot convert float infinity to integer)
    (["schedule", "cyclic", "--low", "0.2", "--high", "1.0", "--epochs", "inf", "--steps-per-epoch", "10"],
     "--epochs must be a number of epochs > 0 and at most 1000000, got inf"),
    (["schedule", "fixed", "--budget", "0.6", "--model", "pss_vit_tiny_patch4_32", "--epochs", "inf",
      "--steps-per-epoch", "10"], "--epochs must be a number of epochs > 0"),
    (["viz", "schedule", "cyclic:low=0.2,high=1.0", "--epochs", "inf", "-o", "x.png"], "--epochs must be a number"),
    (["schedule", "cyclic", "--epochs", "3", "--steps-per-epoch", "1e12"], "--steps-per-epoch must be an integer from 1"),
    # before: an allocator error of terabytes, and a conv error
    (["bench", "speed", "--model", "pss_vit_tiny_patch4_32", "--img-size", "100000"], "--img-size 100000 px is beyond"),
    (["bench", "speed", "--model", "pss_vit_tiny_patch4_32", "--img-size", "0"], "from 1 to 4096 (pixels a side), got 0"),
    # before: "number of steps must be non-negative", "stack expects a non-empty TensorList"
    (["sweep", "run", "--max-images", "-5", "-o", "out"], "--max-images must be an integer >= 1, got -5"),
    (["viz", "patches", "c.pt", "--images", "x.png", "--max-images", "0", "-o", "p.png"],
     "--max-images must be an integer >= 1, got 0"),
    (["sweep", "run", "--batch-size", "0", "-o", "out"], "--batch-size must be an integer >= 1, got 0"),
])
def test_absurd_flags_are_one_line(argv, message, capsys):
    assert message in _refused(argv, capsys)


def _refused(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pss ") and "Traceback" not in err, err
    return err


def test_absurd_sizes_in_a_recipe_are_refused_before_the_work(tmp_path, capsys):
    out = ["--output", str(tmp_path / "run")]
    err = _refused(["train", "--config", "demo", *TINY, "--set", "data.img_size=100000", *out], capsys)
    assert "data.img_size 100000 px is beyond what pss trains" in err
    assert "epochs must be an integer from 1 to 1000000" in _refused(
        ["train", "--config", "demo", *TINY, "--set", "epochs=10000000", *out], capsys)
    assert "model.img_size 5000 px is beyond" in _refused(
        ["train", "--config", "demo", *TINY, "--set", "model.img_size=5000", *out], capsys)
    assert not (tmp_path / "run").exists()


def test_a_bad_budget_cost_is_refused_with_or_without_a_budget(tmp_path, capsys):
    # before: silently unused without a budget (and a ValueError from a file that is no speed report)
    for budget in ("0.6", "null"):
        err = _refused(["train", "--config", "demo", *TINY, "--set", "budget_cost=fast", "--set", f"budget={budget}",
                        "--output", str(tmp_path / "run")], capsys)
        assert "budget_cost 'fast' is no cost model: use flops, measured, measured:SPEED.json,DATA.json" in err
    err = _refused(["train", "--config", "demo", *TINY, "--set", f"budget_cost={tmp_path / 'none.json'}",
                    "--output", str(tmp_path / "run")], capsys)
    assert f"budget_cost file '{tmp_path / 'none.json'}' not found" in err
    bad = tmp_path / "speed.json"
    bad.write_text('{"results": [{"keep_ratio": "fast", "relative_time": 1}]}')
    err = _refused(["train", "--config", "demo", *TINY, "--set", f"budget_cost={bad}", "--output", str(tmp_path / "r")],
                   capsys)
    assert "is not a pss bench speed report" in err


def test_empty_data_values(tmp_path, capsys):
    # an empty --data (an unset shell variable) is refused rather than read as "the built-in set"
    err = _refused(["train", "--config", "demo", *TINY, "--data", "", "--output", str(tmp_path / "run")], capsys)
    assert "--data is empty (an unset variable?)" in err
    # an empty optional text setting is null, as an empty data.path is
    cfg = DataConfig(cache_dir="", hf_image_column=" ", hf_label_column="", auto_augment="")
    assert (cfg.cache_dir, cfg.hf_image_column, cfg.hf_label_column, cfg.auto_augment) == (None, None, None, None)
    with pytest.raises(ConfigError, match="data.train_split must be a folder name"):
        load_config(None, ["data.train_split=''"])


def _checkpoint(path, **changes):
    ckpt = {"format": FORMAT, "version": 1, "model": {}, "optimizer": {"state": {}}, "progress": {"step": 4},
            "config": {"model": {"name": "pss_vit_tiny_patch4_32", "num_classes": 2}}, **changes}
    torch.save({k: v for k, v in ckpt.items() if v is not None}, path)
    return str(path)


def test_checkpoints_of_an_unexpected_shape(tmp_path, capsys):
    # before: KeyError 'config'
    no_config = _checkpoint(tmp_path / "a.pt", config=None)
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    for argv in (["sweep", no_config, "-o", str(tmp_path / "s")],
                 ["viz", "patches", no_config, "--images", str(tmp_path), "-o", str(tmp_path / "p.png")]):
        assert "has no 'config' (a dict)" in _refused(argv, capsys)
    # a config that asks for a huge image: refused as a recipe would be, naming the checkpoint
    huge = _checkpoint(tmp_path / "b.pt", config={"data": {"img_size": 100000}, "model": {"num_classes": 2}})
    err = _refused(["sweep", huge, "-o", str(tmp_path / "s")], capsys)
    assert f"the config recorded in '{huge}' is refused: data.img_size 100000 px is beyond" in err
    # before: "expected non-negative integer" from numpy's seeding, after the data was read
    negative = _checkpoint(tmp_path / "c.pt", progress={"step": -3})
    err = _refused(["train", "--config", "demo", *TINY, "--resume", negative, "--output", str(tmp_path / "r")], capsys)
    assert "progress.step is -3, not a step count" in err
    best = _checkpoint(tmp_path / "d.pt", optimizer=None)
    err = _refused(["train", "--config", "demo", *TINY, "--resume", best, "--output", str(tmp_path / "r")], capsys)
    assert "is not a resumable pss checkpoint (no optimizer state)" in err


def test_classes_as_is_checks_the_label_range_first():
    # before: IndexError "Target 3 is out of bounds" in the middle of the sweep
    with pytest.raises(ConfigError, match=r"the data has 12 classes \(labels 0-11\) but ck has 10 outputs"):
        match_classes(None, 10, [f"c{i}" for i in range(12)], "as-is", label="ck")
    assert match_classes(["a", "b", "c"], 3, ["x", "y"], "as-is") is None  # fewer classes: taken as they are


def test_loader_workers_are_capped_at_the_cpu_cores(monkeypatch, caplog):
    """8 default workers on a 1-core machine were started as asked."""
    import logging
    import os

    from pss.data import build_loader
    from pss.data.datasets import usable_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    with caplog.at_level(logging.WARNING, logger="pss.data"):
        assert usable_workers(8) == 1 and usable_workers(1) == 1 and usable_workers(0) == 0
    assert caplog.text.count("data.num_workers 8 capped at 1") == 1
    loader = build_loader(torch.utils.data.TensorDataset(torch.zeros(8, 3, 4, 4), torch.zeros(8, dtype=torch.long)),
                          2, True, DataConfig(num_workers=8))
    assert loader.loader.num_workers == 1
