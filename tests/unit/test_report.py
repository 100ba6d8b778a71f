"""`pss report`: table and plots from synthetic run folders (the report reads logs only)."""
import json
import math

import matplotlib.image as mpimg
import pytest

from pss.analysis import report
from pss.cli import main
from pss.errors import DataError
from pss.schedule import from_dict

SPE, EPOCHS = 10, 3


def write_run(path, pss_on: bool, acc_offset: float = 0.0, summary: bool = True, torn: bool = False):
    """A run folder as `pss train` leaves it: step time proportional to 0.3 + 0.7 rho."""
    path.mkdir(parents=True)
    sched = from_dict({"name": "cyclic", "low": 0.2, "high": 1.0}) if pss_on else from_dict(1.0)
    train, val, t = [], [], 0.0
    for s in range(SPE * EPOCHS):
        rho = sched(s, SPE, SPE * EPOCHS)
        st = 0.1 * (0.3 + 0.7 * rho)
        t += st
        train.append(dict(epoch=s // SPE, step=s, loss=2.3 * math.exp(-s / 20), lr=1e-3, keep_ratio=rho,
                          num_tokens=1 + round(64 * rho), step_time_s=st, data_time_s=0.001))
        if (s + 1) % SPE == 0:
            val.append(dict(epoch=s // SPE, step=s + 1, acc1=40.0 + 10 * (s // SPE) + acc_offset, acc5=90.0,
                            loss=1.0, elapsed_s=t))
    lines = [json.dumps(r) for r in train]
    if torn:
        lines.append('{"epoch": 2, "step": 3')  # killed while writing
    (path / "train_log.jsonl").write_text("\n".join(lines) + "\n")
    (path / "val_log.jsonl").write_text("\n".join(json.dumps(r) for r in val) + "\n")
    (path / "config.yaml").write_text("epochs: 3\n")
    if summary:
        (path / "summary.json").write_text(json.dumps(dict(
            train_time_s=t, epochs=EPOCHS, steps=SPE * EPOCHS, best_acc1=max(v["acc1"] for v in val),
            final_acc1=val[-1]["acc1"], mean_keep_ratio=sum(r["keep_ratio"] for r in train) / len(train),
            images_per_s=SPE * EPOCHS * 32 / t, device="cpu")))
    return t


