"""On-device augmentation of whole batches (``data.in_memory``): random padded crop + flip, random erasing."""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=64)
def _positions(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel positions 0..n-1 and n-1..0 on ``device``: built once per (n, device), not per batch.
    Shared by every caller, so read-only."""
    ascending = torch.arange(n, device=device)
    return ascending, ascending.flip(0)


def random_crop_flip(images: torch.Tensor, padding: int, hflip: float, g: torch.Generator) -> torch.Tensor:
    """Random crop of the zero-padded image and horizontal flip (probability ``hflip``) of a uint8 batch
    (B, 3, H, W): one gather with per-image row/column indices, no loop over images. Offsets and flips
    come from the (CPU) generator ``g``."""
    b, c, h, w = images.shape
    p, dev = padding, images.device
    padded = F.pad(images, (p, p, p, p)).flatten(2)  # zeros; (B, 3, (H+2p)*(W+2p))
    oy = torch.randint(0, 2 * p + 1, (b, 1, 1), generator=g).to(dev, non_blocking=True)
    ox = torch.randint(0, 2 * p + 1, (b, 1, 1), generator=g).to(dev, non_blocking=True)
    flip = (torch.rand(b, 1, 1, generator=g) < hflip).to(dev, non_blocking=True)
    cols, cols_flipped = _positions(w, dev)
    cols = ox + torch.where(flip, cols_flipped, cols)  # (B, 1, W): flipping = reading columns backwards
    rows = oy + _positions(h, dev)[0][:, None]  # (B, H, 1)
    src = (rows * (w + 2 * p) + cols).view(b, 1, h * w).expand(b, c, h * w)  # flat source pixel
    return padded.gather(2, src).view(b, c, h, w)


def random_erase(images: torch.Tensor, prob: float, mode: str = "pixel", max_count: int = 1,
                 g: torch.Generator | None = None) -> torch.Tensor:
    """timm's RandomErasing for a normalised batch (B, C, H, W), vectorised over the batch.

    Same parameterisation as `timm.data.RandomErasing` (per image with probability ``prob``: 1 to
    ``max_count`` rectangles, area 2-33 % of the image split between them, aspect ratio 0.3-3.3, the
    first of 10 draws that fits; fill: per-pixel normal noise, one normal colour, or zeros), but
    built from masks rather than a Python loop over images, which matters on a GPU. Rectangle
    geometry comes from the (CPU) generator ``g``, drawn in full whatever ``prob`` (so ``g``'s stream
    does not depend on which images are erased); the noise fill from the device's generator, one fill
    per rectangle, and none at all when no image is erased (the result is then ``images`` itself).
    """
    b, c, h, w = images.shape
    dev = images.device
    draw = lambda *shape: torch.rand(shape, generator=g)  # noqa: E731 - small tensors, on the CPU
    erase = draw(b) < prob
    any_erased = bool(erase.any())  # on the CPU: no device sync
    count = torch.randint(1, max_count + 1, (b,), generator=g) if max_count > 1 else torch.ones(b, dtype=torch.long)
    ys, xs = _positions(h, dev)[0].view(1, h, 1), _positions(w, dev)[0].view(1, 1, w)
    out = images
    for k in range(max_count):  # a loop over rectangles, not images
        area = (0.02 + (1 / 3 - 0.02) * draw(b, 10)) * (h * w) / count[:, None]
        ratio = torch.exp(math.log(0.3) + (math.log(1 / 0.3) - math.log(0.3)) * draw(b, 10))
        eh, ew = (area * ratio).sqrt().round().long(), (area / ratio).sqrt().round().long()
        fits = (eh < h) & (ew < w)
        first = fits.long().argmax(1, keepdim=True)  # first fitting draw, as timm's retry loop picks
        eh, ew = eh.gather(1, first).squeeze(1), ew.gather(1, first).squeeze(1)
        top = (draw(b) * (h - eh + 1)).long()
        left = (draw(b) * (w - ew + 1)).long()
        if not any_erased:  # nothing to fill: no noise drawn (the geometry above was, for g's stream)
            continue
        on = erase & (k < count) & fits.any(1)
        # Only the (B,)-sized box parameters cross to the device; the mask is built there.
        on, top, left, eh, ew = (t.to(dev, non_blocking=True).view(b, 1, 1) for t in (on, top, left, eh, ew))
        mask = on & (ys >= top) & (ys < top + eh) & (xs >= left) & (xs < left + ew)  # (B, H, W)
        if mode == "pixel":
            fill = torch.randn(b, c, h, w, device=dev, dtype=images.dtype)
        elif mode == "rand":
            fill = torch.randn(b, c, 1, 1, device=dev, dtype=images.dtype)
        else:
            fill = torch.zeros((), device=dev, dtype=images.dtype)
        out = torch.where(mask[:, None], fill, out)
    return out
