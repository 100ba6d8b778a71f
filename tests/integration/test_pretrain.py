"""`pss pretrain` (SimMIM) end to end on CPU, the hand-over to `pss train --init`, resume, the
benchmark's pipeline, and the mapping of publicly released SimMIM / MAE / BEiT checkpoint formats.

Masking statistics and the SimMIM loss formula are tested in test_simmim.py. Every run here is tiny
(2 blocks of width 32, built-in data in memory, a few dozen steps).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import pss
from pss.checkpoint import load_checkpoint
from pss.cli import main
from pss.errors import CheckpointError
from pss.models.convert import load_init_weights
from pss.models.hub import load_model
from pss.runtime import unwrap_model
from conftest import ROOT

TINY = dict(depth=2, embed_dim=32, num_heads=2)

# Built-in data: 128 train images, batch 16 -> 8 steps per epoch; 5 epochs = 40 steps.
PRETRAIN_RECIPE = {
    "model": {"name": "pss_vit_tiny_patch4_32", "kwargs": {**TINY, "init_values": 0.1}},
    "mim": {"mask_ratio": 0.6, "mask_patch_size": 8, "num_recon_images": 4},
    "data": {"path": None, "builtin_num_train": 128, "builtin_num_val": 32, "in_memory": True, "num_workers": 0},
    "optim": {"lr": 3.0e-3, "weight_decay": 0.0},
    "lr_sched": {"warmup_epochs": 0.5, "min_lr": 1.0e-4},
    "eval": {"interval": 1},
    "epochs": 5,
    "batch_size": 16,
    "log_interval": 8,
    "device": "cpu",
    "deterministic": True,  # bit-identical resume on CPU
}
FINETUNE_RECIPE = {
    "model": {"name": "pss_vit_tiny_patch4_32", "kwargs": {**TINY, "init_values": 0.1, "global_pool": "avg"}},
    "data": {"path": None, "builtin_num_train": 64, "builtin_num_val": 32, "in_memory": True, "num_workers": 0},
    "schedule": {"name": "cyclic", "low": 0.2, "high": 1.0},
    "optim": {"lr": 1.0e-3, "layer_decay": 0.75},
    "lr_sched": {"warmup_epochs": 1},
    "epochs": 1,
    "batch_size": 16,
    "device": "cpu",
}


def write_recipe(path: Path, recipe: dict, **changes) -> Path:
    recipe = json.loads(json.dumps(recipe))
    recipe.update(changes)
    path.write_text(yaml.safe_dump(recipe))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def pss_cli(*args) -> int:
    return main([args[0], "--quiet", *map(str, args[1:])])


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pretrain")
    recipe = write_recipe(tmp / "pre.yaml", PRETRAIN_RECIPE)
    assert pss_cli("pretrain", "--config", recipe, "--output", tmp / "run") == 0
    return tmp / "run"


# ----------------------------------------------------------------------------- pre-training


def test_pretraining_loss_falls_and_run_folder(pretrain_run):
    run = pretrain_run
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "train_log.jsonl", "val_log.jsonl", "summary.json", "checkpoint-last.pt",
            "checkpoint-best.pt", "model.safetensors", "encoder.safetensors", "reconstructions.png"} <= names

    log = read_jsonl(run / "train_log.jsonl")
    assert [r["step"] for r in log] == list(range(40))
    assert all(r["keep_ratio"] == 1.0 and r["num_tokens"] == 65 for r in log)  # every patch + CLS
    losses = [r["loss"] for r in log]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, losses  # the reconstruction loss falls over 40 steps

    val = read_jsonl(run / "val_log.jsonl")
    assert [r["step"] for r in val] == [8, 16, 24, 32, 40]
    # Fixed validation masks, so the values are comparable across epochs: they fall too.
    assert val[-1]["loss"] < 0.95 * val[0]["loss"] and val[-1]["loss"] < 0.6 * first, val

    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_loss"] == val[-1]["loss"] and summary["best_loss"] == min(r["loss"] for r in val)
    assert summary["steps"] == 40 and summary["mean_keep_ratio"] == 1.0
    assert summary["encoder"] == "encoder.safetensors" and summary["reconstructions"] == "reconstructions.png"

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["task"] == "simmim" and cfg["mim"]["mask_patch_size"] == 8
    with pytest.raises(CheckpointError, match="pre-training run .* fine-tune it first"):
        load_model(run)  # analysis tools (sweep, viz) need a classifier: say so

    # The encoder file holds the final SimMIM encoder under the classifier's names, no head.
    enc = load_file(str(run / "encoder.safetensors"))
    final = load_checkpoint(run / "checkpoint-last.pt")["model"]
    assert set(enc) == {k[len("encoder."):] for k in final if k.startswith("encoder.")}
    assert not any(k.startswith("head.") for k in enc)
    for k, v in enc.items():
        assert torch.equal(v, final[f"encoder.{k}"]), k

    # The picture: 4 rows (input, masked, prediction, pasted) x 4 images, a real PNG.
    with Image.open(run / "reconstructions.png") as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300
        import numpy as np

        assert np.asarray(im.convert("L"), dtype=np.float32).std() > 10  # not a blank canvas


def test_encoder_arrives_unchanged_in_the_fine_tuned_model(pretrain_run, tmp_path, monkeypatch):
    """`pss train --init encoder.safetensors`: before the first fine-tuning step, every encoder tensor
    of the classifier equals the pre-trained one; the new parts are the head and fc_norm."""
    from pss import engine

    seen: dict[str, torch.Tensor] = {}
    real_fit = engine.Trainer.fit

    def fit(self):
        seen.update({k: v.detach().clone() for k, v in unwrap_model(self.model).state_dict().items()})
        return real_fit(self)

    monkeypatch.setattr(engine.Trainer, "fit", fit)
    recipe = write_recipe(tmp_path / "ft.yaml", FINETUNE_RECIPE)
    enc_file = pretrain_run / "encoder.safetensors"
    assert pss_cli("train", "--config", recipe, "--output", tmp_path / "ft", "--init", enc_file) == 0

    enc = load_file(str(enc_file))
    # global_pool avg: the encoder's final norm is replaced by a fresh fc_norm after pooling (SimMIM / MAE).
    carried = {k: v for k, v in enc.items() if not k.startswith("norm.")}
    assert len(carried) == len(enc) - 2
    for k, v in carried.items():
        assert torch.equal(seen[k], v), k
    assert set(seen) - set(carried) == {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    # ... and fine-tuning then moves them (the run trained).
    after = load_checkpoint(tmp_path / "ft" / "checkpoint-last.pt")["model"]
    assert not torch.equal(after["blocks.0.attn.qkv.weight"], enc["blocks.0.attn.qkv.weight"])


def test_pretrain_resume_matches_uninterrupted_run(pretrain_run, tmp_path, monkeypatch):
    """Interrupted after 20 of 40 steps (mid-epoch checkpoint at step 20), then `--resume`: the
    same per-step losses and, on CPU, the same encoder bit for bit."""
    from pss.tasks import simmim as simmim_task

    recipe = write_recipe(tmp_path / "pre.yaml", PRETRAIN_RECIPE, checkpoint_interval_steps=10)
    run = tmp_path / "run"
    real_loss = simmim_task.MIMTask.loss
    calls = {"n": 0}

    def loss(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 24:  # step 23: after the step-20 checkpoint, with log lines past it
            raise KeyboardInterrupt
        return real_loss(self, model, batch)

    monkeypatch.setattr(simmim_task.MIMTask, "loss", loss)
    assert pss_cli("pretrain", "--config", recipe, "--output", run) == 130
    assert load_checkpoint(run / "checkpoint-last.pt")["progress"]["step"] == 20
    assert not (run / "encoder.safetensors").exists()
    monkeypatch.setattr(simmim_task.MIMTask, "loss", real_loss)

    assert pss_cli("pretrain", "--output", run, "--resume") == 0
    ref, got = read_jsonl(pretrain_run / "train_log.jsonl"), read_jsonl(run / "train_log.jsonl")
    assert [r["step"] for r in got] == list(range(40))
    assert [(r["loss"], r["lr"]) for r in got] == [(r["loss"], r["lr"]) for r in ref]
    assert [r["loss"] for r in read_jsonl(run / "val_log.jsonl")] == [r["loss"] for r in read_jsonl(pretrain_run / "val_log.jsonl")]
    a, b = load_file(str(pretrain_run / "encoder.safetensors")), load_file(str(run / "encoder.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run / "summary.json").read_text())["resumed"] == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"schedule": {"name": "cyclic", "low": 0.2, "high": 1.0}}, "pre-training runs every patch"),
        ({"mixup": {"mixup_alpha": 0.8}}, "mixup / cutmix"),
        ({"mim": {"mask_patch_size": 6}}, "multiple of the patch size 4"),
        ({"mim": {"mask_patch_size": 32}}, "only 1 mask region"),
        ({"mim": {"mask_ratio": 1.0}}, r"mim.mask_ratio must be in \(0, 1\)"),
        ({"mim": {"mask_size": 8}}, "unknown config key 'mim.mask_size'"),
        ({"model": {"name": "vit_tiny_patch16_224"}}, "pss_vit_"),
        ({"model": {"name": "pss_vit_tiny_patch4_32", "kwargs": {**TINY, "global_pool": "avg"}}}, "global_pool: token"),
        ({"task": "classification"}, "train it with `pss train`"),
    ],
)
def test_bad_pretraining_recipes_fail_before_training(tmp_path, capsys, change, message):
    recipe = write_recipe(tmp_path / "bad.yaml", PRETRAIN_RECIPE, **change)
    assert pss_cli("pretrain", "--config", recipe, "--output", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.startswith("pss pretrain: error:") and __import__("re").search(message, err), err
    assert not (tmp_path / "run" / "train_log.jsonl").exists()


def test_pretrain_help_lists_train_flags(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    out = capsys.readouterr().out
    for flag in ("--config", "--data", "--output", "--set", "--init", "--resume", "--overwrite"):
        assert flag in out


def test_shipped_pretrain_finetune_recipes_load():
    from pss.config import load_config
    from pss.config import PretrainConfig
    from pss.pretrain import resolve_pretrain_config

    pre, _ = resolve_pretrain_config(ROOT / "configs" / "cifar10_pretrain_simmim.yaml")
    assert isinstance(pre, PretrainConfig) and pre.mim.mask_patch_size == 8 and pre.schedule(0, 10, 100) == 1.0
    base = load_config(ROOT / "configs" / "cifar10_finetune_baseline.yaml")
    ps = load_config(ROOT / "configs" / "cifar10_finetune_pss.yaml")
    # The two fine-tuning recipes differ only in the keep-ratio schedule, its selection rule and the
    # compute budget, spent as tokens for epochs (what the budget study measured when fine-tuning).
    from pss.config import config_to_dict, diff_configs

    changed = diff_configs(config_to_dict(base), config_to_dict(ps))
    assert changed and all(k.startswith("schedule.") or k in ("select", "budget", "budget_epochs") for k in changed), changed
    assert ps.schedule.to_dict()["name"] == "fixed" and ps.select == "random" and ps.budget == 0.6
    assert ps.budget_epochs == "auto"
    # Same architecture as pre-trained (so the encoder fits), pooled by average for fine-tuning.
    for k in ("pos_embed", "init_values"):
        assert base.model.kwargs[k] == pre.model.kwargs[k]
    assert base.model.name == pre.model.name and base.model.kwargs["global_pool"] == "avg"
    assert pre.data.path == base.data.path and pre.epochs >= 1
    # The paper-scale pair: SimMIM ViT-B pre-training -> the ViT-B fine-tuning recipes.
    vit_pre = load_config(ROOT / "configs" / "vit_base_simmim_pretrain.yaml")  # task: simmim -> PretrainConfig
    vit_ft = load_config(ROOT / "configs" / "vit_base_finetune_pss.yaml")
    assert isinstance(vit_pre, PretrainConfig) and (vit_pre.mim.mask_ratio, vit_pre.mim.mask_patch_size) == (0.6, 32)
    assert vit_pre.model.name == vit_ft.model.name and vit_pre.peak_lr() == pytest.approx(4e-4)
    for k in ("pos_embed", "init_values"):
        assert vit_pre.model.kwargs[k] == vit_ft.model.kwargs[k]


# ----------------------------------------------------------------------------- benchmark pipeline


def test_benchmark_cpu_smoke(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "pretrain_finetune.py"), "--cpu-smoke", "--workdir", str(tmp_path / "w"),
           "--set-pretrain", "epochs=2", "--set-finetune", "epochs=2"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    [rec_file] = (tmp_path / "w").glob("pretrain_finetune_cpu-smoke_*.json")
    rec = json.loads(rec_file.read_text())
    runs, r = rec["runs"], rec["result"]
    assert rec["mode"] == "cpu-smoke" and rec["torch"] == torch.__version__ and rec["timm"] == timm.__version__
    assert set(runs) == {"pretrain", "ft_baseline", "ft_pss", "scratch"}
    # the recommended fine-tuning recipe spends its budget as 1.5x the epochs (budget_epochs: auto, init set)
    assert {k: runs[k]["epochs"] for k in runs} == {"pretrain": 2, "ft_baseline": 2, "ft_pss": 3, "scratch": 2}
    assert runs["ft_baseline"]["mean_keep_ratio"] == 1.0 and runs["ft_pss"]["mean_keep_ratio"] < 1.0
    assert r["finetune_time_ratio_pss_over_baseline"] == pytest.approx(
        runs["ft_pss"]["train_time_s"] / runs["ft_baseline"]["train_time_s"])
    assert r["finetune_top1_delta_pss_minus_baseline"] == pytest.approx(
        runs["ft_pss"]["final_acc1"] - runs["ft_baseline"]["final_acc1"])
    assert r["pretraining_gain_top1"] == pytest.approx(runs["ft_baseline"]["final_acc1"] - runs["scratch"]["final_acc1"])
    assert rec["paper"]["time_ratio"] == 0.69 and rec["paper"]["top1_delta"] == -0.26
    md = rec_file.with_suffix(".md").read_text()
    assert "PSS / baseline" in md and "0.69x" in md
    # The fine-tuning runs started from the pre-trained encoder; the scratch run did not.
    cfgs = {k: yaml.safe_load((tmp_path / "w" / k / "config.yaml").read_text()) for k in ("ft_pss", "scratch")}
    assert cfgs["ft_pss"]["init"].endswith("pretrain/encoder.safetensors") and cfgs["scratch"]["init"] is None
    assert cfgs["scratch"]["optim"]["layer_decay"] is None

    # Running it again is a no-op that re-reads the finished runs; other settings are refused.
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0 and (again.stdout + again.stderr).count("finished earlier") == 4, again.stdout + again.stderr
    other = subprocess.run(cmd[:-1] + ["epochs=3"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert other.returncode != 0 and "other settings" in other.stderr


def test_benchmark_cpu_reduced_plan_resolves(tmp_path):
    """--cpu-reduced: every stage's recipe + overrides is a valid config of the reduced size."""
    import argparse
    import importlib.util

    from pss.config import PretrainConfig

    spec = importlib.util.spec_from_file_location("pretrain_finetune", ROOT / "benchmarks" / "pretrain_finetune.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(cpu_smoke=False, cpu_reduced=True, data=str(tmp_path / "cifar10"), set_pretrain=[],
                              set_finetune=["epochs=7"])
    args.stages = bench.STAGES
    cfgs = {run.name: run.cfg for run in bench.plan(args, tmp_path)}
    assert list(cfgs) == list(bench.STAGES)
    for cfg in cfgs.values():
        assert cfg.device == "cpu" and cfg.batch_size == 64 and cfg.data.max_train_per_class == 500
        assert cfg.model.name == "pss_vit_tiny_patch4_32" and cfg.model.kwargs["depth"] == 4
        assert cfg.data.path == str(tmp_path / "cifar10")
    assert cfgs["pretrain"].epochs == 20 and isinstance(cfgs["pretrain"], PretrainConfig)
    assert cfgs["ft_pss"].init == str(tmp_path / "pretrain" / "encoder.safetensors") and cfgs["scratch"].init is None
    assert all(cfgs[k].epochs == 7 for k in ("ft_baseline", "scratch"))  # --set-finetune comes last
    assert cfgs["ft_pss"].epochs == 11 and cfgs["ft_pss"].budget_reference["epochs"] == 7  # 1.5x 7, rounded half up
    assert cfgs["ft_pss"].schedule.to_dict()["name"] == "fixed" and cfgs["ft_baseline"].schedule.to_dict()["rho"] == 1.0
    assert not cfgs["ft_pss"].mixup.enabled and cfgs["scratch"].optim.layer_decay is None
    both = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pretrain_finetune.py"), "--cpu-smoke", "--cpu-reduced"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert both.returncode == 2 and "choose one of --cpu-smoke and --cpu-reduced" in both.stderr


