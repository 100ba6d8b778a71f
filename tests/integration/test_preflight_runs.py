"""`pss bench data`, the pre-flight in `pss train` and `budget_cost: measured`, end to end on tiny runs."""
import json

import pytest
from conftest import pss_train, read_jsonl, write_recipe

from pss.cli import main


def test_bench_data_sweeps_workers_and_refuses_bad_input(tmp_path, tiny_image_folder, capsys):
    out = tmp_path / "data.json"
    recipe = write_recipe(tmp_path, data={"path": str(tiny_image_folder), "in_memory": False, "num_workers": 0})
    assert main(["bench", "data", "--config", str(recipe), "--set", "batch_size=4", "--workers", "0,1",
                 "--warmup", "1", "--batches", "2", "--model-iters", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["kind"] == "data" and report["num_train"] == 12
    assert report["pipeline"]["batch_size"] == 4 and report["pipeline"]["in_memory"] is False
    rows = report["results"]
    assert [r["num_workers"] for r in rows] == [0, 1] and [r["batches"] for r in rows] == [2, 2]
    assert all(r["images"] == 8 and r["images_per_s"] > 0 and r["mean_batch_s"] > 0 for r in rows)
    assert rows[0]["images_per_s_per_worker"] is None
    assert rows[1]["images_per_s_per_worker"] == pytest.approx(rows[1]["images_per_s"])
    # 2 batches: a mean, no quantiles (the p90 of 2 was the faster one), and the table says why
    assert all(r["median_wait_s"] is None and r["p90_wait_s"] is None for r in rows)
    printed = capsys.readouterr().out
    assert "| 1 workers |" in printed and "median and p90: not given from 2 timed batches (they need 10" in printed
    # will it pay: the model timed at the cyclic schedule's keep ratios, a prediction per loader
    model = report["model"]
    assert model["epochs"] == 2 and model["steps_per_epoch"] == 3 and model["iters"] == 1
    # 3 steps per epoch: the wave runs 0.2, 0.8, 0.8 each epoch; 1.0 is timed as the reference
    assert set(model["step_time_s"]) == {"1", "0.8", "0.2"} and model["mean_keep_ratio"] == pytest.approx(0.6)
    assert rows[0]["prediction"]["bound"] == "serial"  # 0 workers: decoded in the training process
    # the loader's time pulls each ratio from the model's own towards 1 (from above on a busy machine)
    assert all(min(p["model_time_ratio"], 1.0) - 1e-9 <= p["time_ratio"] <= max(p["model_time_ratio"], 1.0) + 1e-9
               for p in (r["prediction"] for r in rows))
    assert "will it pay: the run trains cyclic(low=0.2, high=1" in printed and "expected time ratio" in printed

    assert main(["bench", "data", "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # the arguments are checked before the data: a bad --sides is named even when the folder is missing too
    assert main(["bench", "data", "--data", str(tmp_path / "missing"), "--sides", "1.0,1.5"]) == 2
    assert "--sides takes fractions of img_size in (0, 1]" in capsys.readouterr().err
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir()
    assert main(["bench", "data", "--data", str(tmp_path / "empty")]) == 2
    assert "no class folders" in capsys.readouterr().err
    assert main(["bench", "data", "--config", str(write_recipe(tmp_path)), "--workers", "0"]) == 2
    assert "worker counts do not apply (with in_memory, num_workers only decode the set once" in capsys.readouterr().err
    recipe = write_recipe(tmp_path, data={"path": str(tiny_image_folder), "in_memory": False, "num_workers": 0})
    assert main(["bench", "data", "--config", str(recipe), "--set", "batch_size=13"]) == 2  # the check, with the batch
    assert "batch_size 13 per process is larger than the 12 training images" in capsys.readouterr().err


def test_bench_data_predicts_a_budget_recipe_as_it_trains(tmp_path, capsys):
    """An in-memory recipe with a budget: the model timed at the solved keep ratio, enough batches for quantiles."""
    recipe = write_recipe(tmp_path, schedule={"name": "fixed", "rho": 0.9}, budget=0.5, epochs=3,
                          data={"path": None, "builtin_num_train": 160, "builtin_num_val": 10, "in_memory": True,
                                "num_workers": 0})
    out = tmp_path / "data.json"
    assert main(["bench", "data", "--config", str(recipe), "--warmup", "0", "--batches", "10", "--model-iters", "1",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    (row,) = report["results"]
    assert row["batches"] == 10 and row["median_wait_s"] > 0 and row["p90_wait_s"] >= row["median_wait_s"]
    rho = report["model"]["schedule"]["rho"]
    assert rho < 0.6 and set(report["model"]["step_time_s"]) == {"1", f"{rho:g}"}  # the solved rho, not the recipe's 0.9
    assert row["prediction"]["schedule"]["rho"] == rho and row["prediction"]["bound"] == "serial"
    assert "budget 0.5" in report["model"]["budget"] and "median and p90: not given" not in capsys.readouterr().out


def test_preflight_prediction_leaves_the_run_unchanged(tmp_path):
    """The measured steps are undone: with and without the pre-flight, the same losses bit for bit."""
    runs = {}
    for flag in ("true", "false"):
        recipe = write_recipe(tmp_path, deterministic=True, ema={"enabled": True, "decay": 0.9},
                              optim={"lr": 1.0e-3, "clip_grad": 1.0})
        assert pss_train("--config", recipe, "--output", tmp_path / flag, "--set", f"preflight={flag}") == 0
        runs[flag] = tmp_path / flag
    log_on, log_off = (read_jsonl(runs[f] / "train_log.jsonl") for f in ("true", "false"))
    assert [r["loss"] for r in log_on] == [r["loss"] for r in log_off]
    assert [r["lr"] for r in log_on] == [r["lr"] for r in log_off]
    val_on, val_off = (read_jsonl(runs[f] / "val_log.jsonl") for f in ("true", "false"))
    assert [v["ema_acc1"] for v in val_on] == [v["ema_acc1"] for v in val_off]
    pre = json.loads((runs["true"] / "summary.json").read_text())["preflight"]
    assert json.loads((runs["false"] / "summary.json").read_text())["preflight"] is None
    assert pre["bound"] == "serial"  # in-memory data: batches are made in the training process
    assert set(pre["measurements"]["step_time_s"]) == {"1", "0.6", "0.2"}  # the schedule's keep ratios
    # serial-bound: the loader's time adds to every step alike, so it pulls the ratio from the model's own
    # towards 1 (from below as expected, from above when a busy machine times the small steps slower)
    model, total = pre["model_time_ratio"], pre["time_ratio"]
    assert 0 < model < 1.2 and min(model, 1.0) - 1e-9 <= total <= max(model, 1.0) + 1e-9
    assert pre["realised_time_ratio"] > 0 and "expected time ratio" in pre["message"]


def test_budget_measured_from_files_and_refused_files(tmp_path, tiny_image_folder, capsys):
    model = ["--model", "pss_vit_tiny_patch4_32", "--set", "depth=2", "--set", "embed_dim=32", "--set", "num_heads=2"]
    speed, data = tmp_path / "speed.json", tmp_path / "data.json"
    assert main(["bench", "speed", *model, "--batch-size", "4", "--keep", "0.6,0.2", "--warmup", "1", "--iters", "2",
                 "--img-size", "32", "--json", str(speed)]) == 0
    # The file's format is bench speed's own; its times are set to a fixed monotone table, so the budget
    # solve does not depend on how noisy this machine's timings of a tiny model are.
    report = json.loads(speed.read_text())
    for row in report["results"]:
        row["step_time_s"] = 0.05 * (0.3 + 0.7 * row["keep_ratio"])
        row["relative_time"] = 0.3 + 0.7 * row["keep_ratio"]
    speed.write_text(json.dumps(report))
    folder = {"path": str(tiny_image_folder), "in_memory": False, "num_workers": 0}
    recipe = write_recipe(tmp_path, data=folder, batch_size=4, budget=0.95)
    assert main(["bench", "data", "--config", str(recipe), "--warmup", "0", "--batches", "2", "--json", str(data)]) == 0
    out = tmp_path / "run"
    assert pss_train("--config", recipe, "--output", out, "--set", f"budget_cost=measured:{speed},{data}") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget"]["cost_model"] == "measured" and summary["budget"]["predicted_cost"] <= 0.95 + 1e-9
    assert summary["preflight"]["measurements"]["source"] == f"{speed} + {data}"

    # a data file of another pipeline (batch 8): one line, before the run folder is touched
    assert main(["bench", "data", "--config", str(recipe), "--set", "batch_size=8", "--warmup", "0", "--batches", "1",
                 "--json", str(tmp_path / "data8.json")]) == 0
    capsys.readouterr()
    assert pss_train("--config", recipe, "--output", tmp_path / "bad",
                     "--set", f"budget_cost=measured:{speed},{tmp_path / 'data8.json'}") == 2
    err = capsys.readouterr().err
    assert "another data pipeline (batch_size: 8 there, 4 here)" in err and "pss bench data" in err
    assert not (tmp_path / "bad" / "config.yaml").exists()
