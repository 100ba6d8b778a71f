"""Token merging: the training-free inference dial of ToMe, for pss ViTs and attached timm ViTs.

Written from the paper (Bolya et al., "Token Merging: Your ViT but Faster", ICLR 2023, section 3):
in every block, between the attention and the MLP, `r` patch tokens are merged into others.

  1. similarity: the block's attention keys, averaged over heads, compared by cosine similarity
     (keys already summarise what a token holds; we take them straight from the qkv projection,
     before a rotary embedding, so the match depends on content, not position);
  2. bipartite soft matching: the patch tokens are split alternately into A (even places in the
     current sequence) and B (odd places); each A token is linked to its most similar B token; the
     `r` most similar links are merged, the other A tokens stay as they are; one layer never
     merges more than half of its tokens (every merge removes an A token);
  3. size-weighted average: every token carries its size (how many input patches it stands for,
     1 at the start); a merged token is sum(size * x) / sum(size), its size the sum;
  4. proportional attention: softmax(q k^T / sqrt(d) + log size), so a merged token weighs as
     much as the patches it stands for.

Prefix tokens (class token, registers) never merge. A merged token keeps the position of its
destination (B) token, so pss ViTs look up the rotary embedding / relative bias of that position in
the next blocks (absolute position embeddings were added before the blocks and need nothing).
Merging comes after token selection, so a PSS model can use both dials at once.

    merged = TokenMerging(model, r=8)        # the same weights, r tokens fewer after every block
    logits = merged(images)

A pure-Python reference of one merge step (loops, explicit similarities) is in the unit tests.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from pss.errors import ConfigError

__all__ = ["TokenMerging", "bipartite_merge", "merge_token_counts", "max_merge_rate", "merge_rates", "supports_merging"]


def bipartite_merge(
    x: torch.Tensor, size: torch.Tensor, pos: torch.Tensor | None, metric: torch.Tensor, r: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One merge step on patch tokens (no prefix): x (B, N, C), size (B, N), pos (B, N) or None,
    metric (B, N, D). Returns (x, size, pos) with N - r tokens: the unmerged A tokens, then B."""
    if r <= 0:
        return x, size, pos
    metric = F.normalize(metric.float(), dim=-1)
    sim = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)  # (B, Na, Nb) cosine similarities
    best, dst = sim.max(dim=-1)  # each A token's most similar B token
    order = best.argsort(dim=-1, descending=True)
    src_a, keep_a = order[:, :r], order[:, r:]  # A tokens merged away / kept
    dst_b = dst.gather(1, src_a)  # (B, r) their B partners

    w = size.to(x.dtype).unsqueeze(-1)
    xs = x * w  # size-weighted features: merged tokens are sums of these divided by summed sizes
    xa, xb, sa, sb = xs[:, ::2], xs[:, 1::2], size[:, ::2], size[:, 1::2]
    c = x.shape[-1]
    xb = xb.scatter_add(1, dst_b.unsqueeze(-1).expand(-1, -1, c), xa.gather(1, src_a.unsqueeze(-1).expand(-1, -1, c)))
    sb = sb.scatter_add(1, dst_b, sa.gather(1, src_a))
    xs = torch.cat([xa.gather(1, keep_a.unsqueeze(-1).expand(-1, -1, c)), xb], dim=1)
    size = torch.cat([sa.gather(1, keep_a), sb], dim=1)
    if pos is not None:  # merged tokens keep their destination's position
        pos = torch.cat([pos[:, ::2].gather(1, keep_a), pos[:, 1::2]], dim=1)
    return xs / size.to(x.dtype).unsqueeze(-1), size, pos


def merge_token_counts(num_patches: int, depth: int, r: int) -> list[int]:
    """Patch tokens entering each block when every block merges `r` (r >= 0). Raises ConfigError when
    a block would have to merge more than half of its patch tokens."""
    if not isinstance(r, int) or isinstance(r, bool) or r < 0:
        raise ConfigError(f"merge rate r must be an integer >= 0 (tokens merged per block), got {r!r}")
    counts, n = [], num_patches
    for i in range(depth):
        counts.append(n)
        if r > n // 2:
            raise ConfigError(
                f"merge rate r={r} would leave block {i + 1} of {depth} fewer tokens than it merges ({n} patch "
                f"tokens, at most {n // 2} can merge): use r <= {max_merge_rate(num_patches, depth)} for this model"
            )
        n -= r
    return counts


def max_merge_rate(num_patches: int, depth: int) -> int:
    """The largest r every block can merge (at most half its patch tokens each)."""
    r = num_patches // 2
    while r > 0 and any(num_patches - i * r < 2 * r for i in range(depth)):
        r -= 1
    return r


def merge_rates(num_patches: int, depth: int, steps: int = 6) -> list[int]:
    """`steps` merge rates from small to the largest this model allows (a sweep's default)."""
    top = max_merge_rate(num_patches, depth)
    return sorted({max(1, round(top * (i + 1) / steps)) for i in range(steps)}) if top else []


