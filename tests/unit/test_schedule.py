"""Keep-ratio schedules, checked by value."""
from __future__ import annotations

import math
import random

import pytest
import yaml

from pss.errors import ConfigError
from pss.schedule import (
    SCHEDULES,
    CosineSchedule,
    CyclicSchedule,
    FixedSchedule,
    LinearSchedule,
    Schedule,
    from_dict,
    quantize,
)

ALL = [
    FixedSchedule(0.6),
    FixedSchedule(0.5, grid=0.25, warmup_epochs=1),
    LinearSchedule(0.2, 1.0),
    LinearSchedule(1.0, 0.4, grid=None, cooldown_epochs=0.5),
    CosineSchedule(0.2, 1.0, warmup_epochs=1.5),
    CosineSchedule(0.3, 0.9, grid=0.1),
    CyclicSchedule(),
    CyclicSchedule(low=0.2, high=1.1, period_epochs=2, warmup_epochs=1, cooldown_epochs=1, grid=None),
]


# --- the reference code's cyclic schedule ---------------------------------------------------------

def test_cyclic_reference_sequence():
    # Reference code: drop ratio 0.8 -> -0.1, i.e. keep 0.2 -> 1.1 clamped to 1.0, grid 0.2.
    s = CyclicSchedule(low=0.2, high=1.1, grid=0.2)
    assert s.values(10, 10) == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 0.8, 0.6, 0.4]
    # One period per epoch: every epoch repeats it.
    assert s.values(10, 30) == s.values(10, 10) * 3


def test_cyclic_defaults_are_the_paper_setting():
    s = CyclicSchedule()
    assert (s.low, s.high, s.period_epochs, s.grid) == (0.2, 1.0, 1.0, 0.2)
    assert s.values(5, 5) == [0.2, 0.6, 0.8, 0.8, 0.6]  # 0.2, 0.52, 0.84, 0.84, 0.52


def test_cyclic_period_and_grid_off():
    s = CyclicSchedule(low=0.2, high=1.0, period_epochs=2, grid=None)
    assert s.values(4, 16) == [0.2, 0.4, 0.6, 0.8, 1.0, 0.8, 0.6, 0.4] * 2
    half = CyclicSchedule(period_epochs=0.5, grid=None)
    assert half.values(4, 4) == [0.2, 1.0, 0.2, 1.0]


def test_cyclic_phase_starts_after_warmup():
    s = CyclicSchedule(low=0.2, high=1.0, grid=None, warmup_epochs=0.5)
    assert s.values(4, 8) == [1.0, 1.0, 0.2, 0.6, 1.0, 0.6, 0.2, 0.6]


# --- linear and cosine ----------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [LinearSchedule, CosineSchedule])
def test_endpoints_and_midpoint(cls):
    s = cls(0.2, 1.0, grid=None)
    v = s.values(10, 101)
    assert v[0] == 0.2 and v[-1] == 1.0
    assert v[50] == pytest.approx(0.6)
    down = cls(1.0, 0.4, grid=None)
    assert down(0, 10, 101) == 1.0 and down(100, 10, 101) == 0.4 and down(50, 10, 101) == pytest.approx(0.7)


