"""The PSS Vision Transformer: a timm-style ViT whose patch-drop stage is a keep-ratio PatchSampler.

forward_features reads straight through, as in timm:

    patch_embed -> _pos_embed -> patch_drop (select) -> norm_pre -> blocks -> norm

Position information survives token dropping in one of three ways (`pos_embed=`):
  * "learned":  absolute embedding added *before* selection, so kept tokens carry their position;
  * "rel_bias": a per-layer relative position bias table (BEiT / the PSS paper); the (query, key)
                relative-position index is gathered for the kept indices, so each kept pair gets
                exactly the bias it would have had in the full sequence;
  * "rope":     2D rotary embedding (timm's RotaryEmbeddingCat) gathered for the kept indices;
                needs no attention mask, so SDPA can use flash attention.
Attention runs through `attn_impl` ("auto" | "flex" | "sdpa", see pss.models.attention): with
rel_bias, "flex" looks the bias up per kept pair inside a FlexAttention kernel (no (B, h, L, L)
tensor); "auto" takes it for rel_bias on CUDA and keeps SDPA elsewhere. Both give the same numbers and the same
parameters, so a checkpoint moves between them unchanged.
Parameter names follow timm's VisionTransformer (and BEiT's for the bias tables), so timm and
BEiT-style checkpoints map onto it, and timm's optimizer factory / layer decay work unchanged.
"""
from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import DropPath, LayerScale, Mlp, PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.layers.pos_embed_sincos import RotaryEmbeddingCat, apply_rot_embed_cat
from torch import nn

from pss.errors import ConfigError
from pss.models.attention import (
    AttnImpl, check_attn_impl, flex_attention, key_bias_score_mod, rel_bias_score_mod, resolve_attn_impl,
)
from pss.select import DEFAULT_SELECT, PatchSampler

PosEmbed = Literal["learned", "rel_bias", "rope"]
POS_EMBEDS = ("learned", "rel_bias", "rope")
# "timm": truncated normal (std 0.02) everywhere; "reference": the same, then the reference code's
# depth-scaled residual projections and 1e-3 head (see PssVisionTransformer._init_weights).
WeightInit = Literal["timm", "reference"]
WEIGHT_INITS = ("timm", "reference")
# Rotary coordinates of a grid smaller than the model's (a lower training resolution, pss.resolution):
# "integer" (default) gives it the first rows and columns of the full grid's positions (the offsets between
# neighbours stay 1, as relative bias has them); "rescaled" spreads the smaller grid over the full grid's
# range (each patch at the position of the image region it covers, as interpolating a learned embedding
# does). Measured (benchmarks/results/rope_coords_check_cpu_2026-12-06.md, one seed): integer ended 1.5
# points above rescaled at full side (within seed noise), rescaled led by ~4 while training at low sides.
RopeCoords = Literal["rescaled", "integer"]
ROPE_COORDS = ("rescaled", "integer")


