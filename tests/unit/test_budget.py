"""Compute budgets (pss.budget): cost models, the schedule solver by value, equal-time baselines, and
`budget:` in `pss train` / `pss schedule`."""
import json

import pytest
import yaml

import pss
from pss.flops import count_flops, example_input
from pss.budget import FlopCost, TableCost, predicted_cost, solve_budget
from pss.budget_spec import check_budget
from pss.equal_time import equal_time_epochs, equal_time_overrides
from pss.cli import main
from pss.config import load_config
from pss.errors import ConfigError
from pss.schedule import CyclicSchedule, from_dict

SPE, TOTAL = 50, 500  # 10 epochs of 50 steps


def linear_cost(rho: float) -> float:
    return rho


def test_flop_cost_is_exact_quadratic_in_tokens():
    model = pss.build_model("pss_vit_tiny_patch4_32", num_classes=10, depth=2, embed_dim=32, num_heads=2)
    cost = FlopCost.for_model(model)
    x = example_input(model, 1)
    n = model.patch_embed.num_patches
    for k in (3, 17, 40, 63):  # none of these was counted for the fit
        assert cost.flops(k) == pytest.approx(count_flops(model, x, k / n, backward=True), rel=1e-9)
    assert cost(1.0) == 1.0
    assert 0.55 < cost(0.6) < 0.6  # the patch embedding and head do not shrink, attention shrinks faster


def test_solver_by_value_continuous():
    # cost(rho) = rho, no grid: the mean of each schedule has a closed form
    fixed = solve_budget(from_dict({"name": "fixed", "rho": 0.9}), 0.6, linear_cost, SPE, TOTAL)
    assert fixed.value == pytest.approx(0.6) and fixed.parameter == "rho"
    lin = solve_budget(from_dict({"name": "linear", "start": 0.9, "end": 1.0, "grid": None}), 0.6, linear_cost, SPE, TOTAL)
    assert lin.value == pytest.approx(0.2, abs=2e-4)  # mean of a line from start to 1 is (start + 1) / 2
    cyc = solve_budget(from_dict({"name": "cyclic", "low": 0.9, "high": 1.0, "grid": None}), 0.6, linear_cost, SPE, TOTAL)
    assert cyc.value == pytest.approx(0.2, abs=0.01)  # a triangle wave low -> 1 -> low averages (low + 1) / 2
    for plan in (fixed, lin, cyc):
        assert plan.predicted_cost <= 0.6 + 1e-9 and plan.predicted_cost == pytest.approx(0.6, abs=2e-3)
        assert plan.predicted_cost == pytest.approx(predicted_cost(plan.schedule, linear_cost, SPE, TOTAL))


def test_solver_takes_the_largest_value_within_budget_on_the_grid():
    sched = from_dict({"name": "cyclic", "low": 0.2, "high": 1.0})  # grid 0.2: the cost is a step function
    plan = solve_budget(sched, 0.6, linear_cost, SPE, TOTAL)
    assert plan.predicted_cost <= 0.6 + 1e-9
    above = from_dict({**plan.schedule.to_dict(), "low": plan.value + 2e-4})
    assert predicted_cost(above, linear_cost, SPE, TOTAL) > 0.6  # any larger value would exceed the budget
    assert set(plan.schedule.values(SPE, TOTAL)) <= {0.2, 0.4, 0.6, 0.8, 1.0}
    assert plan.schedule.high == 1.0 and plan.schedule.grid == 0.2  # only the free parameter changed
    # the full budget keeps every step at rho = 1.0
    assert set(solve_budget(sched, 1.0, linear_cost, SPE, TOTAL).schedule.values(SPE, TOTAL)) == {1.0}


