"""Token selection: which patch tokens go through the transformer at a given keep ratio.

One plain function does the work (`select_tokens`); `PatchSampler` is the thin `nn.Module` that
stands where timm's `patch_drop` stage stands, after the position embedding and before the blocks.

Conventions (shared with timm's `PatchDropoutWithIndices`):
  * tokens are (B, N, C) with `num_prefix_tokens` prefix tokens (CLS, registers) first;
  * keep indices are (B, K) indices into the *patch* tokens (0 .. N - prefix - 1), sorted ascending;
  * prefix tokens are never dropped and come first in the output;
  * keep_ratio == 1.0 returns the input itself and `None` for the indices ("all kept").
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from pss.errors import ConfigError

SELECT_RULES = ("magnitude", "random", "l2", "grid", "mixed", "jitter")
# Rules that pick the same tokens for the same image at every call (what inference needs).
DETERMINISTIC_RULES = ("magnitude", "l2", "grid")
# The training rule wherever none is given (a recipe without `select`, a model, pss.attach, pss bench speed):
# random. In the recipe study (docs/findings.md, "Which recipe") random was above the equal-time baseline on all
# three seeds while the paper's magnitude came below it on both (by 4.65) and l2 likewise: on the images we
# measured, a model trained on its highest-norm patches rarely sees the others. The paper's recipes say
# `select: magnitude`.
DEFAULT_SELECT = "random"
# The rule used at inference (eval mode, no rule asked for), by the rule the weights were trained with
# (None: trained at every token -- a baseline, or a timm model attached after its training). Measured by
# the protocol of benchmarks/inference_select.py (best mean top-1 over keep ratios 0.8-0.2 on held-out
# training images, per run; docs/dial.md, with the evidence in benchmarks/results/inference_select_cpu_2026-12-01.md).
# The data decides more than the training rule: grid wins on every natural-image run (baselines and
# random-trained, by 5-8 points), magnitude / l2 on the synthetic built-in set, whose classes live in a
# few high-contrast patches by construction (by 17-33 over grid). The protocol's plain average, dominated by the
# synthetic set, would pick l2; the None and random rows ship grid because users' images are natural
# images (docs/dial.md says so and gives both figures). magnitude ties l2 for magnitude-trained models.
# Rows without runs follow the training rule.
DEFAULT_INFERENCE_SELECT: dict[str | None, str] = {
    None: "grid",
    "magnitude": "magnitude",
    "l2": "l2",
    "random": "grid",
    "grid": "grid",
    "mixed": "grid",
    "jitter": "grid",  # trained on evenly spread subsets at random offsets: the offset-0 one at inference
}
# `jitter`: `grid`'s evenly spread subset at a random offset per image in training (systematic sampling),
# so that the model trains on subsets spread like the ones it sees at inference (grid).
# `mixed`: this share of the kept tokens is the top by L1 magnitude, the rest is drawn at random
# from the other patches (so low-magnitude patches are still seen in training).
MIXED_MAGNITUDE_SHARE = 0.5


def num_kept(num_patches: int, keep_ratio: float) -> int:
    """K = max(1, round(rho * num_patches)); Python's round (banker's) is avoided for stability."""
    check_keep_ratio(keep_ratio)
    return max(1, min(num_patches, int(math.floor(keep_ratio * num_patches + 0.5))))


def check_keep_ratio(keep_ratio: float) -> float:
    """`keep_ratio` as a float in (0, 1]: a Python or NumPy number, or a one-element float tensor; not a
    bool (True is not 1.0)."""
    value = keep_ratio
    if type(value) not in (float, int):  # the per-step case stays plain type checks (torch.compile traces it)
        if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
            value = value.item()
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = float(value)
        else:
            raise ConfigError(f"keep ratio must be in (0, 1] (a number, not a {type(keep_ratio).__name__}), got {keep_ratio!r}")
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"keep ratio must be in (0, 1], got {keep_ratio!r}")
    return float(value)


def check_select(select: str) -> None:
    if select not in SELECT_RULES:
        raise ConfigError(f"unknown selection rule {select!r}; choose one of {', '.join(SELECT_RULES)}")


def describe_inference_defaults() -> str:
    """`DEFAULT_INFERENCE_SELECT` in words, for help texts: "grid for models trained at every token
    (baselines) and those trained with random, grid, mixed or jitter; magnitude for magnitude-trained ones; ..."."""
    by_rule: dict[str, list[str | None]] = {}
    for trained, rule in DEFAULT_INFERENCE_SELECT.items():
        by_rule.setdefault(rule, []).append(trained)
    parts = []
    for rule, trained in by_rule.items():
        who = ["models trained at every token (baselines)"] if None in trained else []
        named = [t for t in trained if t is not None]
        if named:
            rest = ", ".join(named[:-1]) + (" or " if len(named) > 1 else "") + named[-1]
            who.append(f"{'those' if who else 'models'} trained with {rest}")
        parts.append(f"{rule} for {' and '.join(who)}")
    return "; ".join(parts)


