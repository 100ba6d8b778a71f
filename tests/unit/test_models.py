"""PSS ViT and timm adapter: every registered model, the rho = 1 identity, and the position-handling
equivalence (kept-index run == full run with dropped tokens masked out of attention)."""
import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

import pss
from pss.errors import ConfigError
from pss.models import ARCHS, PssVisionTransformer

TINY = dict(depth=2, embed_dim=32, num_heads=2)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_registered_with_timm(name):
    assert timm.is_model(name)
    model = timm.create_model(name, num_classes=7, **TINY)
    assert isinstance(model, PssVisionTransformer)
    size = ARCHS[name]["img_size"]
    x = torch.randn(2, 3, size, size)
    for rho in (1.0, 0.6, 0.2):
        pss.set_keep_ratio(model, rho)
        y = model(x)
        assert y.shape == (2, 7) and torch.isfinite(y).all()
        y.sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        # the model ran K = round(rho * N) patch tokens plus the class token
        n = model.patch_embed.num_patches
        tokens, idx = model.forward_features_with_indices(x)
        assert tokens.shape[1] == 1 + pss.select.num_kept(n, rho)


@pytest.mark.parametrize("pos", ["learned", "rel_bias", "rope"])
@pytest.mark.parametrize("pool", ["token", "avg"])
def test_position_schemes_forward_backward(pos, pool):
    model = pss.build_model("pss_vit_tiny_patch4_32", 5, pos_embed=pos, global_pool=pool, reg_tokens=1, **TINY)
    assert model.num_prefix_tokens == 2
    pss.set_keep_ratio(model, 0.4, "random")
    loss = model(torch.randn(3, 3, 32, 32)).logsumexp(-1).mean()
    loss.backward()
    names = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert "patch_embed.proj.weight" in names and "head.weight" in names
    if pos == "rel_bias":
        assert "blocks.0.attn.relative_position_bias_table" in names
    if pos == "learned":
        assert "pos_embed" in names


def test_learned_pos_model_is_timm_vit_at_full_keep():
    """With learned positions and rho = 1 our model is exactly timm's VisionTransformer."""
    ours = pss.build_model("pss_vit_tiny_patch4_32", 10, pos_embed="learned", **TINY).eval()
    ref = VisionTransformer(img_size=32, patch_size=4, num_classes=10, **TINY).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pos", ["rel_bias", "rope"])
