"""What the budget study measured (benchmarks/budget_study.py, docs/budgets.md), in one place: the
evidence behind `budget_epochs: auto` and the `recommended:` line of `pss schedule --budget`.

Update it with the study's record; nothing here is measured at run time.
"""
from __future__ import annotations

import math

__all__ = ["BUDGET_EVIDENCE", "EPOCHS_FACTOR_EVIDENCE", "FINETUNE_EPOCHS_FACTOR_EVIDENCE", "auto_budget_epochs",
           "recommended_shape"]

_TOL = 1e-9


# Where the budget study (benchmarks/budget_study.py, docs/budgets.md) measured tokens for epochs to pay,
# from scratch: (lowest budget, highest budget, epochs factor). `budget_epochs: auto` uses it.
# 1.5x paid at 0.6 (15 and 45 epochs, 3 seeds) and was no worse than a fixed ratio at the recipe's epochs at 0.4
# (tied, in 0.8x its time) and 0.8 (+0.9, within noise; 2 seeds, 15 epochs).
EPOCHS_FACTOR_EVIDENCE: tuple[tuple[float, float, float], ...] = ((0.4, 0.8, 1.5),)
# The same when fine-tuning (a run that starts from trained weights: `init`, or timm's `pretrained`): 1.5x at
# 0.6 was the best PSS arm: 0.75 below the full fine-tuning run, +4.8 over equal time, +0.8 over the cyclic schedule
# at the recipe's epochs (0.0 / +1.6, within noise; SimMIM encoder, 15 epochs, 2 seeds).
FINETUNE_EPOCHS_FACTOR_EVIDENCE: tuple[tuple[float, float, float], ...] = ((0.6, 0.6, 1.5),)


def auto_budget_epochs(budget: float, fine_tuning: bool) -> tuple[float, str]:
    """`budget_epochs: auto`: (the epochs factor, why) from `EPOCHS_FACTOR_EVIDENCE`, or when fine-tuning
    `FINETUNE_EPOCHS_FACTOR_EVIDENCE`; 1.0 (the epochs stay) at budgets where tokens for epochs is unmeasured."""
    table = FINETUNE_EPOCHS_FACTOR_EVIDENCE if fine_tuning else EPOCHS_FACTOR_EVIDENCE
    setting = "fine-tuning (the run starts from trained weights)" if fine_tuning else "from scratch"
    for low, high, factor in table:
        if low - _TOL <= budget <= high + _TOL:
            paid = ("to do no worse than the cyclic schedule at the recipe's epochs" if fine_tuning
                    else "to pay or to do no worse than a fixed ratio at the recipe's epochs")
            return factor, f"{setting} at budget {budget:g}, where the budget study measured {factor:g}x the epochs {paid}"
    where = ", ".join(f"{low:g}" if math.isclose(low, high) else f"{low:g}-{high:g}" for low, high, _ in table) or "none"
    when = "when fine-tuning" if fine_tuning else "from scratch"
    return 1.0, f"budget {budget:g} is outside where tokens for epochs was measured {when} (budgets {where}): the epochs stay"


# What benchmarks/budget_study.py measured (docs/budgets.md), by budget: the shape to try first. `pss
# schedule --budget` prints the entry of the nearest measured budget.
BUDGET_EVIDENCE: dict[float, str] = {
    0.8: ("a fixed random keep ratio (0.8) beat the full run by +1.3 points (+1.3 / +2.2 / +0.25) and the equal-time "
          "run by +1.6 (+3.5 / +1.6 / -0.25); the cyclic schedule was 0.8 below it, within noise (+1.3 / +1.55 / -0.5; "
          "3 seeds, 15 epochs); a keep ratio of 0.8 saved little measured time (0.77-0.89x); tokens for epochs "
          "(budget_epochs 1.5 or auto) was +0.9 over the fixed ratio, within noise (2 seeds)"),
    0.6: ("tokens for epochs (a fixed random keep ratio, budget_epochs 1.5 or auto) beat the full run by +1.5 "
          "points at 15 epochs and +0.8 at 45 (3 seeds each; within noise at 45) and the equal-time run by +3.8 and "
          "+4.9; a fixed ratio at the recipe's epochs was within noise of the full run (+0.2 at 15, +0.4 at 45; 3 "
          "seeds) and of tokens for epochs at 45, and the cyclic schedule tied it at 15 epochs but fell 1.1 below the "
          "full run at 45; fine-tuning a SimMIM encoder (15 epochs, 2 seeds), tokens for epochs came 0.75 below the full "
          "run, +4.8 over the equal-time run and +0.8 over the cyclic schedule (within noise)"),
    0.4: ("a fixed random keep ratio (0.4) beat the equal-time run by +4.5 points (+4.4 / +4.7) and came within 0.6 "
          "of the full run (-1.6 / +0.4); the same with a full-token cool-down over the last 10 % was 1.3 below it (2 "
          "seeds, 15 epochs; a cyclic schedule up to 1.0 cannot reach budgets below ~0.5); tokens for epochs (budget_epochs "
          "1.5 or auto) tied the fixed ratio in 0.8x its time"),
    0.3: ("a fixed random keep ratio (0.3) beat the equal-time run by +4.55 points (+4.2 / +4.8 / +4.7), 1.6 below "
          "the full run; with a full-token cool-down over the last 10 % it was 0.97 below that (-1.8 / +0.15 / -1.25; "
          "3 seeds, 15 epochs)"),
}


def recommended_shape(budget: float) -> str:
    """One line for `pss schedule --budget`: what the budget study found at the nearest measured budget."""
    nearest = min(BUDGET_EVIDENCE, key=lambda b: (abs(b - budget), b))
    where = f"at budget {nearest:g}" + ("" if math.isclose(nearest, budget) else f" (the nearest measured to {budget:g})")
    return f"budget study {where}, CIFAR-10 subset, small ViT: {BUDGET_EVIDENCE[nearest]}; see docs/budgets.md"
