"""The public API for a user's own loop: the eval rule, KeepRatioScheduler, compile_friendly,
attach's guards and errors."""
from __future__ import annotations

import copy

import pytest
import timm
import torch

import pss
from pss.errors import ConfigError

TINY = dict(img_size=32, patch_size=4, depth=1, embed_dim=32, num_heads=2, num_classes=4)


def _vit(**kw):
    return pss.attach(timm.create_model("vit_tiny_patch16_224", **{**TINY, **kw}))


def _tokens_seen(model, x):
    """Sequence length the first block sees in one forward of `model` on `x`."""
    seen = []
    h = model.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return seen[0]


# -- the eval rule --------------------------------------------------------------------------------

def test_eval_runs_every_token_unless_set_explicitly():
    model = _vit()
    x = torch.randn(2, 3, 32, 32)
    pss.set_keep_ratio(model, 0.4)
    assert _tokens_seen(model.train(), x) == 1 + 26  # 40 % of 64 patches + CLS
    assert pss.get_keep_ratio(model) == 0.4
    assert _tokens_seen(model.eval(), x) == 1 + 64  # eval(): every token, as timm's PatchDropout
    assert pss.get_keep_ratio(model) == 1.0
    with pss.use_keep_ratio(model, 0.5):  # the explicit dial wins, in eval ...
        assert _tokens_seen(model, x) == 1 + 32
        assert _tokens_seen(model.train(), x) == 1 + 32  # ... and in train mode
    model.eval()
    assert _tokens_seen(model, x) == 1 + 64  # left the block: back to the rule
    pss.use_keep_ratio(model, 0.25)  # plain call: stays set
    assert _tokens_seen(model, x) == 1 + 16
    pss.use_keep_ratio(model, None)  # cleared
    assert _tokens_seen(model, x) == 1 + 64
    assert _tokens_seen(model.train(), x) == 1 + 26  # the training ratio was never touched


def test_ema_copy_follows_the_eval_rule():
    from timm.utils import ModelEmaV3

    model = _vit()
    x = torch.randn(2, 3, 32, 32)
    keep = pss.KeepRatioScheduler(model, 0.4, steps_per_epoch=4, epochs=1)
    assert keep.keep_ratio == 0.4
    ema = ModelEmaV3(model, decay=0.9)  # copied while the training ratio is 0.4
    assert _tokens_seen(ema.module, x) == 1 + 64  # the EMA (eval mode) runs every token
    ema.update(model)
    assert _tokens_seen(ema.module, x) == 1 + 64
    with pss.use_keep_ratio(ema.module, 0.5):  # and takes the explicit dial like the model
        assert _tokens_seen(ema.module, x) == 1 + 32
    # a deep copy of an eval-mode model equals the full model's output
    full = copy.deepcopy(model).eval()
    pss.set_keep_ratio(full, 1.0)
    torch.testing.assert_close(copy.deepcopy(model).eval()(x), full(x), rtol=0, atol=0)


def test_engine_eval_keep_ratio_still_wins(tmp_path):
    """pss train evaluates at eval.keep_ratio (explicit) although eval() alone would run every token."""
    from pss.engine import LoopConfig, Progress, Trainer
    from pss.tasks.classification import ClassificationTask
    from pss.runwriter import Checkpointer, RunWriter, StepLogger
    from pss.state import TrainState
    from pss.runtime import Amp
    from pss.schedule import FixedSchedule

    model = _vit()
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda m, args: seen.append((m.training, args[0].shape[1])))
    data = [(torch.randn(4, 3, 32, 32), torch.randint(0, 4, (4,))) for _ in range(2)]

    class Loader(list):
        def set_epoch(self, epoch):
            pass

    trainer = Trainer(
        state=TrainState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), progress=Progress()),
        task=ClassificationTask(4), schedule=FixedSchedule(rho=0.4), train_loader=Loader(data), val_loader=data,
        loop=LoopConfig(epochs=1, steps_per_epoch=2, eval_keep_ratio=0.5), amp=Amp("cpu", None),
        logger=StepLogger(RunWriter(tmp_path), quiet=True), checkpointer=Checkpointer(tmp_path),
    )
    trainer.fit()
    assert {n for training, n in seen if training} == {1 + 26}
    assert {n for training, n in seen if not training} == {1 + 32}
    assert model.patch_drop.explicit_keep_ratio is None  # the eval setting did not leak into training


# -- KeepRatioScheduler ---------------------------------------------------------------------------

def test_keep_ratio_scheduler_steps_and_resumes():
    model = _vit()
    spec = "cyclic:low=0.2,high=1.0"
    keep = pss.KeepRatioScheduler(model, spec, steps_per_epoch=5, epochs=2)
    expect = pss.schedule_from_spec(spec).values(5, 10)
    got = [keep.keep_ratio]
    for _ in range(9):
        got.append(keep.step())
        assert model.patch_drop.keep_ratio == got[-1]
    assert got == expect
    assert keep.keep_ratios() == sorted(set(expect))
    state = keep.state_dict()
    other = pss.KeepRatioScheduler(_vit(), pss.CyclicSchedule(low=0.2, high=1.0), steps_per_epoch=5, epochs=2)
    other.load_state_dict(state)
    assert other.last_step == 9 and other.keep_ratio == expect[9]
    assert keep.step() == expect[9]  # past the end: the last step's value
    assert keep.step(3) == expect[3]  # an explicit global step (a trainer's)