def test_full_keep_is_exactly_the_unmodified_path(pos):
    """rho = 1.0 takes no gather; a gather of every index gives the same numbers."""
    model = pss.build_model("pss_vit_tiny_patch4_32", 10, pos_embed=pos, **TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    full = model(x)
    all_idx = torch.arange(64).expand(2, 64)
    rel, rope = model._kept_positions(all_idx)
    t = model._pos_embed(model.patch_embed(x))
    for blk in model.blocks:
        t = blk(t, rel, rope)
    torch.testing.assert_close(model.forward_head(model.norm(t)), full, rtol=1e-5, atol=1e-5)


def _masked_block(blk, x, rel, rope, keys_kept):
    """One block over the full sequence with the keys where `keys_kept` (B, L) is False masked out:
    attention written out (softmax(q k^T / sqrt(d) + bias) v) from the block's own weights (eval mode)."""
    from timm.layers import apply_rot_embed_cat

    attn = blk.attn
    y = blk.norm1(x)
    b, n, c = y.shape
    q, k, v = attn.qkv(y).reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    if rope is not None:
        q, k = apply_rot_embed_cat(q, rope), apply_rot_embed_cat(k, rope)
    scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
    if attn.relative_position_bias_table is not None:
        scores = scores + attn.relative_position_bias_table[rel.index].permute(2, 0, 1)
    scores = scores.masked_fill(~keys_kept[:, None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
    x = x + blk.ls1(attn.proj(out))
    return x + blk.ls2(blk.mlp(blk.norm2(x)))


@pytest.mark.parametrize("impl", ["sdpa", pytest.param("flex", marks=pytest.mark.skipif(
    not pss.models.attention.FLEX_AVAILABLE, reason="this torch has no FlexAttention (torch >= 2.6)"))])
@pytest.mark.parametrize("pos", ["learned", "rel_bias", "rope"])
@pytest.mark.parametrize("select", ["magnitude", "random"])
@torch.no_grad()  # forward only: FlexAttention has no backward on CPU
def test_kept_run_equals_masked_full_run(pos, select, impl):
    """The proof that position handling is right: running only the kept tokens (through either
    attention implementation) gives the same outputs for those tokens as running the full sequence
    with the dropped keys masked out (an independent attention written out below)."""
    torch.manual_seed(0)
    model = pss.build_model("pss_vit_tiny_patch4_32", 10, pos_embed=pos, reg_tokens=1, attn_impl=impl, **TINY).eval()
    for blk in model.blocks:  # non-zero bias tables, or the check would be trivial
        if blk.attn.relative_position_bias_table is not None:
            torch.nn.init.normal_(blk.attn.relative_position_bias_table, std=1.0)
    x = torch.randn(3, 3, 32, 32)
    pss.use_keep_ratio(model, 0.4, select)  # explicit: the model is in eval mode
    kept, keep_idx = model.forward_features_with_indices(x)
    assert keep_idx.shape == (3, 26)

    p = model.num_prefix_tokens
    t = model._pos_embed(model.patch_embed(x))
    rel, rope = model._kept_positions(None)
    keep_mask = torch.zeros(3, 64, dtype=torch.bool).scatter_(1, keep_idx, True)
    keys_kept = torch.cat([torch.ones(3, p, dtype=torch.bool), keep_mask], 1)  # (B, L)
    for blk in model.blocks:
        t = _masked_block(blk, t, rel, rope, keys_kept)
    t = model.norm(t)
    seq_idx = torch.cat([torch.arange(p).expand(3, p), keep_idx + p], 1)
    expect = t.gather(1, seq_idx[..., None].expand(-1, -1, t.shape[-1]))
    torch.testing.assert_close(kept, expect, rtol=1e-4, atol=1e-5)

    # and the positions matter: the same kept tokens with the wrong indices give other outputs
    if pos != "learned":
        rel_w, rope_w = model._kept_positions(torch.arange(26).expand(3, 26))
        emb = model._pos_embed(model.patch_embed(x))
        u = torch.cat([emb[:, :p], emb[:, p:].gather(1, keep_idx[..., None].expand(-1, -1, 32))], 1)
        for blk in model.blocks:
            u = blk(u, rel_w, rope_w)
        assert (model.norm(u) - kept).abs().max() > 1e-3


def test_magnitude_keeps_largest_embedded_tokens():
    model = pss.build_model("pss_vit_tiny_patch4_32", 10, pos_embed="learned", **TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    pss.use_keep_ratio(model, 0.25, "magnitude")  # explicit: eval mode
    _, keep_idx = model.forward_features_with_indices(x)
    emb = model._pos_embed(model.patch_embed(x))[:, 1:]
    expect = emb.abs().sum(-1).topk(16, dim=1).indices.sort(1).values
    assert torch.equal(keep_idx, expect)


def test_keep_ratio_control_and_recording():
    model = pss.build_model("pss_vit_tiny_patch4_32", 10, **TINY)
    assert pss.get_keep_ratio(model) == 1.0
    with pss.use_keep_ratio(model, 0.5, "grid"):
        assert pss.get_keep_ratio(model) == 0.5 and model.patch_drop.effective_select == "grid"
        assert model.patch_drop.select == "random"  # the training rule (the default) is not the dial's
        with pss.recording(model) as samplers:
            model(torch.randn(2, 3, 32, 32))
            assert samplers[0].last_keep_idx.shape == (2, 32)
    assert pss.get_keep_ratio(model) == 1.0 and model.patch_drop.explicit_select is None
    with pytest.raises(ConfigError):
        pss.set_keep_ratio(model, 0.0)
    with pytest.raises(TypeError, match="pss.attach"):
        pss.set_keep_ratio(torch.nn.Linear(2, 2), 0.5)


def test_model_errors():
    with pytest.raises(ConfigError, match="unknown model name 'pss_vit_smal_patch16_224'.*pss_vit_small_patch16_224"):
        pss.build_model("pss_vit_smal_patch16_224", 10)
    with pytest.raises(ConfigError, match="unknown pos_embed"):
        pss.build_model("pss_vit_tiny_patch4_32", 10, pos_embed="sincos")
    with pytest.raises(ConfigError, match="no published pretrained weights"):
        timm.create_model("pss_vit_tiny_patch4_32", pretrained=True)
    with pytest.raises(ConfigError) as e:  # a CNN: named for what it lacks, not for a position embedding
        pss.attach(timm.create_model("resnet18", pretrained=False))
    assert e.match(r"cannot attach PSS to ResNet \(timm.models.resnet\): it is not a Vision Transformer - it has no "
                   r"patch embedding \(`patch_embed`\) and so no patch tokens to drop")
    assert "position" not in str(e.value) and "\n" not in str(e.value)


TIMM_MODELS = [
    ("vit_small_patch16_224", 224),
    ("deit_small_patch16_224", 224),
    ("vit_base_patch16_224", 224),
    ("vit_medium_patch16_reg4_gap_256", 256),  # register tokens + average pooling
    ("eva02_tiny_patch14_224", 224),  # rotary embedding, gathered with our keep indices
    ("vit_base_patch16_rope_reg1_gap_256", 256),
]


@pytest.mark.parametrize("name,size", TIMM_MODELS)
def test_attach_timm_models(name, size):
    torch.manual_seed(0)
    kw = dict(depth=2, img_size=64)
    original = timm.create_model(name, pretrained=False, num_classes=4, **kw).eval()
    model = pss.build_model(name, 4, img_size=64, depth=2).eval()
    model.load_state_dict(original.state_dict())
    x = torch.randn(2, 3, 64, 64)
    # rho = 1.0 is exactly the unmodified timm model
    torch.testing.assert_close(model(x), original(x), rtol=0, atol=0)
    n = original.patch_embed.num_patches
    seen = []
    blk0 = model.blocks[0]
    h = blk0.register_forward_pre_hook(lambda m, args, *a: seen.append(args[0].shape[1]))
    for rho in (0.5, 0.25):
        pss.set_keep_ratio(model, rho)
        model.train()
        y = model(x)
        assert y.shape == (2, 4) and torch.isfinite(y).all()
        y.sum().backward()
        model.eval()
        assert seen[-1] == model.num_prefix_tokens + pss.select.num_kept(n, rho)
    h.remove()
    # eval() runs every token (the training ratio is for train mode), exactly the timm model
    torch.testing.assert_close(model(x), original(x), rtol=0, atol=0)
    # dynamic inference (an explicit ratio) differs from the full model
    with pss.use_keep_ratio(model, 0.25):
        assert (model(x) - original(x)).abs().max() > 0
