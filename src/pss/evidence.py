"""What the budget study and the token study measured (benchmarks/budget_study.py, benchmarks/token_study.py,
docs/budgets.md), in one place: the evidence behind `budget_epochs: auto`, the `recommended:` line of `pss
schedule --budget` and its `how to spend:` line (drop tokens, lower the resolution, or both).

The figures are the rows of one record, `RECORD`; this module says what they mean, citing the rows by
name, and copies none of their accuracies. Update it with the record; nothing here is measured at run time. "Beat"
and "within noise" follow the rule of docs/findings.md (every seed's gap of one sign and larger than the
spread of the full run between seeds, or not), which tests/unit/test_claims.py checks against the record.
"""
from __future__ import annotations

import math

__all__ = ["BUDGET_EVIDENCE", "EPOCHS_FACTOR_EVIDENCE", "FINETUNE_EPOCHS_FACTOR_EVIDENCE", "LEVER_EVIDENCE", "RECORD",
           "TOKEN_RECORD", "auto_budget_epochs", "recommended_lever", "recommended_shape"]

RECORD = "benchmarks/results/budget_study_cpu_2026-12-02.md"  # the budget study's record: every row cited here
# the token study's record (drop, resize or both; 64 and 256 tokens): rows h15_* and b0.33_* at 64 tokens (its
# h15_full, h15_equal_time, h15_fixed, h15_tokens_for_epochs are the budget study's runs), t256_* at 256
TOKEN_RECORD = "benchmarks/results/token_study_cpu_2026-12-07.md"

_TOL = 1e-9


# Where the budget study measured tokens for epochs, from scratch, as the recipes train it: (lowest budget,
# highest budget, epochs factor). `budget_epochs: auto` uses it. At 0.6 (rows h15_tokens_for_epochs,
# h45_tokens_for_epochs) 1.5x the epochs was the best arm on the mean at 15 and 45 epochs: it beat the
# equal-time run on every seed and was within noise of the full run. Its runs at 0.4 and 0.8
# (b0.4_tokens_for_epochs, b0.8_tokens_for_epochs) ran on a 0.1 keep-ratio grid that rounded their ratios
# down, so they spent 0.31 and 0.74 of the full run: unmeasured as a recipe without a grid trains them.
# At 0.33 the token study (TOKEN_RECORD, rows b0.33_*) measured it as the recipes train it (no grid; 64
# tokens, 3 seeds): it was the best arm on the mean, beat the equal-time run on every seed and
# was within noise of the full run and of a fixed ratio at the recipe's epochs; at 256 tokens (rows t256_b0.33_*,
# 3 seeds) it was the best arm on the mean again and above the full run on all three seeds. Between 0.33 and 0.6 auto takes the
# verdict both ends share (so did the grid-rounded run at 0.4, which spent 0.31); above 0.6 it is unmeasured.
EPOCHS_FACTOR_EVIDENCE: tuple[tuple[float, float, float], ...] = ((0.33, 0.6, 1.5),)
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
            study = "the budget study" if fine_tuning else "the budget and token studies"
            span = "" if math.isclose(low, high) else f" (budgets {low:g}-{high:g})"
            return factor, f"{setting} at budget {budget:g}, where {study} measured {factor:g}x the epochs {paid}{span}"
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


def _nearest(table: dict[float, str], budget: float) -> tuple[str, str]:
    """(where, finding): the entry of `table` at the measured budget nearest to `budget` (the lower on a tie)."""
    nearest = min(table, key=lambda b: (abs(b - budget), b))
    where = f"at budget {nearest:g}" + ("" if math.isclose(nearest, budget) else f" (the nearest measured to {budget:g})")
    return where, table[nearest]


def recommended_shape(budget: float) -> str:
    """One line for `pss schedule --budget`: what the budget study found at the nearest measured budget."""
    where, finding = _nearest(BUDGET_EVIDENCE, budget)
    return f"budget study {where}, CIFAR-10 subset, small ViT: {finding}; see docs/budgets.md, {RECORD}"


# What benchmarks/token_study.py measured (TOKEN_RECORD, docs/budgets.md "Drop, resize or both"), by budget:
# which lever to spend a budget on (from scratch, 15 epochs; CIFAR-10 subsets, small ViTs at 64 and 256
# tokens). `budget_lever: auto` drops tokens unless a recipe sets a resolution schedule, as this evidence
# says; `pss schedule --budget` prints the entry of the nearest measured budget.
LEVER_EVIDENCE: dict[float, str] = {
    0.6: ("drop tokens: at 64 tokens, tokens for epochs and both levers together (1.5x the epochs) were the two best "
          "arms on the mean and within noise of each other (3 seeds each); a resolution curriculum at the recipe's "
          "epochs (EfficientTrain++-like, the last 20 % at full side) was within noise of the full run and of a fixed "
          "ratio, and resolution for epochs came last. At 256 tokens (3 seeds; 4 for it and the full run) tokens for "
          "epochs was the best arm on the mean and beat the resolution curriculum and the equal-time run on every seed; "
          "it was within noise of both levers together, the full run and a fixed ratio (below each of them on one seed); "
          "resolution for epochs and the equal-time run came last (rows h15_*, t256_h15_*). "
          "Both levers together need a resolution schedule and were no better than dropping alone beyond the noise, "
          "so the recipes drop"),
    0.33: ("drop tokens: tokens for epochs was the best arm on the mean at 64 tokens (3 seeds) and at 256 tokens (3 "
           "seeds, above the full run on each); the resolution curriculum, which reaches 0.33 only as a low side until "
           "the last 20 % of the epochs, came more than 10 points below it on every seed at 64 tokens and 8 to 11.6 below "
           "at 256, and both levers together came below it on every seed at both scales (rows b0.33_*, t256_b0.33_*)"),
}


def recommended_lever(budget: float) -> str:
    """One line for `pss schedule --budget`: which lever the token study found best at the nearest measured budget."""
    where, finding = _nearest(LEVER_EVIDENCE, budget)
    return f"token study {where}: {finding}; see docs/budgets.md, {TOKEN_RECORD}"
