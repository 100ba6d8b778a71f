"""SimMIM-style masked image modeling for the PSS ViT encoder (Xie et al., 2022).

Random square regions of `mask_patch_size` pixels (a multiple of the model's patch size) are masked;
their patch tokens are replaced by a learned mask token *before* the position embedding, the encoder
runs on the whole sequence (every token: masking is not token dropping), and a light decoder (one
1x1 convolution + pixel shuffle) predicts raw pixels. The loss is the L1 error on masked pixels only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import trunc_normal_
from torch import nn

from pss.errors import ConfigError
from pss.models.vit import PssVisionTransformer


def random_mask(
    batch_size: int,
    img_size: int,
    patch_size: int,
    mask_patch_size: int,
    mask_ratio: float,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Boolean mask (B, N) over the model's patches, True = masked.

    Exactly ceil(mask_ratio * M) of the M mask regions of each image are masked (as SimMIM's
    MaskGenerator), each region covering (mask_patch_size / patch_size)^2 model patches.
    """
    check_mask_args(img_size, patch_size, mask_patch_size, mask_ratio)
    side = img_size // mask_patch_size
    scale = mask_patch_size // patch_size
    m = side * side
    n_masked = int(-(-mask_ratio * m // 1))  # ceil
    rank = torch.rand(batch_size, m, device=device, generator=generator).argsort(dim=1).argsort(dim=1)
    region = (rank < n_masked).view(batch_size, side, side)
    # every region covers scale x scale model patches
    return region.repeat_interleave(scale, 1).repeat_interleave(scale, 2).flatten(1)


def check_mask_args(img_size: int, patch_size: int, mask_patch_size: int, mask_ratio: float) -> None:
    if not 0.0 < mask_ratio < 1.0:
        raise ConfigError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    if mask_patch_size % patch_size or img_size % mask_patch_size:
        raise ConfigError(
            f"mask_patch_size {mask_patch_size} must be a multiple of the patch size {patch_size} "
            f"and divide the image size {img_size}"
        )


@dataclass
class SimMIMOutput:
    loss: torch.Tensor  # scalar L1 loss on masked pixels
    pred: torch.Tensor  # (B, C, H, W) reconstruction, in the (normalised) input space
    mask: torch.Tensor  # (B, N) bool, True = masked patch


class SimMIM(nn.Module):
    """Encoder + mask token + linear pixel decoder. `encoder_state_dict()` hands the encoder over to
    fine-tuning (`pss train --init`): same parameter names as the classifier, without the head."""

    def __init__(self, encoder: PssVisionTransformer, *, mask_ratio: float = 0.6, mask_patch_size: int = 32) -> None:
        super().__init__()
        if not isinstance(encoder, PssVisionTransformer):
            raise ConfigError(f"SimMIM pre-training needs a pss_vit_* encoder, got {type(encoder).__name__}")
        self.encoder = encoder
        self.patch_size = encoder.patch_embed.patch_size[0]
        self.img_size = encoder.patch_embed.img_size[0]
        self.in_chans = encoder.patch_embed.proj.in_channels
        check_mask_args(self.img_size, self.patch_size, mask_patch_size, mask_ratio)
        self.mask_ratio = mask_ratio
        self.mask_patch_size = mask_patch_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, encoder.embed_dim))
        trunc_normal_(self.mask_token, std=0.02)
        self.decoder = nn.Sequential(
            nn.Conv2d(encoder.embed_dim, self.patch_size**2 * self.in_chans, kernel_size=1),
            nn.PixelShuffle(self.patch_size),
        )

    def make_mask(self, batch_size: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        return random_mask(batch_size, self.img_size, self.patch_size, self.mask_patch_size, self.mask_ratio, device, generator)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> SimMIMOutput:
        enc = self.encoder
        if mask is None:
            mask = self.make_mask(x.shape[0], x.device)
        tokens = enc.patch_embed(x)  # (B, N, C)
        w = mask.unsqueeze(-1).to(tokens.dtype)
        tokens = tokens * (1 - w) + self.mask_token.to(tokens.dtype) * w  # mask before position embedding
        z = enc.forward_blocks(enc._pos_embed(tokens))[:, enc.num_prefix_tokens :]
        gh, gw = enc.patch_embed.grid_size
        pred = self.decoder(rearrange(z, "b (h w) c -> b c h w", h=gh, w=gw))  # (B, C_in, H, W)
        pixel_mask = rearrange(mask, "b (h w) -> b 1 h w", h=gh, w=gw).to(pred.dtype)
        pixel_mask = pixel_mask.repeat_interleave(self.patch_size, 2).repeat_interleave(self.patch_size, 3)
        err = F.l1_loss(pred.float(), x.float(), reduction="none")
        loss = (err * pixel_mask).sum() / (pixel_mask.sum() * self.in_chans + 1e-5)
        return SimMIMOutput(loss=loss, pred=pred, mask=mask)

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """Encoder weights under the classifier's names, head excluded."""
        return {k: v for k, v in self.encoder.state_dict().items() if not k.startswith("head.")}

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()} | {"mask_token"}
