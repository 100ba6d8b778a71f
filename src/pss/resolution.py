"""Resolution schedules: the training side length as a pure function of the optimizer step.

The second lever for fewer tokens per step (beside dropping patches): train at a lower resolution early
on and finish at the recipe's. A patch grid of side s / patch has (s / patch)^2 tokens, so half the side
is a quarter of the tokens; lower resolution also cuts decoding and augmentation, which dropping does not.

    res = from_dict({"name": "linear", "start": 0.5, "full_from": 0.8})   # a recipe's `resolution:` mapping
    side = res.side(step, steps_per_epoch, total_steps, img_size=32, patch_size=4)   # 16 .. 32 px

Rules (fixed here, so every rank and a resumed run agree, and sides are few):
  * the side changes at epoch boundaries only (as FFCV's and timm's progressive resizing do), so a
    loader's workers can decode a whole epoch at its side; the epoch is `step // steps_per_epoch`;
  * `start` / `end` are fractions of the recipe's `img_size`; epochs before `full_from` (a fraction of the
    run's epochs, rounded half up to whole epochs) follow the shape from `start` (first epoch) towards
    `end` (reached at `full_from`); from `full_from` on the side is the full `img_size`;
  * shapes: `linear` and `cosine` ramps (EfficientTrain++-like), `step` (`start` until `full_from`, then
    full: DeiT III's low-resolution phase and high-resolution finish);
  * a side is rounded half up to whole patches, never below one patch nor above `img_size`;
  * evaluation always runs at the recipe's `img_size` (the schedule applies to training steps only).

`budget:` can solve `start` (pss.budget, `budget_lever: resize | both`).
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pss.errors import ConfigError
from pss.schedule import CyclicSchedule, FixedSchedule, Schedule, epochs_to_steps, monotone_counts

__all__ = ["RESOLUTION_SHAPES", "ResolutionSchedule", "check_resolution", "describe_sides", "from_dict", "joint_counts",
           "range_counts", "model_geometry", "patch_side"]

RESOLUTION_SHAPES = ("linear", "cosine", "step")
_EPS = 1e-9


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"resolution {name} must be a finite number, got {value!r}")
    return float(value)


def patch_side(fraction: float, img_size: int, patch_size: int) -> int:
    """`fraction` of `img_size` in pixels, rounded half up to whole patches, within [one patch, img_size]."""
    full = img_size // patch_size
    patches = math.floor(fraction * img_size / patch_size + 0.5 + _EPS)
    return patch_size * min(full, max(1, patches))


@dataclass(frozen=True, kw_only=True)
class ResolutionSchedule:
    """Training side per epoch (see the module docstring). Args: `name` (linear | cosine | step), `start`
    (fraction of img_size in the first epoch, the free parameter a budget solves), `end` (the fraction the
    shape reaches at `full_from`, default 1.0), `full_from` (fraction of the epochs from which every epoch
    runs at full side, default 0.8)."""

    name: str = "linear"
    start: float = 0.5
    end: float = 1.0
    full_from: float = 0.8

    def __post_init__(self) -> None:
        if self.name not in RESOLUTION_SHAPES:
            raise ConfigError(f"unknown resolution schedule {self.name!r}; choose one of {', '.join(RESOLUTION_SHAPES)}")
        start, end, full_from = (_number(k, getattr(self, k)) for k in ("start", "end", "full_from"))
        if not 0 < start <= 1:
            raise ConfigError(f"resolution start must be a fraction of img_size in (0, 1], got {start!r}")
        if not 0 < end <= 1:
            raise ConfigError(f"resolution end must be a fraction of img_size in (0, 1], got {end!r}")
        if start > end:
            raise ConfigError(f"resolution start ({start:g}) is above its end ({end:g}): a curriculum grows the side; "
                              "swap them")
        if not 0 < full_from <= 1:
            raise ConfigError(f"resolution full_from must be a fraction of the epochs in (0, 1] (e.g. 0.8: the last 20 % "
                              f"at full side), got {full_from!r}")
        for k, v in (("start", start), ("end", end), ("full_from", full_from)):
            object.__setattr__(self, k, v)

    def full_epoch(self, epochs: int) -> int:
        """The first epoch at full side (at least 1: the first epoch always follows the shape)."""
        return min(epochs, max(1, math.floor(self.full_from * epochs + 0.5 + _EPS)))

    def fraction(self, epoch: int, epochs: int) -> float:
        """Side as a fraction of img_size in `epoch` (0-based) of a run of `epochs` epochs, before rounding."""
        low = self.full_epoch(epochs)
        if epoch >= low:
            return 1.0
        t = epoch / low  # 0 at the first epoch, reaching 1 (end) at the first full epoch
        if self.name == "step":
            return self.start
        if self.name == "cosine":
            t = (1.0 - math.cos(math.pi * t)) / 2.0
        return self.start + (self.end - self.start) * t

    def side(self, step: int, steps_per_epoch: int, total_steps: int, img_size: int, patch_size: int) -> int:
        """Training side in pixels at optimizer step `step` (0-based)."""
        if not 0 <= step < total_steps:
            raise ValueError(f"step {step} is outside the run [0, {total_steps})")
        epochs = math.ceil(total_steps / steps_per_epoch)
        return patch_side(self.fraction(step // steps_per_epoch, epochs), img_size, patch_size)

    def epoch_sides(self, epochs: int, img_size: int, patch_size: int) -> list[int]:
        """The side of every epoch, in order."""
        return [patch_side(self.fraction(e, epochs), img_size, patch_size) for e in range(epochs)]

    def segments(self, steps_per_epoch: int, total_steps: int, img_size: int, patch_size: int) -> list[tuple[int, int, int]]:
        """(first step, end step, side) of each run of epochs at one side, in order: what a cost model sums over."""
        epochs = math.ceil(total_steps / steps_per_epoch)
        out: list[tuple[int, int, int]] = []
        for e, side in enumerate(self.epoch_sides(epochs, img_size, patch_size)):
            a, b = e * steps_per_epoch, min(total_steps, (e + 1) * steps_per_epoch)
            if out and out[-1][2] == side:
                out[-1] = (out[-1][0], b, side)
            else:
                out.append((a, b, side))
        return out

    def counts(self, steps_per_epoch: int, total_steps: int, img_size: int, patch_size: int) -> dict[int, int]:
        """Steps per side over the run, ascending side."""
        c: Counter[int] = Counter()
        for a, b, side in self.segments(steps_per_epoch, total_steps, img_size, patch_size):
            c[side] += b - a
        return dict(sorted(c.items()))

    def check_model(self, img_size: int, patch_size: int) -> None:
        """Refuse an image size the schedule cannot shrink in whole patches (a grid of one patch)."""
        if img_size // patch_size < 2:
            raise ConfigError(f"a resolution schedule needs at least 2 patches per side; img_size {img_size} with "
                              f"patch_size {patch_size} has {img_size // patch_size}: set resolution: null")
        if self.start * img_size < patch_size / 2:  # would round to no patch at all
            raise ConfigError(f"resolution start {self.start:g} is {self.start * img_size:.3g} px, below one {patch_size} px "
                              f"patch: the smallest start for this model is {patch_size / img_size:.4g}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "start": self.start, "end": self.end, "full_from": self.full_from}

    def with_start(self, start: float) -> ResolutionSchedule:
        return dataclasses.replace(self, start=start, end=max(self.end, start))


def from_dict(d: Any) -> ResolutionSchedule | None:
    """A recipe's `resolution:` value: None / null (the recipe's side throughout), a mapping with `name` and
    the schedule's keys, or a ResolutionSchedule."""
    if d is None or isinstance(d, ResolutionSchedule):
        return d
    if not isinstance(d, dict):
        raise ConfigError(f"resolution must be a mapping such as {{name: linear, start: 0.5, full_from: 0.8}} or null, "
                          f"got {d!r}")
    fields = {f.name for f in dataclasses.fields(ResolutionSchedule)}
    unknown = sorted(set(d) - fields, key=str)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(map(repr, unknown))} for resolution; allowed: {', '.join(sorted(fields))}")
    return ResolutionSchedule(**d)


