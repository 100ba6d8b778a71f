"""Token selection: exhaustive checks of counts, invariants and each rule's choice."""
import pytest
import torch

import pss
import pss.control
from pss.errors import ConfigError
from pss.select import (
    DEFAULT_INFERENCE_SELECT, DETERMINISTIC_RULES, SELECT_RULES, PatchSampler, default_inference_select, num_kept,
    select_indices, select_tokens,
)


@pytest.mark.parametrize("n,rho,k", [(196, 1.0, 196), (196, 0.2, 39), (196, 0.4, 78), (196, 0.6, 118),
                                     (196, 0.8, 157), (64, 0.5, 32), (64, 0.01, 1), (4, 0.125, 1), (10, 0.25, 3)])
def test_num_kept(n, rho, k):
    assert num_kept(n, rho) == k


@pytest.mark.parametrize("rho", [0.0, -0.1, 1.01, float("nan")])
def test_impossible_keep_ratio(rho):
    with pytest.raises(ConfigError, match="keep ratio must be in"):
        select_tokens(torch.randn(2, 5, 4), rho)


def test_unknown_method():
    with pytest.raises(ConfigError, match="unknown selection rule 'l3'"):
        select_tokens(torch.randn(2, 5, 4), 0.5, select="l3")


@pytest.mark.parametrize("select", SELECT_RULES)
@pytest.mark.parametrize("prefix", [0, 1, 5])
def test_shapes_prefix_kept_and_sorted(select, prefix):
    x = torch.randn(3, prefix + 16, 8)
    kept, idx = select_tokens(x, 0.5, prefix, select)
    assert kept.shape == (3, prefix + 8, 8) and idx.shape == (3, 8)
    assert torch.equal(kept[:, :prefix], x[:, :prefix])  # prefix tokens first, untouched
    assert torch.equal(kept[:, prefix:], torch.stack([x[b, prefix + idx[b]] for b in range(3)]))
    assert (idx.diff(dim=1) > 0).all()  # sorted, no repeats
    assert idx.min() >= 0 and idx.max() < 16


@pytest.mark.parametrize("select", SELECT_RULES)
def test_full_keep_returns_input(select):
    x = torch.randn(2, 9, 4)
    kept, idx = select_tokens(x, 1.0, 1, select)
    assert kept is x and idx is None


def test_magnitude_is_top_k_l1():
    x = torch.randn(4, 1 + 20, 6)
    _, idx = select_tokens(x, 0.3, 1, "magnitude")
    l1 = x[:, 1:].abs().sum(-1)
    expect = l1.topk(6, dim=1).indices.sort(dim=1).values
    assert torch.equal(idx, expect)
    # a token with a large L2 but small L1 norm: L1 and L2 disagree, each rule keeps its own choice
    y = torch.zeros(1, 2, 4)
    y[0, 0] = torch.tensor([3.0, 0, 0, 0])  # L1 3, L2 9
    y[0, 1] = torch.tensor([1.0, 1, 1, 1])  # L1 4, L2 4
    assert select_indices(y, 0.5, "magnitude").item() == 1
    assert select_indices(y, 0.5, "l2").item() == 0


def test_random_is_seeded_and_uniform():
    x = torch.randn(2000, 1 + 10, 4)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    _, a = select_tokens(x, 0.3, 1, "random", generator=g1)
    _, b = select_tokens(x, 0.3, 1, "random", generator=g2)
    assert torch.equal(a, b)
    # each of the 10 patches is kept with probability 0.3: counts within 5 sigma of 600
    counts = torch.bincount(a.flatten(), minlength=10).float()
    assert ((counts - 600).abs() < 5 * (2000 * 0.3 * 0.7) ** 0.5).all(), counts
    # independent of content: magnitude would always pick the same ones here
    _, c = select_tokens(x, 0.3, 1, "random", generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a, c)


def test_grid_spreads_evenly():
    _, idx = select_tokens(torch.randn(2, 1 + 64, 4), 0.25, 1, "grid")
    assert idx.shape == (2, 16) and torch.equal(idx[0], idx[1])
    gaps = idx[0].diff()
    assert gaps.min() >= 4 and gaps.max() <= 5


@pytest.mark.parametrize("n,rho", [(64, 0.5), (64, 0.2), (64, 0.9), (196, 0.3), (10, 0.25), (7, 1 / 7)])
def test_jitter_is_an_evenly_spread_subset_at_a_random_offset(n, rho):
    g = torch.Generator().manual_seed(0)
    k = num_kept(n, rho)
    idx = select_indices(torch.randn(4000, n, 2), rho, "jitter", g)
    assert idx.shape == (4000, k) and int(idx.min()) >= 0 and int(idx.max()) < n
    assert bool((idx.diff(dim=1) > 0).all())  # K distinct patches, ascending
    if k > 1:
        gaps = idx.diff(dim=1).float()
        assert float(gaps.min()) >= n // k and float(gaps.max()) <= -(-n // k)  # spread like grid's
    freq = torch.bincount(idx.flatten(), minlength=n).float() / 4000
    assert torch.allclose(freq, torch.full((n,), k / n), atol=0.04)  # every patch equally likely
    assert len({tuple(r) for r in idx[:200].tolist()}) > 1  # the offset varies between images
    again = select_indices(torch.randn(4000, n, 2), rho, "jitter", torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)  # seeded by the generator