def test_warmup_and_cooldown_count_and_set_a_floor():
    sched = from_dict({"name": "cyclic", "low": 0.2, "high": 1.0, "warmup_epochs": 2, "cooldown_epochs": 2, "grid": None})
    plan = solve_budget(sched, 0.8, linear_cost, SPE, TOTAL)
    values = plan.schedule.values(SPE, TOTAL)
    assert values[: 2 * SPE] == [1.0] * (2 * SPE) and values[-2 * SPE:] == [1.0] * (2 * SPE)
    assert plan.predicted_cost == pytest.approx(0.8, abs=2e-3)
    assert plan.value == pytest.approx(1 / 3, abs=0.01)  # 0.4 + 0.6 * (low + 1) / 2 = 0.8
    # 4 of 10 epochs at 1.0, the rest a triangle from ~0 to 1 (mean 0.5): nothing below 0.7 is reachable
    with pytest.raises(ConfigError, match=r"smallest possible is 0\.70"):
        solve_budget(sched, 0.6, linear_cost, SPE, TOTAL)


@pytest.mark.parametrize("budget, message", [
    (0.0, "must be in \\(0, 1\\]"), (1.5, "must be in \\(0, 1\\]"), (True, "must be in \\(0, 1\\]"),
    ("0.6", "must be in \\(0, 1\\]"),
])
def test_impossible_budgets(budget, message):
    with pytest.raises(ConfigError, match=message):
        check_budget(budget, from_dict("cyclic"))


def test_budget_with_full_token_schedule_is_refused_at_config_time():
    with pytest.raises(ConfigError, match="leaves nothing to solve.*equal-time baseline"):
        load_config(None, ["schedule=1.0", "budget=0.6"])
    with pytest.raises(ConfigError, match="must be in"):
        load_config(None, ["schedule=cyclic", "budget=1.2"])
    assert load_config(None, ["schedule=cyclic", "budget=0.6"]).budget == 0.6


def _speed_report(path, model="pss_vit_tiny_patch4_32", rows=((1.0, 1.0), (0.6, 0.62), (0.2, 0.25)), **extra):
    path.write_text(json.dumps({"kind": "speed", "model": model, "img_size": 32, **extra, "results": [
        {"keep_ratio": r, "relative_time": t} for r, t in rows]}))
    return path