# ----------------------------------------------------------------------------- released checkpoint formats
# test_checkpoint.py covers the key renaming; here every mapped tensor's *value* is checked, for
# the layouts of the public releases: SimMIM ViT-B (encoder. prefix, shared relative bias, q/v
# biases, layer scale, decoder), MAE (model wrapper, absolute position embedding at another grid,
# decoder_*), BEiT (shared relative bias at another grid, lm_head).


def _tiny(num_classes=10, img_size=32, **kw):
    return pss.build_model("pss_vit_tiny_patch4_32", num_classes=num_classes, img_size=img_size, **{**TINY, **kw})


def _randomise(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


def test_released_simmim_vit_checkpoint(tmp_path):
    src = _randomise(_tiny(num_classes=0, init_values=0.1))
    sd = src.state_dict()
    shared = torch.randn_like(sd["blocks.0.attn.relative_position_bias_table"])
    enc = {}
    for k, v in sd.items():
        if k.endswith("relative_position_bias_table"):
            continue  # SimMIM ViT-B pre-training: USE_SHARED_RPB
        if k.endswith("attn.qkv.bias"):
            enc[k.replace("qkv.bias", "q_bias")], enc[k.replace("qkv.bias", "v_bias")] = v[:32], v[64:]
        else:
            enc[k.replace(".ls1.gamma", ".gamma_1").replace(".ls2.gamma", ".gamma_2")] = v
    enc["rel_pos_bias.relative_position_bias_table"] = shared
    enc["rel_pos_bias.relative_position_index"] = torch.zeros(65, 65, dtype=torch.long)
    enc["mask_token"] = torch.randn(1, 1, 32)
    ckpt = {"model": {**{f"encoder.{k}": v for k, v in enc.items()},
                      "decoder.0.weight": torch.randn(48, 32, 1, 1), "decoder.0.bias": torch.randn(48)}}
    torch.save(ckpt, tmp_path / "simmim_pretrain__vit.pth")

    dst = _tiny(init_values=0.1, global_pool="avg")
    fresh_head = dst.head.weight.detach().clone()
    report = load_init_weights(dst, tmp_path / "simmim_pretrain__vit.pth")
    own = dst.state_dict()
    for i in range(2):
        b = f"blocks.{i}"
        assert torch.equal(own[f"{b}.attn.relative_position_bias_table"], shared)  # shared -> every layer
        qkv_b = own[f"{b}.attn.qkv.bias"]
        assert torch.equal(qkv_b[:32], sd[f"{b}.attn.qkv.bias"][:32]) and torch.equal(qkv_b[64:], sd[f"{b}.attn.qkv.bias"][64:])
        assert not qkv_b[32:64].any()  # BEiT / SimMIM attention has no key bias
        assert torch.equal(own[f"{b}.ls1.gamma"], sd[f"{b}.ls1.gamma"]) and torch.equal(own[f"{b}.ls2.gamma"], sd[f"{b}.ls2.gamma"])
        for name in ("attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.bias", "norm1.weight", "norm2.bias"):
            assert torch.equal(own[f"{b}.{name}"], sd[f"{b}.{name}"]), name
    for k in ("cls_token", "patch_embed.proj.weight", "patch_embed.proj.bias"):
        assert torch.equal(own[k], sd[k])
    assert torch.equal(own["head.weight"], fresh_head)  # new head, untouched
    assert {"mask_token", "decoder.0.weight", "decoder.0.bias", "norm.weight", "norm.bias"} <= set(report.dropped)
    assert set(report.new) == {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}


def test_released_mae_checkpoint_with_position_resize(tmp_path):
    from timm.layers import resample_abs_pos_embed

    # MAE pre-trained at 16 px (4 x 4 grid), fine-tuned at 32 px (8 x 8): the sin-cos table is resampled.
    src = _randomise(timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, num_classes=0, **TINY))
    sd = src.state_dict()
    mae = {**sd, "mask_token": torch.randn(1, 1, 32), "decoder_embed.weight": torch.randn(16, 32),
           "decoder_embed.bias": torch.randn(16), "decoder_pos_embed": torch.randn(1, 17, 16),
           "decoder_blocks.0.attn.qkv.weight": torch.randn(48, 16), "decoder_norm.weight": torch.randn(16),
           "decoder_pred.weight": torch.randn(48, 16), "decoder_pred.bias": torch.randn(48)}
    torch.save({"model": mae}, tmp_path / "mae_pretrain_vit.pth")
    dst = _tiny(pos_embed="learned", global_pool="avg")
    report = load_init_weights(dst, tmp_path / "mae_pretrain_vit.pth")
    own = dst.state_dict()
    expect = resample_abs_pos_embed(sd["pos_embed"], new_size=[8, 8], old_size=[4, 4], num_prefix_tokens=1)
    assert report.resized == ["pos_embed"] and torch.equal(own["pos_embed"], expect)
    assert torch.equal(own["pos_embed"][:, 0], sd["pos_embed"][:, 0])
    body = [k for k in sd if k.startswith(("blocks.", "patch_embed.", "cls_token"))]
    assert body and all(torch.equal(own[k], sd[k]) for k in body)
    assert {k for k in mae if k.startswith("decoder") or k == "mask_token"} <= set(report.dropped)