def test_jitter_trains_for_the_grid_dial():
    assert DEFAULT_INFERENCE_SELECT["jitter"] == "grid"
    s = PatchSampler(num_prefix_tokens=1, keep_ratio=0.5, select="jitter")
    s.trained_select = "jitter"
    s.eval()
    assert s.effective_select == "grid"


def test_grid_indices_built_once_and_usable_in_training_after_inference():
    with torch.inference_mode():  # first asked for by a sweep
        _, a = select_tokens(torch.randn(2, 1 + 64, 4), 0.2, 1, "grid")
    x = torch.randn(3, 1 + 64, 4, requires_grad=True)
    kept, b = select_tokens(x, 0.2, 1, "grid")
    assert b.untyped_storage().data_ptr() == a.untyped_storage().data_ptr()  # the same cached tensor
    kept.sum().backward()  # gather saved the cached indices for backward
    assert int((x.grad[:, 1:].abs().sum(-1) > 0).sum()) == 3 * 13


def test_gradients_flow_to_kept_tokens_only():
    x = torch.randn(2, 1 + 8, 4, requires_grad=True)
    kept, idx = select_tokens(x, 0.5, 1, "magnitude")
    kept.sum().backward()
    g = x.grad.abs().sum(-1)
    assert (g[:, 0] > 0).all()
    mask = torch.zeros(2, 8, dtype=torch.bool).scatter_(1, idx, True)
    assert (g[:, 1:][mask] > 0).all() and (g[:, 1:][~mask] == 0).all()


def test_sampler_module_modes():
    s = PatchSampler(num_prefix_tokens=1, keep_ratio=0.5)
    x = torch.randn(2, 9, 4)
    assert s(x).shape == (2, 5, 4)
    s.eval()  # eval runs every token unless a ratio is set explicitly (as timm's PatchDropout)
    assert s(x).shape == (2, 9, 4)
    s.explicit_keep_ratio = 0.5  # what pss.use_keep_ratio(model, 0.5) sets: dynamic inference
    assert s(x).shape == (2, 5, 4)
    s.return_indices = True
    out, idx = s(x)
    assert idx.shape == (2, 4)
    with pytest.raises(ConfigError):
        PatchSampler(keep_ratio=1.5)


# ----------------------------------------------------------------------------- inference rule (the dial)


def test_default_inference_rule_follows_training_and_is_deterministic():
    torch.manual_seed(0)
    model = pss.build_model("pss_vit_tiny_patch4_32", 10, depth=2, embed_dim=32, num_heads=2)
    s = model.patch_drop
    assert s.trained_select is None and pss.control.inference_select(model) == DEFAULT_INFERENCE_SELECT[None]
    pss.set_keep_ratio(model, 1.0, select="random")  # every token: the weights do not learn a rule
    assert s.trained_select is None
    pss.set_keep_ratio(model, 0.4, select="random")  # a training step below 1 records the rule
    assert s.trained_select == "random" and s.effective_select == "random"  # train mode: the training rule
    model.eval()
    assert s.effective_select == "grid" == DEFAULT_INFERENCE_SELECT["random"]  # never random unless asked
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad(), pss.use_keep_ratio(model, 0.5):
        a, b = model(x), model(x)
    assert torch.equal(a, b)  # the same logits for the same batch
    with torch.no_grad(), pss.use_keep_ratio(model, 0.5, "random"):  # asked for: random, explicitly
        assert s.effective_select == "random" and not torch.equal(model(x), model(x))
    assert s.explicit_select is None and s.select == "random"
    pss.set_keep_ratio(model, 0.4, select="magnitude")
    assert s.trained_select == "magnitude" and pss.control.inference_select(model) == "magnitude"


def test_trained_rule_of_a_recipe_and_unknown_rules():
    from pss.config import TrainConfig

    assert TrainConfig().trained_select is None  # fixed 1.0: a baseline
    assert TrainConfig(select="random", schedule={"name": "cyclic"}).trained_select == "random"
    assert TrainConfig(select="random", schedule={"name": "fixed", "rho": 0.5}).trained_select == "random"
    for rule in (None, *SELECT_RULES):
        assert default_inference_select(rule) in DETERMINISTIC_RULES
    with pytest.raises(ConfigError, match=r"trained with selection rule 'topk', unknown to this version of pss.*--select"):
        default_inference_select("topk")
    model = pss.build_model("pss_vit_tiny_patch4_32", 10, depth=1, embed_dim=32, num_heads=2)
    with pytest.raises(ConfigError, match="unknown to this version"):
        pss.control.set_trained_select(model, "topk")