def test_linear_exact_values_with_and_without_grid():
    assert LinearSchedule(0.2, 1.0, grid=None).values(3, 9) == [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    # 0.3, 0.5, 0.7, 0.9 are exact half points of the 0.2 grid: round half up.
    assert LinearSchedule(0.2, 1.0).values(3, 9) == [0.2, 0.4, 0.4, 0.6, 0.6, 0.8, 0.8, 1.0, 1.0]


def test_cosine_values():
    s = CosineSchedule(0.2, 1.0, grid=None)
    v = s.values(5, 5)  # t = 0, 1/4, 1/2, 3/4, 1
    expected = [0.2 + 0.8 * (1 - math.cos(math.pi * t)) / 2 for t in (0, 0.25, 0.5, 0.75, 1)]
    assert v == pytest.approx(expected, abs=1e-6)
    assert CosineSchedule(0.2, 1.0).values(5, 5) == [0.2, 0.4, 0.6, 0.8, 1.0]
    # Cosine is slow at both ends, fast in the middle.
    assert CosineSchedule(0.2, 1.0, grid=None)(1, 5, 101) < LinearSchedule(0.2, 1.0, grid=None)(1, 5, 101)


def test_single_scheduled_step_is_start():
    assert LinearSchedule(0.4, 1.0)(0, 1, 1) == 0.4
    assert CosineSchedule(0.4, 1.0)(0, 1, 1) == 0.4


# --- warm-up and cool-down ------------------------------------------------------------------------

def test_warmup_and_cooldown():
    s = LinearSchedule(0.2, 0.8, grid=None, warmup_epochs=1, cooldown_epochs=0.5)
    v = s.values(4, 12)  # 4 warm-up steps, 6 scheduled, 2 cool-down
    assert v[:4] == [1.0] * 4
    assert v[4:10] == pytest.approx([0.2, 0.32, 0.44, 0.56, 0.68, 0.8])
    assert v[10:] == [1.0, 1.0]


def test_fractional_epochs_round_half_up_to_steps():
    s = FixedSchedule(0.4, warmup_epochs=0.25, cooldown_epochs=0.15)
    assert s.values(10, 10) == [1.0] * 3 + [0.4] * 5 + [1.0] * 2  # 2.5 -> 3, 1.5 -> 2 steps


def test_warmup_and_cooldown_must_leave_steps():
    with pytest.raises(ConfigError, match="leave no steps.*shorten them"):
        CyclicSchedule(warmup_epochs=1, cooldown_epochs=1).values(5, 10)
    # __call__ itself stays well defined (rho = 1.0) so the hot path never raises for this.
    assert CyclicSchedule(warmup_epochs=5)(3, 5, 10) == 1.0


# --- grid, clamping, quantize ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "value, grid, expected",
    [
        (0.38, 0.2, 0.4),
        (0.3, 0.2, 0.4),  # 0.3 / 0.2 == 1.4999999999999998: still a half point, rounds up
        (0.1, 0.2, 0.2),  # half of the smallest point rounds up to it
        (0.05, 0.2, 0.2),  # would round to 0: becomes the smallest grid point
        (0.001, 0.25, 0.25),
        (0.6, 0.2, 0.6),
        (0.7, 0.1, 0.7),
        (0.625, 0.25, 0.75),
        (0.92, 0.2, 1.0),
        (1.1, 0.2, 1.0),  # clamp after rounding
        (1.7, 0.5, 1.0),
        (1.0, 1.0, 1.0),
        (0.3, 1.0, 1.0),  # grid 1.0: everything is 1.0
        (0.30000000000000004, None, 0.3),  # grid off: only float noise is removed
        (0.123456789, None, 0.123457),
        (1.3, None, 1.0),
    ],
)
def test_quantize(value, grid, expected):
    assert quantize(value, grid) == expected
    assert repr(quantize(value, grid)) == repr(expected)  # 0.6, not 0.6000000000000001


def test_grid_results_are_clean_grid_points():
    points = {0.2, 0.4, 0.6, 0.8, 1.0}
    for s in (LinearSchedule(0.2, 1.0), CosineSchedule(0.25, 1.0), CyclicSchedule(low=0.1, high=1.3)):
        assert set(s.values(37, 370)) <= points
    assert set(CyclicSchedule(low=0.2, high=1.0, grid=0.1).values(100, 100)) == {
        0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    }


def test_grid_zero_means_off():
    s = CyclicSchedule(grid=0)
    assert s.grid is None
    assert s == CyclicSchedule(grid=None)
    assert len(set(s.values(50, 50))) > 5


def test_fixed_grid_defaults_off_but_can_be_set():
    assert FixedSchedule(0.5).values(2, 2) == [0.5, 0.5]
    assert FixedSchedule(0.5, grid=0.2).values(2, 2) == [0.6, 0.6]


def test_overshoot_is_clamped():
    assert LinearSchedule(0.6, 1.4, grid=None).values(5, 5) == [0.6, 0.8, 1.0, 1.0, 1.0]
    assert max(CyclicSchedule(low=0.5, high=2.0, grid=None).values(8, 8)) == 1.0


