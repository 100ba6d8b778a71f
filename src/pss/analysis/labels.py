"""Point labels that do not print on top of each other: a greedy placement of label boxes.

    offsets = place_labels(anchors, sizes, bounds=(0, 0, 400, 300), obstacles=marker_boxes)
    # offsets[i]: (dx, dy) of label i's centre from its anchor, in the anchors' units; None: left out

`place_labels` is pure geometry (boxes in display pixels, tested by value); `annotate_apart` measures the
texts of a matplotlib Axes, places them and draws those that fit. Each label tries a few positions around
its point (above, below, right, left, the diagonals, then the same a step further out) and takes the
first whose box lies inside `bounds` and overlaps neither a label placed before it nor an obstacle (the
plotted markers); a label with no free position is left out rather than drawn over another. Labels are
placed in the order given, so callers list the ones that matter most first.
"""
from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes

__all__ = ["annotate_apart", "overlaps", "place_labels"]

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 (x0 <= x1, y0 <= y1)

# Directions of the candidate positions, in order of preference: above, below, right, left, diagonals.
_DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, 1), (1, -1), (-1, -1))


def overlaps(a: Box, b: Box) -> bool:
    """True when the two boxes share an area (touching edges do not count)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(box: Box, bounds: Box | None) -> bool:
    return bounds is None or (bounds[0] <= box[0] and box[2] <= bounds[2] and bounds[1] <= box[1] and box[3] <= bounds[3])


def place_labels(anchors: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]], *, gap: float = 3.0,
                 rings: int = 2, bounds: Box | None = None,
                 obstacles: Sequence[Box] = ()) -> list[tuple[float, float] | None]:
    """The offset (dx, dy) of each label's centre from its anchor (x, y), for labels of `sizes` (w, h), such
    that no two placed label boxes overlap, none overlaps an obstacle and each lies inside `bounds`; None
    for a label that has no such position among its candidates. The candidates lie in eight directions,
    their near edge `gap` from the anchor (give more than a marker's half-width, so a label clears its
    own marker), then in `rings - 1` further rings, each one label size (and `gap`) further out."""
    if len(anchors) != len(sizes):
        raise ValueError(f"got {len(anchors)} anchors for {len(sizes)} label sizes")
    placed: list[Box] = []
    out: list[tuple[float, float] | None] = []
    for (x, y), (w, h) in zip(anchors, sizes):
        choice = None
        for ring in range(1, rings + 1):
            for ux, uy in _DIRECTIONS:
                # the box's near edge `gap` from the anchor, plus a label and a gap per ring further out
                dx = ux * (w / 2 + gap + (ring - 1) * (w + gap))
                dy = uy * (h / 2 + gap + (ring - 1) * (h + gap))
                box = (x + dx - w / 2, y + dy - h / 2, x + dx + w / 2, y + dy + h / 2)
                if _inside(box, bounds) and not any(overlaps(box, b) for b in (*placed, *obstacles)):
                    choice = (dx, dy)
                    placed.append(box)
                    break
            if choice is not None:
                break
        out.append(choice)
    return out


def annotate_apart(ax: Axes, points: Sequence[tuple[float, float]], texts: Sequence[str], colors: Sequence[str], *,
                   fontsize: float = 7.0, obstacles: Sequence[tuple[float, float]] = (), marker_px: float = 4.0) -> int:
    """Label data `points` of `ax` with `texts` where they fit (`place_labels`): inside the axes, off the
    markers at `obstacles` (data points, `marker_px` half-width) and off each other. Call it once the
    figure's layout is final (the axes do not move afterwards). Returns how many labels were left out."""
    fig = ax.get_figure()
    renderer = fig.canvas.get_renderer()
    per_point = 72.0 / fig.dpi  # offsets in points, so the picture keeps its layout at any dpi
    # each label drawn first at its point, to measure the box matplotlib gives it (a line's full height)
    notes = [ax.annotate(t, p, textcoords="offset points", xytext=(0, 0), ha="center", va="center",
                         fontsize=fontsize, color=c, annotation_clip=False) for p, t, c in zip(points, texts, colors)]
    pad = 1.0  # pixels around a text, so neighbours do not touch
    sizes = [(b.width + 2 * pad, b.height + 2 * pad) for b in (n.get_window_extent(renderer) for n in notes)]
    to_px = ax.transData.transform
    anchors = [tuple(to_px(p)) for p in points]
    markers = [(px - marker_px, py - marker_px, px + marker_px, py + marker_px) for px, py in map(to_px, obstacles)]
    offsets = place_labels(anchors, sizes, gap=marker_px + 2.0, bounds=tuple(ax.get_window_extent(renderer).extents),
                           obstacles=markers)
    for note, off in zip(notes, offsets):
        if off is None:
            note.remove()
        else:
            note.xyann = (off[0] * per_point, off[1] * per_point)
    return sum(off is None for off in offsets)
