"""Checkpoints: atomic writes (even under SIGKILL), weights-only loading, RNG state, weight conversion."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3

import pss
from pss.checkpoint import (
    atomic_save,
    export_safetensors,
    load_checkpoint,
    remove_stale_temp_files,
    restore_training_state,
    training_checkpoint,
)
from pss.rng import get_rng_state, set_rng_state
from pss.config import config_to_dict, load_config
from pss.errors import CheckpointError
from pss.models.convert import convert_state_dict, load_init_weights
from pss.models.hub import load_model

TINY = dict(depth=2, embed_dim=32, num_heads=2)


def tiny(num_classes=10, img_size=32, **kw):
    return pss.build_model("pss_vit_tiny_patch4_32", num_classes=num_classes, img_size=img_size, **{**TINY, **kw})


def same_weights(a: dict, b: dict, keys=None) -> bool:
    keys = keys if keys is not None else a.keys()
    return all(torch.equal(a[k], b[k]) for k in keys)


# ----------------------------------------------------------------------------- atomic writes


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "checkpoint-last.pt"
    atomic_save({"step": 1}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"step": 2, "x": Boom()}, path)
    assert load_checkpoint(path) == {"step": 1}
    assert list(tmp_path.iterdir()) == [path]  # no temp file left


@pytest.mark.slow  # a killed subprocess
def test_sigkill_while_saving_leaves_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "checkpoint-last.pt"
    atomic_save({"step": torch.tensor(1)}, path)
    # A process that is killed half-way through writing the next checkpoint.
    code = (
        "import time, sys; from pss.checkpoint import atomic_write\n"
        "def slow(f):\n"
        "    f.write(b'PK' + b'x' * 100000); f.flush(); time.sleep(60)\n"
        f"atomic_write({str(path)!r}, slow)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 60
        while not list(tmp_path.glob(".*.tmp")):
            assert time.time() < deadline and proc.poll() is None, "the writer never started"
            time.sleep(0.02)
        time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert load_checkpoint(path)["step"].item() == 1
    remove_stale_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-last.pt"]


# ----------------------------------------------------------------------------- weights-only state


def _training_objects(scaler_enabled: bool = True):
    torch.manual_seed(0)
    model = tiny()
    opt = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    sched, _ = create_scheduler_v2(opt, sched="cosine", num_epochs=3, warmup_epochs=1, step_on_epochs=False, updates_per_epoch=4)
    scaler = torch.amp.GradScaler("cpu", enabled=scaler_enabled)
    ema = ModelEmaV3(model, decay=0.9)
    return model, opt, sched, scaler, ema


def _one_step(model, opt, sched, scaler, ema, step):
    x = torch.randn(4, 3, 32, 32)
    loss = model(x).logsumexp(1).mean()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    opt.zero_grad()
    sched.step_update(step + 1)
    ema.update(model, step=step + 1)


def test_training_checkpoint_is_weights_only_and_restores_everything(tmp_path):
    objs = _training_objects()
    for s in range(3):
        _one_step(*objs, s)
    model, opt, sched, scaler, ema = objs
    cfg = config_to_dict(load_config(None, ["model.num_classes=10"]))
    ckpt = training_checkpoint(
        model=model, optimizer=opt, lr_scheduler=sched, scaler=scaler, ema=ema.module, rng=[get_rng_state()],
        progress={"step": 3, "steps_per_epoch": 4}, config=cfg, class_names=["a", "b"],
    )
    atomic_save(ckpt, tmp_path / "c.pt")
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)  # no pickled code needed
    assert loaded["progress"]["step"] == 3 and loaded["config"] == cfg

    fresh = _training_objects()
    restore_training_state(loaded, model=fresh[0], optimizer=fresh[1], lr_scheduler=fresh[2], scaler=fresh[3], ema=fresh[4].module)
    assert same_weights(model.state_dict(), fresh[0].state_dict())
    assert same_weights(ema.module.state_dict(), fresh[4].module.state_dict())
    assert fresh[1].param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert fresh[2].state_dict() == sched.state_dict() and fresh[3].get_scale() == scaler.get_scale()
    # ... and training continues identically from both.
    torch.manual_seed(1)
    _one_step(*objs, 3)
    torch.manual_seed(1)
    _one_step(*fresh, 3)
    assert same_weights(model.state_dict(), fresh[0].state_dict())


def test_rng_state_round_trip():
    state = get_rng_state()
    a = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2] and a[3] == b[3]


class Evil:
    """Stands for any pickled Python object (which could run code when unpickled)."""


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"model": {}, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="pickled"):
        load_checkpoint(tmp_path / "evil.pt")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    atomic_save({"w": torch.zeros(1000)}, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_init_weights(tiny(), tmp_path / "bad.safetensors")


# ----------------------------------------------------------------------------- foreign weights


def test_init_from_our_checkpoint_and_wrappers(tmp_path):
    src = tiny()
    sd = src.state_dict()
    atomic_save(training_checkpoint(model=src, progress={}, config={}), tmp_path / "ours.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "ddp.pth")
    for f in ("ours.pt", "ddp.pth"):
        dst = tiny()
        report = load_init_weights(dst, tmp_path / f)
        assert same_weights(sd, dst.state_dict()) and not report.new


def test_init_from_timm_state_dict_new_head_and_resized_pos_embed(tmp_path):
    # A timm ViT trained at 16 px (4 x 4 grid) with 1000 classes -> our learned-pos model at 32 px, 10 classes.
    src = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, num_classes=1000, **TINY)
    sd = src.state_dict()
    save_file(sd, str(tmp_path / "timm.safetensors"))
    dst = tiny(pos_embed="learned")
    report = load_init_weights(dst, tmp_path / "timm.safetensors")
    own = dst.state_dict()
    assert "pos_embed" in report.resized and own["pos_embed"].shape == (1, 65, 32)
    assert torch.equal(own["pos_embed"][:, 0], sd["pos_embed"][:, 0])  # class-token position kept
    assert any(d.startswith("head.weight") for d in report.dropped) and set(report.new) == {"head.weight", "head.bias"}
    assert same_weights(sd, own, [k for k in sd if k.startswith(("blocks.", "patch_embed.", "cls_token", "norm."))])


def _beit_style_encoder(model, shared_rpb=False):
    """A SimMIM / BEiT-style checkpoint of `model`'s encoder, in their key names."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("head."):
            continue
        if k.endswith("attn.qkv.bias"):
            d = v.shape[0] // 3
            sd[k.replace("qkv.bias", "q_bias")] = v[:d]
            sd[k.replace("qkv.bias", "v_bias")] = v[2 * d :]
        elif ".ls1.gamma" in k or ".ls2.gamma" in k:
            sd[k.replace(".ls1.gamma", ".gamma_1").replace(".ls2.gamma", ".gamma_2")] = v
        elif k.endswith("relative_position_bias_table") and shared_rpb:
            sd["rel_pos_bias.relative_position_bias_table"] = v
        else:
            sd[k] = v
    return sd


