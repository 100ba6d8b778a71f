"""How large a structure that pss reads really is: a YAML document or a checkpoint's metadata.

Both formats can share one part in many places (a YAML alias `*a`, a pickle memo entry), so a kilobyte
can name billions of values ("billion laughs"): loading it is cheap, but every later walk (checks, copies,
messages, `str()`) expands it. `measure` counts what such a walk would see, in time linear in the
distinct parts, so a reader can refuse the file before anything walks it.

    size, depth = measure(root, children)      # children(x): x's parts, () for a leaf
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["RecursiveStructure", "measure"]


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
