"""Integrations, each for real on CPU: the Lightning callback (TensorBoard logger, checkpoint,
resume) and the Accelerate example script."""
from __future__ import annotations

import runpy
import sys

import pytest
import timm
import torch

import pss
from conftest import ROOT



def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 4, (n,), generator=g))


def test_lightning_callback_logs_checkpoints_and_resumes(tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    pytest.importorskip("tensorboard")
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import TensorBoardLogger

    from pss.integrations.lightning import KeepRatioCallback
    from conftest import read_scalars

    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = pss.attach(timm.create_model(
                "vit_tiny_patch16_224", img_size=32, patch_size=4, depth=1, embed_dim=32, num_heads=2, num_classes=4))
            self.tokens: list[tuple[bool, int]] = []
            self.model.blocks[0].register_forward_pre_hook(lambda m, a: self.tokens.append((m.training, a[0].shape[1])))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.model(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", torch.nn.functional.cross_entropy(self.model(x), y))

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters(), lr=1e-3)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 2), "interval": "step"}}

    train = torch.utils.data.DataLoader(_data(40, 0), batch_size=8)  # 5 steps per epoch
    val = torch.utils.data.DataLoader(_data(16, 1), batch_size=8)

    def trainer(epochs: int, version: int) -> L.Trainer:
        return L.Trainer(
            max_epochs=epochs, accelerator="cpu", logger=TensorBoardLogger(tmp_path, name="tb", version=version),
            callbacks=[KeepRatioCallback("cyclic:low=0.2,high=1.0"), LearningRateMonitor("step")],
            log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        )

    module = Classifier()
    t = trainer(1, 0)
    t.fit(module, train, val)
    expect = pss.schedule_from_spec("cyclic:low=0.2,high=1.0").values(5, 10)  # over the 2-epoch run below: different
    one_epoch = pss.schedule_from_spec("cyclic:low=0.2,high=1.0").values(5, 5)
    n_patches = 64
    seen_train = [n for training, n in module.tokens if training]
    assert seen_train == [1 + pss.select.num_kept(n_patches, r) for r in one_epoch]
    assert {n for training, n in module.tokens if not training} == {1 + n_patches}  # validation: every token
    scalars = read_scalars(tmp_path / "tb" / "version_0")
    assert [v for _, v in scalars["pss/keep_ratio"]] == pytest.approx(one_epoch)
    assert "train_loss" in scalars and any(tag.startswith("lr-") for tag in scalars)
    ckpt = tmp_path / "one_epoch.ckpt"
    t.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=False)["callbacks"]
    (cb_state,) = [v for k, v in state.items() if "KeepRatioCallback" in k]
    assert cb_state["step"] == 4  # the last step it set (global step 4 of 0..4)

    # resume into a 2-epoch run: the schedule is laid out over 2 epochs and continues at step 5
    module2 = Classifier()
    trainer(2, 1).fit(module2, train, val, ckpt_path=ckpt)
    seen2 = [n for training, n in module2.tokens if training]
    assert seen2 == [1 + pss.select.num_kept(n_patches, r) for r in expect[5:]]
    assert [s for s, _ in read_scalars(tmp_path / "tb" / "version_1")["pss/keep_ratio"]] == list(range(5, 10))


def test_accelerate_example_runs_and_resumes(tmp_path, monkeypatch, capsys):
    """Three epochs straight, and one epoch, stop, --resume for the other two: the same weights.
    (In process, as `python examples/accelerate_train.py ...` runs it: three interpreters would cost
    more than the runs.)"""
    pytest.importorskip("accelerate")
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")

    def example(*args) -> str:
        monkeypatch.setattr(sys, "argv", ["accelerate_train.py", "--epochs", "3", *args])
        runpy.run_path(str(ROOT / "examples" / "accelerate_train.py"), run_name="__main__")
        return capsys.readouterr().out

    straight = example("--output", str(tmp_path / "straight"))
    assert "epoch 3/3" in straight and "eval tokens 65" in straight
    first = example("--output", str(tmp_path / "resumed"), "--stop-after", "1")
    assert "epoch 1/3" in first and "epoch 2/3" not in first and not (tmp_path / "resumed" / "checkpoint.pt").exists()
    second = example("--output", str(tmp_path / "resumed"), "--resume")
    assert "resuming after epoch 1 (keep-ratio scheduler at step 4)" in second and "epoch 1/3" not in second
    # The continued run prints what the uninterrupted one printed for epochs 2 and 3 ...
    assert [ln for ln in second.splitlines() if ln.startswith("epoch")] == straight.splitlines()[1:]
    # ... and ends with the same weights and keep-ratio scheduler state.
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert a["keep_sched"] == b["keep_sched"] and a["keep_sched"]["step"] == 12
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
