"""`pss train` end to end on CPU: from scratch, DeiT-style options, fine-tuning, non-finite loss.

Every run is tiny (2 blocks of width 32, 64 built-in images, a few steps) so the file runs in well
under a minute on two cores.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from pss.checkpoint import load_checkpoint
from pss.config import load_config
from pss.models.hub import load_model
from pss.schedule import from_dict

from conftest import SUMMARY_KEYS, TINY_RECIPE, TRAIN_KEYS, VAL_KEYS, pss_train, read_jsonl, write_recipe


@pytest.fixture(scope="module")
def scratch_run(tmp_path_factory) -> Path:
    """One from-scratch run shared by the tests below (4 steps per epoch, 2 epochs)."""
    tmp = tmp_path_factory.mktemp("scratch")
    assert pss_train("--config", write_recipe(tmp), "--output", tmp / "run") == 0
    return tmp / "run"


def test_from_scratch_run_folder(scratch_run):
    run = scratch_run
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "train_log.jsonl", "val_log.jsonl", "summary.json", "checkpoint-last.pt",
            "checkpoint-best.pt", "model.safetensors", ".pss.lock", "summary.csv"} == names

    train_log = read_jsonl(run / "train_log.jsonl")
    assert [r["step"] for r in train_log] == list(range(8)) and [r["epoch"] for r in train_log] == [0] * 4 + [1] * 4
    assert all(TRAIN_KEYS <= r.keys() for r in train_log)
    # The keep ratio of every step is the schedule's, and so is the token count (64 patches + CLS).
    sched = from_dict(TINY_RECIPE["schedule"])
    assert [r["keep_ratio"] for r in train_log] == [sched(s, 4, 8) for s in range(8)] == [0.2, 0.6, 1.0, 0.6] * 2
    assert [r["num_tokens"] for r in train_log] == [14, 39, 65, 39] * 2
    assert train_log[0]["lr"] < train_log[3]["lr"]  # warm-up, stepped every iteration
    assert all(r["loss"] > 0 for r in train_log)

    val_log = read_jsonl(run / "val_log.jsonl")
    assert [(r["epoch"], r["step"]) for r in val_log] == [(0, 4), (1, 8)] and all(VAL_KEYS <= r.keys() for r in val_log)

    summary = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["steps"] == 8 and summary["epochs"] == 2
    assert summary["mean_keep_ratio"] == pytest.approx(0.6)
    assert summary["best_acc1"] == max(r["acc1"] for r in val_log) and summary["final_acc1"] == val_log[-1]["acc1"]
    assert summary["images_per_s"] > 0 and 0 <= summary["data_wait_fraction"] < 1

    # The resolved config: numbers taken from the data are filled in; it loads and validates.
    cfg = load_config(run / "config.yaml")
    assert cfg.model.num_classes == 10 and cfg.model.img_size == 32 and cfg.output_dir == str(run)

    # Checkpoints load weights-only; load_model rebuilds the best model from the run folder.
    last = load_checkpoint(run / "checkpoint-last.pt")
    assert last["progress"]["step"] == 8 and last["optimizer"] is not None and len(last["rng"]) == 1
    best = load_checkpoint(run / "checkpoint-best.pt")
    model, config = load_model(run)
    assert config["model"]["num_classes"] == 10
    for k, v in model.state_dict().items():
        assert torch.equal(v, best["model"][k])


def test_refuses_to_overwrite_a_run(scratch_run, capsys):
    before = (scratch_run / "train_log.jsonl").read_text()
    assert pss_train("--config", scratch_run / "config.yaml", "--output", scratch_run) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (scratch_run / "train_log.jsonl").read_text() == before


def test_deit_style_options(tmp_path):
    """Mixup/CutMix + label smoothing + drop path + EMA + gradient accumulation + clipping + fixed rho."""
    recipe = write_recipe(
        tmp_path, mixup={"mixup_alpha": 0.8, "cutmix_alpha": 1.0}, label_smoothing=0.1, ema={"enabled": True, "decay": 0.9},
        schedule={"name": "fixed", "rho": 0.5}, accum_steps=2, epochs=1, select="random",
        optim={"lr": 1e-3, "clip_grad": 1.0},
    )
    assert pss_train("--config", recipe, "--output", tmp_path / "run", "--set", "model.drop_path_rate=0.1",
                     "--set", "data.re_prob=0.5") == 0
    log = read_jsonl(tmp_path / "run" / "train_log.jsonl")
    assert len(log) == 4 and {r["keep_ratio"] for r in log} == {0.5} and all(r["grad_norm"] > 0 for r in log)
    val = read_jsonl(tmp_path / "run" / "val_log.jsonl")[0]
    assert {"ema_acc1", "ema_loss"} <= val.keys()
    assert load_checkpoint(tmp_path / "run" / "checkpoint-last.pt")["ema"] is not None


def test_finetune_from_checkpoint(scratch_run, tmp_path):
    """--init from a saved run into a model with another number of classes and layer-wise LR decay:
    at a negligible LR the body ends where the checkpoint was; the head is new."""
    recipe = write_recipe(tmp_path, optim={"lr": 1e-12, "layer_decay": 0.65, "weight_decay": 0.0}, epochs=1,
                          schedule={"name": "fixed", "rho": 0.6}, lr_sched={"warmup_epochs": 0, "min_lr": 0})
    assert pss_train("--config", recipe, "--output", tmp_path / "ft", "--init", scratch_run / "checkpoint-best.pt",
                     "--set", "data.builtin_num_classes=4") == 0
    src = load_checkpoint(scratch_run / "checkpoint-best.pt")["model"]
    ft_ckpt = load_checkpoint(tmp_path / "ft" / "checkpoint-last.pt")
    ft = ft_ckpt["model"]
    # Layer-wise LR decay: one scale per depth (stem, 2 blocks, head), 0.65 apart.
    scales = sorted({g["lr_scale"] for g in ft_ckpt["optimizer"]["param_groups"]})
    assert scales == pytest.approx([0.65**3, 0.65**2, 0.65, 1.0])
    assert ft["head.weight"].shape == (4, 32)
    for k, v in ft.items():
        if not k.startswith("head."):
            torch.testing.assert_close(v, src[k], rtol=0, atol=1e-6)
    assert yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())["init"] == str(scratch_run / "checkpoint-best.pt")


def test_non_finite_loss_stops_with_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from pss.tasks import classification

    real = classification.ClassificationTask.loss
    calls = {"n": 0}

    def loss_then_nan(self, model, batch):
        calls["n"] += 1
        loss, m = real(self, model, batch)
        return (loss * float("nan") if calls["n"] > 6 else loss), m  # steps 0-5 fine, step 6 diverges

    monkeypatch.setattr(classification.ClassificationTask, "loss", loss_then_nan)
    recipe = write_recipe(tmp_path, log_interval=1)
    assert pss_train("--config", recipe, "--output", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "loss is nan at step 6" in err and "checkpoint-last.pt" in err
    # The epoch-0 checkpoint (step 4) is the last good one; no NaN weights were ever saved.
    last = load_checkpoint(tmp_path / "run" / "checkpoint-last.pt")
    assert last["progress"]["step"] == 4
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert read_jsonl(tmp_path / "run" / "train_log.jsonl")[-1]["step"] == 6


@pytest.mark.parametrize("name", ["deit_tiny_patch16_224", "vit_base_patch16_rope_reg1_gap_256"])
def test_train_attached_timm_model(tmp_path, name):
    """A timm ViT / rotary EVA-style ViT by name: attached, trained on the schedule, rebuilt by load_model."""
    import pss

    recipe = write_recipe(tmp_path, model={"name": name, "kwargs": {
        "patch_size": 4, "depth": 2, "embed_dim": 32, "num_heads": 2}})
    assert pss_train("--config", recipe, "--output", tmp_path / "run") == 0
    log = read_jsonl(tmp_path / "run" / "train_log.jsonl")
    assert [r["keep_ratio"] for r in log] == [0.2, 0.6, 1.0, 0.6] * 2  # the cyclic schedule, 4 steps per epoch
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    model, config = load_model(tmp_path / "run")
    assert config["model"]["name"] == name and pss.samplers(model)
    # prefix tokens (deit: CLS; the rope ViT: one register, no CLS) + round(rho * 64) patches
    assert model.num_prefix_tokens == 1
    assert [r["num_tokens"] for r in log] == [model.num_prefix_tokens + k for k in (13, 38, 64, 38)] * 2
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), pss.use_keep_ratio(model, 0.5):
        assert model(x).shape == (2, 10)


def test_torch_compile_follows_the_schedule_like_eager(tmp_path):
    """compile: true through changing keep ratios (one graph per sequence length on the 0.2 grid):
    the same keep ratios and, to float tolerance, the same losses as the eager run (a deterministic rule: a
    compiled graph draws a random selection from its own generator)."""
    recipe = write_recipe(tmp_path, epochs=1, select="magnitude", model={
        "name": "pss_vit_tiny_patch4_32", "kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2}})
    assert pss_train("--config", recipe, "--output", tmp_path / "eager") == 0
    assert pss_train("--config", recipe, "--output", tmp_path / "compiled", "--set", "compile=true") == 0
    eager = read_jsonl(tmp_path / "eager" / "train_log.jsonl")
    compiled = read_jsonl(tmp_path / "compiled" / "train_log.jsonl")
    assert [r["keep_ratio"] for r in compiled] == [r["keep_ratio"] for r in eager] == [0.2, 0.6, 1.0, 0.6]
    assert [r["loss"] for r in compiled] == pytest.approx([r["loss"] for r in eager], rel=1e-4)
    assert yaml.safe_load((tmp_path / "compiled" / "config.yaml").read_text())["compile"] is True