def model_geometry(model: Any) -> tuple[int, int] | None:
    """(img_size, patch_size) of a model that runs patch grids smaller than its own, else None: ours
    (`dynamic_size`) and timm ViTs created with `dynamic_img_size=True` (through pss.attach). Sees
    through DDP / torch.compile wrappers."""
    bare = getattr(model, "_orig_mod", model)
    bare = getattr(bare, "module", bare)
    if not (getattr(bare, "dynamic_size", False) or getattr(bare, "dynamic_img_size", False)):
        return None
    pe = bare.patch_embed
    img = pe.img_size[0] if isinstance(pe.img_size, (tuple, list)) else pe.img_size
    patch = pe.patch_size[0] if isinstance(pe.patch_size, (tuple, list)) else pe.patch_size
    return int(img), int(patch)


def check_resolution(resolution: ResolutionSchedule | None, model: Any, task: Any) -> tuple[int, int] | None:
    """Refuse, in one line before any data is decoded, a resolution schedule the model or task cannot train
    with; returns the model's (img_size, patch_size) where a schedule runs, else None."""
    if resolution is None:
        return None
    if not getattr(task, "supports_resolution", False):
        raise ConfigError(f"a resolution schedule applies to classification training, not {type(task).__name__}; "
                          "set resolution: null")
    geometry = model_geometry(model)
    if geometry is None:
        raise ConfigError(f"{type(getattr(model, 'module', model)).__name__} has fixed-size position tables and cannot "
                          "run smaller patch grids: use a pss_vit_* model, or a timm ViT created with "
                          "dynamic_img_size=True (then pss.attach); or set resolution: null")
    resolution.check_model(*geometry)
    return geometry