def relative_position_index(grid: tuple[int, int], num_prefix_tokens: int,
                            table_grid: tuple[int, int] | None = None) -> torch.Tensor:
    """(P + N, P + N) index into a relative-bias table of (2H-1)(2W-1) + 3 rows (BEiT layout), H x W being
    `table_grid` (default: `grid`; a smaller `grid` uses the table's rows of the offsets it has).

    Patch pairs index by their 2D offset; the last three rows are shared by all prefix tokens:
    prefix->patch, patch->prefix, prefix->prefix.
    """
    gh, gw = grid
    th, tw = table_grid or grid
    if gh > th or gw > tw:
        raise ValueError(f"a {gh}x{gw} grid has offsets a {th}x{tw} relative-bias table does not hold")
    coords = torch.stack(torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")).flatten(1)  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N), offsets in [-(g-1), g-1]
    rel = rel.permute(1, 2, 0) + torch.tensor([th - 1, tw - 1])
    patch_index = rel[..., 0] * (2 * tw - 1) + rel[..., 1]  # (N, N)
    n_rel = (2 * th - 1) * (2 * tw - 1)
    p, n = num_prefix_tokens, gh * gw
    index = torch.empty(p + n, p + n, dtype=torch.long)
    index[p:, p:] = patch_index
    index[:p, p:] = n_rel  # prefix query -> patch key
    index[p:, :p] = n_rel + 1  # patch query -> prefix key
    index[:p, :p] = n_rel + 2  # prefix -> prefix
    return index


class RelPos(NamedTuple):
    """Relative-bias lookup for the kept sequence (L tokens: prefix + kept patches) of N0 in the full one.

    index: (N0, N0) table rows of the full sequence (a buffer);
    pairs: (B, L, L) positions of the kept (query, key) pairs in the flattened (N0 x N0) bias, for SDPA's
           gathered mask; None when all tokens are kept or when flex runs;
    seq:   (B, L) positions of the kept tokens in the full sequence, for flex's in-kernel lookup;
           None when all tokens are kept or when SDPA runs.
    """

    index: torch.Tensor
    pairs: torch.Tensor | None = None
    seq: torch.Tensor | None = None


class Attention(nn.Module):
    """Multi-head self-attention through SDPA or FlexAttention (`attn_impl`), with optional per-layer
    relative position bias (looked up through a shared index) and rotary embedding."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        rel_bias_rows: int = 0,
        attn_impl: AttnImpl = "auto",
    ) -> None:
        super().__init__()
        check_attn_impl(attn_impl, attn_drop)
        self.attn_impl = attn_impl
        if dim % num_heads:
            raise ConfigError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        # BEiT's parameter name, so BEiT-style checkpoints map onto it.
        self.relative_position_bias_table = (
            nn.Parameter(torch.zeros(rel_bias_rows, num_heads)) if rel_bias_rows else None
        )

    def impl(self, device: torch.device) -> str:
        """The implementation this layer runs on `device`: "flex" or "sdpa"."""
        has_bias = self.relative_position_bias_table is not None
        return resolve_attn_impl(self.attn_impl, device.type, self.attn_drop, has_bias)

    def forward(
        self,
        x: torch.Tensor,
        rel_index: RelPos | None = None,
        rope: torch.Tensor | None = None,
        key_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`key_bias` (B, 1, 1, L), optional: added to every query's score of each key (token merging's
        proportional attention, pss.models.merge)."""
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        if rope is not None:  # rope: (N, 2d) or (B, 1, N, 2d); identity rows for prefix tokens
            # back to v's dtype: a float32 rope table would promote bf16 q, k and keep SDPA off flash
            q, k = apply_rot_embed_cat(q, rope).type_as(v), apply_rot_embed_cat(k, rope).type_as(v)
        table = self.relative_position_bias_table
        if self.impl(x.device) == "flex":
            score_mod = None
            if table is not None:
                # (h, N0, N0): the full sequence's bias, batch-independent; flex reads the kept pairs from
                # it inside the kernel through the keep indices (rel_index.seq), never as a (B, h, L, L) tensor.
                score_mod = rel_bias_score_mod(table.t()[:, rel_index.index], rel_index.seq)
            if key_bias is not None:
                score_mod = key_bias_score_mod(score_mod, key_bias[:, 0, 0])
            x = flex_attention(q, k, v, score_mod)
        else:
            bias = None
            if table is not None:
                bias = table[rel_index.index]  # (N0, N0, h): the full model's bias
                if rel_index.pairs is None:
                    bias = bias.permute(2, 0, 1).unsqueeze(0)  # (1, h, N0, N0)
                else:
                    # Gather the kept pairs from the full (batch-independent) bias rather than straight from
                    # the table: the backward scatter then spreads over N0^2 slots, not over a few hundred
                    # table rows, which keeps its atomic adds from piling up on the GPU.
                    bias = bias.flatten(0, 1)[rel_index.pairs].permute(0, 3, 1, 2)  # (B, h, N, N)
                bias = bias.to(q.dtype)
            if key_bias is not None:
                bias = key_bias.to(q.dtype) if bias is None else bias + key_bias.to(q.dtype)
            x = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=self.attn_drop if self.training else 0.0
            )
        return self.proj_drop(self.proj(rearrange(x, "b h n d -> b n (h d)")))


