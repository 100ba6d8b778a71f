"""The end-to-end and speed benchmark harnesses: a tiny real run, and the records they write."""
import importlib.util
import json

import pytest

from pss.errors import ConfigError
from conftest import ROOT



def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_e2e_harness_records_issue_schema(tiny_image_folder, tmp_path, capsys):
    e2e = _load("cifar10")
    argv = ["--cpu-reduced", "--data", str(tiny_image_folder), "--runs", "baseline,pss_cyclic_magnitude",
            "--set", "epochs=1", "--set", "data.val_split=val", "--set", "batch_size=4",
            "--set", "optim.base_batch_size=4", "--set", "model.kwargs={depth: 1, embed_dim: 32, num_heads: 2}",
            "--output", str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--quiet"]
    rc = e2e.main(argv)
    assert rc == 0
    [path] = (tmp_path / "results").glob("e2e_cifar10_cpu-reduced_*.json")
    rec = json.loads(path.read_text())
    assert rec["kind"] == "e2e" and rec["dataset"] == "cifar10-reduced-cpu" and rec["device"].startswith("cpu")
    assert {"torch", "timm", "commit", "date", "recipe"} <= rec.keys()
    names = [r["name"] for r in rec["runs"]]
    assert names == ["baseline", "pss_cyclic_magnitude"]
    keys = {"name", "schedule", "select", "seed", "epochs", "train_time_s", "best_acc1", "final_acc1",
            "mean_keep_ratio", "data_wait_fraction"}
    for r in rec["runs"]:
        assert keys <= r.keys() and r["epochs"] == 1 and r["seed"] == 0 and r["train_time_s"] > 0
    base, pss_run = rec["runs"]
    assert base["schedule"]["name"] == "fixed" and base["mean_keep_ratio"] == 1.0
    assert pss_run["schedule"] == {"name": "cyclic", "low": 0.2, "high": 1.0, "period_epochs": 1.0,
                                   "warmup_epochs": 0.0, "cooldown_epochs": 0.0, "grid": 0.2}
    assert pss_run["select"] == "magnitude" and pss_run["mean_keep_ratio"] < 1.0
    sweep = rec["sweep"]["pss_cyclic_magnitude_s0"]
    assert list(sweep) == ["1", "0.9", "0.8", "0.7", "0.6", "0.5", "0.4", "0.3", "0.2", "0.1"]
    assert all(0.0 <= v <= 100.0 for v in sweep.values())
    md = path.with_suffix(".md").read_text()
    assert "| pss_cyclic_magnitude | 0 | 1 |" in md and "Dynamic inference" in md

    # The same command again continues: finished runs are re-read, not retrained; a run cut short
    # (here: its summary gone, its last checkpoint kept) is resumed from its checkpoint.
    runs = tmp_path / "runs"
    before = {d: (runs / d / "train_log.jsonl").read_text() for d in ("baseline_s0", "pss_cyclic_magnitude_s0")}
    (runs / "pss_cyclic_magnitude_s0" / "summary.json").unlink()
    capsys.readouterr()
    assert e2e.main(argv) == 0
    again = json.loads(path.read_text())
    assert [r["best_acc1"] for r in again["runs"]] == [r["best_acc1"] for r in rec["runs"]]
    assert again["runs"][0]["train_time_s"] == base["train_time_s"]  # re-read, not retrained
    assert {d: (runs / d / "train_log.jsonl").read_text() for d in before} == before  # no step trained twice
    assert (runs / "pss_cyclic_magnitude_s0" / "summary.json").exists()
    # Other settings into the same folders are refused before anything runs.
    with pytest.raises(ConfigError, match="holds a run of other settings"):
        e2e.main([*argv, "--set", "seed=0", "--set", "epochs=2"])


def test_e2e_harness_refuses_unknown_runs():
    with pytest.raises(SystemExit, match="unknown run name"):
        _load("cifar10").main(["--runs", "baseline,nope"])


def test_speed_targets_checked_per_row():
    speed = _load("speed")
    rows = [dict(keep_ratio=1.0, relative_time=1.0, flop_ratio=1.0), dict(keep_ratio=0.6, relative_time=0.65, flop_ratio=0.59),
            dict(keep_ratio=0.4, relative_time=0.5, flop_ratio=0.39), dict(keep_ratio=0.2, relative_time=0.31, flop_ratio=0.2)]
    t = speed.targets_met({"results": rows})
    assert t["within_1.15x_flop_ratio"] == {"1": True, "0.6": True, "0.4": False}
    assert t["rho_0.2_at_most_0.25"] is False


TINY_SETUP = ["--set", "data.val_split=val", "--set", "batch_size=2", "--set", "optim.base_batch_size=2",
              "--set", "model.kwargs={depth: 1, embed_dim: 32, num_heads: 2, pos_embed: rel_bias}"]


def test_e2e_harness_equal_time_baseline(tiny_image_folder, tmp_path):
    e2e = _load("cifar10")
    argv = ["--cpu-reduced", "--data", str(tiny_image_folder), "--runs", "baseline,pss,baseline_equal_time",
            "--set", "epochs=3", *TINY_SETUP, "--output", str(tmp_path / "runs"), "--results", str(tmp_path / "res"),
            "--quiet"]
    assert e2e.main(argv) == 0
    [path] = (tmp_path / "res").glob("e2e_cifar10_cpu-reduced_*.json")
    rec = json.loads(path.read_text())
    runs = {r["name"]: r for r in rec["runs"]}
    eq, pss_run = runs["baseline_equal_time"], runs["pss"]
    assert eq["equal_time_of"] == "pss" and eq["schedule"]["name"] == "fixed" and eq["mean_keep_ratio"] == 1.0
    # the recommended recipe spends budget 0.6 of 3 epochs as 5 epochs at 0.36 of each (tokens for epochs):
    # its equal-time baseline trains 0.6 x 3 = 2 epochs (not 0.36 x 3 = 1)
    assert (runs["baseline"]["epochs"], pss_run["epochs"], eq["epochs"]) == (3, 5, 2)
    assert pss_run["budget"]["budget"] == pytest.approx(0.36) and pss_run["budget"]["predicted_cost"] <= 0.36
    cost = pss_run["cost_vs_full"]  # the record: the recipe's budget and the realised cost against the full run
    assert cost["budget"] == 0.6 and cost["epochs_factor"] == pytest.approx(5 / 3)
    assert cost["realised"] == pytest.approx(pss_run["budget"]["realised_cost"] * 5 / 3) and cost["realised"] <= 0.6
    md = path.with_suffix(".md").read_text()
    assert "final vs equal time" in md and "| baseline_equal_time | 0 |" in md
    assert f"| pss | 0 | 5 | 0.6 ({cost['realised']:.3f}) |" in md


def test_recipe_study_plans_resumes_and_records(tiny_image_folder, tmp_path):
    study = _load("recipe_study")
    argv = ["--data", str(tiny_image_folder), "--seeds", "0", "--runs",
            "baseline,baseline_equal_time,pss_cyclic_random,pss_cyclic_mixed", "--set", "epochs=5", *TINY_SETUP,
            "--set", "data.max_val_per_class=2", "--output", str(tmp_path / "runs"), "--results", str(tmp_path / "res"),
            "--quiet"]
    assert study.main(argv) == 0
    [path] = (tmp_path / "res").glob("recipe_study_cpu-study_*.json")
    rec = json.loads(path.read_text())
    runs = {r["name"]: r for r in rec["runs"]}
    assert runs["baseline_equal_time"]["epochs"] == 3 and runs["baseline_equal_time"]["equal_time_of"] == "baseline"
    for name in ("pss_cyclic_random", "pss_cyclic_mixed"):
        b = runs[name]["budget"]
        assert b["budget"] == 0.6 and b["predicted_cost"] <= 0.6 and runs[name]["select"] == name.split("_")[-1]
        assert runs[name]["schedule"]["low"] == b["value"]  # the solved schedule is what is recorded
    arms = {a["name"]: a for a in rec["arms"]}
    assert len(arms["pss_cyclic_mixed"]["final_diff_vs_equal_time"]) == 1
    assert set(runs["pss_cyclic_random"]["sweep"]) == {"1", "0.8", "0.6", "0.5", "0.4", "0.2"}
    assert path.with_suffix(".png").stat().st_size > 10_000
    assert "| pss_cyclic_mixed | 0 |" in path.with_suffix(".md").read_text()
    # The inference sweep is cached under the rule it ran with (random- and mixed-trained: grid); a cache
    # of another rule (an older default) is not read as this one's.
    cached = tmp_path / "runs" / "pss_cyclic_random_s0"
    assert json.loads((cached / "study_sweep_grid.json").read_text()) == runs["pss_cyclic_random"]["sweep"]
    (cached / "study_sweep_grid.json").rename(cached / "study_sweep_magnitude.json")
    (cached / "study_sweep_magnitude.json").write_text(json.dumps({k: -1.0 for k in runs["pss_cyclic_random"]["sweep"]}))
    assert study.main([*argv, "--record-only"]) == 0
    again = {r["name"]: r for r in json.loads(path.read_text())["runs"]}
    assert again["pss_cyclic_random"]["sweep"] == runs["pss_cyclic_random"]["sweep"]
    # Again: everything is re-read, nothing retrained; a study folder of other settings is refused.
    log = (tmp_path / "runs" / "pss_cyclic_mixed_s0" / "train_log.jsonl").read_text()
    assert study.main([*argv, "--record-only"]) == 0 and study.main(argv) == 0
    assert (tmp_path / "runs" / "pss_cyclic_mixed_s0" / "train_log.jsonl").read_text() == log
    # A later command training another arm records it beside the earlier ones, not instead of them.
    later = [*argv[:argv.index("--runs")], "--runs", "pss_fixed_random", *argv[argv.index("--runs") + 2:]]
    assert study.main(later) == 0
    names = {r["name"] for r in json.loads(path.read_text())["runs"]}
    assert names == {"baseline", "baseline_equal_time", "pss_cyclic_random", "pss_cyclic_mixed", "pss_fixed_random"}
    with pytest.raises(ConfigError, match="holds a run of other settings"):
        study.main([*argv, "--set", "epochs=4"])
    with pytest.raises(SystemExit, match="unknown arm"):
        study.main(["--runs", "baseline,nope"])


def test_speed_attention_comparison_table_and_targets():
    speed = _load("speed")

    def rep(pos, impl, t1, mem):
        rows = [dict(keep_ratio=1.0, flop_ratio=1.0, relative_time=1.0, step_time_s=t1, peak_memory_mb=mem,
                     attention_kernels=("aten::_scaled_dot_product_flash_attention",)),
                dict(keep_ratio=0.2, flop_ratio=0.21, relative_time=0.24, step_time_s=0.24 * t1, peak_memory_mb=mem,
                     attention_kernels=())]
        return dict(model="m", compile=False, pos_embed=pos, attn_impl=impl, batch_size=8, amp="bf16", results=rows)

    reports = [rep("rel_bias", "sdpa", 0.15, 900), rep("rel_bias", "flex", 0.105, 700), rep("rope", "sdpa", 0.1, 650),
               dict(model="m", compile=False, pos_embed="rope", attn_impl="flex", batch_size=8, amp="bf16", skipped="why")]
    assert speed.cross_targets(reports) == {
        "m: rel_bias sdpa rho=1 within 10% of rope sdpa": False,
        "m: rel_bias flex rho=1 within 10% of rope sdpa": True,
        "m: flex peak memory at rho=1 below sdpa": True,
    }
    table = speed.side_by_side(reports)
    assert "| keep ratio | FLOP ratio | rel_bias sdpa | rel_bias flex | rope sdpa |" in table
    assert "| 0.20 | 0.210 | 0.240 | 0.240 | 0.240 |" in table
    assert "| rho=1 peak (MB) | | 900 | 700 | 650 |" in table and "skipped rope flex: why" in table


def _tiny_run(folder, schedule, select: str, seed: int):
    """A finished run folder of the built-in set (untrained weights, as `pss train` writes it)."""
    import torch

    import pss
    from pss.checkpoint import atomic_save, training_checkpoint
    from pss.config import DataConfig, ModelConfig, TrainConfig, config_to_dict
    from pss.data import builtin_class_names

    kw = dict(depth=2, embed_dim=32, num_heads=2)
    cfg = TrainConfig(model=ModelConfig(name="pss_vit_tiny_patch4_32", num_classes=3, img_size=32, kwargs=kw),
                      data=DataConfig(builtin_num_train=12, builtin_num_val=6, builtin_num_classes=3, num_workers=0),
                      schedule=schedule, select=select, seed=seed)
    torch.manual_seed(seed)
    model = pss.build_model("pss_vit_tiny_patch4_32", 3, img_size=32, **kw)
    folder.mkdir(parents=True)
    atomic_save(training_checkpoint(model=model, progress={"step": 0, "epoch": 0}, config=config_to_dict(cfg),
                                    class_names=builtin_class_names(3)), folder / "checkpoint-best.pt")
    (folder / "summary.json").write_text("{}\n")
    return folder


def test_inference_select_protocol_and_dial_vs_merge(tmp_path, monkeypatch, capsys):
    base = _tiny_run(tmp_path / "runs" / "full_s0", 1.0, "magnitude", 0)
    rand = _tiny_run(tmp_path / "runs" / "random_s0", {"name": "cyclic"}, "random", 0)
    protocol = _load("inference_select")
    monkeypatch.setattr("sys.argv", ["x", str(base), str(rand), "--heldout", "4", "--output", str(tmp_path / "w"),
                                     "--results", str(tmp_path / "res"), "--tag", "t"])
    protocol.main()
    rec = json.loads(next((tmp_path / "res").glob("inference_select_t_*.json")).read_text())
    assert [r["trained_select"] for r in rec["runs"]] == [None, "random"]
    assert all(r["heldout_images"] == 12 for r in rec["runs"])  # 4 per class, 3 classes, a seed never reported
    assert set(rec["table"]) == {"none", "random"}
    for t in rec["table"].values():
        assert t["choice"] in ("magnitude", "l2", "grid")
        assert t["mean_score"][t["choice"]] == max(t["mean_score"][r] for r in ("magnitude", "l2", "grid"))

    dvm = _load("dial_vs_merge")
    assert dvm.interpolate([(10, 50.0), (20, 40.0)], 15) == 45.0 and dvm.interpolate([(10, 50.0)], 30) is None
    monkeypatch.setattr("sys.argv", ["x", "--baseline", str(base), "--pss", str(rand), "--keep", "1,0.5",
                                     "--merge-r", "0,4", "--warmup", "0", "--iters", "1",
                                     "--output", str(tmp_path / "sw"), "--results", str(tmp_path / "res"), "--tag", "t"])
    dvm.main()
    rec = json.loads(next((tmp_path / "res").glob("dial_vs_merge_t_*.json")).read_text())
    pair = rec["pairs"][0]
    assert pair["baseline_select"] == "grid" and pair["pss_select"] == "grid"
    assert pair["tome_speedups"]["0"] == 1.0 and [p["merge_r"] for p in pair["at_tome_points"]] == [4]
    assert set(pair["rho05"]) == {"baseline_lost", "pss_lost", "met"}
    assert (tmp_path / "sw" / "sweep.png").is_file() and "## Targets" in capsys.readouterr().out


def test_budget_study_horizon_arms_tokens_for_epochs_and_records_that_resume(tiny_image_folder, tmp_path):
    study = _load("budget_study")
    common = ["--data", str(tiny_image_folder), "--seeds", "0", "--horizons", "2", *TINY_SETUP,
              "--set", "model.kwargs={depth: 1, embed_dim: 32, num_heads: 2, pos_embed: rope}",
              "--set", "data.max_val_per_class=2", "--set", "lr_sched.warmup_epochs=0",
              "--results", str(tmp_path / "res"), "--quiet"]
    argv = [*common, "--output", str(tmp_path / "runs")]
    assert study.main(argv) == 0
    [path] = (tmp_path / "res").glob("budget_study_cpu_*.json")
    rec = json.loads(path.read_text())
    runs = {r["arm"]: r for r in rec["runs"]}
    assert set(runs) == {"full", "equal_time", "recommended", "fixed", "tokens_for_epochs"}
    assert runs["full"]["epochs"] == 2 and runs["equal_time"]["epochs"] == 1  # 0.6 x 2 rounded half up
    assert runs["full"]["flop_cost"] == 1.0 and runs["equal_time"]["flop_cost"] == 0.5
    tfe = runs["tokens_for_epochs"]
    assert tfe["epochs"] == 3 and tfe["schedule"]["name"] == "fixed"  # 1.5 x 2 epochs at fewer tokens
    assert tfe["summary"]["budget"]["reference"]["epochs"] == 2
    for arm in ("recommended", "fixed", "tokens_for_epochs"):
        assert runs[arm]["flop_cost"] <= 0.6 + 1e-6  # every PSS arm within 0.6 of the 2-epoch full run
        assert runs[arm]["schedule"]["grid"] == 0.1
    arms = {a["arm"]: a for a in rec["arms"]}
    assert len(arms["tokens_for_epochs"]["final_vs_equal_time"]) == 1 and "final_vs_full" in arms["fixed"]
    assert "| h2_tokens_for_epochs | 3 | 0 |" in path.with_suffix(".md").read_text()
    assert path.with_suffix(".png").stat().st_size > 10_000
    # Another machine (empty output folder) with the committed record: nothing is trained again.
    assert study.main([*common, "--output", str(tmp_path / "elsewhere")]) == 0
    assert not (tmp_path / "elsewhere").exists() or not any((tmp_path / "elsewhere").iterdir())
    assert {r["name"] for r in json.loads(path.read_text())["runs"]} == {r["name"] for r in rec["runs"]}
    with pytest.raises(SystemExit, match="unknown arm"):
        study.main([*argv, "--arms", "full,nope"])


def test_budget_study_record_names_the_commands_that_trained_its_runs():
    study = _load("budget_study")
    rows = [{"group": g, "arm": a, "seed": s} for g, a, s in [
        ("h15", "full", 0), ("h15", "full", 1), ("h15", "fixed", 0), ("h15", "fixed", 1), ("h45", "full", 2),
        ("b0.4", "fixed", 0), ("b0.4", "cooldown", 0), ("b0.4", "tokens_for_epochs", 1), ("ft15", "full", 0),
        ("ft15", "paper", 0)]]
    assert study.commands(rows) == [
        "--part horizons --horizons 15 --arms full,fixed --seeds 0,1",
        "--part horizons --horizons 45 --arms full --seeds 2",
        "--part budgets --horizons 15 --budgets 0.4 --budget-arms fixed,schedule --seeds 0",
        "--part budgets --horizons 15 --budgets 0.4 --budget-arms tokens_for_epochs --seeds 1",
        "--part finetune --horizons 15 --seeds 0"]
    for c in study.commands(rows):  # each one parses, with the arms it names
        study.parse_args(["--data", "x", *c.split()])


def test_budget_study_finetune_gate_by_value():
    study = _load("budget_study")
    done = {"ft15_full_s0": {"final_acc1": 58.0}, "h15_full_s0": {"final_acc1": 54.5}}
    g = study.gate(done, 15, 0)
    assert g["gain"] == pytest.approx(3.5) and g["meaningful"] and g["required"] == 3.0
    g = study.gate({**done, "ft15_full_s0": {"final_acc1": 56.0}}, 15, 0)
    assert g["gain"] == pytest.approx(1.5) and not g["meaningful"]
    assert study.gate({"h15_full_s0": {"final_acc1": 50.0}}, 15, 0) is None  # fine-tuned run not finished
    with pytest.raises(SystemExit):
        study.parse_args(["--data", "x", "--part", "finetune", "--pretrain-epochs", "101"])


def test_budget_study_finetune_stops_at_the_gate_then_trains_every_arm(tiny_image_folder, tmp_path, monkeypatch):
    study = _load("budget_study")
    argv = ["--data", str(tiny_image_folder), "--part", "finetune", "--seeds", "0", "--horizons", "2",
            "--pretrain-epochs", "1", *TINY_SETUP,
            "--set", "model.kwargs={depth: 1, embed_dim: 32, num_heads: 2, pos_embed: rope}",
            "--set", "data.max_val_per_class=2", "--set", "lr_sched.warmup_epochs=0",
            "--results", str(tmp_path / "res"), "--output", str(tmp_path / "runs"), "--quiet"]
    monkeypatch.setattr(study, "GATE_POINTS", 1000.0)  # no fine-tuning gains 1000 points: the study stops
    assert study.main(argv) == 0
    trained = {p.name for p in (tmp_path / "runs").iterdir() if (p / "summary.json").exists()}
    assert trained == {"pretrain_e1", "h2_full_s0", "ft2_full_s0"}
    [path] = (tmp_path / "res").glob("budget_study_cpu_*.json")
    rec = json.loads(path.read_text())
    assert rec["finetune_gate"]["meaningful"] is False and rec["pretrain"]["summary"]["epochs"] == 1
    assert "NOT meaningful" in path.with_suffix(".md").read_text()
    monkeypatch.setattr(study, "GATE_POINTS", -1000.0)  # now it passes: the other arms train from the encoder
    assert study.main(argv) == 0
    rec = json.loads(path.read_text())
    runs = {r["arm"]: r for r in rec["runs"] if r["group"] == "ft2"}
    assert set(runs) == {"full", "equal_time", "recommended", "paper", "tokens_for_epochs"}
    assert runs["paper"]["select"] == "magnitude" and runs["tokens_for_epochs"]["epochs"] == 3
    # the encoder's path is kept from --output: the record names no folder of this machine
    assert all("init=$OUTPUT/pretrain_e1/encoder.safetensors" in r["overrides"]
               and "optim.layer_decay=0.75" in r["overrides"] for r in runs.values())
    assert rec["finetune_gate"]["meaningful"] is True
    assert {a["name"] for a in rec["arms"]} >= {"ft2_recommended", "ft2_equal_time"}


def test_budget_study_budget_curve_plans_a_reachable_schedule_arm(tiny_image_folder, tmp_path):
    study = _load("budget_study")
    args = study.parse_args(["--data", str(tiny_image_folder), "--part", "budgets", "--budgets", "0.8,0.6,0.4",
                             "--horizons", "10", "--seeds", "0", *TINY_SETUP, "--output", str(tmp_path)])
    runs = {r.name: r for r in study.plan_budgets(args)}
    assert set(runs) == {"b0.8_fixed", "b0.8_cyclic", "b0.8_equal_time", "b0.4_fixed", "b0.4_cooldown",
                         "b0.4_equal_time"}  # 0.6 is the horizon part's; a triangle up to 1.0 cannot reach 0.4
    cool = runs["b0.4_cooldown"].cfg
    assert cool.schedule.name == "fixed" and cool.schedule.cooldown_epochs == 1.0 and cool.budget == 0.4
    assert runs["b0.4_equal_time"].cfg.epochs == 4 and runs["b0.8_cyclic"].cfg.schedule.name == "cyclic"
    args.budget_arms = "tokens_for_epochs,fixed"  # tokens for epochs only when asked; the plan keeps its order
    runs = study.plan_budgets(args)
    assert [r.name for r in runs] == ["b0.8_fixed", "b0.8_tokens_for_epochs", "b0.4_fixed", "b0.4_tokens_for_epochs"]
    tfe = runs[3].cfg  # 1.5 x 10 epochs, the schedule solved for 0.4 x 10 / 15 of the longer run
    assert tfe.epochs == 15 and tfe.budget_reference["epochs"] == 10 and tfe.schedule.name == "fixed"
    assert tfe.budget == pytest.approx(0.4 * 10 / 15, abs=1e-6) and tfe.select == "random"
    with pytest.raises(SystemExit):
        study.parse_args(["--data", "x", "--part", "budgets", "--budget-arms", "fixed,nope"])


def test_token_study_plan_is_fixed_before_any_run_and_reuses_the_budget_study(tmp_path):
    """The token study's arms by value: epochs, names, the curriculum's shape rule, the arms planned out; the
    t64 drop arms at 0.6 are the budget study's recorded runs (same seed and overrides), not trained again."""
    study = _load("token_study")
    args = study.parse_args(["--data", "DATA", "--output", "/nonexistent"])
    runs = {r.label: r for r in study.plan(args)}
    # What a record may cover: seeds 0-2, any seed asked for, any seed a record of the study holds (the
    # committed record holds a fourth seed at 256 tokens), so a later record never drops one.
    assert {"t256_h15_full_s3", "t256_h15_tokens_for_epochs_s3"} <= {r.label for r in study.every_run(args)}
    empty = ["--data", "DATA", "--output", "/nonexistent", "--results", str(tmp_path)]
    assert {r.seed for r in study.every_run(study.parse_args(empty))} == {0, 1, 2}
    assert {r.seed for r in study.every_run(study.parse_args([*empty, "--seeds", "5"]))} == {0, 1, 2, 5}
    assert runs["t256_h15_full_s0"].cfg.epochs == 15 and runs["t256_h15_equal_time_s0"].cfg.epochs == 9
    assert runs["t256_b0.33_equal_time_s0"].cfg.epochs == 5
    assert "t256_b0.33_res_for_epochs_s0" not in runs and "b0.33_res_for_epochs_s1" not in runs  # unreachable
    assert runs["t256_h15_full_s0"].cfg.model.kwargs["patch_size"] == 2
    assert runs["t256_h15_full_s0"].cfg.data.max_train_per_class == 500
    assert runs["h15_full_s0"].cfg.data.max_train_per_class == 1000
    shapes = {k: (r.cfg.resolution.name if r.cfg.resolution else None, r.cfg.budget_lever, r.cfg.epochs)
              for k, r in runs.items() if k.endswith("_s0") and k.startswith("t256")}
    assert shapes["t256_h15_res_curriculum_s0"] == ("linear", "resize", 15)  # 0.6 >= LINEAR_FLOOR
    assert shapes["t256_h15_res_for_epochs_s0"] == ("step", "resize", 23)  # 1.5x the epochs, 0.4 of each: a step
    assert shapes["t256_h15_both_s0"] == ("linear", "both", 23)  # sqrt(0.4) = 0.63 to the side: a ramp
    assert shapes["t256_b0.33_res_curriculum_s0"] == ("step", "resize", 15)
    assert runs["t256_h15_fixed_s0"].cfg.schedule.grid is None and runs["h15_fixed_s0"].cfg.schedule.grid == 0.1
    recorded = study.recorded_summaries(ROOT / "benchmarks" / "results")
    for name in ("h15_full", "h15_equal_time", "h15_fixed", "h15_tokens_for_epochs"):
        assert all(study._key(runs[f"{name}_s{seed}"]) in recorded for seed in (0, 1)), name
    # the budget study ran no unrounded fixed ratio at 0.33: that arm is this study's own (recorded only in its record)
    from pss.study import recorded_summaries

    budget_only = {(seed, o) for (_, seed, o) in recorded_summaries(ROOT / "benchmarks" / "results", ("budget_study_*.json",))}
    assert study._key(runs["h15_fixed_s0"]) in budget_only and study._key(runs["b0.33_fixed_s0"]) not in budget_only


def test_token_study_trains_the_resolution_arms_and_records_them(tiny_image_folder, tmp_path):
    study = _load("token_study")
    argv = ["--data", str(tiny_image_folder), "--scales", "t64", "--budgets", "0.6", "--arms",
            "full,res_curriculum,both", "--seeds", "0", *TINY_SETUP, "--set", "epochs=2",
            "--set", "model.kwargs={depth: 1, embed_dim: 32, num_heads: 2, pos_embed: rope}",
            "--set", "data.max_val_per_class=2", "--set", "lr_sched.warmup_epochs=0",
            "--results", str(tmp_path / "res"), "--output", str(tmp_path / "runs"), "--quiet"]
    assert study.main(argv) == 0
    [path] = (tmp_path / "res").glob("token_study_cpu_*.json")
    rec = json.loads(path.read_text())
    runs = {r["arm"]: r for r in rec["runs"]}
    assert set(runs) == {"full", "res_curriculum", "both"}
    assert runs["full"]["flop_cost"] == 1.0 and runs["full"]["resolution"] is None
    assert runs["res_curriculum"]["resolution"]["name"] == "linear" and runs["res_curriculum"]["epochs"] == 2
    assert runs["both"]["epochs"] == 3 and runs["both"]["mean_keep_ratio"] < 1.0  # 1.5 x 2 epochs, fewer tokens
    for arm in ("res_curriculum", "both"):
        assert 0 < runs[arm]["flop_cost"] <= 0.6 + 1e-6  # within the budget, side and keep ratio counted
    arms = {a["arm"]: a for a in rec["arms"]}
    assert len(arms["both"]["final_vs_full"]) == 1
    assert "| t64 | 0.6 | res_curriculum | 2 | 0 |" in path.with_suffix(".md").read_text()


def _dial_sweep() -> dict:
    """A sweep result of the shape `sweep_checkpoints(..., reduce="all")` writes: full model at 100 img/s."""
    def rows(key, points):
        return [{key: k, "images_per_s": ips, "acc1": acc, "num_images": 500} for k, ips, acc in points]
    return {"device": "cpu", "checkpoints": [
        {"name": "full (grid)", "reduce": "drop", "results": rows("keep_ratio", [(1.0, 100, 60), (0.5, 200, 40), (0.2, 400, 20)])},
        {"name": "full (merge)", "reduce": "merge", "results": rows("merge_r", [(0, 100, 60), (4, 160, 50)])},
        {"name": "full (resize)", "reduce": "resize", "results": rows("keep_ratio", [(1.0, 100, 60), (0.25, 300, 45)])},
        {"name": "tokens_for_epochs (random)", "reduce": "drop", "results": rows("keep_ratio", [(1.0, 100, 62), (0.5, 200, 55), (0.2, 400, 30)])},
        {"name": "tokens_for_epochs (merge)", "reduce": "merge", "results": rows("merge_r", [(0, 100, 62), (4, 160, 52)])},
        {"name": "tokens_for_epochs (resize)", "reduce": "resize", "results": rows("keep_ratio", [(1.0, 100, 62), (0.25, 300, 40)])},
    ]}


def test_token_study_dial_reads_top1_at_each_speedup_by_value(tmp_path):
    """Top-1 at 1.5x / 2x / 3x the full model's images/s: interpolated along each rule's curve, never
    extrapolated; the best rule per model; the target (shipped best >= full best) per speed-up; in the record."""
    study = _load("token_study")
    d = study.dial_columns(_dial_sweep(), "t64", 0)
    full, shipped = d["models"]["full"], d["models"]["tokens_for_epochs"]
    assert d["full_images_per_s"] == 100 and d["images"] == 500
    assert full["drop"]["top1_at"] == {"1.5": pytest.approx(50.0), "2": pytest.approx(40.0), "3": pytest.approx(30.0)}
    assert full["merge"]["top1_at"]["1.5"] == pytest.approx(60 - 10 * 50 / 60) and full["merge"]["top1_at"]["2"] is None
    assert full["resize"]["top1_at"]["2"] == pytest.approx(60 - 15 * 100 / 200) and full["resize"]["reach"] == 3.0
    assert full["best"] == {"1.5": pytest.approx(60 - 15 * 50 / 200), "2": pytest.approx(52.5), "3": pytest.approx(45.0)}
    assert shipped["best"]["2"] == pytest.approx(55.0) and shipped["best"]["3"] == pytest.approx(42.5)
    assert d["shipped_best_at_least_full_best"] == {"1.5": True, "2": True, "3": False}
    rec = {"device": "cpu", "torch": "t", "timm": "t", "commit": "c", "date": "d", "recipe": "r", "runs": [], "arms": [],
           "dial": [d]}
    md = study.to_markdown(rec)
    assert "| t64 | 0 | full | best | 56.25 | 52.50 | 45.00 |  |" in md
    assert "| t64 | 0 | full | merge | 51.67 | - | - | 1.60x |" in md
    args = study.parse_args(["--data", "DATA", "--output", str(tmp_path), "--results", str(tmp_path / "res"),
                             "--dial", "--scales", "t64", "--seeds", "0"])
    study.run_dial(args)  # neither run has finished: nothing is swept, nothing written
    assert not study.dial_folder(args, "t64", 0).exists()
    (tmp_path / "dial_t64_s0").mkdir()
    (tmp_path / "dial_t64_s0" / "sweep.json").write_text(json.dumps(_dial_sweep()))
    assert study.dial_rows(args) == [d]


def test_data_sides_times_each_side_in_alternating_order_and_records_the_folder_not_its_path(tmp_path, capsys):
    """benchmarks/data_sides.py: the recipe's loader at the full and half side, the order alternating per
    repeat; the record holds each side's images/s per repeat and its ratio to the full side (1.0 for the
    full side itself), what the folder holds, and not where it is."""
    from PIL import Image

    folder = tmp_path / "jpegs"
    for split, n in (("train", 4), ("val", 2)):
        for c in range(3):
            (folder / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (96, 64), (40 * c, 20 * i, 90)).save(folder / split / f"c{c}" / f"{i}.jpg", quality=90)
    sides = _load("data_sides")
    with pytest.raises(SystemExit):
        sides.main(["--data", str(folder), "--sides", "0.5,0.25"])  # no full side to compare with
    assert "1.0 (the full side) among them" in capsys.readouterr().err
    sides.main(["--data", str(folder), "--set", "batch_size=4", "--workers", "0", "--repeats", "2", "--batches", "2",
                "--warmup", "0", "--results", str(tmp_path / "res"), "--tag", "t", "--note", "a tiny folder"])
    rec = json.loads(next((tmp_path / "res").glob("data_sides_cpu-t_*.json")).read_text())
    assert [t["order"] for t in rec["timings"]] == [[1.0, 0.5], [0.5, 1.0]]
    assert [[r["side"] for r in t["rows"]] for t in rec["timings"]] == [[224, 112], [112, 224]]
    full, half = rec["sides"]
    assert (full["side"], half["side"]) == (224, 112) and full["ratios"] == [1.0, 1.0]
    assert half["decoded_at_side"] and len(half["images_per_s"]) == 2
    assert half["ratios"] == [t["rows"][i]["images_per_s"] / t["rows"][1 - i]["images_per_s"]
                              for t, i in zip(rec["timings"], (1, 0))]
    assert rec["folder"]["images"] == 12 and rec["folder"]["mean_width"] == 96 and rec["folder"]["mean_height"] == 64
    assert str(tmp_path) not in json.dumps(rec) and str(tmp_path) not in capsys.readouterr().out
    assert "| 112 |" in (tmp_path / "res" / f"data_sides_cpu-t_{rec['date']}.md").read_text()
