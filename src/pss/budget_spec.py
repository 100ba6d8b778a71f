"""What a recipe says about its compute budget, read without solving anything: the cost model it asks for
(`CostSpec`, parsed once from `budget_cost`), the lever a budget moves, and the checks of `budget` and
`budget_epochs` that need nothing but the recipe's own values.

    spec = CostSpec.parse("measured:speed.json,data.json")
    spec.kind, spec.speed, spec.data        # "measured", "speed.json", "data.json"
    spec.timed_in_run                       # False: the files hold the times (`measured` alone: True)

The config (pss.settings) runs these checks on construction; the solver (pss.budget) builds the cost model
the spec names and solves the schedule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pss.errors import ConfigError
from pss.resolution import ResolutionSchedule
from pss.schedule import FixedSchedule, Schedule

__all__ = [
    "BUDGET_LEVERS",
    "COST_KINDS",
    "FREE_PARAMETER",
    "CostSpec",
    "check_budget",
    "check_budget_epochs",
    "check_settings",
    "resolve_lever",
]

# The parameter of each schedule kind that the budget sets.
FREE_PARAMETER = {"cyclic": "low", "linear": "start", "cosine": "start", "fixed": "rho"}
BUDGET_LEVERS = ("auto", "drop", "resize", "both")
COST_KINDS = ("flops", "table", "measured")

_FORMS = ("flops, measured, measured:SPEED.json,DATA.json (pss bench speed --json and pss bench data --json files) "
          "or the path of a pss bench speed --json file (ending in .json)")


@dataclass(frozen=True)
class CostSpec:
    """The cost model of `budget_cost`, parsed once (`parse`):

      * `flops`: FLOPs of the run's model (kind "flops");
      * a `pss bench speed --json` file (kind "table", `speed` its path);
      * `measured`: step and loader times measured in the run before it trains (kind "measured");
      * `measured:SPEED.json,DATA.json`: the same times read from a speed and a data report (kind
        "measured", `speed` and `data` their paths).

    `str(spec)` is the setting as a recipe writes it (config.yaml, checkpoints)."""

    kind: str = "flops"
    speed: str | None = None
    data: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in COST_KINDS:
            raise ConfigError(f"unknown cost model kind {self.kind!r}; choose one of {', '.join(COST_KINDS)}")
        files = (self.speed is not None, self.data is not None)  # which reports are given
        allowed = {"flops": [(False, False)], "table": [(True, False)], "measured": [(False, False), (True, True)]}
        if files not in allowed[self.kind]:
            raise ConfigError(f"a {self.kind} cost model takes other files than speed={self.speed!r}, data={self.data!r}; "
                              "build it from the setting with CostSpec.parse")

    @classmethod
    def parse(cls, value: Any) -> CostSpec:
        """The spec of a `budget_cost` value (a CostSpec passes through); a value of none of the forms is
        refused in one line naming them."""
        if isinstance(value, CostSpec):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"budget_cost must be {_FORMS}; got {value!r}")
        text = value.strip()
        if text in ("flops", "measured"):
            return cls(text)
        if text.startswith("measured:"):
            files = [f.strip() for f in text.removeprefix("measured:").split(",")]
            if len(files) != 2 or not all(files):
                raise ConfigError(f"budget_cost {text!r}: give measured:SPEED.json,DATA.json (pss bench speed --json and "
                                  "pss bench data --json files), or measured to measure both in the run")
            return cls("measured", files[0], files[1])
        if text.endswith(".json") or "/" in text or "\\" in text:
            return cls("table", text)
        raise ConfigError(f"budget_cost {text!r} is no cost model: use {_FORMS}")

    @property
    def timed_in_run(self) -> bool:
        """`measured` alone: the run times its own steps and loader before it trains (no files)."""
        return self.kind == "measured" and self.speed is None

    @property
    def from_files(self) -> bool:
        """`measured:SPEED.json,DATA.json`: the measured times come from two reports."""
        return self.kind == "measured" and self.data is not None

    def __str__(self) -> str:
        if self.kind == "table":
            return str(self.speed)
        if self.from_files:
            return f"measured:{self.speed},{self.data}"
        return self.kind


def resolve_lever(lever: str, schedule: Schedule, resolution: ResolutionSchedule | None) -> str:
    """The lever a budget solves (`budget_lever`): drop, resize or both; `auto` is resize where a resolution
    schedule runs beside every token (a keep ratio fixed at 1.0), both beside a keep-ratio schedule, drop
    without a resolution schedule."""
    if lever != "auto":
        return lever
    if resolution is None:
        return "drop"
    return "resize" if _every_token(schedule) else "both"


def _every_token(schedule: Schedule) -> bool:
    """Does the schedule run every token at every step (a keep ratio fixed at 1.0)?"""
    return isinstance(schedule, FixedSchedule) and schedule.rho >= 1.0


def check_budget(budget: Any, schedule: Schedule, lever: str = "drop") -> None:
    """Refuse a budget that is not a share of the full cost, or that has no schedule to solve (`lever`: the
    resolved budget_lever; resize solves the resolution schedule, whatever the keep-ratio schedule)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget <= 1:
        raise ConfigError(
            f"budget must be in (0, 1] (the share of the full-token run's cost, e.g. 0.6), got {budget!r}"
        )
    if lever == "resize":
        return
    if schedule.name not in FREE_PARAMETER:
        raise ConfigError(f"budget cannot solve a {schedule.name} schedule; use one of {', '.join(FREE_PARAMETER)}")
    if isinstance(schedule, FixedSchedule) and schedule.rho == 1.0 and budget < 1:
        raise ConfigError(
            f"budget {budget:g} with schedule 1.0 (every token, every step) leaves nothing to solve: give a PSS "
            f"schedule (e.g. --set schedule=cyclic), or for a full-token run of that cost scale epochs instead "
            f"(the equal-time baseline: epochs x {budget:g})"
        )


