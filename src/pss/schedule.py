"""Keep-ratio schedules: rho in (0, 1] as a pure function of the optimizer step.

A schedule is a frozen dataclass; calling it with `(step, steps_per_epoch, total_steps)` gives the
keep ratio for that step. There is no hidden counter, so every rank computes the same rho at the
same step and resuming from a checkpoint needs nothing but the step number.

    sched = from_dict({"name": "cyclic", "low": 0.2, "high": 1.0})   # a recipe's mapping
    sched = schedule_from_spec("cyclic:low=0.2,high=1.0")           # the same, as a one-line spec
    rho = sched(step, steps_per_epoch, total_steps)        # cheap float math, no tensors

Every value goes through the same pipeline (McDanel & Huynh, arXiv 2208.09520):
  1. warm-up: the first `warmup_epochs * steps_per_epoch` steps run at rho = 1.0;
  2. cool-down: the last `cooldown_epochs * steps_per_epoch` steps run at rho = 1.0;
  3. in between, the schedule's shape (fixed / linear / cosine / cyclic), measured from the end
     of warm-up, gives a raw value;
  4. the raw value is clamped to <= 1.0 (the reference code's cyclic "keep 0.2 -> 1.1" relies on
     this, so `high` / `end` may go up to 2.0);
  5. the value is rounded half up to the `grid` (default 0.2, as in the paper) so that only a few
     sequence lengths occur, which keeps torch.compile / CUDA graphs usable. A value that would
     round to 0 becomes `grid`. `grid=None` (or 0) turns rounding off.
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pss.errors import ConfigError

__all__ = [
    "SCHEDULES",
    "CosineSchedule",
    "CyclicSchedule",
    "FixedSchedule",
    "LinearSchedule",
    "Schedule",
    "epochs_to_steps",
    "from_dict",
    "is_schedule_spec",
    "monotone_counts",
    "quantize",
    "schedule_from_spec",
]

# Largest allowed start/end/low/high: values above 1.0 are clamped, which lets a cyclic wave
# spend a plateau at 1.0 (the reference code's "drop 0.8 -> -0.1", i.e. keep 0.2 -> 1.1).
MAX_OVERSHOOT = 2.0
DEFAULT_GRID = 0.2
# Commands list or draw every step of runs up to this long; longer ones get `counts` (summaries) only.
MAX_LISTED_STEPS = 1_000_000
# Slack for float noise: 0.3 / 0.2 == 1.4999999999999998 must round *up* like the exact 1.5 does.
_EPS = 1e-9
_DECIMALS = 6


def quantize(value: float, grid: float | None) -> float:
    """Round `value` half up to a multiple of `grid`, never to 0, never above 1; None = no rounding."""
    if not grid:
        # Only strip float noise (0.30000000000000004 -> 0.3); a 1e-6 change is far below one token.
        return min(round(value, _DECIMALS) or value, 1.0)
    k = math.floor(value / grid + 0.5 + _EPS)
    # round(..., 6) strips the float noise of k * grid (3 * 0.2 == 0.6000000000000001).
    return min(round(max(k, 1) * grid, _DECIMALS), 1.0)


def epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    """Whole steps in a (possibly fractional) number of epochs, rounded half up."""
    return math.floor(epochs * steps_per_epoch + 0.5 + _EPS)


def _check_number(name: str, value: Any) -> float:
    # bool is an int subclass; `low: yes` in YAML is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """Base of all keep-ratio schedules; subclasses define `_shape` and their own parameters.

    Args (shared, keyword-only):
        warmup_epochs: epochs at rho = 1.0 at the start (may be fractional).
        cooldown_epochs: epochs at rho = 1.0 at the end (may be fractional).
        grid: round rho half up to multiples of this; None or 0 = off. Must divide 1 evenly.
    """

    name: ClassVar[str] = ""
    warmup_epochs: float = 0.0
    cooldown_epochs: float = 0.0
    grid: float | None = DEFAULT_GRID

    def __post_init__(self) -> None:
        for key in ("warmup_epochs", "cooldown_epochs"):
            v = _check_number(key, getattr(self, key))
            if v < 0:
                raise ConfigError(f"{key} must be >= 0 (epochs at keep ratio 1.0), got {v!r}")
            object.__setattr__(self, key, v)
        grid = self.grid
        if grid is not None:
            grid = _check_number("grid", grid)
            if grid == 0:
                grid = None  # 0 means "off"; store None so "off" has one spelling in to_dict
            elif not 0 < grid <= 1:
                raise ConfigError(f"grid must be in (0, 1] (or null / 0 for no rounding), got {grid!r}")
            elif abs(1 / grid - round(1 / grid)) > 1e-6:
                # Otherwise 1.0 would not be a grid point and warm-up/plateaus would round below 1.
                raise ConfigError(
                    f"grid must divide 1 evenly (e.g. 0.1, 0.2, 0.25, 0.5) so that 1.0 is a grid point, got {grid!r}"
                )
        object.__setattr__(self, "grid", grid)
        self._check()

    # -- subclass hooks ---------------------------------------------------------------------------

    def _check(self) -> None:
        """Validate (and normalise to float) the subclass's own parameters."""

    def _shape(self, i: int, n: int, steps_per_epoch: int) -> float:
        """Raw keep ratio at step `i` of the `n` scheduled steps (after warm-up, before cool-down)."""
        raise NotImplementedError

    def _ratio(self, key: str, hi: float = MAX_OVERSHOOT) -> float:
        v = _check_number(key, getattr(self, key))
        if not 0 < v <= hi:
            extra = " (values above 1 are clamped to 1)" if hi > 1 else ""
            raise ConfigError(f"{self.name} {key} must be a keep ratio in (0, {hi:g}]{extra}, got {v!r}")
        object.__setattr__(self, key, v)
        return v

    # -- public API -------------------------------------------------------------------------------

    def __call__(self, step: int, steps_per_epoch: int, total_steps: int) -> float:
        """Keep ratio in (0, 1] for optimizer step `step` (0-based) of a run of `total_steps` steps."""
        if not 0 <= step < total_steps:
            raise ValueError(f"step {step} is outside the run [0, {total_steps})")
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        warm = epochs_to_steps(self.warmup_epochs, steps_per_epoch)
        cool = epochs_to_steps(self.cooldown_epochs, steps_per_epoch)
        if step < warm or step >= total_steps - cool:
            return 1.0
        raw = self._shape(step - warm, total_steps - warm - cool, steps_per_epoch)
        return quantize(raw, self.grid)

    def values(self, steps_per_epoch: int, total_steps: int) -> list[float]:
        """Keep ratio of every step of the run, in order (one float per step: for short runs; `counts`
        gives what most callers need at any length)."""
        self.check_run(steps_per_epoch, total_steps)
        return [self(s, steps_per_epoch, total_steps) for s in range(total_steps)]

    def counts(self, steps_per_epoch: int, total_steps: int) -> dict[float, int]:
        """Steps per keep ratio over the run, ascending: exactly `Counter(values(...))`, but computed per
        monotone stretch (and, for cyclic, per period) by bisection, so its cost grows with the number of
        distinct keep ratios and the log of the run length, not with the run length."""
        self.check_run(steps_per_epoch, total_steps)
        warm = epochs_to_steps(self.warmup_epochs, steps_per_epoch)
        cool = epochs_to_steps(self.cooldown_epochs, steps_per_epoch)
        out: Counter[float] = Counter()
        if warm + cool:
            out[1.0] += warm + cool
        self._counts(total_steps - warm - cool, steps_per_epoch, out)
        return dict(sorted(out.items()))

    def mean(self, steps_per_epoch: int, total_steps: int) -> float:
        """Mean keep ratio over the run (roughly the fraction of patch-token compute spent)."""
        return math.fsum(v * n for v, n in self.counts(steps_per_epoch, total_steps).items()) / total_steps

    def _counts(self, n: int, steps_per_epoch: int, out: Counter[float]) -> None:
        """Add the keep ratios of the `n` scheduled steps to `out` (shapes monotone in the step)."""
        monotone_counts(lambda i: quantize(self._shape(i, n, steps_per_epoch), self.grid), 0, n, out)

    def check_run(self, steps_per_epoch: int, total_steps: int) -> None:
        """Raise ConfigError if this schedule does not fit a run of this length (call once, at set-up)."""
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ConfigError(f"total_steps must be a positive integer, got {total_steps!r}")
        warm = epochs_to_steps(self.warmup_epochs, steps_per_epoch)
        cool = epochs_to_steps(self.cooldown_epochs, steps_per_epoch)
        if warm + cool >= total_steps:
            raise ConfigError(
                f"warm-up ({warm} steps) and cool-down ({cool} steps) leave no steps for the "
                f"{self.name} schedule in a run of {total_steps} steps; shorten them or train longer"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON-safe): "name", the kind's parameters, then the shared ones."""
        shared = [f.name for f in dataclasses.fields(Schedule)]
        own = [f.name for f in dataclasses.fields(self) if f.name not in shared]
        return {"name": self.name, **{k: getattr(self, k) for k in own + shared}}


