"""`pss demo` end to end on a tiny version of the demo recipe (2-epoch runs of a 2-block ViT: baseline,
PSS, and the baseline given PSS's training time)."""
import json

import matplotlib.image as mpimg
import pytest

from pss.cli import main

TINY = [
    "epochs=2", "data.builtin_num_train=48", "data.builtin_num_val=20", "batch_size=16",
    "model.kwargs={depth: 2, embed_dim: 32, num_heads: 2}", "device=cpu",
]


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--output", str(out), "--quiet", "--keep", "1.0,0.6,0.2"]
    for s in TINY:
        argv += ["--set", s]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| baseline |" in printed and "| pss |" in printed and "| baseline_equal_time |" in printed
    assert "faster" in printed and "final vs equal time" in printed
    assert "Same training time: " in printed and (" won" in printed or "too close to call" in printed)
    assert "two standard errors on 20 validation images" in printed
    assert "Dynamic inference" in printed and str(out / "patches.png") in printed

    # the runs follow the output conventions; baseline and PSS differ only in the schedule
    summaries = {n: json.loads((out / n / "summary.json").read_text()) for n in ("baseline", "pss", "baseline_equal_time")}
    assert summaries["baseline"]["steps"] == 6 and summaries["baseline"]["mean_keep_ratio"] == 1.0
    assert summaries["pss"]["steps"] == 6 and summaries["pss"]["mean_keep_ratio"] < 0.8
    # the equal-time baseline: full tokens for PSS's cost (its budget, else its measured time ratio)
    eq = summaries["baseline_equal_time"]
    assert eq["mean_keep_ratio"] == 1.0 and eq["equal_time_of"] == "pss"
    budget = summaries["pss"]["budget"]
    ratio = budget["budget"] if budget else min(1.0, summaries["pss"]["train_time_s"] / summaries["baseline"]["train_time_s"])
    assert eq["epochs"] == max(1, int(2 * ratio + 0.5))
    train_pss = [json.loads(line) for line in (out / "pss" / "train_log.jsonl").read_text().splitlines()]
    rhos = [r["keep_ratio"] for r in train_pss]
    assert min(rhos) == 0.2 and len(set(rhos)) > 1  # cyclic, from 0.2 at each epoch start

    report = json.loads((out / "report" / "report.json").read_text())
    assert [r["run"] for r in report["runs"]] == ["baseline", "pss", "baseline_equal_time"]
    assert [r["role"] for r in report["runs"]] == ["full baseline", "pss", "equal-time baseline"]
    pss_row = report["runs"][1]
    assert pss_row["speedup_vs_first"] > 0
    assert pss_row["final_vs_equal_time"] == pytest.approx(pss_row["final_acc1"] - report["runs"][2]["final_acc1"])
    sweep = json.loads((out / "sweep" / "sweep.json").read_text())
    assert [c["name"] for c in sweep["checkpoints"]] == ["baseline", "pss", "baseline_equal_time"]
    assert [r["keep_ratio"] for r in sweep["checkpoints"][1]["results"]] == [1.0, 0.6, 0.2]
    assert all(r["num_images"] == 20 for c in sweep["checkpoints"] for r in c["results"])

    sizes = {
        out / "sweep" / "sweep.png": (500, 1200),
        out / "report" / "accuracy_vs_time.png": (500, 800),
        out / "report" / "epoch_step_time.png": (500, 1200),
        out / "report" / "train_loss.png": (500, 800),
        out / "patches.png": (int(100 * (4 * 2 + 0.5)), int(100 * (3 * 2 + 0.6))),  # 4 images x 3 keep ratios
        out / "schedules.png": (450, 900),
    }
    for path, size in sizes.items():
        img = mpimg.imread(path)
        assert img.shape[:2] == size, path
        assert img[..., :3].std() > 0.05, path

    # A stop names the next step; the same command again keeps finished runs and trains only the rest
    from pss.cli import _stopped

    assert "run the same pss demo command again to continue" in _stopped("pss demo")
    logs = {n: (out / n / "train_log.jsonl").read_text() for n in ("baseline", "pss")}
    (out / "baseline_equal_time" / "summary.json").unlink()  # as if stopped before its end
    assert main(argv) == 0
    assert {n: (out / n / "train_log.jsonl").read_text() for n in logs} == logs  # kept, not retrained
    again = json.loads((out / "baseline_equal_time" / "summary.json").read_text())
    assert again["epochs"] == eq["epochs"] and json.loads((out / "pss" / "summary.json").read_text()) == summaries["pss"]
    assert "| baseline_equal_time |" in capsys.readouterr().out  # the comparison is printed again
    # other settings into the same folder are refused before anything trains; --fresh starts over
    assert main([*argv, "--set", "seed=5"]) == 2
    assert "holds a run of other settings" in capsys.readouterr().err


def test_warm_up_builds_the_model_for_the_data_image_size():
    """64 px data with a recipe that leaves model.img_size to the data (before: a 32 px model, a crash)."""
    from pss.demo import warm_up
    from pss.config import config_from_dict

    cfg = config_from_dict({
        "model": {"name": "pss_vit_tiny_patch4_32", "kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2}},
        "data": {"img_size": 64, "builtin_num_train": 8, "builtin_num_val": 4, "builtin_num_classes": 3},
        "batch_size": 2, "device": "cpu",
    })
    warm_up(cfg, steps=1)
    assert cfg.model.img_size is None and cfg.model.num_classes is None  # the caller's config is untouched


def test_budget_line_reads_tokens_for_epochs_against_the_recipes_run():
    from pss.demo import budget_line

    plain = {"budget": 0.6, "parameter": "low", "value": 0.22, "predicted_cost": 0.5991, "schedule": {"name": "cyclic"}}
    assert budget_line(plain) == ("Budget 0.6 of the full run's FLOPs: pss set cyclic low = 0.22 "
                                  "(predicted cost 0.599 of the full run).")
    longer = {"budget": 0.4, "parameter": "rho", "value": 0.4453, "predicted_cost": 0.3941, "schedule": {"name": "fixed"},
              "reference": {"epochs": 10, "budget": 0.6, "budget_epochs": "auto", "epochs_factor": 1.5}}
    assert budget_line(longer) == ("Budget 0.6 of the full run's FLOPs, spent as 15 epochs instead of 10 at 0.4 of "
                                   "each: pss set fixed rho = 0.4453 (predicted cost 0.591 of the full run).")


def test_time_line_measures_against_the_actual_full_run_and_says_when_the_machine_was_shared():
    from pss.demo import time_line

    assert time_line({"time_vs_first": 1.17}, (0.4, 2)) == "Measured time: PSS took 1.170 of the full run's wall clock."
    shared = time_line({"time_vs_first": 1.17}, (3.2, 2))
    assert "The machine was shared (load average 3.2 on 2 cores)" in shared
    assert time_line({"time_vs_first": None}, None) == ""
