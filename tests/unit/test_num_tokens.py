"""pss.control.num_tokens: the tokens through the blocks per image that the train log, `pss bench`
and `pss sweep` report, by value and against what the blocks really see."""
import pytest
import timm
import torch
from torch import nn

import pss
from pss.control import num_tokens
from pss.errors import ConfigError
from pss.models.simmim import SimMIM

TINY = dict(depth=1, embed_dim=32, num_heads=2)


def _seen(model: nn.Module, blocks: nn.Module, rho: float) -> int:
    """Sequence length the first block gets at keep ratio rho (one forward)."""
    seen = []
    h = blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    try:
        with torch.no_grad(), pss.use_keep_ratio(model, rho):
            model(torch.randn(1, 3, 32, 32))
    finally:
        h.remove()
    return seen[0]


@pytest.mark.parametrize("rho, expect", [(1.0, 65), (0.9, 59), (0.5, 33), (0.25, 17), (0.2, 14), (0.01, 2)])
def test_pss_vit_by_value(rho, expect):
    """64 patches (32 px, patch 4) + the class token; K = max(1, round(rho * 64)), half up."""
    model = pss.build_model("pss_vit_tiny_patch4_32", 10, **TINY).eval()
    assert num_tokens(model, rho) == expect == _seen(model, model.blocks, rho)


@pytest.mark.parametrize("rho, expect", [(1.0, 67), (0.5, 35), (0.3, 22)])
def test_register_tokens_are_prefix_tokens(rho, expect):
    model = pss.build_model("pss_vit_tiny_patch4_32", 10, reg_tokens=2, **TINY).eval()
    assert num_tokens(model, rho) == expect == _seen(model, model.blocks, rho)


def test_wrappers_and_models_without_patches():
    model = pss.build_model("pss_vit_tiny_patch4_32", 10, **TINY)
    assert num_tokens(torch.compile(model), 0.5) == 33  # through torch.compile's wrapper
    assert num_tokens(SimMIM(model, mask_patch_size=8), 0.5) == 33  # a pre-training wrapper's encoder
    assert num_tokens(nn.Linear(2, 2), 0.5) is None
    with pytest.raises(ConfigError, match="keep ratio"):
        num_tokens(model, 0.0)


def test_timm_vit_after_attach():
    model = pss.attach(timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=3)).eval()
    assert [num_tokens(model, r) for r in (1.0, 0.5, 0.1)] == [17, 9, 3]
    assert num_tokens(model, 0.5) == _seen(model, model.blocks, 0.5)