def test_released_beit_checkpoint_with_relative_bias_resize(tmp_path):
    from timm.layers import resize_rel_pos_bias_table

    # BEiT pre-trained with a shared relative bias on a 4 x 4 grid (52 rows), fine-tuned on 8 x 8 (228 rows).
    src = _randomise(_tiny(num_classes=0, img_size=16, init_values=0.1))
    sd = src.state_dict()
    shared = torch.randn(52, 2)
    beit = {"cls_token": sd["cls_token"], "mask_token": torch.randn(1, 1, 32), "patch_embed.proj.weight": sd["patch_embed.proj.weight"],
            "patch_embed.proj.bias": sd["patch_embed.proj.bias"], "rel_pos_bias.relative_position_bias_table": shared,
            "norm.weight": sd["norm.weight"], "norm.bias": sd["norm.bias"],
            "lm_head.weight": torch.randn(8192, 32), "lm_head.bias": torch.randn(8192)}
    for i in range(2):
        b = f"blocks.{i}"
        for k in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "attn.qkv.weight", "attn.proj.weight",
                  "attn.proj.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"):
            beit[f"{b}.{k}"] = sd[f"{b}.{k}"]
        beit[f"{b}.attn.q_bias"], beit[f"{b}.attn.v_bias"] = torch.randn(32), torch.randn(32)
        beit[f"{b}.gamma_1"], beit[f"{b}.gamma_2"] = torch.randn(32), torch.randn(32)
        beit[f"{b}.attn.relative_position_index"] = torch.zeros(17, 17, dtype=torch.long)
    torch.save({"model": beit}, tmp_path / "beit_base_patch16_224_pt22k.pth")

    dst = _tiny(init_values=0.1)
    report = load_init_weights(dst, tmp_path / "beit_base_patch16_224_pt22k.pth")
    own = dst.state_dict()
    expect = resize_rel_pos_bias_table(shared, new_window_size=(8, 8), new_bias_shape=(228, 2))
    for i in range(2):
        b = f"blocks.{i}"
        table = own[f"{b}.attn.relative_position_bias_table"]
        assert table.shape == (228, 2) and torch.equal(table, expect)
        assert torch.equal(table[-3:], shared[-3:])  # the CLS rows are carried over, not interpolated
        assert torch.equal(own[f"{b}.attn.qkv.bias"], torch.cat([beit[f"{b}.attn.q_bias"], torch.zeros(32), beit[f"{b}.attn.v_bias"]]))
        assert torch.equal(own[f"{b}.ls1.gamma"], beit[f"{b}.gamma_1"]) and torch.equal(own[f"{b}.ls2.gamma"], beit[f"{b}.gamma_2"])
        assert torch.equal(own[f"{b}.mlp.fc2.weight"], sd[f"{b}.mlp.fc2.weight"])
    # The centre of the resized table (offset 0, 0) keeps the source's value.
    assert torch.allclose(expect[7 * 15 + 7], shared[3 * 7 + 3], atol=1e-5)
    assert {"lm_head.weight", "mask_token"} <= set(report.dropped) and set(report.new) == {"head.weight", "head.bias"}