def describe_sides(resolution: ResolutionSchedule, epochs: int, img_size: int, patch_size: int) -> str:
    """The sides a run trains at, phase by phase, e.g. "linear start 0.5: 16 px epochs 1-3, 20 px epochs 4-6,
    ..., 32 px epochs 13-15 (full side)" (epochs counted from 1)."""
    phases: list[list[int]] = []  # [side, first epoch, last epoch]
    for e, side in enumerate(resolution.epoch_sides(epochs, img_size, patch_size), start=1):
        if phases and phases[-1][0] == side:
            phases[-1][2] = e
        else:
            phases.append([side, e, e])
    parts = [f"{s} px ({(s // patch_size) ** 2} patches) epoch{'s' if a != b else ''} {a}{f'-{b}' if a != b else ''}"
             for s, a, b in phases]
    return f"{resolution.name} start {resolution.start:g}: " + ", ".join(parts) + f"; evaluation at {img_size} px"


def joint_counts(schedule: Schedule, resolution: ResolutionSchedule, steps_per_epoch: int, total_steps: int,
                 img_size: int, patch_size: int) -> dict[int, dict[float, int]]:
    """side -> {keep ratio: steps} over the run: the steps each (side, keep ratio) pair trains, i.e. the
    sequence shapes a run compiles (one graph per pair) and what its cost sums over."""
    schedule.check_run(steps_per_epoch, total_steps)
    out: dict[int, Counter[float]] = {}
    for a, b, side in resolution.segments(steps_per_epoch, total_steps, img_size, patch_size):
        c = out.setdefault(side, Counter())
        c.update(range_counts(schedule, a, b, steps_per_epoch, total_steps))
    return {side: dict(sorted(c.items())) for side, c in sorted(out.items())}


def range_counts(schedule: Schedule, a: int, b: int, steps_per_epoch: int, total_steps: int) -> Counter[float]:
    """Keep ratio -> steps over steps a .. b-1 of a run: warm-up and cool-down are constant, every shape but
    the cyclic one is monotone in between (counted by bisection), the cyclic one is counted step by step."""
    f = lambda t: schedule(t, steps_per_epoch, total_steps)  # noqa: E731
    out: Counter[float] = Counter()
    if isinstance(schedule, FixedSchedule) and not schedule.warmup_epochs and not schedule.cooldown_epochs:
        out[schedule(a, steps_per_epoch, total_steps)] += b - a
        return out
    warm = epochs_to_steps(schedule.warmup_epochs, steps_per_epoch)
    cool = total_steps - epochs_to_steps(schedule.cooldown_epochs, steps_per_epoch)
    for lo, hi in ((a, min(b, warm)), (max(a, warm), min(b, cool)), (max(a, cool), b)):
        if lo >= hi:
            continue
        if lo >= warm and hi <= cool and not isinstance(schedule, CyclicSchedule):
            monotone_counts(f, lo, hi, out)
        else:
            out.update(map(f, range(lo, hi)))
    return out
