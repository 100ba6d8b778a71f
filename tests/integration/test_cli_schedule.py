"""`pss schedule`: values printed, exit codes, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import pss.cli
from pss.cli import main


@pytest.fixture(autouse=True)
def only_schedule_command(monkeypatch):
    # Build the parser with this sub-command alone, so a sibling command's import problem cannot
    # fail these tests; the subprocess test below goes through the full CLI.
    monkeypatch.setattr(pss.cli, "COMMANDS", ["schedule"])


def run_json(capsys, *argv: str) -> list[dict]:
    assert main(["schedule", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_cyclic_reference(capsys):
    rows = run_json(capsys, "cyclic", "--low", "0.2", "--high", "1.1", "--epochs", "2", "--steps-per-epoch", "10")
    assert [r["keep_ratio"] for r in rows] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 0.8, 0.6, 0.4] * 2
    assert [r["step"] for r in rows] == list(range(20))
    assert [r["epoch"] for r in rows] == [0] * 10 + [1] * 10  # integer epoch index


def test_json_linear_grid_off_with_warmup_cooldown(capsys):
    rows = run_json(capsys, "linear", "--start", "0.2", "--end", "1.0", "--epochs", "3", "--steps-per-epoch", "3",
                    "--grid", "none", "--warmup-epochs", "1", "--cooldown-epochs", "1")
    assert [r["keep_ratio"] for r in rows] == [1.0, 1.0, 1.0, 0.2, 0.6, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("off", ["0", "none", "off"])
def test_grid_off_spellings(capsys, off):
    rows = run_json(capsys, "cosine", "--start", "0.2", "--end", "1", "--epochs", "1", "--steps-per-epoch", "5",
                    "--grid", off)
    assert [r["keep_ratio"] for r in rows] == [0.2, 0.317157, 0.6, 0.882843, 1.0]


def test_json_fixed_and_grid(capsys):
    rows = run_json(capsys, "fixed", "--rho", "0.5", "--epochs", "1", "--steps-per-epoch", "2")
    assert [r["keep_ratio"] for r in rows] == [0.5, 0.5]  # fixed: grid off by default
    rows = run_json(capsys, "fixed", "--rho", "0.5", "--epochs", "1", "--steps-per-epoch", "2", "--grid", "0.25")
    assert [r["keep_ratio"] for r in rows] == [0.5, 0.5]
    rows = run_json(capsys, "fixed", "--rho", "0.5", "--epochs", "1", "--steps-per-epoch", "2", "--grid", "0.2")
    assert [r["keep_ratio"] for r in rows] == [0.6, 0.6]


def test_period_and_fractional_epochs(capsys):
    rows = run_json(capsys, "cyclic", "--epochs", "1.5", "--steps-per-epoch", "4", "--period-epochs", "0.5",
                    "--grid", "0")
    assert [r["keep_ratio"] for r in rows] == [0.2, 1.0] * 3
    assert [r["epoch"] for r in rows] == [0, 0, 0, 0, 1, 1]


def test_summary(capsys):
    assert main(["schedule", "cyclic", "--low", "0.2", "--high", "1.1", "--epochs", "3", "--steps-per-epoch", "10"]) == 0
    out = capsys.readouterr().out
    assert "schedule: cyclic(low=0.2, high=1.1, period_epochs=1.0" in out
    assert "steps: 30 (3 epochs x 10 steps/epoch)" in out
    assert "mean keep ratio: 0.6800" in out
    lines = out.splitlines()
    counts = {ln.split()[0]: int(ln.split()[1]) for ln in lines if ln.strip().endswith("%")}
    assert counts == {"0.2": 3, "0.4": 6, "0.6": 6, "0.8": 6, "1.0": 9}
    # Identical epochs collapse into one line with the per-step values.
    assert any(ln.strip().startswith("epochs 1-3") and "[0.2 0.4 0.6 0.8 1.0 1.0 1.0 0.8 0.6 0.4]" in ln
               for ln in lines)


def test_summary_long_run_stays_short(capsys):
    argv = ["schedule", "cyclic", "--epochs", "300", "--steps-per-epoch", "50", "--warmup-epochs", "5"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) < 20
    assert any(ln.strip().startswith("epochs 1-5") and "min 1.0" in ln for ln in lines)
    assert any(ln.strip().startswith("epochs 6-300") for ln in lines)  # counted from 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fixed", "--rho", "1.5"], "fixed rho must be a keep ratio in (0, 1], got 1.5"),
        (["fixed", "--rho", "0"], "fixed rho must be a keep ratio in (0, 1], got 0.0"),
        (["cyclic", "--low", "0.8", "--high", "0.4"], "must be <= high"),
        (["cyclic", "--warmup-epochs", "-1"], "warmup_epochs must be >= 0"),
        (["cyclic", "--grid", "1.5"], "grid must be in (0, 1]"),
        (["linear", "--start", "0.2", "--end", "3"], "linear end must be a keep ratio in (0, 2]"),
        (["cyclic", "--warmup-epochs", "2"], "leave no steps for the cyclic schedule"),
    ],
)
def test_bad_values_exit_with_one_line(capsys, argv, message):
    argv = ["schedule", *argv]
    if "--epochs" not in argv:
        argv += ["--epochs", "2", "--steps-per-epoch", "5"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("pss schedule: error: ") and message in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cyclic", "--epochs", "-1", "--steps-per-epoch", "5"], "--epochs must be a number of epochs > 0"),
        (["cyclic", "--epochs", "1", "--steps-per-epoch", "0"], "--steps-per-epoch must be an integer from 1"),
    ],
)
def test_bad_run_length(capsys, argv, message):
    assert main(["schedule", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["triangle", "--epochs", "1", "--steps-per-epoch", "5"],  # unknown schedule name
        ["linear", "--start", "0.2", "--epochs", "1", "--steps-per-epoch", "5"],  # missing --end
        ["cyclic", "--grid", "fine", "--epochs", "1", "--steps-per-epoch", "5"],  # not a number
        ["cyclic", "--epochs", "1"],  # missing --steps-per-epoch
    ],
)
def test_argparse_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(["schedule", *argv])
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_subprocess_entry_point():
    # One real process (importing torch costs seconds): `python -m pss` is the installed `pss` script's
    # entry point, with the full command list. Error paths are covered in-process above.
    cmd = [sys.executable, "-m", "pss", "schedule", "cyclic", "--low", "0.2", "--high", "1.1",
           "--epochs", "1", "--steps-per-epoch", "10", "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert [r["keep_ratio"] for r in json.loads(res.stdout)] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 0.8, 0.6, 0.4]


def test_output_cut_short_by_its_reader_stops_quietly():
    # `pss schedule ... --json | head -1`: the reader closes the pipe after one line; no traceback
    cmd = [sys.executable, "-m", "pss", "schedule", "fixed", "--rho", "0.5", "--epochs", "200",
           "--steps-per-epoch", "100", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"[\n"
    proc.stdout.close()  # the reader goes away with 20,000 lines still to write
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_spec_syntax_matches_the_flags(capsys):
    flags = ["schedule", "cyclic", "--low", "0.4", "--high", "1.0", "--cooldown-epochs", "1", "--epochs", "3",
             "--steps-per-epoch", "5", "--json"]
    assert main(flags) == 0
    by_flags = json.loads(capsys.readouterr().out)
    assert main(["schedule", "spec", "cyclic:low=0.4,high=1.0,cooldown_epochs=1", "--epochs", "3",
                 "--steps-per-epoch", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == by_flags and by_flags[-1]["keep_ratio"] == 1.0
    assert main(["schedule", "spec", "0.6", "--epochs", "1", "--steps-per-epoch", "2", "--json"]) == 0
    assert [r["keep_ratio"] for r in json.loads(capsys.readouterr().out)] == [0.6, 0.6]
    assert main(["schedule", "spec", "triangle:low=1", "--epochs", "1", "--steps-per-epoch", "2"]) == 2
    assert "unknown schedule 'triangle'" in capsys.readouterr().err