def test_all_values_in_range():
    for s in ALL:
        v = s.values(7, 70)
        assert all(0 < x <= 1 for x in v), s


# --- mean keep ratio ------------------------------------------------------------------------------

def test_mean_keep_ratio():
    assert CyclicSchedule(low=0.2, high=1.1).mean(10, 10) == pytest.approx(0.68)
    assert CyclicSchedule(low=0.2, high=1.1).mean(10, 100) == pytest.approx(0.68)
    assert CyclicSchedule(grid=None).mean(1000, 1000) == pytest.approx(0.6)
    assert LinearSchedule(0.2, 1.0, grid=None).mean(10, 101) == pytest.approx(0.6)
    assert CosineSchedule(0.2, 1.0, grid=None).mean(10, 101) == pytest.approx(0.6)
    assert FixedSchedule(0.4).mean(5, 10) == pytest.approx(0.4)
    # Warm-up and cool-down add full-cost steps: 2 of 10 at 1.0, 8 at 0.4.
    assert FixedSchedule(0.4, warmup_epochs=0.1, cooldown_epochs=0.1).mean(10, 10) == pytest.approx(0.52)


# --- purity ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("sched", ALL, ids=repr)
def test_pure_any_order(sched):
    spe, total = 7, 63
    forward = [sched(s, spe, total) for s in range(total)]
    order = list(range(total))
    random.Random(0).shuffle(order)
    shuffled = {s: sched(s, spe, total) for s in order}
    assert [shuffled[s] for s in range(total)] == forward
    assert [sched(s, spe, total) for s in reversed(range(total))] == forward[::-1]
    assert sched.values(spe, total) == forward
    # Equal schedules built separately agree (no state is shared or hidden).
    assert from_dict(sched.to_dict()).values(spe, total) == forward


def test_frozen_and_hashable():
    s = CyclicSchedule()
    with pytest.raises(AttributeError):
        s.low = 0.5  # type: ignore[misc]
    assert hash(s) == hash(CyclicSchedule())


def test_step_outside_run_is_an_error():
    with pytest.raises(ValueError, match="outside the run"):
        CyclicSchedule()(10, 10, 10)
    with pytest.raises(ValueError, match="outside the run"):
        CyclicSchedule()(-1, 10, 10)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        CyclicSchedule()(0, 0, 10)


# --- serialisation --------------------------------------------------------------------------------

@pytest.mark.parametrize("sched", ALL, ids=repr)
def test_round_trip_dict_and_yaml(sched):
    d = sched.to_dict()
    assert d["name"] == sched.name and list(d)[0] == "name"
    assert from_dict(d) == sched
    text = yaml.safe_dump({"schedule": d}, sort_keys=False)
    assert from_dict(yaml.safe_load(text)["schedule"]) == sched


def test_to_dict_contents():
    assert CyclicSchedule(low=0.2, high=1.1).to_dict() == {
        "name": "cyclic", "low": 0.2, "high": 1.1, "period_epochs": 1.0,
        "warmup_epochs": 0.0, "cooldown_epochs": 0.0, "grid": 0.2,
    }
    # Ints are stored as floats, so YAML written from it reads back identically.
    assert FixedSchedule(1).to_dict() == {
        "name": "fixed", "rho": 1.0, "warmup_epochs": 0.0, "cooldown_epochs": 0.0, "grid": None,
    }


def test_from_dict_shorthands():
    assert from_dict(0.6) == FixedSchedule(0.6)
    assert from_dict(1) == FixedSchedule(1.0)
    assert from_dict("cyclic") == CyclicSchedule()
    assert from_dict({"name": "linear", "start": 0.2, "end": 1}) == LinearSchedule(0.2, 1.0)
    s = CosineSchedule(0.2, 1.0)
    assert from_dict(s) is s
    assert from_dict(yaml.safe_load("{name: cyclic, grid: null, warmup_epochs: 2}")) == CyclicSchedule(
        grid=None, warmup_epochs=2
    )


def test_registry():
    assert set(SCHEDULES) == {"fixed", "linear", "cosine", "cyclic"}
    for name, cls in SCHEDULES.items():
        assert cls.name == name and issubclass(cls, Schedule)


