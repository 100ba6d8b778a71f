"""Attention implementations: FlexAttention (relative bias looked up per kept pair inside the kernel)
gives the numbers of the SDPA path, forward and backward; `auto` picks per device; few shapes compile
once; bad settings fail with one line; checkpoints move between implementations unchanged."""
import pytest
import torch
import torch.nn.functional as F

import pss
import pss.models.attention as attention
import pss.models.vit as vit
from pss.checkpoint import atomic_save, training_checkpoint
from pss.config import TrainConfig, config_from_dict
from pss.errors import ConfigError
from pss.models.convert import load_init_weights

TINY = dict(depth=2, embed_dim=32, num_heads=2)
needs_flex = pytest.mark.skipif(not attention.FLEX_AVAILABLE, reason="this torch has no FlexAttention with bias gradients")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def flex_cpu_backward(monkeypatch):
    """torch refuses FlexAttention's backward on CPU (a device check). Lifting the check lets flex's own
    eager backward (its dense reference, the math the fused CUDA kernel implements) run here, so the
    gradients through the score_mod, into the bias tables, are checked on CPU."""
    import torch.nn.attention.flex_attention as fa

    monkeypatch.setattr(fa, "_validate_device", lambda *a: None)
    monkeypatch.setattr(attention, "FLEX_NO_BACKWARD", set())


