"""SimMIM pre-training model: masking statistics, loss on masked pixels only, learning, hand-over."""
import pytest
import torch

import pss
from pss.errors import ConfigError
from pss.models.simmim import SimMIM, random_mask

TINY = dict(depth=2, embed_dim=32, num_heads=2)


def test_mask_statistics():
    g = torch.Generator().manual_seed(0)
    m = random_mask(500, img_size=32, patch_size=4, mask_patch_size=8, mask_ratio=0.6, generator=g)
    assert m.shape == (500, 64) and m.dtype == torch.bool
    # ceil(0.6 * 16) = 10 regions of 2 x 2 patches each
    assert (m.sum(1) == 40).all()
    grid = m.view(500, 8, 8)
    assert torch.equal(grid[:, ::2, ::2], grid[:, 1::2, 1::2])  # regions are whole 2x2 blocks
    # every region is masked about 10/16 of the time
    freq = grid[:, ::2, ::2].float().mean(0)
    assert ((freq - 10 / 16).abs() < 0.1).all(), freq
    # different images get different masks
    assert not torch.equal(m[0], m[1])


@pytest.mark.parametrize("bad", [dict(mask_ratio=0.0), dict(mask_ratio=1.0), dict(mask_patch_size=6), dict(mask_patch_size=64)])
def test_mask_errors(bad):
    kw = dict(mask_ratio=0.6, mask_patch_size=8) | bad
    with pytest.raises(ConfigError):
        SimMIM(pss.build_model("pss_vit_tiny_patch4_32", 0, **TINY), **kw)


def test_loss_only_on_masked_pixels():
    torch.manual_seed(0)
    model = SimMIM(pss.build_model("pss_vit_tiny_patch4_32", 0, **TINY), mask_patch_size=8)
    x = torch.randn(2, 3, 32, 32)
    mask = model.make_mask(2, "cpu")
    out = model(x, mask)
    assert out.pred.shape == x.shape and out.loss.ndim == 0
    # changing visible pixels' targets only (same encoder input is impossible), so check the formula
    pix = mask.view(2, 8, 8).repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None].float()
    expect = ((out.pred - x).abs() * pix).sum() / (pix.sum() * 3)
    torch.testing.assert_close(out.loss, expect)


def test_reconstruction_loss_falls_and_encoder_hands_over():
    torch.manual_seed(0)
    enc = pss.build_model("pss_vit_tiny_patch4_32", 0, **TINY)
    model = SimMIM(enc, mask_patch_size=8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        # fresh flat-colour images each step: a masked region is predictable only from the visible ones
        x = torch.randn(16, 3, 1, 1).expand(-1, -1, 32, 32)
        loss = model(x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    sd = model.encoder_state_dict()
    assert not any(k.startswith("head.") for k in sd)
    clf = pss.build_model("pss_vit_tiny_patch4_32", 10, **TINY)
    missing, unexpected = clf.load_state_dict(sd, strict=False)
    assert set(missing) == {"head.weight", "head.bias"} and not unexpected
    for k, v in sd.items():
        assert torch.equal(clf.state_dict()[k], v)