# --- validation -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: FixedSchedule(0.0), r"fixed rho must be a keep ratio in \(0, 1\], got 0.0"),
        (lambda: FixedSchedule(-0.2), r"fixed rho must be a keep ratio in \(0, 1\]"),
        (lambda: FixedSchedule(1.1), r"fixed rho must be a keep ratio in \(0, 1\], got 1.1"),
        (lambda: LinearSchedule(0.0, 1.0), r"linear start must be a keep ratio in \(0, 2\]"),
        (lambda: LinearSchedule(0.2, 2.5), r"linear end must be .*values above 1 are clamped"),
        (lambda: CosineSchedule(-1, 1.0), r"cosine start must be a keep ratio"),
        (lambda: CosineSchedule(0.5, 0), r"cosine end must be a keep ratio"),
        (lambda: CyclicSchedule(low=0), r"cyclic low must be a keep ratio"),
        (lambda: CyclicSchedule(high=2.1), r"cyclic high must be a keep ratio in \(0, 2\]"),
        (lambda: CyclicSchedule(low=0.8, high=0.4), r"low \(0.8\) must be <= high \(0.4\); swap them"),
        (lambda: CyclicSchedule(period_epochs=0), r"period_epochs must be > 0"),
        (lambda: CyclicSchedule(warmup_epochs=-1), r"warmup_epochs must be >= 0"),
        (lambda: LinearSchedule(0.2, 1, cooldown_epochs=-0.5), r"cooldown_epochs must be >= 0"),
        (lambda: CyclicSchedule(grid=1.5), r"grid must be in \(0, 1\] \(or null / 0 for no rounding\)"),
        (lambda: CyclicSchedule(grid=-0.2), r"grid must be in \(0, 1\]"),
        (lambda: CyclicSchedule(grid=0.3), r"grid must divide 1 evenly"),
        (lambda: CyclicSchedule(low=float("nan")), r"low must be a finite number"),
        (lambda: CyclicSchedule(low="0.2"), r"low must be a finite number, got '0.2'"),
        (lambda: FixedSchedule(True), r"rho must be a finite number, got True"),
        (lambda: CyclicSchedule(warmup_epochs=float("inf")), r"warmup_epochs must be a finite number"),
        (lambda: from_dict({"name": "triangle"}), r"unknown schedule 'triangle'; choose one of cosine, cyclic"),
        (lambda: from_dict("step"), r"unknown schedule 'step'"),
        (lambda: from_dict({"low": 0.2}), r"schedule needs a 'name': one of cosine, cyclic, fixed, linear"),
        (lambda: from_dict({"name": "cyclic", "lo": 0.2}), r"unknown key\(s\) 'lo' for schedule 'cyclic'; allowed:"),
        (lambda: from_dict({"name": "fixed", "rho": 0.5, "period_epochs": 1}), r"unknown key\(s\) 'period_epochs'"),
        (lambda: from_dict({"name": "linear", "start": 0.2}), r"schedule 'linear' needs 'end'"),
        (lambda: from_dict("fixed"), r"schedule 'fixed' needs 'rho'"),
        (lambda: from_dict(1.5), r"fixed rho must be a keep ratio in \(0, 1\]"),
        (lambda: from_dict(0), r"fixed rho must be a keep ratio"),
        (lambda: from_dict(True), r"a schedule must be a mapping"),
        (lambda: from_dict([0.2, 1.0]), r"a schedule must be a mapping"),
        (lambda: CyclicSchedule().values(0, 10), r"steps_per_epoch must be a positive integer"),
        (lambda: CyclicSchedule().mean(10, 0), r"total_steps must be a positive integer"),
    ],
)
def test_validation_errors(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_accepted_edge_values():
    assert FixedSchedule(1.0).values(1, 1) == [1.0]
    assert CyclicSchedule(low=0.5, high=0.5).values(4, 4) == [0.6] * 4
    assert CyclicSchedule(high=2.0).high == 2.0
    assert LinearSchedule(1.0, 0.2).end == 0.2  # decreasing schedules are allowed
    assert CyclicSchedule(grid=1.0).values(2, 2) == [1.0, 1.0]