def test_table_cost_reads_a_speed_report_and_refuses_mismatches(tmp_path):
    f = _speed_report(tmp_path / "speed.json")
    cost = TableCost.from_file(f, "pss_vit_tiny_patch4_32", 32)
    assert cost(0.6) == 0.62 and cost(1.0) == 1.0
    assert cost(0.4) == pytest.approx((0.25 + 0.62) / 2)  # interpolated
    with pytest.raises(ConfigError, match="measured on 'pss_vit_tiny_patch4_32', this run trains 'pss_vit_small"):
        TableCost.from_file(f, "pss_vit_small_patch16_224")
    with pytest.raises(ConfigError, match="measured at 32 px, this run uses 64 px"):
        TableCost.from_file(f, "pss_vit_tiny_patch4_32", 64)
    with pytest.raises(ConfigError, match="other model options"):
        TableCost.from_file(_speed_report(tmp_path / "s2.json", model_kwargs={"depth": 2}), "pss_vit_tiny_patch4_32",
                            32, {"depth": 4})
    with pytest.raises(ConfigError, match="not found"):
        TableCost.from_file(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a pss bench speed report"):
        TableCost.from_file(tmp_path / "bad.json")
    # a gridded cyclic schedule needs 0.4 and 0.8, which this table lacks
    with pytest.raises(ConfigError, match=r"no step time for keep ratio\(s\) 0.4, 0.8"):
        solve_budget(from_dict("cyclic"), 0.7, cost, SPE, TOTAL)
    full = TableCost.from_file(_speed_report(tmp_path / "s3.json", rows=[(r / 5, r / 5 + 0.05) for r in range(1, 5)]
                                             + [(1.0, 1.0)]))
    plan = solve_budget(from_dict("cyclic"), 0.6, full, SPE, TOTAL)
    assert plan.cost_model == "table" and plan.predicted_cost <= 0.6


def test_equal_time():
    assert equal_time_epochs(10, 0.6) == 6 and equal_time_epochs(15, 0.6) == 9 and equal_time_epochs(1, 0.3) == 1
    cfg = load_config(None, ["epochs=10", "lr_sched.warmup_epochs=2", "schedule=cyclic", "budget=0.6"])
    eq = load_config(None, ["epochs=10", "lr_sched.warmup_epochs=2", "schedule=cyclic", "budget=0.6",
                            *equal_time_overrides(cfg, 0.6, "pss")])
    assert eq.epochs == 6 and eq.lr_sched.warmup_epochs == pytest.approx(1.2) and eq.budget is None
    assert eq.schedule.name == "fixed" and eq.schedule.rho == 1.0 and eq.equal_time_of == "pss"


@pytest.mark.slow  # a training run
def test_train_with_budget_solves_and_records(tiny_image_folder, tmp_path):
    from pss.resolve import resolve_config
    from pss.train import train

    common = ["epochs=4", "batch_size=2", "model.kwargs={depth: 1, embed_dim: 32, num_heads: 2}", "device=cpu",
              "log_interval=1", "schedule={name: cyclic, low: 0.2, high: 1.0, grid: 0.2}"]
    cfg, _ = resolve_config(None, [*common, "budget=0.7"], data=str(tiny_image_folder), output=str(tmp_path / "run"))
    summary = train(cfg, quiet=True)
    b = summary["budget"]
    assert b["budget"] == 0.7 and b["cost_model"] == "flops" and b["parameter"] == "low"
    assert b["predicted_cost"] <= 0.7 and b["realised_cost"] == pytest.approx(b["predicted_cost"])
    assert b["realised_time_ratio"] is not None and b["realised_time_ratio"] > 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["schedule"]["low"] == b["value"] == summary["schedule"]["low"] and saved["budget"] == 0.7
    # the budget says what it did: the solved value beside the recipe's, in the summary and in config.yaml
    assert b["recipe_value"] == 0.2 and b["value"] != 0.2
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert f"low: {b['value']}  # solved for budget 0.7; the recipe's low: 0.2" in text
    assert load_config(tmp_path / "run" / "config.yaml").schedule.low == b["value"]  # the file loads as before

    # an impossible budget is refused before anything is written, and an existing run is left alone
    def files():  # the run's files; the run lock records its latest holder, so it is left out
        return {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file() and p.name != ".pss.lock"}

    before = files()
    cfg, _ = resolve_config(None, [*common, "budget=0.3"], data=str(tiny_image_folder), output=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="smallest possible"):
        train(cfg, overwrite=True, quiet=True)
    assert files() == before and "summary.json" in before


def test_budget_plan_describes_solved_and_recipe_values():
    plan = solve_budget(CyclicSchedule(low=0.2, high=1.0), 0.6, lambda rho: rho, 10, 100)
    assert plan.recipe_value == 0.2 and plan.to_dict()["recipe_value"] == 0.2
    text = plan.describe()
    assert text.startswith(f"budget 0.6: cyclic low = {plan.value:g} solved (the recipe's low: 0.2)")
    # a recipe with a budget may leave the solved parameter out: the schedule's default stands in for it
    cfg = load_config(None, ["schedule={name: cyclic, high: 1.0}", "budget=0.6"])
    assert solve_budget(cfg.schedule, 0.6, lambda rho: rho, 10, 100).predicted_cost <= 0.6


def test_realised_cost_from_the_loops_counters():
    from pss.state import Progress

    p = Progress()
    for rho, t in [(1.0, 0.10)] * 10 + [(0.2, 0.03)] * 30:
        p.count_step(rho, t)
    assert p.steps_at == {"1": 10, "0.2": 30} and p.keep_ratio_sum == pytest.approx(16.0)
    assert p.realised_cost(lambda r: r) == pytest.approx((10 * 1.0 + 30 * 0.2) / 40)
    assert p.realised_time_ratio() == pytest.approx((10 * 0.10 + 30 * 0.03) / (40 * 0.10))
    assert Progress.from_dict(p.to_dict()) == p
    old = {k: v for k, v in p.to_dict().items() if k not in ("steps_at", "time_at")}  # a checkpoint from before
    assert Progress.from_dict(old).steps_at == {} and Progress().realised_time_ratio() is None


def test_schedule_command_solves_a_budget(capsys, tmp_path):
    argv = ["schedule", "cyclic", "--epochs", "10", "--steps-per-epoch", "20", "--budget", "0.6",
            "--model", "pss_vit_tiny_patch4_32", "--set", "depth=1", "--set", "embed_dim=32", "--set", "num_heads=2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    # The header names what runs: the grid's values (the share table below counts them), then the solved low.
    assert header.startswith("budget 0.6: runs keep ratios 0.2, 0.4, 0.6, 0.8, 1 on the 0.2 grid (solved low = ")
    assert "predicted cost 0.5" in header and "cost model: flops" in header
    assert "  0.2 " in out  # the lowest value that runs is 0.2, not the unrounded low
    assert main(["schedule", "fixed", "--epochs", "2", "--steps-per-epoch", "5", "--budget", "0.5",
                 "--budget-cost", str(_speed_report(tmp_path / "s.json", rows=[(0.2, 0.3), (0.6, 0.5), (1.0, 1.0)])),
                 "--grid", "0.2"]) == 0
    assert capsys.readouterr().out.startswith("budget 0.5: runs keep ratios 0.6 on the 0.2 grid (solved rho = 0.6")
    assert main(["schedule", "cyclic", "--epochs", "10", "--steps-per-epoch", "20", "--budget", "0.6"]) == 2
    assert "--budget needs --model" in capsys.readouterr().err


@pytest.mark.parametrize("epochs,budget,factor,longer,share", [
    (15, 0.6, 1.5, 23, 0.391304), (10, 0.6, 1.5, 15, 0.4), (45, 0.6, 1.5, 68, 0.397059), (100, 0.5, 2.0, 200, 0.25),
    (3, 0.6, 1.1, 3, 0.6), (2, 0.9, 1.25, 3, 0.6)])
def test_budget_epochs_plan_by_value(epochs, budget, factor, longer, share):
    from pss.tokens_for_epochs import budget_epochs_plan

    assert budget_epochs_plan(epochs, budget, factor) == (longer, pytest.approx(share, abs=1e-6))


def test_schedule_command_spends_a_budget_on_epochs_and_names_the_evidence(capsys):
    argv = ["schedule", "fixed", "--epochs", "10", "--steps-per-epoch", "4", "--budget", "0.6", "--budget-epochs", "1.5",
            "--grid", "0.1", "--model", "pss_vit_tiny_patch4_32", "--set", "depth=1", "--set", "embed_dim=32",
            "--set", "num_heads=2"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "budget 0.6 of 10 epochs spent as 15 epochs (budget_epochs 1.5): 0.4 of each of them"
    assert lines[1].startswith("each epoch's budget 0.4: runs keep ratios ") and "steps: 60 (15 epochs x 4 steps/epoch)" in lines
    # the cost said against the recipe's 10-epoch full run too: each epoch's cost x 15 / 10
    each = float(lines[1].split("predicted cost ")[1].split(" ")[0])
    whole = float(lines[1].split("of a full-token epoch, ")[1].split(" ")[0])
    assert "of the recipe's full run" in lines[1] and whole == pytest.approx(each * 1.5, abs=2e-4) and 0.55 < whole <= 0.6
    assert lines[2].startswith("recommended: budget study at budget 0.6,") and "docs/budgets.md" in lines[2]
    assert lines[3].startswith("how to spend: token study at budget 0.6: drop tokens") and "token_study_cpu_" in lines[3]
    assert main([*argv[:-10], "--budget-epochs", "0.5", *argv[-8:]]) == 2
    assert "budget_epochs must be >= 1" in capsys.readouterr().err


def test_recommended_shape_names_the_nearest_measured_budget():
    from pss.evidence import BUDGET_EVIDENCE, recommended_shape

    assert recommended_shape(0.6).startswith("budget study at budget 0.6, ")
    far = recommended_shape(0.95)
    nearest = min(BUDGET_EVIDENCE, key=lambda b: abs(b - 0.95))
    assert f"at budget {nearest:g} (the nearest measured to 0.95)" in far


def test_budget_epochs_trades_tokens_for_epochs_by_value():
    from pss.tokens_for_epochs import apply_budget_epochs

    cfg = load_config(None, ["epochs=15", "budget=0.6", "budget_epochs=1.5", "lr_sched.warmup_epochs=2",
                             "schedule={name: fixed, rho: 0.6, grid: 0.1}"])
    run = apply_budget_epochs(cfg)
    assert run.epochs == 23  # 22.5 rounded half up to whole epochs
    assert run.budget == pytest.approx(0.6 * 15 / 23, abs=1e-6)  # the total stays 0.6 of the 15-epoch run
    assert run.lr_sched.warmup_epochs == pytest.approx(2 * 23 / 15, abs=1e-4)  # LR schedule over the longer run
    assert run.budget_epochs is None and run.budget_reference == {
        "epochs": 15, "budget": 0.6, "budget_epochs": 1.5, "epochs_factor": pytest.approx(23 / 15, abs=1e-6)}
    assert apply_budget_epochs(run) == run  # resolved once: applying again changes nothing
    # solved on the longer run: linear cost and grid 0.1 give rho 0.3 (0.4 would cost 0.4 > 0.3913)
    plan = solve_budget(run.schedule, run.budget, linear_cost, SPE, run.epochs * SPE)
    assert set(plan.schedule.values(SPE, run.epochs * SPE)) == {0.3} and plan.predicted_cost == pytest.approx(0.3)
    flop_like = lambda rho: 0.977 * rho  # noqa: E731  (cheaper than linear: 0.4 fits within 0.3913)
    plan = solve_budget(run.schedule, run.budget, flop_like, SPE, run.epochs * SPE)
    assert set(plan.schedule.values(SPE, run.epochs * SPE)) == {0.4}
    assert plan.predicted_cost * run.epochs / 15 == pytest.approx(0.977 * 0.4 * 23 / 15)  # 0.599 <= 0.6
    # without budget_epochs nothing changes
    assert apply_budget_epochs(load_config(None, ["budget=0.6", "schedule=cyclic"])).epochs == 10


@pytest.mark.parametrize("overrides, epochs, budget, why", [
    # where tokens for epochs was measured as recipes train it (0.6: budget and token studies; 0.33: token study)
    # and between those two budgets, whose verdicts agree
    (["budget=0.6"], 23, 0.6 * 15 / 23, "from scratch at budget 0.6, where the budget and token studies measured 1.5x"),
    (["budget=0.33"], 23, 0.33 * 15 / 23, "from scratch at budget 0.33"),
    (["budget=0.4"], 23, 0.4 * 15 / 23, "from scratch at budget 0.4"),
    # at 0.8 the budget study's run spent less than its budget (a 0.1 grid): unmeasured as recipes train it
    (["budget=0.8"], 15, 0.8, "budget 0.8 is outside where tokens for epochs was measured from scratch (budgets 0.33-0.6)"),
    (["budget=0.3"], 15, 0.3, "budget 0.3 is outside where tokens for epochs was measured from scratch (budgets 0.33-0.6)"),
    # fine-tuning (init, or timm's pretrained weights) follows its own evidence: measured at 0.6 only
    (["budget=0.6", "init=weights.safetensors"], 23, 0.6 * 15 / 23, "fine-tuning (the run starts from trained weights) at budget 0.6"),
    (["budget=0.6", "model.kwargs={pretrained: true}"], 23, 0.6 * 15 / 23, "fine-tuning"),
    (["budget=0.4", "init=weights.safetensors"], 15, 0.4,
     "budget 0.4 is outside where tokens for epochs was measured when fine-tuning (budgets 0.6): the epochs stay"),
])
def test_budget_epochs_auto_follows_the_evidence(overrides, epochs, budget, why):
    from pss.tokens_for_epochs import apply_budget_epochs

    run = apply_budget_epochs(load_config(None, ["epochs=15", "budget_epochs=auto", "schedule={name: fixed, rho: 0.6}",
                                                 *overrides]))
    assert (run.epochs, run.budget_epochs) == (epochs, None)
    assert run.budget == pytest.approx(budget, abs=1e-6)
    assert run.budget_reference["budget_epochs"] == "auto" and run.budget_reference["auto"].startswith(why)
    assert run.budget_reference["epochs_factor"] == pytest.approx(epochs / 15, abs=1e-6)
    assert apply_budget_epochs(run) == run
    # its equal-time baseline costs the recipe's budget of the recipe's epochs (at 0.6: 9 epochs, not the
    # longer run's own budget 0.39 x 15)
    from pss.equal_time import cost_vs_full

    assert cost_vs_full(run).ratio == pytest.approx(float(overrides[0].removeprefix("budget=")))


def test_budget_epochs_auto_without_a_budget_is_the_recipes_full_token_run():
    from pss.tokens_for_epochs import apply_budget_epochs

    base = apply_budget_epochs(load_config(None, ["epochs=15", "budget_epochs=auto", "budget=null", "schedule=1.0"]))
    assert (base.epochs, base.budget, base.budget_epochs, base.budget_reference) == (15, None, None, None)


def test_schedule_command_budget_epochs_auto_says_what_it_chose(capsys):
    argv = ["schedule", "fixed", "--epochs", "10", "--steps-per-epoch", "4", "--budget", "0.6", "--budget-epochs", "auto",
            "--grid", "0.1", "--model", "pss_vit_tiny_patch4_32", "--set", "depth=1", "--set", "embed_dim=32",
            "--set", "num_heads=2"]
    assert main(argv) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("budget 0.6 of 10 epochs spent as 15 epochs (budget_epochs auto: from scratch")
    assert "measured 1.5x the epochs" in first and first.endswith("0.4 of each of them")
    assert main([*argv[:7], "0.3", *argv[8:]]) == 0
    assert "spent as 10 epochs (budget_epochs auto: budget 0.3 is outside" in capsys.readouterr().out
    assert main([*argv[:7], "0.4", *argv[8:], "--fine-tuning"]) == 0  # measured at 0.6 only when fine-tuning
    assert "spent as 10 epochs (budget_epochs auto: budget 0.4 is outside where tokens for epochs was measured " \
           "when fine-tuning" in capsys.readouterr().out
    assert main([*argv, "--fine-tuning"]) == 0
    assert "spent as 15 epochs (budget_epochs auto: fine-tuning" in capsys.readouterr().out
    assert main([*argv[:6], "--rho", "0.5", *argv[8:]]) == 2  # auto without --budget: no factor to choose
    assert "budget_epochs auto needs a budget" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):  # argparse's usage error
        main([*argv[:9], "often", *argv[10:]])
    assert "expected a number (e.g. 1.5) or auto, got 'often'" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, message", [
    (["budget=0.6", "schedule=cyclic", "budget_epochs=0.5"], "must be >= 1.*equal-time"),
    (["budget=0.6", "schedule=cyclic", "budget_epochs=true"], "budget_epochs must be auto or a number"),
    (["budget=0.6", "schedule=cyclic", "budget_epochs=twice"], "budget_epochs must be auto or a number"),
    (["budget=0.6", "schedule=cyclic", "budget_epochs=.inf"], "budget_epochs must be auto or a number >= 1"),
    (["budget_epochs=1.5"], "needs a budget to spend"),
])
def test_budget_epochs_refuses_impossible_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_unreachable_budget_names_the_schedule_and_grid_that_reach_it():
    cyclic = from_dict({"name": "cyclic", "low": 0.2, "high": 1.0, "grid": 0.2})
    with pytest.raises(ConfigError, match=r"fixed with grid 0\.2 can reach it"):
        solve_budget(cyclic, 0.3, linear_cost, SPE, TOTAL)  # a triangle up to 1.0 averages >= 0.5
    fixed = from_dict({"name": "fixed", "rho": 0.5, "grid": 0.2})
    with pytest.raises(ConfigError, match=r"fixed with grid 0\.1 can reach it \(floor 0\.100\)"):
        solve_budget(fixed, 0.15, linear_cost, SPE, TOTAL)
    warm = from_dict({"name": "cyclic", "low": 0.2, "high": 1.0, "grid": 0.2, "warmup_epochs": 9})
    with pytest.raises(ConfigError, match="shorten warm-up"):
        solve_budget(warm, 0.3, linear_cost, SPE, TOTAL)


