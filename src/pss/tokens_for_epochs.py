"""Tokens for epochs: the config of the longer run, and its refusals told in the user's numbers.

`budget_epochs: 1.5` beside `budget: 0.6` (`apply_budget_epochs`, when a config is resolved) spends the same
budget on more epochs at fewer tokens. The run trains round(1.5 x epochs) epochs (LR warm-up and cool-down
scaled alike, the LR schedule decaying over the longer run), and its schedule is solved for the budget
that keeps the total at 0.6 of the recipe's epochs at keep ratio 1.0 (0.6 x epochs / new epochs of the
longer run). The recipe's values stay in the config as `budget_reference`. `budget_epochs: auto` takes the
factor from the budget study's evidence (`pss.evidence`): 1.5 at the budgets where it was measured to pay
or to do no worse, from scratch or when fine-tuning (`starts_trained`), 1 (the epochs stay) elsewhere.

When the longer run's share is below what the schedule can reach, the solver's refusal names a budget the
user never gave ("budget 0.006 is below ..."); `blame_budget_epochs` names the factor instead, with the
largest that fits (`pss.budget.plan`, the one entry from a budget to a run's schedules, tells its refusals
through it). `describe_budget_epochs` says what the factor did, for a run's log and `pss schedule` alike.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from pss.budget_spec import check_budget_epochs
from pss.errors import ConfigError
from pss.evidence import auto_budget_epochs

__all__ = [
    "apply_budget_epochs",
    "blame_budget_epochs",
    "budget_epochs_plan",
    "describe_budget_epochs",
    "epochs_factor",
    "starts_trained",
]


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


def starts_trained(cfg: Any) -> bool:
    """Is the run fine-tuning: does it start from trained weights (`init`, or timm's `pretrained` weights)?"""
    return cfg.init is not None or bool((cfg.model.kwargs or {}).get("pretrained"))


def epochs_factor(asked: Any, budget: float | None, fine_tuning: bool) -> tuple[float, str | None]:
    """(the epochs factor, why when `auto` chose it) of `budget_epochs: asked`, checked against the budget."""
    check_budget_epochs(asked, budget)
    if asked != "auto":
        return asked, None
    if budget is None:
        raise ConfigError("budget_epochs auto needs a budget to choose the factor for (e.g. --budget 0.6)")
    return auto_budget_epochs(budget, fine_tuning)


def apply_budget_epochs(cfg: Any, fine_tuning: bool | None = None) -> Any:
    """The config of a tokens-for-epochs run: epochs x `budget_epochs` (rounded half up to whole epochs),
    LR warm-up / cool-down scaled alike, and the budget of the longer run such that its total cost is
    `budget` of the recipe's epochs at keep ratio 1.0. The recipe's values go to `budget_reference`;
    `budget_epochs` is cleared, so applying it again changes nothing (resolved configs stay resolved);
    `auto` is resolved to a factor first (`auto_budget_epochs`, its reason kept in `budget_reference`), for
    a run that starts from trained weights when `fine_tuning` says so (None: when the config does,
    `starts_trained`)."""
    asked = getattr(cfg, "budget_epochs", None)
    if asked is None:
        return cfg
    if asked == "auto" and cfg.budget is None:  # a full-token baseline of an auto recipe: the recipe's epochs
        return dataclasses.replace(cfg, budget_epochs=None)
    trained = starts_trained(cfg) if fine_tuning is None else fine_tuning
    factor, why = epochs_factor(asked, cfg.budget, fine_tuning=trained)
    epochs, budget = budget_epochs_plan(cfg.epochs, cfg.budget, factor)
    scale = epochs / cfg.epochs
    lr_sched = dataclasses.replace(cfg.lr_sched, warmup_epochs=round(cfg.lr_sched.warmup_epochs * scale, 4),
                                   cooldown_epochs=round(cfg.lr_sched.cooldown_epochs * scale, 4))
    reference = {"epochs": cfg.epochs, "budget": cfg.budget, "budget_epochs": asked, "epochs_factor": round(scale, 6)}
    if why is not None:
        reference["auto"] = why
    return dataclasses.replace(cfg, epochs=epochs, lr_sched=lr_sched, budget=budget,
                               budget_epochs=None, budget_reference=reference)


def describe_budget_epochs(cfg: Any) -> str | None:
    """Tokens for epochs in words, from a resolved config's `budget_reference` (a run's log and `pss schedule
    --budget` say it alike); None when the run keeps the recipe's epochs and budget."""
    ref = cfg.budget_reference
    if ref is None:
        return None
    asked = ref["budget_epochs"]
    how = f"auto: {ref['auto']}" if "auto" in ref else (asked if isinstance(asked, str) else f"{asked:g}")
    return (f"budget {ref['budget']:g} of {ref['epochs']:g} epochs spent as {cfg.epochs} epochs (budget_epochs {how}): "
            f"{cfg.budget:g} of each of them")


def budget_epochs_plan(epochs: float, budget: float | None, factor: Any) -> tuple[int, float]:
    """(epochs of the longer run, its budget relative to itself) for `budget_epochs: factor`: the epochs
    rounded half up to whole ones (never fewer than `epochs`), the budget scaled down so that the total
    stays `budget` of `epochs` at keep ratio 1.0."""
    check_budget_epochs(factor, budget)
    longer = max(math.ceil(epochs), math.floor(epochs * factor + 0.5))
    each = round(budget / (longer / epochs), 6)
    if each <= 0:
        raise ConfigError(f"budget_epochs {factor:g} spreads budget {budget:g} of {epochs:g} epochs over {longer:g} epochs, "
                          "leaving nothing of each; budget_epochs is a small factor (e.g. 1.5, or auto)")
    return longer, each