def default_inference_select(trained_select: str | None) -> str:
    """The deterministic rule a model trained with `trained_select` runs at inference unless asked
    otherwise (None: trained at every token)."""
    if trained_select not in DEFAULT_INFERENCE_SELECT:
        raise ConfigError(
            f"the model was trained with selection rule {trained_select!r}, unknown to this version of pss "
            f"(it knows {', '.join(SELECT_RULES)}): pass an inference rule explicitly (--select RULE) or upgrade pss"
        )
    return DEFAULT_INFERENCE_SELECT[trained_select]


def token_scores(patches: torch.Tensor, select: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Importance score per patch token, (B, N, C) -> (B, N); higher is kept first."""
    if select == "magnitude":
        return patches.detach().abs().sum(dim=-1)  # L1 norm, as in the paper
    if select == "l2":
        return patches.detach().float().pow(2).sum(dim=-1)
    if select == "random":
        b, n = patches.shape[:2]
        return torch.rand(b, n, device=patches.device, generator=generator)
    raise ConfigError(f"selection rule {select!r} has no scores")


def select_indices(
    patches: torch.Tensor,
    keep_ratio: float,
    select: str = DEFAULT_SELECT,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices (B, K) of the patch tokens to keep, sorted ascending. `patches` is (B, N, C)."""
    check_select(select)
    b, n = patches.shape[:2]
    k = num_kept(n, keep_ratio)
    if select == "grid":
        # Evenly spaced in raster order: the same spatially spread set for every image.
        return _grid_indices(n, k, patches.device).unsqueeze(0).expand(b, k)
    if select == "jitter":
        return _jittered_grid_indices(b, n, k, patches.device, generator)
    if select == "mixed":
        scores = torch.rand(b, n, device=patches.device, generator=generator)  # in [0, 1)
        k_top = int(k * MIXED_MAGNITUDE_SHARE)
        if k_top:
            top = token_scores(patches, "magnitude").topk(k_top, dim=1, sorted=False).indices
            scores.scatter_(1, top, 2.0)  # above every random score: always among the K kept
    else:
        scores = token_scores(patches, select, generator)
    idx = scores.topk(k, dim=1, sorted=False).indices  # (B, K)
    return idx.sort(dim=1).values


_GRID_CACHE: dict[tuple[int, int, torch.device], torch.Tensor] = {}


def _grid_indices(n: int, k: int, device: torch.device) -> torch.Tensor:
    """(K,) evenly spaced patch indices; built once per (N, K, device), not at every step."""
    key = (n, k, device)
    if key not in _GRID_CACHE:
        # a normal tensor even when first asked for under inference_mode (a sweep), so training can
        # later save it for backward
        with torch.inference_mode(False):
            _GRID_CACHE[key] = torch.linspace(0, n - 1, k, device=device).round().long()
    return _GRID_CACHE[key]


def _jittered_grid_indices(b: int, n: int, k: int, device: torch.device,
                           generator: torch.Generator | None) -> torch.Tensor:
    """(B, K) evenly spread patch indices at a random offset per image (systematic sampling): index
    floor(u + j n / K) for j < K, u uniform in [0, n / K). Always K distinct, ascending indices below n;
    every patch is kept with probability K / n, and the kept ones are spread like `grid`'s."""
    stride = n / k
    offset = torch.rand(b, 1, device=device, generator=generator) * stride
    steps = _jitter_steps(k, stride, device)
    return (offset + steps).floor().long().clamp_(max=n - 1)


_STEPS_CACHE: dict[tuple[int, float, torch.device], torch.Tensor] = {}


def _jitter_steps(k: int, stride: float, device: torch.device) -> torch.Tensor:
    """(1, K): j * stride, built once per (K, stride, device)."""
    key = (k, stride, device)
    if key not in _STEPS_CACHE:
        with torch.inference_mode(False):
            _STEPS_CACHE[key] = (torch.arange(k, device=device, dtype=torch.float64) * stride).float().unsqueeze(0)
    return _STEPS_CACHE[key]


def gather_tokens(tokens: torch.Tensor, keep_idx: torch.Tensor) -> torch.Tensor:
    """tokens (B, N, C), keep_idx (B, K) -> (B, K, C)."""
    return tokens.gather(1, keep_idx.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def select_tokens(
    tokens: torch.Tensor,
    keep_ratio: float,
    num_prefix_tokens: int = 1,
    select: str = DEFAULT_SELECT,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Keep a fraction of the patch tokens of `tokens` (B, P + N, C).

    Returns (kept (B, P + K, C), keep_idx (B, K) patch indices, or None when everything is kept).
    """
    keep_ratio = check_keep_ratio(keep_ratio)
    check_select(select)
    if keep_ratio >= 1.0 or tokens.shape[1] <= num_prefix_tokens:  # no patch tokens: nothing to select
        return tokens, None
    prefix, patches = tokens[:, :num_prefix_tokens], tokens[:, num_prefix_tokens:]
    keep_idx = select_indices(patches, keep_ratio, select, generator)
    return torch.cat([prefix, gather_tokens(patches, keep_idx)], dim=1), keep_idx


class PatchSampler(nn.Module):
    """Drop-in for timm's `patch_drop` stage, driven by a keep ratio instead of a drop probability.

    Which keep ratio a forward pass uses (the eval rule, the same as timm's PatchDropout: fewer
    tokens while training, all of them at evaluation unless asked):
      * `explicit_keep_ratio`, when set (`pss.use_keep_ratio(model, rho)`, the dynamic-inference dial),
        in train and eval mode alike;
      * otherwise `keep_ratio` (the training keep ratio, set by `pss.set_keep_ratio` or a
        `pss.KeepRatioScheduler` at every step) in `train()` mode, and 1.0 in `eval()` mode.
    A copy (an EMA model, `copy.deepcopy`) carries both attributes, so it follows the same rule:
    in eval mode it runs every token unless a dial was set on it (or on the model before copying).

    Which rule picks the tokens (`effective_select`):
      * `explicit_select`, when set (`pss.use_keep_ratio(model, rho, select)`), in both modes;
      * `select` (the training rule) in `train()` mode;
      * in `eval()` mode the deterministic default for the rule the weights were trained with
        (`trained_select`, None = at every token; `DEFAULT_INFERENCE_SELECT`): never random unless asked.
    `trained_select` is set when a training keep ratio below 1 is set (`pss.set_keep_ratio`, a
    `KeepRatioScheduler`), and from the recipe when pss builds or loads a model.

    `return_indices=True` gives the `(x, keep_idx)` pair that timm's EVA expects from its
    `patch_drop`. With `record=True` the last keep indices are kept in `last_keep_idx` for analysis.
    """

    def __init__(
        self,
        num_prefix_tokens: int = 1,
        keep_ratio: float = 1.0,
        select: str = DEFAULT_SELECT,
        return_indices: bool = False,
    ) -> None:
        super().__init__()
        keep_ratio = check_keep_ratio(keep_ratio)
        check_select(select)
        self.num_prefix_tokens = num_prefix_tokens
        self.keep_ratio = keep_ratio
        self.explicit_keep_ratio: float | None = None
        self.select = select
        self.explicit_select: str | None = None
        self.trained_select: str | None = select if keep_ratio < 1.0 else None
        self.return_indices = return_indices
        self.record = False
        self.last_keep_idx: torch.Tensor | None = None

    @property
    def effective_keep_ratio(self) -> float:
        """The keep ratio the next forward pass uses (see the class docstring for the rule)."""
        if self.explicit_keep_ratio is not None:
            return self.explicit_keep_ratio
        # keep_ratio is only read in train mode, so a compiled eval graph does not guard on it
        return self.keep_ratio if self.training else 1.0

    @property
    def effective_select(self) -> str:
        """The selection rule the next forward pass uses (see the class docstring for the rule)."""
        if self.explicit_select is not None:
            return self.explicit_select
        return self.select if self.training else default_inference_select(self.trained_select)

    def forward(self, x: torch.Tensor):
        x, keep_idx = select_tokens(x, self.effective_keep_ratio, self.num_prefix_tokens, self.effective_select)
        if self.record:
            self.last_keep_idx = keep_idx
        return (x, keep_idx) if self.return_indices else x

    def extra_repr(self) -> str:
        explicit = "" if self.explicit_keep_ratio is None else f", explicit_keep_ratio={self.explicit_keep_ratio}"
        if self.explicit_select is not None:
            explicit += f", explicit_select={self.explicit_select!r}"
        return (f"keep_ratio={self.keep_ratio}{explicit}, select={self.select!r}, "
                f"trained_select={self.trained_select!r}, num_prefix_tokens={self.num_prefix_tokens}")
