"""Bounds on everything pss reads: every size and count (recipes via `pss.settings`, command-line flags,
checkpoints), and how large a read structure really is (a YAML document, a checkpoint's metadata).

    check_count("--max-images", n)            # an integer >= 1, or one line naming the setting
    check_img_size("data.img_size", size)     # 1 .. MAX_IMG_SIZE px
    check_epochs("--epochs", epochs)          # finite, > 0, at most MAX_EPOCHS
    p.add_argument("--img-size", **bounded(check_img_size))   # the same, for a flag
    size, depth = measure(root, children, cap)   # children(x): x's parts, () for a leaf

A number that is not finite, not positive where a size or count must be, or beyond what one machine can
hold is refused where it is read, in one line (`ConfigError`, for a flag too), before any work: not an
OverflowError from `int(inf)`, a conv error from a 0 px image, or an allocator asking for terabytes later.

YAML and pickles can share one part in many places (a YAML alias `*a`, a pickle memo entry), so a kilobyte
can name billions of values ("billion laughs"): loading it is cheap, but every later walk (checks, copies,
messages, `str()`) expands it. `measure` counts what such a walk would see, in time linear in the distinct
parts, so a reader can refuse the file before anything walks it.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable
from typing import Any

from pss.errors import ConfigError

__all__ = ["MAX_EPOCHS", "MAX_IMG_SIZE", "MAX_STEPS_PER_EPOCH", "RecursiveStructure", "bounded", "check_count",
           "check_epochs", "check_img_size", "measure", "number"]

# An image side beyond this is refused: a 4096 px RGB image is 200 MB as float32, and a ViT's patch tokens
# grow with the square of the side (65,536 at 16 px patches).
MAX_IMG_SIZE = 4096
# Runs longer than this many epochs, or epochs of more steps than this, are refused as typos (`pss schedule`
# still summarises the 10^13 steps they allow in seconds, as counts).
MAX_EPOCHS = 1_000_000
MAX_STEPS_PER_EPOCH = 10_000_000


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_count(name: str, value: Any, low: int = 1, high: int | None = None, what: str = "") -> int:
    """`value` as an integer in [low, high], else ConfigError naming `name` (and `what` it counts)."""
    ok = _is_number(value) and math.isfinite(value) and float(value).is_integer()
    if ok and low <= value and (high is None or value <= high):
        return int(value)
    span = f">= {low}" if high is None else f"from {low} to {high}"
    raise ConfigError(f"{name} must be an integer {span}{f' ({what})' if what else ''}, got {value!r}")


def check_epochs(name: str, value: Any) -> float:
    """A run length in epochs (a float: `pss schedule --epochs 2.5`): finite, > 0, at most MAX_EPOCHS."""
    if _is_number(value) and math.isfinite(value) and 0 < value <= MAX_EPOCHS:
        return float(value)
    raise ConfigError(f"{name} must be a number of epochs > 0 and at most {MAX_EPOCHS}, got {value!r}")


def check_img_size(name: str, value: Any) -> int:
    """An image side in pixels: an integer from 1 to MAX_IMG_SIZE (what one machine can hold)."""
    if _is_number(value) and math.isfinite(value) and float(value).is_integer() and value > MAX_IMG_SIZE:
        gb = float(value) ** 2 * 3 * 4 / 1e9
        raise ConfigError(f"{name} {int(value)} px is beyond what pss trains or times (at most {MAX_IMG_SIZE} px a "
                          f"side; one such image alone is {gb:,.0f} GB as float32): give the size in pixels, e.g. 224")
    return check_count(name, value, 1, MAX_IMG_SIZE, "pixels a side")


def number(text: str) -> float:
    """An argparse `type`: the flag's text as an int (e.g. "5") or a float ("2.5", "inf"); anything else is
    argparse's usage error. Bounds are `bounded`'s, after parsing."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def bounded(check: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """`add_argument` keywords for a bounded number: `p.add_argument("--img-size", **bounded(check_img_size))`.
    The flag's value is `check(flag, value, **kwargs)`: a value out of bounds is the command's one-line
    error (a ConfigError, as for a recipe), not a usage block."""
    class Bounded(argparse.Action):
        def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
            setattr(namespace, self.dest, check(option_string or self.dest, values, **kwargs))

    return {"type": number, "action": Bounded}

class RecursiveStructure(ValueError):
    """A part that contains itself: expanding it would never end."""


def measure(root: Any, children: Callable[[Any], Iterable[Any]], cap: int) -> tuple[int, int]:
    """(values, depth) of `root` with every shared part counted once per place it appears; the count
    stops growing at `cap` + 1 (past the bound the exact number does not matter). Memoised by identity,
    so the time is linear in the distinct parts. RecursiveStructure for a part inside itself, RecursionError
    for nesting deeper than Python's stack (both too deep for any reader to walk)."""
    seen: dict[int, tuple[int, int]] = {}
    open_: set[int] = set()
    keep = []  # the measured parts stay alive, so that no id is reused while measuring

    def walk(x: Any) -> tuple[int, int]:
        key = id(x)
        if key in seen:
            return seen[key]
        if key in open_:
            raise RecursiveStructure("a part of it contains itself")
        open_.add(key)
        size, depth = 1, 0
        for child in children(x):
            n, d = walk(child)
            size, depth = min(size + n, cap + 1), max(depth, d + 1)
        open_.discard(key)
        keep.append(x)
        seen[key] = (size, depth)
        return size, depth

    return walk(root)
