"""The equal-time baseline, the honest yardstick of a PSS run, and what a run costs against its full run.

    cost = cost_vs_full(pss_cfg)                                  # before it trains: the recipe's budget
    overrides = equal_time_overrides(full_cfg, cost.ratio, "pss")  # the full-token recipe for that share
    cost_vs_full(pss_cfg, summary, full_summary).describe()       # after: realised cost and time ratio

The full run is the recipe at keep ratio 1.0 for the recipe's epochs. Under tokens for epochs
(`budget_epochs`, pss.budget) a PSS run trains longer at a lower per-run budget (0.6 of 30 epochs spent
as 45 epochs at 0.4 of each): its own `budget` is then that per-run share, and its cost against the full
run is the recipe's budget, kept in `budget_reference`. `cost_vs_full` is the one place that reads it;
every harness, `pss demo` and `pss report` take the equal-time share and the cost they print from it.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from pss.errors import ConfigError

__all__ = ["CostVsFull", "cost_vs_full", "equal_time_epochs", "equal_time_overrides"]


@dataclass(frozen=True)
class CostVsFull:
    """What a run costs against its full baseline: the same recipe at keep ratio 1.0 for the recipe's epochs.

    `budget` is the budget the user gave (the recipe's); `run_budget` the share of its own (longer) run that
    the schedule was solved for under tokens for epochs (`budget x epochs / longer epochs`), internal;
    `predicted` / `realised` the cost model's prediction and the steps the run took, both against the full
    run; `time_ratio` the measured training time over the full run's, where both summaries were given."""

    budget: float | None = None
    run_budget: float | None = None
    epochs_factor: float = 1.0
    predicted: float | None = None
    realised: float | None = None
    time_ratio: float | None = None

    @property
    def ratio(self) -> float:
        """The share of the full run's epochs its equal-time baseline trains: the budget when there is one
        (known before the run trains), else the measured time ratio (at most 1)."""
        if self.budget is not None:
            return self.budget
        if self.time_ratio is None:
            raise ConfigError("a run without a budget costs what it took: its equal-time share needs its summary "
                              "and its full baseline's (train_time_s)")
        return min(1.0, self.time_ratio)

    def describe(self) -> str:
        """e.g. "budget 0.6 of the full run, realised cost 0.581 (45 epochs instead of 30 at 0.4 of each)"."""
        if self.budget is None:
            return "no budget" + ("" if self.time_ratio is None else f", time {self.time_ratio:.3f} of the full run")
        cost = self.realised if self.realised is not None else self.predicted
        text = f"budget {self.budget:g} of the full run" + ("" if cost is None else (
            f", {'realised' if self.realised is not None else 'predicted'} cost {cost:.3f}"))
        if self.epochs_factor != 1.0 and self.run_budget is not None:
            text += f" ({self.epochs_factor:g}x the epochs at {self.run_budget:g} of each)"
        if self.time_ratio is not None:
            text += f", time {self.time_ratio:.3f} of the full run"
        return text

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def cost_vs_full(cfg: Any = None, summary: dict[str, Any] | None = None,
                 full: dict[str, Any] | None = None) -> CostVsFull:
    """The cost of a run relative to its full baseline (the recipe's epochs at keep ratio 1.0): the one
    place that reads it. `cfg` is the run's resolved config (a TrainConfig, or its config.yaml as a dict;
    with tokens for epochs its `budget_reference` holds the recipe's budget and epochs, its `budget` the
    longer run's own share); `summary` its summary.json (the budget's predicted and realised cost, and
    `train_time_s`); `full` the full baseline's summary.json (for the measured time ratio). Either of
    `cfg` and `summary` may be missing."""
    def get(key: str) -> Any:
        if isinstance(cfg, dict):
            return cfg.get(key)
        return getattr(cfg, key, None) if cfg is not None else None

    plan = (summary or {}).get("budget")
    plan = plan if isinstance(plan, dict) else {}
    reference = get("budget_reference") or plan.get("reference") or {}
    run_budget = get("budget") if get("budget") is not None else plan.get("budget")
    factor = float(reference.get("epochs_factor") or 1.0)
    if reference.get("budget") is not None:
        budget = float(reference["budget"])
    else:  # no tokens for epochs (or not applied yet): the run's budget is the recipe's
        budget = float(run_budget) if run_budget is not None else None
    predicted = plan.get("predicted_cost")
    realised = plan.get("realised_cost")
    mine_t = (summary or {}).get("train_time_s")
    full_t = (full or {}).get("train_time_s")
    return CostVsFull(
        budget=budget, run_budget=None if run_budget is None else float(run_budget), epochs_factor=factor,
        predicted=None if predicted is None else float(predicted) * factor,
        realised=None if realised is None else float(realised) * factor,
        time_ratio=float(mine_t) / float(full_t) if mine_t is not None and full_t else None,
    )


def equal_time_epochs(epochs: int, ratio: float) -> int:
    """Epochs of the full-token run that cost `ratio` of `epochs` full-token epochs (at least 1)."""
    if not 0 < ratio <= 1:
        raise ConfigError(f"an equal-time ratio must be in (0, 1], got {ratio!r}")
    return max(1, math.floor(epochs * ratio + 0.5))


def equal_time_overrides(cfg: Any, ratio: float, of: str) -> list[str]:
    """`--set` overrides that turn `cfg` into the equal-time baseline of a run costing `ratio` of it:
    keep ratio 1.0 always, epochs scaled (LR schedule fully decayed over the shorter run), LR warm-up and
    cool-down scaled alike, no budget. `of` names the run it is the baseline of (recorded in its config).
    `cfg` is the full baseline's config and `ratio` the PSS run's cost against it: take it from
    `cost_vs_full(pss_cfg).ratio`, never from the PSS run's own `budget` (under tokens for epochs that is the
    longer run's share, e.g. 0.4, not the 0.6 it costs against the full run)."""
    epochs = equal_time_epochs(cfg.epochs, ratio)
    scale = epochs / cfg.epochs
    return [
        "schedule=1.0", "budget=null", f"epochs={epochs}",
        f"lr_sched.warmup_epochs={round(cfg.lr_sched.warmup_epochs * scale, 4)}",
        f"lr_sched.cooldown_epochs={round(cfg.lr_sched.cooldown_epochs * scale, 4)}",
        f"equal_time_of={json.dumps(of)}",
    ]