@dataclass(frozen=True)
class FixedSchedule(Schedule):
    """Constant keep ratio `rho`. Its grid defaults to off: one value needs no rounding."""

    name: ClassVar[str] = "fixed"
    rho: float
    grid: float | None = field(default=None, kw_only=True)

    def _check(self) -> None:
        self._ratio("rho", hi=1.0)

    def _shape(self, i: int, n: int, steps_per_epoch: int) -> float:
        return self.rho


@dataclass(frozen=True)
class _Ramp(Schedule):
    """From `start` (first scheduled step) to `end` (last scheduled step); subclasses give the shape."""

    start: float
    end: float

    def _check(self) -> None:
        self._ratio("start")
        self._ratio("end")

    @staticmethod
    def _progress(i: int, n: int) -> float:
        # i / (n - 1) so that both endpoints are hit exactly.
        return i / (n - 1) if n > 1 else 0.0


@dataclass(frozen=True)
class LinearSchedule(_Ramp):
    """Straight line from `start` to `end` (its mean is exactly (start + end) / 2)."""

    name: ClassVar[str] = "linear"

    def _shape(self, i: int, n: int, steps_per_epoch: int) -> float:
        return self.start + (self.end - self.start) * self._progress(i, n)


@dataclass(frozen=True)
class CosineSchedule(_Ramp):
    """Half a cosine from `start` to `end`."""

    name: ClassVar[str] = "cosine"

    def _shape(self, i: int, n: int, steps_per_epoch: int) -> float:
        return self.start + (self.end - self.start) * (1.0 - math.cos(math.pi * self._progress(i, n))) / 2.0


