"""Reading images: any file as 8-bit RGB (`load_rgb`), whether one parses at all (`image_error`, the scan's
question), and from a dataset that may hold unreadable images the first readable one from an index on
(`first_readable`)."""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from pss.errors import DataError

log = logging.getLogger("pss.data")

__all__ = ["WIDE_GREY_MODES", "first_readable", "image_error", "load_rgb"]


WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def load_rgb(path: str | os.PathLike | BinaryIO, draft: int | None = None) -> Image.Image:
    """An image file (or open binary file) as 8-bit RGB, what every dataset and `pss viz` read: 16-bit grey
    (and 32-bit integer grey holding 16-bit values) scaled to 8 bits, not clipped; floating-point images
    refused (ValueError). `draft`: a JPEG is decoded at the smallest of its DCT scales (1/2, 1/4, 1/8) whose
    sides are still at least `draft` px (PIL's `Image.draft`): cheaper decoding for a lower training
    resolution (pss.resolution); other formats decode in full."""
    with (contextlib.nullcontext(path) if hasattr(path, "read") else open(path, "rb")) as f:
        img = Image.open(f)
        if draft is not None and img.format == "JPEG":
            img.draft("RGB", (draft, draft))
        if img.mode == "F":
            raise ValueError("a floating-point image (mode F): save it as 8- or 16-bit")
        if img.mode not in WIDE_GREY_MODES:
            return img.convert("RGB")
        a = np.asarray(img).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ValueError(f"a {img.mode} image with values outside 0..65535: save it as 8- or 16-bit")
        return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L").convert("RGB")


def first_readable(read: Callable[[int], Any], index: int, num: int, where: Callable[[int], str], on_corrupt: str,
                   fix: str, source: str) -> Any:
    """``read(index)`` (the decode alone: a transform's error is not the image's), or with ``on_corrupt='skip'``
    that of the next readable item (wrapping round):
    an image that fails to decode mid-epoch is logged and replaced, and with ``on_corrupt='fail'`` it
    raises `DataError` (naming ``where(i)`` and the ``fix``) - never a PIL traceback."""
    for attempt in range(num):
        i = (index + attempt) % num
        try:
            return read(i)
        except (OSError, SyntaxError, ValueError) as e:  # PIL's ways of saying "not an image"
            if on_corrupt == "fail":
                raise DataError(f"cannot read image {where(i)} ({e}): {fix}, or set data.on_corrupt: skip") from e
            log.warning("skipping unreadable image %s (%s)", where(i), e)
    raise DataError(f"no readable image in {source}")


def image_error(source: str | os.PathLike | BinaryIO) -> str | None:
    """None if PIL can parse the image's header and structure (a file path or open binary file), else the
    reason: what every source's unreadable-image scan asks (cheap: `verify` decodes no pixels, but checks
    the structure and PNG CRCs). A floating-point image is refused here, as `load_rgb` would refuse it."""
    try:
        with Image.open(source) as im:
            if im.mode == "F":
                return "a floating-point image (mode F): save it as 8- or 16-bit"
            im.verify()
    except Exception as e:  # noqa: BLE001 - any failure means "unreadable"; the reason is reported
        return f"{type(e).__name__}: {e}"
    return None