def test_keep_ratio_scheduler_errors():
    with pytest.raises(TypeError, match="pss.attach"):
        pss.KeepRatioScheduler(torch.nn.Linear(2, 2), 0.5, steps_per_epoch=2, epochs=1)
    with pytest.raises(ConfigError, match="unknown schedule"):
        pss.KeepRatioScheduler(_vit(), "cyclc:low=0.2", steps_per_epoch=2, epochs=1)
    with pytest.raises(ConfigError, match="epochs"):
        pss.KeepRatioScheduler(_vit(), 0.5, steps_per_epoch=2, epochs=0)


def test_schedule_spec_everywhere():
    from pss.config import config_from_dict

    assert pss.schedule_from_spec("cyclic:low=0.4") == pss.CyclicSchedule(low=0.4)
    assert config_from_dict({"schedule": "linear:start=0.2,end=1"}).schedule == pss.LinearSchedule(start=0.2, end=1.0)
    assert config_from_dict({"schedule": "cyclic"}).schedule == pss.CyclicSchedule()
    assert config_from_dict({"schedule": 0.5}).schedule == pss.FixedSchedule(rho=0.5)


# -- torch.compile ---------------------------------------------------------------------------------

@pytest.mark.slow  # torch.compile: seconds
def test_compile_friendly_avoids_the_recompile_limit():
    """A schedule with more keep ratios than dynamo's default limit compiles every one of them."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    cfg = torch._dynamo.config
    old = cfg.recompile_limit
    model = _vit()
    keep = pss.KeepRatioScheduler(model, "cyclic:low=0.1,high=1.0,grid=0.1", steps_per_epoch=20, epochs=1)
    n_train = len(keep.keep_ratios())
    x = torch.randn(2, 3, 32, 32)
    try:
        # dynamo's default; importing timm.optim (its Kron optimizer) raises it process-wide to 1e6
        cfg.recompile_limit = 8
        assert n_train == 10 and n_train + 1 > cfg.recompile_limit  # more graphs than the default allows
        limit = pss.compile_friendly(keep)
        assert limit >= n_train + 1 and cfg.recompile_limit == limit
        torch._dynamo.reset()
        counters.clear()
        compiled = torch.compile(model, backend="eager", dynamic=False)
        for _ in range(20):
            model.train()
            compiled(x)
            keep.step()
        model.eval()
        with torch.no_grad():
            compiled(x)
        assert counters["stats"]["unique_graphs"] == n_train + 1  # no fallback to eager
        assert not any("recompile_limit" in str(k) for k in counters.get("unimplemented", {}))
    finally:
        cfg.recompile_limit = old
        torch._dynamo.reset()


def test_compile_friendly_counts():
    from pss.dynamo import graphs_needed

    assert graphs_needed("cyclic:low=0.2,high=1.0") == 5 + 1 + 2  # the 0.2 grid, eval, slack
    assert graphs_needed("0.5", steps_per_epoch=4, epochs=2) == 1 + 1 + 2
    assert graphs_needed("cyclic", steps_per_epoch=10, epochs=1, eval_keep_ratios=(1.0, 0.5)) == 5 + 2 + 2


# -- attach: dense features, wrappers, re-attach, unsupported models -----------------------------

@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "eva02_tiny_patch14_224"])
def test_forward_intermediates_refuses_fewer_tokens(name):
    kw = dict(TINY, patch_size=4) if name.startswith("vit") else dict(img_size=32, patch_size=4, depth=1, num_classes=4)
    model = pss.attach(timm.create_model(name, **kw))
    x = torch.randn(2, 3, 32, 32)
    pss.set_keep_ratio(model, 0.5)
    with pytest.raises(ConfigError, match="forward_intermediates.*keep ratio 0.5"):
        model.train().forward_intermediates(x)
    feats = model.eval().forward_intermediates(x, intermediates_only=True)  # eval: every token
    assert feats[-1].shape[-2:] == (8, 8)
    with pss.use_keep_ratio(model, 1.0):
        model.train().forward_intermediates(x, intermediates_only=True)
    ema = copy.deepcopy(model)  # the guard follows copies (bound to the copy, not the original)
    assert ema.forward_intermediates.__self__ is ema


def test_attach_errors_and_reattach():
    model = _vit()
    assert pss.attach(model, keep_ratio=0.6, select="random") is model  # already attached: arguments apply
    assert model.patch_drop.keep_ratio == 0.6 and model.patch_drop.select == "random"
    with pytest.raises(ConfigError, match="attach before compile"):
        pss.attach(torch.compile(timm.create_model("vit_tiny_patch16_224", **TINY)))
    for name in ("vit_relpos_small_patch16_224", "samvit_base_patch16"):
        m = timm.create_model(name, pretrained=False, img_size=64) if name.startswith("vit") else None
        if m is None:
            continue  # samvit at any size is slow to build; its class is refused the same way
        with pytest.raises(ConfigError, match="VisionTransformerRelPos.*not\\s+vit_relpos_"):
            pss.attach(m)


def test_model_name_suggestions_search_every_family():
    with pytest.raises(ConfigError, match="did you mean deit_small_patch16_224"):
        pss.build_model("deit_smal_patch16_224", 10)


def test_offline_pretrained_is_a_one_line_error(monkeypatch):
    real = timm.create_model

    def offline(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load this file")
        return real(name, **kw)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ConfigError, match="could not load the pretrained weights.*Offline"):
        pss.build_model("vit_tiny_patch16_224", 10, pretrained=True)