@dataclass(frozen=True)
class CyclicSchedule(Schedule):
    """Triangle wave low -> high -> low, one period every `period_epochs` (the paper's choice: 1)."""

    name: ClassVar[str] = "cyclic"
    low: float = 0.2
    high: float = 1.0
    period_epochs: float = 1.0

    def _check(self) -> None:
        low = self._ratio("low")
        high = self._ratio("high")
        if low > high:
            raise ConfigError(f"cyclic low ({low:g}) must be <= high ({high:g}); swap them")
        p = _check_number("period_epochs", self.period_epochs)
        if p <= 0:
            raise ConfigError(f"period_epochs must be > 0, got {p!r}")
        object.__setattr__(self, "period_epochs", p)

    def _shape(self, i: int, n: int, steps_per_epoch: int) -> float:
        # A whole number of steps per period, so every cycle is exactly the same.
        period = max(1, epochs_to_steps(self.period_epochs, steps_per_epoch))
        p = (i % period) / period
        return self.low + (self.high - self.low) * (1.0 - abs(2.0 * p - 1.0))

    def _counts(self, n: int, steps_per_epoch: int, out: Counter[float]) -> None:
        # One period (rising to its middle, then falling) times the whole periods, plus the last part.
        period = max(1, epochs_to_steps(self.period_epochs, steps_per_epoch))
        top = period // 2 + 1  # steps 0 .. period // 2 rise, the rest fall

        def part(m: int) -> Counter[float]:
            c: Counter[float] = Counter()
            f = lambda i: quantize(self._shape(i, n, steps_per_epoch), self.grid)  # noqa: E731
            monotone_counts(f, 0, min(top, m), c)
            monotone_counts(f, min(top, m), m, c)
            return c

        whole, rest = divmod(n, period)
        if whole:
            out.update({v: k * whole for v, k in part(period).items()})
        if rest:
            out.update(part(rest))


