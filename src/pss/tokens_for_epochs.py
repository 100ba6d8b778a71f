"""Tokens for epochs (`budget_epochs`), when the schedule cannot spend what it leaves: the refusal told in
the user's numbers.

`budget_epochs: F` trains F x the epochs, each at budget / F of its full-token cost (`pss.budget.apply_budget_epochs`).
When that share is below what the schedule can reach, the solver's refusal names a budget the user never gave
("budget 0.006 is below ..."); `blame_budget_epochs` names the factor instead, with the largest that fits
(`pss.budget.plan`, the one entry from a budget to a run's schedules, tells its refusals through it).
"""
from __future__ import annotations

import math
from typing import Any

from pss.errors import ConfigError

__all__ = ["blame_budget_epochs"]


def blame_budget_epochs(e: ConfigError, budget: float, epochs: float, asked: Any, longer: int) -> ConfigError:
    """The solver's refusal of the budget that `budget_epochs: asked` left for each of `longer` epochs (`budget`
    of `epochs` before it), led by the user's numbers: their budget, the recipe's epochs and the per-run share
    the solver saw, then the fixes (the largest factor that fits, where the refusal names the schedule's
    floor, or the recipe's epochs); a budget below the floor even without the factor is said as such."""
    floor = getattr(e, "floor", None)
    factor = f"{asked} (x{longer / epochs:g})" if isinstance(asked, str) else f"{asked:g}"
    if floor is not None and budget < floor:
        least = f"{math.ceil(floor * 1000) / 1000:.3f}"
        return ConfigError(f"budget {budget:g} is below what this schedule can reach even without budget_epochs "
                           f"(the smallest possible is {least}); raise the budget (budget_epochs {factor} only spreads "
                           "it over more epochs)")
    fixes = []
    if floor is not None:
        most = math.floor(budget * epochs / floor)  # the most whole epochs whose share stays above the floor
        fixes.append(f"use budget_epochs {max(1.0, math.floor(most / epochs * 100) / 100):g} or less")
    fixes.append("keep the recipe's epochs (budget_epochs: null, pss schedule --budget-epochs 1), where the budget "
                 "buys more tokens per step")
    return ConfigError(f"budget {budget:g} of {epochs:g} epochs, spent by budget_epochs {factor} as {longer:g} epochs, "
                       f"leaves {budget * epochs / longer:.3g} of each of them: {e}; {', or '.join(fixes)}")