def test_init_from_simmim_checkpoint(tmp_path):
    src = tiny(init_values=0.1, global_pool="avg")
    with torch.no_grad():  # k's bias must be zero (BEiT has none), everything else random
        for b in src.blocks:
            b.attn.qkv.bias.normal_()
            b.attn.qkv.bias[32:64] = 0
            b.attn.relative_position_bias_table.normal_()
    enc = _beit_style_encoder(src)
    ckpt = {"model": {**{f"encoder.{k}": v for k, v in enc.items()}, "encoder.mask_token": torch.zeros(1, 1, 32),
                      "decoder.0.weight": torch.zeros(48, 32, 1, 1), "decoder.0.bias": torch.zeros(48)}}
    torch.save(ckpt, tmp_path / "simmim.pth")
    dst = tiny(init_values=0.1, global_pool="avg")
    report = load_init_weights(dst, tmp_path / "simmim.pth")
    own = dst.state_dict()
    body = [k for k in own if not k.startswith(("head.", "fc_norm."))]
    assert same_weights(src.state_dict(), own, body)
    assert {"mask_token", "decoder.0.weight"} <= set(report.dropped)
    assert any("q_bias/v_bias" in r for r in report.renamed) and any("gamma_1" in r for r in report.renamed)


def test_init_from_beit_shared_rel_bias_with_resize(tmp_path):
    src = tiny(img_size=16)  # 4 x 4 grid: (2*4-1)^2 + 3 = 52 rows
    enc = _beit_style_encoder(src, shared_rpb=True)
    torch.save(enc, tmp_path / "beit.pth")
    dst = tiny()  # 8 x 8 grid: 15^2 + 3 = 228 rows
    report = load_init_weights(dst, tmp_path / "beit.pth")
    assert dst.blocks[1].attn.relative_position_bias_table.shape == (228, 2)
    assert any("relative_position_bias_table" in r for r in report.resized)
    assert any(r.startswith("rel_pos_bias") for r in report.renamed)


