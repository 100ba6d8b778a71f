"""What the budget study measured (benchmarks/budget_study.py, docs/budgets.md), in one place: the
evidence behind `budget_epochs: auto` and the `recommended:` line of `pss schedule --budget`.

The figures are the rows of one record, `RECORD`; this module says what they mean, citing the rows by
name, and copies none of their accuracies. Update it with the record; nothing here is measured at run time. "Beat"
and "within noise" follow the rule of docs/findings.md (every seed's gap of one sign and larger than the
spread of the full run between seeds, or not), which tests/unit/test_claims.py checks against the record.
"""
from __future__ import annotations

import math

__all__ = ["BUDGET_EVIDENCE", "EPOCHS_FACTOR_EVIDENCE", "FINETUNE_EPOCHS_FACTOR_EVIDENCE", "RECORD", "auto_budget_epochs",
           "recommended_shape"]

RECORD = "benchmarks/results/budget_study_cpu_2026-12-02.md"  # the budget study's record: every row cited here

_TOL = 1e-9


# Where the budget study measured tokens for epochs, from scratch, as the recipes train it: (lowest budget,
# highest budget, epochs factor). `budget_epochs: auto` uses it. At 0.6 (rows h15_tokens_for_epochs,
# h45_tokens_for_epochs) 1.5x the epochs was the best arm on the mean at 15 and 45 epochs: it beat the
# equal-time run on every seed and was within noise of the full run. Its runs at 0.4 and 0.8
# (b0.4_tokens_for_epochs, b0.8_tokens_for_epochs) ran on a 0.1 keep-ratio grid that rounded their ratios
# down, so they spent 0.31 and 0.74 of the full run: unmeasured as a recipe without a grid trains them.
EPOCHS_FACTOR_EVIDENCE: tuple[tuple[float, float, float], ...] = ((0.6, 0.6, 1.5),)
# The same when fine-tuning (a run that starts from trained weights: `init`, or timm's `pretrained`): at 0.6
# (rows ft15_*) 1.5x the epochs was the best PSS arm on the mean, beat the equal-time run on both seeds and was
# within noise of the full run and of the cyclic schedule at the recipe's epochs (SimMIM encoder, 15 epochs).
FINETUNE_EPOCHS_FACTOR_EVIDENCE: tuple[tuple[float, float, float], ...] = ((0.6, 0.6, 1.5),)


def auto_budget_epochs(budget: float, fine_tuning: bool) -> tuple[float, str]:
    """`budget_epochs: auto`: (the epochs factor, why) from `EPOCHS_FACTOR_EVIDENCE`, or when fine-tuning
    `FINETUNE_EPOCHS_FACTOR_EVIDENCE`; 1.0 (the epochs stay) at budgets where tokens for epochs is unmeasured."""
    table = FINETUNE_EPOCHS_FACTOR_EVIDENCE if fine_tuning else EPOCHS_FACTOR_EVIDENCE
    setting = "fine-tuning (the run starts from trained weights)" if fine_tuning else "from scratch"
    for low, high, factor in table:
        if low - _TOL <= budget <= high + _TOL:
            paid = ("as the best PSS arm on the mean, within noise of the full run" if fine_tuning
                    else "as the best arm on the mean, within noise of the full run")
            return factor, f"{setting} at budget {budget:g}, where the budget study measured {factor:g}x the epochs {paid}"
    where = ", ".join(f"{low:g}" if math.isclose(low, high) else f"{low:g}-{high:g}" for low, high, _ in table) or "none"
    when = "when fine-tuning" if fine_tuning else "from scratch"
    return 1.0, f"budget {budget:g} is outside where tokens for epochs was measured {when} (budgets {where}): the epochs stay"


# What benchmarks/budget_study.py measured (docs/budgets.md), by budget: the shape to try first, with the
# record's rows it rests on (15 epochs unless named; CIFAR-10 subset, small ViT). `pss schedule --budget`
# prints the entry of the nearest measured budget.
BUDGET_EVIDENCE: dict[float, str] = {
    0.8: ("a fixed random keep ratio (0.8), the cyclic schedule and the equal-time run were all within noise of the "
          "full run and of each other (3 seeds), and a keep ratio of 0.8 saved little measured time; tokens for "
          "epochs ran there only on a 0.1 grid that spent 0.74 (rows b0.8_*)"),
    0.6: ("tokens for epochs (a fixed random keep ratio, budget_epochs 1.5 or auto) was the best arm on the mean: it "
          "beat the equal-time run on every seed at 15 and 45 epochs and was within noise of the full run at both, "
          "as were a fixed ratio and the cyclic schedule at the recipe's epochs; fine-tuning a SimMIM encoder (2 "
          "seeds), it beat the equal-time run and was within noise of the full run and of the cyclic schedule "
          "(rows h15_*, h45_*, ft15_*)"),
    0.4: ("a fixed random keep ratio (0.4) beat the equal-time run on both seeds and was within noise of the full run; "
          "with a full-token cool-down over the last 10 % it came below the plain fixed ratio on both seeds (a cyclic "
          "schedule up to 1.0 cannot reach budgets below ~0.5); tokens for epochs ran there only on a 0.1 grid that "
          "spent 0.31 (rows b0.4_*)"),
    0.3: ("a fixed random keep ratio (0.3) beat the equal-time run on all three seeds and was within noise of the full "
          "run; with a full-token cool-down over the last 10 % it was within noise of the plain fixed ratio (rows "
          "b0.3_*)"),
}


def recommended_shape(budget: float) -> str:
    """One line for `pss schedule --budget`: what the budget study found at the nearest measured budget."""
    nearest = min(BUDGET_EVIDENCE, key=lambda b: (abs(b - budget), b))
    where = f"at budget {nearest:g}" + ("" if math.isclose(nearest, budget) else f" (the nearest measured to {budget:g})")
    return f"budget study {where}, CIFAR-10 subset, small ViT: {BUDGET_EVIDENCE[nearest]}; see docs/budgets.md, {RECORD}"
