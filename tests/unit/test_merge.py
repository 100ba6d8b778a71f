"""Token merging (pss.models.merge): one merge step against a brute-force reference, sizes, identity,
proportional attention, bad rates."""
from __future__ import annotations

import math

import pytest
import timm
import torch

import pss
from pss.errors import ConfigError
from pss.models.merge import TokenMerging, bipartite_merge, max_merge_rate, merge_rates, merge_token_counts

TINY = dict(depth=2, embed_dim=32, num_heads=2)


def reference_merge(x, size, pos, metric, r):
    """ToMe's bipartite soft matching written out with loops and explicit pairwise similarities.
    Returns {position: (size, feature list)} per image."""
    out = []
    for b in range(x.shape[0]):
        n = x.shape[1]
        a_idx, b_idx = list(range(0, n, 2)), list(range(1, n, 2))

        def cos(i, j):
            u, v = metric[b, i].tolist(), metric[b, j].tolist()
            dot = sum(p * q for p, q in zip(u, v))
            return dot / (math.sqrt(sum(p * p for p in u)) * math.sqrt(sum(q * q for q in v)))

        links = []
        for i in a_idx:
            sims = [(cos(i, j), j) for j in b_idx]
            best = max(sims)  # (similarity, partner)
            links.append((best[0], i, best[1]))
        links.sort(key=lambda t: -t[0])
        merged = {i: j for _, i, j in links[:r]}
        groups = {j: [j] for j in b_idx}
        groups.update({i: [i] for i in a_idx if i not in merged})
        for i, j in merged.items():
            groups[j].append(i)
        res = {}
        for dest, members in groups.items():
            s = sum(float(size[b, t]) for t in members)
            feat = [sum(float(size[b, t]) * float(x[b, t, c]) for t in members) / s for c in range(x.shape[2])]
            res[int(pos[b, dest])] = (s, feat)
        out.append(res)
    return out


@pytest.mark.parametrize("n,r", [(9, 1), (10, 3), (12, 6), (7, 2)])
def test_bipartite_merge_matches_brute_force(n, r):
    g = torch.Generator().manual_seed(n * 10 + r)
    x = torch.randn(3, n, 5, generator=g, dtype=torch.float64)
    size = torch.randint(1, 4, (3, n), generator=g).double()
    pos = torch.stack([torch.randperm(n, generator=g) for _ in range(3)])
    metric = torch.randn(3, n, 4, generator=g, dtype=torch.float64)
    xm, sm, pm = bipartite_merge(x, size, pos, metric, r)
    assert xm.shape == (3, n - r, 5) and sm.shape == (3, n - r) and pm.shape == (3, n - r)
    ref = reference_merge(x, size, pos, metric, r)
    for b in range(3):
        assert sorted(pm[b].tolist()) == sorted(ref[b])  # the same surviving positions
        for k, p in enumerate(pm[b].tolist()):
            s, feat = ref[b][p]
            assert float(sm[b, k]) == pytest.approx(s)
            torch.testing.assert_close(xm[b, k], torch.tensor(feat, dtype=torch.float64), rtol=1e-9, atol=1e-9)


def test_sizes_are_conserved_and_r0_is_identity():
    g = torch.Generator().manual_seed(0)
    x, metric = torch.randn(2, 16, 8, generator=g), torch.randn(2, 16, 4, generator=g)
    size = torch.ones(2, 16)
    same = bipartite_merge(x, size, None, metric, 0)
    assert same[0] is x and same[1] is size
    for r in (4, 3, 2, 1):  # several layers in a row
        x, size, _ = bipartite_merge(x, size, None, metric[:, : x.shape[1]], r)
        assert size.sum(dim=1).tolist() == [16.0, 16.0]
    assert x.shape[1] == 16 - 10


@pytest.mark.parametrize("pos_embed", ["rope", "rel_bias", "learned"])
def test_token_merging_on_pss_vit(pos_embed):
    torch.manual_seed(0)
    model = pss.build_model("pss_vit_tiny_patch4_32", 10, pos_embed=pos_embed, **TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(TokenMerging(model, 0)(x), model(x))  # r = 0: exactly the model
        out = TokenMerging(model, 8)(x)
        with pss.use_keep_ratio(model, 0.5):  # both dials: drop to 32 patches, then merge
            both = TokenMerging(model, 8)(x)
    assert out.shape == both.shape == (2, 10) and torch.isfinite(out).all() and torch.isfinite(both).all()
    assert not torch.allclose(out, model(x))


def _duplicate_patch_images(n_img: int, size: int, patch: int) -> torch.Tensor:
    """Images whose patches come in identical raster-order pairs (2k, 2k + 1), distinct otherwise."""
    g = torch.Generator().manual_seed(1)
    grid = size // patch
    half = torch.randn(n_img, 3, grid, grid // 2, patch, patch, generator=g)
    cells = half.repeat_interleave(2, dim=3)  # (N, 3, gh, gw, p, p)
    return cells.permute(0, 1, 2, 4, 3, 5).reshape(n_img, 3, size, size)


@pytest.mark.parametrize("which", ["pss", "timm-token", "timm-avg"])
def test_merging_exact_duplicates_changes_nothing(which):
    """Proportional attention and size-weighted pooling: merging each patch into its exact duplicate
    (no position embedding to tell them apart) must give the model's own output."""
    torch.manual_seed(0)
    if which == "pss":
        model = pss.build_model("pss_vit_tiny_patch4_32", 5, pos_embed="learned", depth=1, embed_dim=32, num_heads=2)
        with torch.no_grad():
            model.pos_embed.zero_()
    else:
        model = pss.attach(timm.create_model(
            "vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=32, patch_size=4, depth=1,
            embed_dim=32, num_heads=2, pos_embed="none", global_pool=which.split("-")[1],
            class_token=which == "timm-token"))
    model.eval()
    x = _duplicate_patch_images(2, 32, 4)
    with torch.no_grad():
        torch.testing.assert_close(TokenMerging(model, 32)(x), model(x), rtol=1e-4, atol=1e-5)


def test_token_merging_on_timm_vit_and_bad_input():
    torch.manual_seed(0)
    model = pss.attach(timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=4, img_size=64, depth=2)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(TokenMerging(model, 0)(x), model(x))
        assert torch.isfinite(TokenMerging(model, 4)(x)).all()
    assert max_merge_rate(16, 2) == 5 and merge_token_counts(16, 2, 5) == [16, 11]
    assert max_merge_rate(64, 4) == 12 and merge_rates(64, 4, steps=4) == [3, 6, 9, 12]
    with pytest.raises(ConfigError, match=r"merge rate r=6 would leave block 2 .* use r <= 5"):
        TokenMerging(model, 6)
    eva = pss.attach(timm.create_model("eva02_tiny_patch14_224", pretrained=False, num_classes=4, img_size=56, depth=1))
    with pytest.raises(ConfigError, match="token merging needs .* use --reduce drop"):
        TokenMerging(eva, 2)


@pytest.mark.skipif(not pss.models.attention.FLEX_AVAILABLE, reason="this torch has no FlexAttention")
def test_proportional_attention_is_the_same_through_flex():
    torch.manual_seed(0)
    sdpa = pss.build_model("pss_vit_tiny_patch4_32", 10, pos_embed="rel_bias", attn_impl="sdpa", **TINY).eval()
    flex = pss.build_model("pss_vit_tiny_patch4_32", 10, pos_embed="rel_bias", attn_impl="flex", **TINY).eval()
    flex.load_state_dict(sdpa.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(TokenMerging(flex, 8)(x), TokenMerging(sdpa, 8)(x), rtol=1e-4, atol=1e-5)