def _pair(pos: str = "rel_bias", reg: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same weights under attn_impl sdpa and flex; non-zero bias tables, or the check is trivial."""
    torch.manual_seed(0)
    sdpa = pss.build_model("pss_vit_tiny_patch4_32", 10, pos_embed=pos, reg_tokens=reg, attn_impl="sdpa", **TINY)
    for blk in sdpa.blocks:
        if blk.attn.relative_position_bias_table is not None:
            torch.nn.init.normal_(blk.attn.relative_position_bias_table, std=1.0)
    flex = pss.build_model("pss_vit_tiny_patch4_32", 10, pos_embed=pos, reg_tokens=reg, attn_impl="flex", **TINY)
    flex.load_state_dict(sdpa.state_dict(), strict=True)
    return sdpa, flex


def _step(model, x, rho, select):
    """Outputs, input gradient and parameter gradients of one forward/backward at keep ratio rho."""
    pss.set_keep_ratio(model, rho, select)
    x = x.clone().requires_grad_()
    torch.manual_seed(1)  # random selection draws the same indices for both models
    y = model(x)
    y.square().sum().backward()
    return y, x.grad, {n: p.grad for n, p in model.named_parameters()}


@needs_flex
@pytest.mark.parametrize("select", ["magnitude", "random"])
@pytest.mark.parametrize("reg", [0, 2], ids=["cls", "cls+2reg"])
@pytest.mark.parametrize("rho", [1.0, 0.6, 0.2])
def test_flex_equals_sdpa_outputs_and_gradients(flex_cpu_backward, monkeypatch, rho, reg, select):
    sdpa, flex = _pair(reg=reg)
    calls = []
    monkeypatch.setattr(vit, "flex_attention", lambda *a: calls.append(1) or attention.flex_attention(*a))
    assert (sdpa.attention_impl(), flex.attention_impl()) == ("sdpa", "flex")
    x = torch.randn(3, 3, 32, 32)
    y0, gx0, g0 = _step(sdpa, x, rho, select)
    y1, gx1, g1 = _step(flex, x, rho, select)
    assert len(calls) == len(flex.blocks)  # flex really ran, in every block
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx1, gx0, rtol=1e-4, atol=1e-5)
    assert g0.keys() == g1.keys()
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-4, atol=1e-5, msg=name)
    for name in ("blocks.0.attn.relative_position_bias_table", "blocks.1.attn.qkv.weight"):
        assert g1[name].abs().sum() > 0
    # prefix rows of the bias table (the last three, shared by CLS and registers) get their gradient too
    assert (g1["blocks.0.attn.relative_position_bias_table"][-3:].abs().sum(-1) > 0).all()


@needs_flex
def test_flex_path_gathers_keep_indices_not_pairs():
    """Flex is handed the (B, L) keep positions, never a (B, L, L) pair index or (B, h, L, L) bias."""
    sdpa, flex = _pair()
    idx = torch.arange(0, 64, 3)[None].expand(2, -1)
    rel_s, _ = sdpa._kept_positions(idx)
    rel_f, _ = flex._kept_positions(idx)
    assert rel_s.pairs.shape == (2, 23, 23) and rel_s.seq is None
    assert rel_f.pairs is None and rel_f.seq.shape == (2, 23)


@needs_flex
def test_flex_rope_equals_sdpa(flex_cpu_backward):
    sdpa, flex = _pair("rope", reg=1)
    x = torch.randn(2, 3, 32, 32)
    y0, gx0, _ = _step(sdpa, x, 0.4, "magnitude")
    y1, gx1, _ = _step(flex, x, 0.4, "magnitude")
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx1, gx0, rtol=1e-4, atol=1e-5)


def test_auto_resolves_per_device(monkeypatch):
    model = pss.build_model("pss_vit_tiny_patch4_32", 10, **TINY)  # attn_impl: auto
    assert model.attention_impl("cpu") == "sdpa"  # CPU trains through SDPA: flex has no CPU backward
    assert model.attention_impl("cuda") == ("flex" if attention.FLEX_AVAILABLE else "sdpa")
    rope = pss.build_model("pss_vit_tiny_patch4_32", 10, pos_embed="rope", **TINY)
    assert rope.attention_impl("cuda") == "sdpa"  # no bias: SDPA's own fused kernels
    assert pss.models.attention_impl(torch.nn.Sequential(model), "cpu") == "sdpa"  # found inside wrappers
    monkeypatch.setattr(attention, "FLEX_AVAILABLE", False)
    assert model.attention_impl("cuda") == "sdpa"
    dropout = pss.build_model("pss_vit_tiny_patch4_32", 10, attn_drop_rate=0.1, **TINY)
    assert dropout.attention_impl("cuda") == "sdpa"  # flex has no attention dropout


def test_bad_attn_impl(monkeypatch):
    with pytest.raises(ConfigError, match="unknown attn_impl 'fast'; choose one of auto, flex, sdpa"):
        pss.build_model("pss_vit_tiny_patch4_32", 10, attn_impl="fast", **TINY)
    with pytest.raises(ConfigError, match="no attention dropout"):
        pss.build_model("pss_vit_tiny_patch4_32", 10, attn_impl="flex", attn_drop_rate=0.1, **TINY)
    if attention.FLEX_AVAILABLE:  # flex forced on CPU: inference runs, training says what to do
        model = pss.build_model("pss_vit_tiny_patch4_32", 10, attn_impl="flex", **TINY)
        with torch.no_grad():
            assert torch.isfinite(model(torch.randn(1, 3, 32, 32))).all()
        with pytest.raises(ConfigError, match=r"cannot train on cpu.*set attn_impl: auto"):
            model(torch.randn(1, 3, 32, 32))
    monkeypatch.setattr(attention, "FLEX_AVAILABLE", False)  # an older torch
    with pytest.raises(ConfigError) as e:
        pss.build_model("pss_vit_tiny_patch4_32", 10, attn_impl="flex", **TINY)
    msg = str(e.value)
    assert "\n" not in msg and "needs torch >= 2.6" in msg and "attn_impl: auto" in msg
    pss.build_model("pss_vit_tiny_patch4_32", 10, attn_impl="auto", **TINY)  # auto still builds


@needs_flex
@pytest.mark.parametrize("trained_with", ["flex", "sdpa"])
def test_checkpoint_moves_between_implementations(flex_cpu_backward, tmp_path, trained_with):
    sdpa, flex = _pair()
    src, dst = (flex, sdpa) if trained_with == "flex" else (sdpa, flex)
    opt = torch.optim.SGD(src.parameters(), lr=0.1)
    pss.set_keep_ratio(src, 0.5, "random")
    F.cross_entropy(src(torch.randn(2, 3, 32, 32)), torch.tensor([1, 2])).backward()
    opt.step()
    path = tmp_path / "ckpt.pt"
    atomic_save(training_checkpoint(model=src, progress={}, config={}), path)
    torch.nn.init.zeros_(dst.head.weight)  # so loading must change it
    load_init_weights(dst, path)
    assert src.state_dict().keys() == dst.state_dict().keys()
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for m in (src, dst):
            pss.set_keep_ratio(m.eval(), 0.5, "magnitude")
        torch.testing.assert_close(dst(x), src(x), rtol=1e-5, atol=1e-5)


# Few shapes, compiled once -------------------------------------------------------------------------

@pytest.mark.slow  # torch.compile: seconds
def test_compiled_training_step_builds_one_graph_per_length():
    """torch.compile(dynamic=False), as training compiles: a keep-ratio cycle on the grid builds one graph
    per sequence length (train, then eval), each whole, and nothing is recompiled on later cycles.
    Dynamo's own frame counter; the aot_eager backend traces forward and backward like inductor,
    without its slow CPU code generation."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    model = pss.build_model("pss_vit_tiny_patch4_32", 10, depth=1, embed_dim=32, num_heads=2)  # rel_bias
    cnt = CompileCounterWithBackend("aot_eager")
    # fullgraph: no graph break anywhere, so no host sync (.item(), data-dependent shapes) in selection
    run = torch.compile(model, backend=cnt, dynamic=False, fullgraph=True)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    frames = []
    for _ in range(2):
        for rho in (0.2, 0.6, 1.0, 0.6):  # the cyclic schedule's triangle on the 0.2 grid
            pss.set_keep_ratio(model, rho, "magnitude")
            F.cross_entropy(run(x), y).backward()
        frames.append(cnt.frame_count)
    assert frames == [3, 3]
    model.eval()
    with torch.no_grad():
        for _ in range(2):
            for rho in (1.0, 0.6, 0.2):
                with pss.use_keep_ratio(model, rho):  # in eval, only an explicit keep ratio drops tokens
                    run(x)
            frames.append(cnt.frame_count)
    assert frames == [3, 3, 6, 6]
    torch._dynamo.reset()


@needs_flex
def test_compiled_flex_builds_one_graph_per_length():
    """The compiled FlexAttention used by eager models on CUDA: a new score_mod closure per call (new
    keep indices, same shapes) does not recompile; one graph per sequence length."""
    from torch._dynamo.testing import CompileCounterWithBackend
    from torch.nn.attention.flex_attention import flex_attention

    torch._dynamo.reset()
    cnt = CompileCounterWithBackend("eager")
    compiled = torch.compile(flex_attention, dynamic=False, backend=cnt)
    full = torch.randn(2, 17, 17)
    frames = []
    with torch.no_grad():
        for _ in range(2):
            for n in (17, 10, 4):
                q = torch.randn(2, 2, n, 16)
                seq = torch.randperm(17)[:n].sort().values.expand(2, n) if n < 17 else None
                out = compiled(q, q, q, score_mod=attention.rel_bias_score_mod(full, seq))
                assert out.shape == q.shape
            frames.append(cnt.frame_count)
    assert frames == [3, 3]
    torch._dynamo.reset()


def test_compile_setting_takes_options():
    assert TrainConfig().compile_options() is None
    assert TrainConfig(compile=True).compile_options() == {"dynamic": False}
    cfg = config_from_dict({"compile": {"mode": "reduce-overhead"}})
    assert cfg.compile_options() == {"dynamic": False, "mode": "reduce-overhead"}
    with pytest.raises(ConfigError, match="compile takes"):
        config_from_dict({"compile": {"modes": "reduce-overhead"}})


# On a GPU ----------------------------------------------------------------------------------------

@cuda
def test_rope_bf16_runs_a_fused_sdpa_kernel():
    from pss.bench import attention_kernels

    model = pss.build_model("pss_vit_tiny_patch4_32", 10, pos_embed="rope", attn_impl="sdpa", **TINY).cuda()
    pss.set_keep_ratio(model, 0.6)
    x = torch.randn(4, 3, 32, 32, device="cuda")

    def step():
        with torch.autocast("cuda", torch.bfloat16):
            model(x).float().sum().backward()

    kernels = " ".join(attention_kernels(step))
    assert "flash" in kernels or "efficient" in kernels or "cudnn" in kernels, kernels
    assert "math" not in kernels, kernels


@cuda
@needs_flex
def test_compiled_flex_equals_sdpa_on_cuda():
    sdpa, flex = (m.cuda() for m in _pair(reg=1))
    x = torch.randn(4, 3, 32, 32, device="cuda")
    for rho in (1.0, 0.4):
        y0, gx0, g0 = _step(sdpa, x, rho, "magnitude")
        y1, gx1, g1 = _step(flex, x, rho, "magnitude")
        torch.testing.assert_close(y1, y0, rtol=1e-4, atol=1e-4)
        for name in g0:
            torch.testing.assert_close(g1[name], g0[name], rtol=1e-3, atol=1e-4, msg=name)
        sdpa.zero_grad(), flex.zero_grad()