def test_a_grid_that_leaves_much_of_the_budget_unspent_is_named_with_the_fix():
    def cost(r: float) -> float:  # rho 0.4 costs just over 0.4, as attention-light models do
        return min(1.0, 1.0125 * r)

    plan = solve_budget(from_dict({"name": "fixed", "rho": 0.6, "grid": 0.1}), 0.4, cost, SPE, TOTAL)
    assert set(plan.schedule.values(SPE, TOTAL)) == {0.3}  # 0.4 would cost 0.405: over the budget
    assert plan.predicted_cost == pytest.approx(0.30375)
    assert plan.ungridded_cost == pytest.approx(0.4, abs=1e-3)
    msg = plan.unspent()
    assert "0.1 grid" in msg and "spends only 0.304 (24% unspent;" in msg and "grid: 0" in msg and "0.400" in msg
    # a grid that rounds close to the budget, and no grid at all, warn of nothing
    near = solve_budget(from_dict({"name": "fixed", "rho": 0.6, "grid": 0.1}), 0.6, linear_cost, SPE, TOTAL)
    assert near.unspent() is None and near.ungridded_cost is None
    assert solve_budget(from_dict({"name": "fixed", "rho": 0.6}), 0.4, cost, SPE, TOTAL).unspent() is None


def test_cost_vs_full_reads_the_recipes_budget_and_the_realised_cost_against_the_full_run():
    from pss.tokens_for_epochs import apply_budget_epochs
    from pss.equal_time import cost_vs_full

    run = apply_budget_epochs(load_config(None, ["epochs=30", "budget=0.6", "budget_epochs=1.5",
                                                 "schedule={name: fixed, rho: 0.6}"]))
    assert (run.epochs, run.budget) == (45, pytest.approx(0.4))
    # before it trains: the recipe's budget against the full run, not the longer run's own 0.4
    cost = cost_vs_full(run)
    assert (cost.budget, cost.run_budget, cost.epochs_factor, cost.ratio) == (0.6, pytest.approx(0.4), 1.5, 0.6)
    # after: the summary's predicted and realised cost (per-run) times the epochs factor, and the time ratio
    summary = {"train_time_s": 58.0, "budget": {"budget": 0.4, "predicted_cost": 0.387, "realised_cost": 0.386,
                                                "reference": run.budget_reference}}
    cost = cost_vs_full(run, summary, {"train_time_s": 100.0})
    assert cost.predicted == pytest.approx(0.5805) and cost.realised == pytest.approx(0.579)
    assert cost.time_ratio == pytest.approx(0.58) and cost.ratio == 0.6
    assert cost.describe() == ("budget 0.6 of the full run, realised cost 0.579 (1.5x the epochs at 0.4 of each), "
                               "time 0.580 of the full run")
    # the summary alone (a record), and a config read back from config.yaml (a dict) say the same
    assert cost_vs_full(summary=summary).realised == pytest.approx(0.579)
    assert cost_vs_full({"budget": 0.4, "budget_reference": run.budget_reference}).ratio == 0.6
    # no tokens for epochs: the run's budget is the recipe's; an unapplied budget_epochs too
    assert cost_vs_full(load_config(None, ["budget=0.6", "schedule=cyclic"])).ratio == 0.6
    assert cost_vs_full(load_config(None, ["budget=0.6", "budget_epochs=1.5", "schedule=0.5"])).ratio == 0.6
    # no budget: what it took against the full run's time, at most 1; without the summaries, one line
    plain = load_config(None, ["schedule=cyclic"])
    assert cost_vs_full(plain, {"train_time_s": 70.0}, {"train_time_s": 100.0}).ratio == pytest.approx(0.7)
    assert cost_vs_full(plain, {"train_time_s": 130.0}, {"train_time_s": 100.0}).ratio == 1.0
    with pytest.raises(ConfigError, match="needs its summary"):
        cost_vs_full(plain).ratio