def test_report_table_and_plots(tmp_path, capsys):
    t0 = write_run(tmp_path / "baseline", pss_on=False)
    t1 = write_run(tmp_path / "pss", pss_on=True, acc_offset=-1.0, summary=False, torn=True)
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "baseline"), str(tmp_path / "pss"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| baseline |" in printed and "| pss |" in printed

    data = json.loads((out / "report.json").read_text())
    base, run = data["runs"]
    assert base["run"] == "baseline" and base["time_vs_first"] == pytest.approx(1.0)
    # the pss run has no summary.json: time comes from the last evaluation, best top-1 from the log
    assert run["train_time_s"] == pytest.approx(t1)
    assert run["time_vs_first"] == pytest.approx(t1 / t0)
    assert run["speedup_vs_first"] == pytest.approx(t0 / t1) and run["speedup_vs_first"] > 1.3
    assert run["best_acc1"] == pytest.approx(59.0) and run["best_acc1_diff"] == pytest.approx(-1.0)
    assert run["mean_keep_ratio"] == pytest.approx(0.6)
    # mean step time per keep ratio follows 0.1 * (0.3 + 0.7 rho)
    per_rho = data["step_time_by_keep_ratio_s"]["pss"]
    assert set(per_rho) == {"1.0", "0.8", "0.6", "0.4", "0.2"}
    for rho, st in per_rho.items():
        assert st == pytest.approx(0.1 * (0.3 + 0.7 * float(rho)))

    md = (out / "report.md").read_text()
    assert "| run | train time |" in md and "![train_loss](train_loss.png)" in md and "rho 0.2:" in md
    sizes = {"accuracy_vs_time.png": (500, 800), "epoch_step_time.png": (500, 1200), "train_loss.png": (500, 800)}
    for name, (h, w) in sizes.items():
        img = mpimg.imread(out / name)
        assert img.shape[:2] == (h, w)
        assert img[..., :3].std() > 0.05  # something is drawn, not a blank canvas


def test_report_names_and_bad_folder(tmp_path):
    write_run(tmp_path / "a", pss_on=False)
    rows = report.write_report([tmp_path / "a", tmp_path / "a"], tmp_path / "r", names=["x", "x"])["runs"]
    assert [r["run"] for r in rows] == ["x", "x (2)"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a training run"):
        report.load_run(tmp_path / "empty")
    assert main(["report", str(tmp_path / "missing"), "--output", str(tmp_path / "r2")]) == 2


def test_pick_epoch_typical_full_epoch(tmp_path):
    # epoch 0: warm-up; epoch 2: disturbed by another process; epoch 4: partial (killed)
    times = {0: 5.0, 1: 1.0, 2: 9.0, 3: 1.1, 4: 1.0}
    epochs = [0, 0, 1, 1, 2, 2, 3, 3, 4]
    log = [dict(epoch=e, step=i, step_time_s=times[e]) for i, e in enumerate(epochs)]
    assert report.pick_epoch(report.ReportedRun("r", tmp_path, train_log=log)) == 3  # median of 1.0, 1.1, 9.0 per step
    one = [dict(epoch=0, step=i, step_time_s=1.0) for i in range(3)]
    assert report.pick_epoch(report.ReportedRun("r", tmp_path, train_log=one)) == 0


def test_report_compares_with_full_and_equal_time_baselines(tmp_path, capsys):
    write_run(tmp_path / "pss", pss_on=True, acc_offset=-1.0)  # first given: still not the full baseline
    write_run(tmp_path / "base", pss_on=False)
    write_run(tmp_path / "eq", pss_on=False, acc_offset=-3.0)
    (tmp_path / "base" / "config.yaml").write_text("schedule: {name: fixed, rho: 1.0}\n")
    (tmp_path / "eq" / "config.yaml").write_text("schedule: {name: fixed, rho: 1.0}\nequal_time_of: pss\n")
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "pss"), str(tmp_path / "base"), str(tmp_path / "eq"), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "best vs equal time" in printed and "final vs full" in printed
    rows = {r["run"]: r for r in json.loads((out / "report.json").read_text())["runs"]}
    assert [rows[n]["role"] for n in ("pss", "base", "eq")] == ["pss", "full baseline", "equal-time baseline"]
    assert rows["pss"]["final_vs_full"] == pytest.approx(-1.0) and rows["pss"]["best_vs_full"] == pytest.approx(-1.0)
    assert rows["pss"]["final_vs_equal_time"] == pytest.approx(2.0)
    assert rows["eq"]["final_vs_full"] == pytest.approx(-3.0) and rows["eq"]["final_vs_equal_time"] is None
    assert rows["base"]["final_vs_full"] is None
    assert "equal-time baseline: `eq` (of pss)" in (out / "report.md").read_text()
    # without an equal-time run the columns are left out and the report says how to get one
    assert main(["report", str(tmp_path / "base"), str(tmp_path / "pss"), "-o", str(tmp_path / "r2")]) == 0
    assert "vs equal time" not in capsys.readouterr().out
    assert "no equal-time baseline given" in (tmp_path / "r2" / "report.md").read_text()


def test_malformed_logs_are_named_malformed_not_missing(tmp_path):
    write_run(tmp_path / "a", pss_on=False)
    log = tmp_path / "a" / "train_log.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "not json at all", *lines[1:]]) + "\n")
    with pytest.raises(DataError, match=r"train_log.jsonl' is malformed: line 2 is not JSON"):
        report.load_run(tmp_path / "a")
    log.write_text("garbage\n")
    with pytest.raises(DataError, match="is malformed"):
        report.load_run(tmp_path / "a")
    write_run(tmp_path / "b", pss_on=False)
    (tmp_path / "b" / "summary.json").write_text("{oops")
    with pytest.raises(DataError, match=r"summary.json' is malformed"):
        report.load_run(tmp_path / "b")


def test_report_shows_the_recipes_budget_and_marks_unfinished_runs(tmp_path, capsys):
    write_run(tmp_path / "base", pss_on=False)
    write_run(tmp_path / "pss", pss_on=True)
    write_run(tmp_path / "eq", pss_on=False, acc_offset=-3.0, summary=False)
    (tmp_path / "base" / "config.yaml").write_text("epochs: 3\nschedule: {name: fixed, rho: 1.0}\n")
    (tmp_path / "eq" / "config.yaml").write_text("epochs: 6\nschedule: {name: fixed, rho: 1.0}\nequal_time_of: pss\n")
    reference = {"epochs": 2, "budget": 0.6, "budget_epochs": 1.5, "epochs_factor": 1.5}
    summary = json.loads((tmp_path / "pss" / "summary.json").read_text())
    summary["budget"] = {"budget": 0.4, "predicted_cost": 0.387, "realised_cost": 0.386, "reference": reference}
    (tmp_path / "pss" / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "report"
    assert main(["report", *(str(tmp_path / n) for n in ("base", "pss", "eq")), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = {r["run"]: r for r in json.loads((out / "report.json").read_text())["runs"]}
    # tokens for epochs: the recipe's 0.6 and the realised cost against the full run, not the per-run 0.4
    assert rows["pss"]["budget"] == 0.6 and rows["pss"]["cost_vs_full"] == pytest.approx(0.579)
    assert "budget (cost vs full run)" in printed and "| 0.6 (0.579) |" in printed
    # the equal-time run stopped at 3 of its 6 epochs: marked, and so is every difference against it
    assert rows["eq"]["finished"] is False and rows["eq"]["progress"] == "3 of 6 epochs"
    assert rows["pss"]["unfinished_references"] == ["equal_time"] and rows["base"]["finished"] is True
    assert "| eq (unfinished: 3 of 6 epochs) |" in printed
    pss_line = next(line for line in printed.splitlines() if line.startswith("| pss |"))
    assert "+3.00 *" in pss_line and "did not finish" in printed


def test_the_run_folder_reads_its_logs_with_one_policy_for_a_cut_short_line(tmp_path):
    """`RunDir` reads what a run folder holds; a torn last line (a kill mid-write) is skipped by every reader
    (reports and a resume alike), a corrupt line elsewhere is refused, never dropped silently."""
    from pss.runfolder import RunDir
    from pss.runwriter import RunWriter

    folder = RunDir(tmp_path / "run")
    assert folder.read_train_log() == [] and folder.read_summary() == {} and folder.read_config() == {}
    assert not folder.is_finished() and folder.read_study_settings() is None
    folder.path.mkdir()
    rows = [{"epoch": 0, "step": s, "loss": 1.0 / (s + 1)} for s in range(4)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    folder.train_log.write_text(text + '{"epoch": 0, "st')  # killed while writing step 4
    assert folder.read_train_log() == rows
    folder.val_log.write_text(json.dumps({"step": 2, "acc1": 1.0}) + "\n" + json.dumps({"step": 2, "acc1": 2.0}) + "\n")
    assert folder.read_val_log() == [{"step": 2, "acc1": 2.0}]  # a step logged twice: read once, as last written
    RunWriter(folder.path).truncate(3)  # a resume from step 3: the torn line goes with the steps past it
    assert folder.train_log.read_text() == "".join(json.dumps(r) + "\n" for r in rows[:3])
    folder.train_log.write_text(text.replace(json.dumps(rows[1]), '{"epoch": 0, "st'))
    for read in (folder.read_train_log, lambda: RunWriter(folder.path).truncate(3)):
        with pytest.raises(DataError, match=r"train_log.jsonl' is malformed: line 2 is not JSON .*remove the line"):
            read()
    folder.summary.write_text(json.dumps({"final_acc1": 50.0}))
    folder.config.write_text("epochs: 3\n")
    assert folder.read_summary() == {"final_acc1": 50.0} and folder.read_config() == {"epochs": 3}
    settings = {"recipe": "demo", "overrides": ["seed=0"], "data": None}
    assert folder.is_finished() and not folder.is_finished(settings)  # no study planned it
    folder.write_study_settings(settings)
    assert folder.read_study_settings() == settings and folder.is_finished(settings)
    assert not folder.is_finished({**settings, "overrides": ["seed=1"]})
