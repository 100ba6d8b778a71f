"""Every harness plans the equal-time baseline at the PSS run's cost against the full run (pss.equal_time.cost_vs_full):
the recipe's budget x the recipe's epochs, also under tokens for epochs, where the PSS run's own `budget` is the
per-run share of a longer run (0.4 of 45 epochs, not 0.6 of 30). Planning only: nothing trains."""
import argparse
import importlib.util
import sys

import pytest
from conftest import ROOT

from pss import study
from pss.equal_time import cost_vs_full

FULL, LONGER, EQUAL = 30, 45, 18  # the full run, tokens for epochs at 1.5x, and 0.6 x 30


def _load(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _within_one_epochs_rounding(full_cfg, pss_cfg, eq_cfg):
    """The target of the fix: the baseline's epochs are the PSS run's cost x the full run's, to an epoch's rounding."""
    assert abs(eq_cfg.epochs - cost_vs_full(pss_cfg).ratio * full_cfg.epochs) <= 0.5
    assert eq_cfg.schedule.name == "fixed" and eq_cfg.schedule.rho == 1.0 and eq_cfg.budget is None


@pytest.mark.parametrize("tokens_for_epochs", [True, False])
def test_e2e_harness_and_gpu_proof_plan_the_recipes_cost(tmp_path, tokens_for_epochs):
    cifar10 = _load("cifar10")
    common = [*study.CPU_REDUCED, f"epochs={FULL}", *([] if tokens_for_epochs else ["budget_epochs=null"])]
    plan = cifar10.make_plan(["baseline", "pss", "baseline_equal_time"], [0], common, "builtin", tmp_path)
    full, pss_run, eq = (r.cfg for r in plan)
    assert (full.epochs, pss_run.epochs, eq.epochs) == (FULL, LONGER if tokens_for_epochs else FULL, EQUAL)
    assert eq.lr_sched.warmup_epochs == pytest.approx(round(full.lr_sched.warmup_epochs * EQUAL / FULL, 4))
    assert eq.equal_time_of == "pss" and plan[2].late_overrides is None  # a budget: planned before anything trains
    if tokens_for_epochs:
        assert pss_run.budget == pytest.approx(0.4) and cost_vs_full(pss_run).ratio == pytest.approx(0.6)
    _within_one_epochs_rounding(full, pss_run, eq)

    if tokens_for_epochs:  # gpu_proof.py plans through the same function, at its --cifar-epochs
        gpu_proof = _load("gpu_proof")
        args = argparse.Namespace(cifar_epochs=FULL, device="cpu", smoke=False, output=str(tmp_path / "gpu"))
        full, pss_run, eq = (r.cfg for r in gpu_proof.cifar_plan(args, "builtin"))
        assert (full.epochs, pss_run.epochs, eq.epochs) == (FULL, LONGER, EQUAL)
        _within_one_epochs_rounding(full, pss_run, eq)


@pytest.mark.parametrize("tokens_for_epochs", [True, False])
def test_demo_plans_the_recipes_cost(tmp_path, tokens_for_epochs):
    from pss.demo import plan_demo

    # the recommended CIFAR-10 recipe through the demo, on the built-in set
    extra = [f"epochs={FULL}", *([] if tokens_for_epochs else ["budget_epochs=null"])]
    full, pss_run, eq = (r.cfg for r in plan_demo(tmp_path / "a", "cifar10_pss", extra, "builtin"))
    assert (full.epochs, pss_run.epochs, eq.epochs) == (FULL, LONGER if tokens_for_epochs else FULL, EQUAL)
    _within_one_epochs_rounding(full, pss_run, eq)
    # the demo's own recipe (cyclic at its budget), and with tokens for epochs asked of it
    extra = [f"epochs={FULL}", *(["schedule=0.4", "budget_epochs=auto"] if tokens_for_epochs else [])]
    full, pss_run, eq = (r.cfg for r in plan_demo(tmp_path / "b", "demo", extra))
    assert (full.epochs, pss_run.epochs, eq.epochs) == (FULL, LONGER if tokens_for_epochs else FULL, EQUAL)
    _within_one_epochs_rounding(full, pss_run, eq)


@pytest.mark.parametrize("tokens_for_epochs", [True, False])
def test_study_scripts_plan_the_recipes_cost(tmp_path, tokens_for_epochs):
    recipe_study = _load("recipe_study")
    more = ["budget_epochs=auto"] if tokens_for_epochs else []
    args = argparse.Namespace(runs="baseline,baseline_equal_time,pss_fixed_random", groups="", seeds="0",
                              gpu=False, overrides=[f"epochs={FULL}", *more], output=str(tmp_path / "r"), data="builtin")
    runs = {r.name: r.cfg for r in recipe_study.plan(args)}
    full, pss_run, eq = runs["baseline"], runs["pss_fixed_random"], runs["baseline_equal_time"]
    assert (full.epochs, pss_run.epochs, eq.epochs) == (FULL, LONGER if tokens_for_epochs else FULL, EQUAL)
    _within_one_epochs_rounding(full, pss_run, eq)

    budget_study = _load("budget_study")
    args = argparse.Namespace(horizons=str(FULL), seeds="0", arms="full,equal_time,fixed,tokens_for_epochs",
                              overrides=[], output=str(tmp_path / "b"), data="builtin")
    runs = {r.name: r.cfg for r in budget_study.plan_horizons(args)}
    full, eq = runs[f"h{FULL}_full"], runs[f"h{FULL}_equal_time"]
    assert (full.epochs, eq.epochs, runs[f"h{FULL}_tokens_for_epochs"].epochs) == (FULL, EQUAL, LONGER)
    for arm in ("fixed", "tokens_for_epochs"):
        _within_one_epochs_rounding(full, runs[f"h{FULL}_{arm}"], eq)