def test_init_from_mae_checkpoint_with_avg_pool(tmp_path):
    src = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, num_classes=0, **TINY)
    sd = {**src.state_dict(), "mask_token": torch.zeros(1, 1, 32), "decoder_embed.weight": torch.zeros(16, 32),
          "decoder_pos_embed": torch.zeros(1, 65, 16), "decoder_blocks.0.norm1.weight": torch.ones(16),
          "decoder_pred.weight": torch.zeros(48, 16)}
    torch.save({"model": sd}, tmp_path / "mae.pth")
    dst = tiny(pos_embed="learned", global_pool="avg")
    report = load_init_weights(dst, tmp_path / "mae.pth")
    assert "norm.weight" in report.dropped and "decoder_embed.weight" in report.dropped
    assert set(report.new) >= {"fc_norm.weight", "head.weight"}


def test_init_that_does_not_fit_names_keys_and_shapes(tmp_path):
    torch.save(tiny(embed_dim=64).state_dict(), tmp_path / "wide.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatch .*patch_embed.proj.weight: checkpoint \(64, 3, 4, 4\) vs model \(32, 3, 4, 4\)"):
        load_init_weights(tiny(), tmp_path / "wide.pth")
    torch.save(tiny(pos_embed="learned").state_dict(), tmp_path / "abs.pth")
    with pytest.raises(CheckpointError, match="pos_embed=learned"):
        load_init_weights(tiny(pos_embed="rel_bias"), tmp_path / "abs.pth")
    torch.save({"step": 3, "note": "x"}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="no weight tensors"):
        load_init_weights(tiny(), tmp_path / "empty.pth")


def test_convert_is_a_noop_on_own_state_dict():
    m = tiny()
    out, report = convert_state_dict(m.state_dict(), m)
    assert same_weights(m.state_dict(), out) and not (report.dropped or report.renamed or report.resized or report.new)


# ----------------------------------------------------------------------------- rebuilding models


def test_load_model_from_checkpoint_and_run_folder(tmp_path):
    cfg = config_to_dict(load_config(None, ["model.num_classes=10", "model.img_size=32", f"model.kwargs={TINY}"]))
    torch.manual_seed(0)
    m = pss.build_model("pss_vit_tiny_patch4_32", num_classes=10, img_size=32, **TINY)
    atomic_save(training_checkpoint(model=m, progress={}, config=cfg), tmp_path / "checkpoint-best.pt")
    export_safetensors(m.state_dict(), tmp_path / "model.safetensors", metadata={"pss_config": cfg})
    x = torch.randn(2, 3, 32, 32)
    ref = m.eval()(x)
    for path in (tmp_path / "checkpoint-best.pt", tmp_path, tmp_path / "model.safetensors"):
        model, config = load_model(path)
        assert config["model"]["num_classes"] == 10
        torch.testing.assert_close(model(x), ref)


def test_atomic_writes_follow_the_umask(tmp_path):
    """Checkpoints and summary.json get what a plain open() gives (logs do), not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        atomic_save({"step": 1}, tmp_path / "checkpoint-last.pt")
        (tmp_path / "train_log.jsonl").write_text("{}\n")
        assert (tmp_path / "checkpoint-last.pt").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "train_log.jsonl").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic_save({"step": 2}, tmp_path / "checkpoint-last.pt")
        assert (tmp_path / "checkpoint-last.pt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_random_bytes_are_refused_as_checkpoints(tmp_path):
    """Garbage read as a legacy pickle trips the weights-only unpickler in many ways (IndexError on an
    empty stack, KeyError, ...): every one is a one-line CheckpointError, never a traceback."""
    import random

    from pss.checkpoint import load_checkpoint
    from pss.errors import CheckpointError

    rng = random.Random(0)
    for _ in range(300):
        path = tmp_path / "junk.pt"
        path.write_bytes(rng.randbytes(rng.choice([1, 7, 64, 4096])))
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