def test_a_refused_longer_run_is_said_in_the_users_numbers(capsys):
    """`--budget 0.6 --budget-epochs auto` with a cyclic schedule once said only "budget 0.4 is below what this
    schedule can reach": neither the budget given nor budget_epochs nor the fix."""
    from types import SimpleNamespace

    from pss.budget import plan
    from pss.tokens_for_epochs import apply_budget_epochs

    assert main(["schedule", "cyclic", "--budget", "0.6", "--budget-epochs", "auto", "--model", "pss_vit_tiny_patch4_32",
                 "--epochs", "10", "--steps-per-epoch", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pss schedule: error: budget 0.6 of 10 epochs, spent by budget_epochs auto (x1.5) as 15 "
                          "epochs, leaves 0.4 of each of them: budget 0.4 is below what this schedule can reach")
    assert "--budget-epochs 1" in err and err.count("\n") == 1
    # a run's plan (pss.budget.plan, on measured times here: cost = keep ratio) says it alike
    timed = SimpleNamespace(cost_model=lambda: linear_cost)
    cfg = apply_budget_epochs(load_config(None, ["epochs=10", "budget=0.6", "budget_epochs=1.5", "schedule=cyclic",
                                                 "budget_cost=measured"]))
    with pytest.raises(ConfigError, match=r"^budget 0.6 of 10 epochs, spent by budget_epochs 1.5 as 15 epochs, leaves "
                                          r"0.4 of each of them: budget 0.4 is below .*\(budget_epochs: null"):
        plan(cfg, None, SPE, timed)
    plain = load_config(None, ["epochs=10", "budget=0.3", "schedule=cyclic", "budget_cost=measured"])
    with pytest.raises(ConfigError, match=r"^budget 0.3 is below what this schedule can reach"):
        plan(plain, None, SPE, timed)
    assert plan(load_config(None, ["epochs=10", "schedule=cyclic"]), None, SPE) is None  # no budget, no plan
    with pytest.raises(ConfigError, match="timed with the run's data loader"):
        plan(plain, None, SPE)  # measured, and nothing measured


@pytest.mark.parametrize("budget, entry, nearest", [(0.6, 0.6, ""), (0.33, 0.33, ""), (0.45, 0.33, " (the nearest measured to 0.45)"),
                                                    (0.5, 0.6, " (the nearest measured to 0.5)"), (0.9, 0.6, " (the nearest measured to 0.9)")])
def test_how_to_spend_names_the_token_studys_nearest_budget(budget, entry, nearest):
    from pss.evidence import LEVER_EVIDENCE, TOKEN_RECORD, recommended_lever

    line = recommended_lever(budget)
    assert line == f"token study at budget {entry:g}{nearest}: {LEVER_EVIDENCE[entry]}; see docs/budgets.md, {TOKEN_RECORD}"
    assert all(text.startswith("drop tokens") for text in LEVER_EVIDENCE.values())  # what the study found at every budget



def test_pss_schedule_plans_on_the_head_it_is_told(capsys, monkeypatch):
    """`pss schedule --budget` counts the head's FLOPs for --num-classes classes (a run takes them from its
    data); the default is 10 and a count below 1 is one line."""
    import pss.budget

    heads = []
    real = pss.budget.plan
    monkeypatch.setattr(pss.budget, "plan", lambda cfg, model, *a, **k: heads.append(
        (cfg.model.num_classes, model.head.out_features)) or real(cfg, model, *a, **k))
    base = ["schedule", "fixed", "--budget", "0.6", "--model", "pss_vit_tiny_patch4_32", "--epochs", "10",
            "--steps-per-epoch", "10"]
    assert main(base) == 0 and main([*base, "--num-classes", "1000"]) == 0
    assert heads == [(10, 10), (1000, 1000)]
    capsys.readouterr()
    assert main([*base, "--num-classes", "0"]) == 2
    assert capsys.readouterr().err.strip() == "pss schedule: error: --num-classes must be an integer >= 1 (classes), got 0"