class Block(nn.Module):
    """Pre-norm transformer block (timm's layout and names: norm1, attn, ls1, norm2, mlp, ls2)."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        init_values: float | None = None,
        rel_bias_rows: int = 0,
        attn_impl: AttnImpl = "auto",
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(
            dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop, rel_bias_rows=rel_bias_rows,
            attn_impl=attn_impl,
        )
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x, rel_index=None, rope=None) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), rel_index, rope)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class PssVisionTransformer(nn.Module):
    """Vision Transformer trained and run with a fraction of its patch tokens.

    The keep ratio and selection rule live in `self.patch_drop` (a PatchSampler) and are set with
    `pss.set_keep_ratio(model, rho, select)`; rho = 1.0 is exactly the unmodified model.
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: Literal["token", "avg"] = "token",
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        class_token: bool = True,
        reg_tokens: int = 0,
        pos_embed: PosEmbed = "rel_bias",
        init_values: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        keep_ratio: float = 1.0,
        select: str = DEFAULT_SELECT,
        weight_init: WeightInit = "timm",
        attn_impl: AttnImpl = "auto",
        rope_coords: RopeCoords = "integer",
    ) -> None:
        super().__init__()
        if rope_coords not in ROPE_COORDS:
            raise ConfigError(f"unknown rope_coords {rope_coords!r}; choose one of {', '.join(ROPE_COORDS)}")
        if weight_init not in WEIGHT_INITS:
            raise ConfigError(f"unknown weight_init {weight_init!r}; choose one of {', '.join(WEIGHT_INITS)}")
        if pos_embed not in POS_EMBEDS:
            raise ConfigError(f"unknown pos_embed {pos_embed!r}; choose one of {', '.join(POS_EMBEDS)}")
        if global_pool not in ("token", "avg"):
            raise ConfigError(f"unknown global_pool {global_pool!r}; choose 'token' or 'avg'")
        if global_pool == "token" and not class_token:
            raise ConfigError("global_pool='token' needs class_token=True; use global_pool='avg' without a class token")
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.embed_dim = embed_dim
        self.num_prefix_tokens = int(class_token) + reg_tokens
        self.pos_embed_type = pos_embed

        # strict_img_size=False: training at a lower resolution (pss.resolution) feeds smaller grids
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                                      strict_img_size=False)
        grid = self.patch_embed.grid_size
        self.grid = (int(grid[0]), int(grid[1]))
        self.dynamic_size = True  # runs any grid up to its own (pss.budget.FlopCost counts it)
        self.rope_coords = rope_coords
        self._head_dim = embed_dim // num_heads
        self._grid_cache: dict[tuple, tuple[torch.Tensor | None, torch.Tensor | None]] = {}
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, embed_dim)) if reg_tokens else None
        # timm layout: the learned embedding covers prefix + patch tokens.
        self.pos_embed = (
            nn.Parameter(torch.zeros(1, self.num_prefix_tokens + num_patches, embed_dim)) if pos_embed == "learned" else None
        )
        self.pos_drop = nn.Dropout(drop_rate)
        self.patch_drop = PatchSampler(self.num_prefix_tokens, keep_ratio, select, return_indices=True)

        rel_rows = 0
        if pos_embed == "rel_bias":
            rel_rows = (2 * grid[0] - 1) * (2 * grid[1] - 1) + 3
            self.register_buffer(
                "relative_position_index", relative_position_index(grid, self.num_prefix_tokens), persistent=False
            )
        else:
            self.relative_position_index = None
        if pos_embed == "rope":
            head_dim = embed_dim // num_heads
            if head_dim % 4:
                raise ConfigError(f"rope needs head_dim divisible by 4, got {head_dim} (embed_dim/num_heads)")
            rope = RotaryEmbeddingCat(head_dim, in_pixels=False, feat_shape=list(grid), ref_feat_shape=list(grid))
            emb = rope.get_embed()  # (N, 2 * head_dim): [sin | cos]
            # Prefix tokens get the identity rotation (sin = 0, cos = 1), so one gather covers all tokens.
            ident = torch.cat([torch.zeros(self.num_prefix_tokens, head_dim), torch.ones(self.num_prefix_tokens, head_dim)], 1)
            self.register_buffer("rope_embed", torch.cat([ident, emb], 0), persistent=False)
        else:
            self.rope_embed = None
        self.register_buffer("prefix_index", torch.arange(self.num_prefix_tokens), persistent=False)

        self.norm_pre = nn.Identity()
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()  # stochastic depth decay rule
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr[i],
                init_values=init_values,
                rel_bias_rows=rel_rows,
                attn_impl=attn_impl,
            )
            for i in range(depth)
        )
        use_fc_norm = global_pool == "avg"  # as timm: norm after pooling when averaging
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6) if use_fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(weight_init)

    def _init_weights(self, weight_init: str = "timm") -> None:
        for p in (self.pos_embed, self.cls_token, self.reg_token):
            if p is not None:
                trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if weight_init == "reference":
            # The reference (BEiT / SimMIM / PSS) code: each block's residual projections scaled by
            # 1 / sqrt(2 * layer), so the residual stream's variance does not grow with depth, and the
            # classifier head scaled by 1e-3 (near-zero logits at the start).
            with torch.no_grad():
                for layer, block in enumerate(self.blocks, start=1):
                    block.attn.proj.weight.div_(math.sqrt(2.0 * layer))
                    block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer))
                if isinstance(self.head, nn.Linear):
                    self.head.weight.mul_(1e-3)
                    self.head.bias.mul_(1e-3)

    # timm integration -------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        skip = {"pos_embed", "cls_token", "reg_token"}
        skip |= {n for n, _ in self.named_parameters() if n.endswith("relative_position_bias_table")}
        return skip

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^cls_token|reg_token|pos_embed|patch_embed|norm_pre", blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))])

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def attention_impl(self, device: torch.device | str | None = None) -> str:
        """The attention implementation that runs on `device` (default: the model's): "flex" or "sdpa"."""
        device = torch.device(device) if device is not None else self.prefix_index.device
        return self.blocks[0].attn.impl(device) if len(self.blocks) else "sdpa"

    # forward ----------------------------------------------------------------------------------
    def _pos_embed(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Prepend prefix tokens; add the learned absolute embedding (before selection), resampled as timm's
        dynamic_img_size does where the patch grid is smaller than the model's."""
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        x = torch.cat(prefix + [x], dim=1) if prefix else x
        if self.pos_embed is not None:
            pos = self.pos_embed
            if grid is not None and grid != self.grid:
                pos = resample_abs_pos_embed(pos, new_size=list(grid), old_size=list(self.grid),
                                             num_prefix_tokens=self.num_prefix_tokens)
            x = x + pos
        return self.pos_drop(x)

    def grid_of(self, images: torch.Tensor) -> tuple[int, int]:
        """The patch grid of a (B, C, H, W) batch: whole patches, at most the model's own grid."""
        h, w = images.shape[-2:]
        p = self.patch_embed.patch_size
        if h % p[0] or w % p[1] or h // p[0] > self.grid[0] or w // p[1] > self.grid[1]:
            raise ValueError(f"input of {h}x{w} px: give whole {p[0]} px patches, at most "
                             f"{self.grid[0] * p[0]}x{self.grid[1] * p[1]} px")
        return h // p[0], w // p[1]

    def grid_tables(self, grid: tuple[int, int] | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(relative-bias index, rotary embedding) of the prefix + patch tokens of `grid` (None: the model's):
        a smaller grid's are built once (per device) and kept, never per step. Relative bias uses the
        offsets the smaller grid has (integer coordinates); rope follows `rope_coords`."""
        if grid is None or grid == self.grid:
            return self.relative_position_index, self.rope_embed
        device = self.prefix_index.device
        key = (grid, device)
        hit = self._grid_cache.get(key)
        if hit is None:
            p = self.num_prefix_tokens
            rel = rope = None
            if self.relative_position_index is not None:
                rel = relative_position_index(grid, p, self.grid).to(device)
            if self.rope_embed is not None:
                ref = list(grid) if self.rope_coords == "integer" else list(self.grid)
                emb = RotaryEmbeddingCat(self._head_dim, in_pixels=False, feat_shape=list(grid), ref_feat_shape=ref).get_embed()
                rope = torch.cat([self.rope_embed[:p], emb.to(self.rope_embed)], 0)
            hit = self._grid_cache[key] = (rel, rope)
        return hit

    def _kept_positions(self, keep_idx: torch.Tensor | None, grid: tuple[int, int] | None = None):
        """Position terms for the kept sequence (prefix + kept patches of `grid`, default the model's): the
        relative-bias lookup (a RelPos for the attention implementation that runs, None if unused) and the
        rotary embedding."""
        flex = self.attention_impl() == "flex"
        rel_table, rope_table = self.grid_tables(grid)
        full_rel = None if rel_table is None else RelPos(rel_table)
        if keep_idx is None:  # all kept: the full, batch-independent tables
            return full_rel, rope_table
        p = self.num_prefix_tokens
        seq_idx = torch.cat([self.prefix_index.expand(keep_idx.shape[0], -1), keep_idx + p], dim=1)  # (B, L)
        rel_index = rope = None
        if full_rel is not None and flex:
            rel_index = RelPos(rel_table, seq=seq_idx)  # looked up inside the kernel
        elif full_rel is not None:
            # (B, L, L) positions of the kept (query, key) pairs in the flattened full (N0 x N0) bias
            n0 = rel_table.shape[0]
            rel_index = RelPos(rel_table, pairs=seq_idx[:, :, None] * n0 + seq_idx[:, None, :])
        if rope_table is not None:
            rope = rope_table[seq_idx].unsqueeze(1)  # (B, 1, L, 2d), broadcast over heads
        return rel_index, rope

    def forward_features_with_indices(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, 3, H, W) -> (tokens (B, P + K, C), keep_idx (B, K) or None when all patches are kept). H and W
        may be smaller than the model's side (whole patches): a lower training resolution."""
        grid = self.grid_of(x)
        x = self.patch_embed(x)
        x = self._pos_embed(x, grid)
        x, keep_idx = self.patch_drop(x)
        return self.forward_blocks(x, keep_idx, grid), keep_idx

    def forward_blocks(self, x: torch.Tensor, keep_idx: torch.Tensor | None = None,
                       grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Run the transformer on an already selected sequence (B, P + K, C) whose patch tokens sit at
        `keep_idx` (B, K) in the patch grid `grid` (default the model's; None: all patches, in order)."""
        rel_index, rope = self._kept_positions(keep_idx, grid)
        x = self.norm_pre(x)
        for blk in self.blocks:
            x = blk(x, rel_index, rope)
        return self.norm(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features_with_indices(x)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, self.num_prefix_tokens :].mean(dim=1) if self.global_pool == "avg" else x[:, 0]
        x = self.head_drop(self.fc_norm(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Registration with timm ---------------------------------------------------------------------------
# `timm.create_model("pss_vit_small_patch16_224", pos_embed="rope", num_classes=10)` after `import pss`.
# No pretrained weights are published for these architectures: start from scratch or from a
# checkpoint with `pss train --init` (timm / MAE / SimMIM / BEiT weights map onto the names: pss.models.convert).

def _cfg(img_size: int, **kw) -> dict:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    return dict(
        url="", num_classes=1000, input_size=(3, img_size, img_size), pool_size=None, crop_pct=0.9 if img_size > 64 else 1.0,
        interpolation="bicubic", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
        first_conv="patch_embed.proj", classifier="head", **kw,
    )


ARCHS: dict[str, dict] = {
    "pss_vit_tiny_patch16_224": dict(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3),
    "pss_vit_small_patch16_224": dict(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "pss_vit_base_patch16_224": dict(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12),
    # CIFAR-scale: 32 px inputs, 4 px patches -> an 8 x 8 grid of 64 patches.
    "pss_vit_tiny_patch4_32": dict(img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3),
    "pss_vit_small_patch4_32": dict(img_size=32, patch_size=4, embed_dim=384, depth=12, num_heads=6),
}

from timm.models import generate_default_cfgs, register_model  # noqa: E402

default_cfgs = generate_default_cfgs({name: _cfg(a["img_size"]) for name, a in ARCHS.items()})


def _create(name: str, pretrained: bool = False, **kwargs) -> PssVisionTransformer:
    if pretrained:
        raise ConfigError(
            f"{name} has no published pretrained weights; train from scratch or load weights with `pss train --init CKPT`"
        )
    for k in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(k, None)
    return PssVisionTransformer(**{**ARCHS[name], **kwargs})


@register_model
def pss_vit_tiny_patch16_224(pretrained: bool = False, **kwargs) -> PssVisionTransformer:
    return _create("pss_vit_tiny_patch16_224", pretrained, **kwargs)


@register_model
def pss_vit_small_patch16_224(pretrained: bool = False, **kwargs) -> PssVisionTransformer:
    return _create("pss_vit_small_patch16_224", pretrained, **kwargs)


@register_model
def pss_vit_base_patch16_224(pretrained: bool = False, **kwargs) -> PssVisionTransformer:
    return _create("pss_vit_base_patch16_224", pretrained, **kwargs)


@register_model
def pss_vit_tiny_patch4_32(pretrained: bool = False, **kwargs) -> PssVisionTransformer:
    return _create("pss_vit_tiny_patch4_32", pretrained, **kwargs)


@register_model
def pss_vit_small_patch4_32(pretrained: bool = False, **kwargs) -> PssVisionTransformer:
    return _create("pss_vit_small_patch4_32", pretrained, **kwargs)