def test_init_with_another_architecture_names_the_problem(pretrain_run, tmp_path, capsys):
    # Fine-tuning a wider model from the tiny encoder: refused before any step, naming shapes.
    recipe = write_recipe(tmp_path / "ft.yaml", FINETUNE_RECIPE)
    code = pss_cli("train", "--config", recipe, "--output", tmp_path / "ft", "--init", pretrain_run / "encoder.safetensors",
                   "--set", "model.kwargs.embed_dim=64")
    err = capsys.readouterr().err
    assert code == 2 and "shape mismatch" in err and "checkpoint (32, 32) vs model (64, 64)" in err, err
    assert "pre-trained (pss pretrain) as" in err and "'embed_dim': 32" in err  # the architecture to use
    assert not (tmp_path / "ft" / "train_log.jsonl").exists()


# ----------------------------------------------------------------------------- DDP


def test_pretrain_with_two_gloo_processes(tmp_path):
    """torchrun with 2 CPU processes: every parameter of SimMIM gets a gradient (DDP would stop at the
    second step otherwise), one log line per step, rank 0 alone writes the encoder and the picture."""
    import os

    recipe = write_recipe(tmp_path / "pre.yaml", PRETRAIN_RECIPE, epochs=1, log_interval=4, deterministic=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pss", "pretrain", "--quiet", "--config", str(recipe), "--output", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("encoder for fine-tuning") == 1, proc.stderr  # rank 0 only
    log = read_jsonl(tmp_path / "ddp" / "train_log.jsonl")
    assert [r["step"] for r in log] == list(range(8)) and all(r["loss"] > 0 for r in log)
    ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoint-last.pt")
    assert len(ckpt["rng"]) == 2 and not any(k.startswith("module.") for k in ckpt["model"])
    enc = load_file(str(tmp_path / "ddp" / "encoder.safetensors"))
    assert all(torch.equal(v, ckpt["model"][f"encoder.{k}"]) for k, v in enc.items())
    assert (tmp_path / "ddp" / "reconstructions.png").stat().st_size > 1000