def check_budget_epochs(budget_epochs: Any, budget: float | None) -> None:
    """Refuse a tokens-for-epochs factor that is not `auto` or a number >= 1, or that has no budget to spend."""
    if budget_epochs is None:
        return
    if budget_epochs != "auto" and (isinstance(budget_epochs, bool) or not isinstance(budget_epochs, (int, float))
                                    or not math.isfinite(budget_epochs)):
        raise ConfigError(f"budget_epochs must be auto or a number >= 1 (e.g. 1.5: 1.5x the epochs at fewer tokens), "
                          f"got {budget_epochs!r}")
    if budget_epochs != "auto" and budget_epochs < 1:
        raise ConfigError(
            f"budget_epochs must be >= 1 (it trains that many times the epochs at fewer tokens), got {budget_epochs!r}; "
            "for fewer epochs at every token use the equal-time baseline (epochs x budget, schedule 1.0)"
        )
    if budget is None and budget_epochs != "auto":  # auto without a budget: nothing to spend, nothing to do
        raise ConfigError(f"budget_epochs {budget_epochs} needs a budget to spend (e.g. budget: 0.6); set both or neither, "
                          "or budget_epochs: auto (a budget: null baseline then trains the recipe's epochs)")


def check_settings(cfg: Any) -> CostSpec:
    """Every budget setting of a recipe (`budget`, `budget_lever`, `budget_epochs`, `budget_cost`), checked
    together against its task, schedule and resolution schedule; returns the parsed `budget_cost`. A bad
    cost form is refused with or without a budget. Called by `TrainConfig` on construction."""
    if cfg.budget_lever not in BUDGET_LEVERS:
        raise ConfigError(f"unknown budget_lever {cfg.budget_lever!r}; choose one of {', '.join(BUDGET_LEVERS)}")
    if cfg.budget_lever in ("resize", "both") and cfg.resolution is None:
        raise ConfigError(f"budget_lever {cfg.budget_lever} needs a resolution schedule to solve, e.g. "
                          "--set resolution={name: linear, start: 0.5}; or budget_lever: drop")
    if cfg.budget is not None:
        if cfg.task != "classification":
            raise ConfigError(f"budget applies to classification training, not task {cfg.task!r}; set budget: null")
        check_budget(cfg.budget, cfg.schedule, resolve_lever(cfg.budget_lever, cfg.schedule, cfg.resolution))
    check_budget_epochs(cfg.budget_epochs, cfg.budget)
    return CostSpec.parse(cfg.budget_cost)
