"""benchmarks/gpu_proof.py on the CPU at tiny sizes: every stage runs, the record resumes, one table last."""
import json
import sys

from conftest import ROOT


def test_gpu_proof_smoke_runs_every_stage_and_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_proof

    args = ["--device", "cpu", "--smoke", "--output", str(tmp_path / "runs"), "--results", str(tmp_path / "res")]
    assert gpu_proof.main(args) == 0
    (path,) = (tmp_path / "res").glob("gpu_proof_cpu_smoke.json")
    rec = json.loads(path.read_text())
    assert rec["device"].startswith("cpu") and rec["torch"] and rec["commit"] is not None
    assert list(rec["stages"]) == list(gpu_proof.STAGES)
    speed = [u["result"] for s in ("speed_vit_s", "speed_vit_b", "speed_more") for u in rec["stages"][s]["units"]]
    assert len(speed) == 4
    assert "FlexAttention" in speed[0]["skipped"]  # no flex backward on the CPU: recorded, the rest runs
    assert [r["keep_ratio"] for r in speed[1]["results"]] == [1.0, 0.6, 0.2]
    data = rec["stages"]["data"]["units"]
    assert [r["loader"] for u in data for r in u["result"]["results"]] == ["0 workers", "1 workers", "in memory"]
    runs = [u["result"] for u in rec["stages"]["cifar10"]["units"]]
    assert [r["run"] for r in runs] == ["baseline", "pss", "baseline_equal_time"]
    assert runs[1]["mean_keep_ratio"] < 1 and runs[1]["preflight"]["time_ratio"] > 0
    out = capsys.readouterr().out
    table = out[out.rindex("# GPU proof"):]  # the one table, printed last
    # the recommended recipe spends 1 epoch's budget as tokens for epochs: 2 epochs (1.5 rounded half up)
    assert "## Short CIFAR-10 comparison" in table and "| pss | 2 |" in table and "| baseline | 1 |" in table
    assert path.with_suffix(".md").read_text().startswith("# GPU proof: cpu")

    # the same command again: every unit is read back, nothing trains or is timed again
    assert gpu_proof.main(args) == 0
    again = json.loads(path.read_text())
    assert {s: len(v["units"]) for s, v in again["stages"].items()} == {s: len(v["units"]) for s, v in rec["stages"].items()}
    assert again["stages"]["speed_vit_b"]["units"] == rec["stages"]["speed_vit_b"]["units"]
    sys.modules.pop("gpu_proof", None)