def _kind(model: nn.Module) -> str | None:
    """"pss" (our ViT), "timm" (timm's VisionTransformer; not Eva, whose rotary blocks differ) or None."""
    from pss.models.adapter import model_kind as timm_kind
    from pss.models.vit import PssVisionTransformer

    if isinstance(model, PssVisionTransformer):
        return "pss"
    return "timm" if timm_kind(model) == "vit" else None


def supports_merging(model: nn.Module) -> bool:
    """Whether `TokenMerging` can run `model`: a pss ViT, or a timm VisionTransformer with token or
    average pooling."""
    kind = _kind(model)
    return kind == "pss" or (kind == "timm" and getattr(model, "attn_pool", None) is None
                             and model.global_pool in ("token", "avg"))


class TokenMerging(nn.Module):
    """`model` run with ToMe: `r` tokens merged in every block (r = 0: exactly `model`).

    The wrapped model's weights and keep-ratio dial are shared (`pss.use_keep_ratio(merged, rho)`
    drops tokens first, then the blocks merge)."""

    def __init__(self, model: nn.Module, r: int) -> None:
        super().__init__()
        if not supports_merging(model):
            raise ConfigError(
                f"token merging needs a sequence of patch tokens through plain ViT blocks; {type(model).__name__} "
                "is not a pss ViT or a timm VisionTransformer with token / average pooling: use --reduce drop for it"
            )
        self.model = model
        self.kind = _kind(model)
        self.r = int(r)
        merge_token_counts(model.patch_embed.num_patches, len(model.blocks), self.r)  # refuse r now, in one line

    @property
    def patch_embed(self) -> nn.Module:  # the input size, for pss.flops.example_input
        return self.model.patch_embed

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.model.num_prefix_tokens)

    def mean_tokens(self, keep_ratio: float = 1.0) -> float:
        """Mean tokens entering a block per image (prefix included), after selection at `keep_ratio`."""
        from pss.select import num_kept

        n = num_kept(self.model.patch_embed.num_patches, keep_ratio)
        counts = merge_token_counts(n, len(self.model.blocks), self.r)
        return self.num_prefix_tokens + sum(counts) / len(counts)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m, p = self.model, self.num_prefix_tokens
        if self.r == 0:
            return m(images)
        x = m._pos_embed(m.patch_embed(images))
        out = m.patch_drop(x)
        x, keep_idx = out if isinstance(out, tuple) else (out, None)
        x = m.norm_pre(x)
        b, n = x.shape[0], x.shape[1] - p
        merge_token_counts(n, len(m.blocks), self.r)  # enough tokens after selection too
        pos = None
        if self.kind == "pss":  # patch positions in the full grid (for rope / relative bias)
            pos = keep_idx if keep_idx is not None else torch.arange(n, device=x.device).expand(b, n)
        size = torch.ones(b, x.shape[1], device=x.device, dtype=torch.float32)
        keys: list[torch.Tensor] = []
        for blk in m.blocks:
            key_bias = size.log().to(x.dtype)[:, None, None, :]  # proportional attention, (B, 1, 1, L)
            with _capture_keys(blk.attn, keys):
                h = blk.norm1(x)
                if self.kind == "pss":
                    rel_index, rope = m._kept_positions(pos)
                    a = blk.attn(h, rel_index, rope, key_bias=key_bias)
                else:
                    a = blk.attn(h, attn_mask=key_bias)
            x = x + blk.drop_path1(blk.ls1(a))
            xp, sp, pos = bipartite_merge(x[:, p:], size[:, p:], pos, keys.pop()[:, p:], self.r)
            x, size = torch.cat([x[:, :p], xp], dim=1), torch.cat([size[:, :p], sp], dim=1)
            x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
        return self._head(m.norm(x), size)

    def _head(self, x: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        m, p = self.model, self.num_prefix_tokens
        pool = m.global_pool
        if pool == "avg":  # mean over the input patches: merged tokens count as many as they stand for
            w = size[:, p:].to(x.dtype).unsqueeze(-1)
            feat = (x[:, p:] * w).sum(1) / w.sum(1)
        else:
            feat = x[:, 0]
        feat = m.head_drop(m.fc_norm(feat))
        return m.head(feat)


@contextlib.contextmanager
def _capture_keys(attn: nn.Module, out: list[torch.Tensor]):
    """Collect the block's keys, averaged over heads (B, L, head_dim), from its qkv projection."""
    heads = attn.num_heads

    def hook(_module, _inputs, qkv):
        b, n, three_c = qkv.shape
        c = three_c // 3
        out.append(qkv[..., c : 2 * c].reshape(b, n, heads, c // heads).mean(dim=2))

    handle = attn.qkv.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()