def monotone_counts(f: Callable[[int], float], a: int, b: int, out: Counter[float]) -> None:
    """Add to `out` how often each value of `f` occurs on steps a .. b-1, where `f` is monotone there (so
    equal values are contiguous): each stretch of one value is found by galloping and bisection."""
    if b - a <= 1 << 16:  # short: one call per step is cheapest
        out.update(map(f, range(a, b)))
        return
    i, v = a, f(a)
    while i < b:
        lo, jump, hi, at_hi = i, 1, b, None  # f(lo) == v; f(hi) == at_hi != v (unless hi == b)
        while lo + jump < b:
            w = f(lo + jump)
            if w != v:
                hi, at_hi = lo + jump, w
                break
            lo, jump = lo + jump, jump * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            w = f(mid)
            if w == v:
                lo = mid
            else:
                hi, at_hi = mid, w
        out[v] += lo - i + 1
        i, v = hi, at_hi


SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (FixedSchedule, LinearSchedule, CosineSchedule, CyclicSchedule)
}


def from_dict(d: dict[str, Any] | float | int | str | Schedule) -> Schedule:
    """Build a schedule from `to_dict` output or a YAML mapping; a plain number means fixed(rho).

    A string is a spec (`schedule_from_spec`): "cyclic:low=0.2,high=1.0", a bare name such as
    "cyclic" (that schedule with its defaults), or "0.5". A Schedule is returned as is.
    """
    if isinstance(d, Schedule):
        return d
    if isinstance(d, (int, float)) and not isinstance(d, bool):
        return FixedSchedule(rho=d)
    if isinstance(d, str):
        return schedule_from_spec(d)
    if not isinstance(d, dict):
        raise ConfigError(f"a schedule must be a mapping with a 'name' or a number (fixed rho), got {d!r}")
    kw = dict(d)
    name = kw.pop("name", None)
    names = ", ".join(sorted(SCHEDULES))
    if name is None:
        raise ConfigError(f"schedule needs a 'name': one of {names}")
    cls = SCHEDULES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(f"unknown schedule {name!r}; choose one of {names}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(kw) - set(fields), key=str)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(map(repr, unknown))} for schedule {name!r}; "
            f"allowed: {', '.join(fields)}"
        )
    missing = [
        k for k, f in fields.items()
        if k not in kw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"schedule {name!r} needs {', '.join(map(repr, missing))}")
    return cls(**kw)


def _spec_value(text: str) -> Any:
    t = text.strip()
    if t.lower() in ("none", "off", "null"):
        return None
    try:
        return float(t)
    except ValueError:
        raise ConfigError(f"schedule parameter value must be a number or none, got {text!r}") from None


def is_schedule_spec(text: str) -> bool:
    """True for "cyclic:...", "linear", "0.5"; False for what looks like a recipe (file or shipped name)."""
    from pathlib import Path

    t = text.strip()
    if t.endswith((".yaml", ".yml")) or Path(t).is_file():
        return False
    try:
        float(t)
        return True
    except ValueError:
        pass
    return ":" in t or t in SCHEDULES


def schedule_from_spec(spec: str) -> Schedule:
    """Build a schedule from a one-line spec, the syntax every command and recipe accepts:

        "cyclic:low=0.2,high=1.0"   "linear:start=0.4,end=1,warmup_epochs=1"   "cosine:start=0.2,end=1,grid=none"
        "cyclic"                    (that schedule with its defaults)           "0.5"  (fixed keep ratio 0.5)

    Keys are the schedule's parameters (`to_dict()` lists them); `none` / `off` / `null` = None.
    """
    text = spec.strip()
    try:
        rho = float(text)
    except ValueError:
        rho = None
    if rho is not None:  # outside the try: FixedSchedule's ConfigError (a ValueError) names the range
        return FixedSchedule(rho=rho)
    name, _, params = text.partition(":")
    d: dict[str, Any] = {"name": name.strip()}
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"schedule spec {spec!r}: expected key=value, got {item!r}")
        if key.strip() in d:
            raise ConfigError(f"schedule spec {spec!r}: {key.strip()!r} is given twice; keep one of them")
        d[key.strip()] = _spec_value(value)
    return from_dict(d)
