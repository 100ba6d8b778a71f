"""Reliability tier: what a run does when things go wrong, and the promises README's "Guarantees" lists.

Nothing lost, nothing silent: a diverging update is never checkpointed, two runs never share a
folder, a signal or a full disk during a checkpoint write leaves the previous checkpoint and a
one-line message, unwritable outputs fail before any work, and files from elsewhere never run code.
Runs are the tiny recipe of test_train (8 steps per epoch here); child processes only where a
signal, a kill or a mount needs one.
"""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from pss.checkpoint import load_checkpoint
from pss.cli import main
from pss.outputs import LOCK_NAME, hold_run_folder
from conftest import ROOT, pss_train, read_jsonl, write_recipe

SRC = str(ROOT / "src")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
EIGHT_STEPS = dict(batch_size=8, log_interval=1)  # 8 steps per epoch, 2 epochs

# A child's torch.save writes slowly (the file object sleeps in every write), so a signal or a
# kill lands inside torch's C++ writer, as it does for a large checkpoint.
SLOW_SAVE = (
    "import time, torch\n"
    "_save = torch.save\n"
    "class _Slow:\n"
    "    def __init__(self, f): self.f = f\n"
    "    def write(self, b): time.sleep(0.005); return self.f.write(b)\n"
    "    def flush(self): return self.f.flush()\n"
    "torch.save = lambda obj, f, *a, **k: _save(obj, _Slow(f), *a, **k)\n"
)
# A child whose training steps wait until a gate file exists, so that it is surely alive (and
# holding its run folder) while another process starts, however slow the machine is.
def gated_steps(gate: Path) -> str:
    return (
        "import os, time\n"
        "from pss.tasks import classification\n"
        "_loss = classification.ClassificationTask.loss\n"
        "def _gated(self, m, b):\n"
        f"    t = time.time()\n"
        f"    while not os.path.exists({str(gate)!r}) and time.time() - t < 300: time.sleep(0.05)\n"
        "    return _loss(self, m, b)\n"
        "classification.ClassificationTask.loss = _gated\n"
    )


def child(argv: list[str], preamble: str = "") -> subprocess.Popen:
    code = f"{preamble}import sys\nfrom pss.cli import main\nsys.exit(main({argv!r}))\n"
    return subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(cond, proc: subprocess.Popen | None = None, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"child ended early: {proc.stderr.read().decode()[-2000:]}")
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def mid_write(run: Path) -> bool:
    return any(p.stat().st_size > 0 for p in run.glob(".checkpoint-last.pt.*.tmp"))


def one_line(err: str, command: str = "train") -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"pss {command}: "), err
    return err


def all_finite(sd: dict) -> bool:
    return all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


def lock_is_free(folder: Path) -> bool:
    with hold_run_folder(folder):
        return True


def can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not can_mount_tmpfs(), reason="needs `unshare -rm` to mount a tmpfs")


# ----------------------------------------------------------------------------- NaN: last good checkpoint


def test_update_that_diverges_is_never_saved_and_resume_with_lower_lr_works(tmp_path, monkeypatch, capsys):
    """The 4th update turns weights into NaN while its loss is finite (a NaN gradient): the step-4
    checkpoint is refused, step 2 stays, the message names it, and resuming with a lower LR runs."""
    from pss.tasks import classification

    real, calls = classification.ClassificationTask.loss, {"n": 0}

    def nan_gradient_at_step_3(self, model, batch):
        calls["n"] += 1
        loss, m = real(self, model, batch)
        if calls["n"] == 4:
            p = next(model.parameters())
            # value: the loss (finite); gradient: NaN through the branch not taken
            loss = torch.where(torch.tensor(True), loss, (-(p.abs().sum()) - 1).sqrt())
        return loss, m

    monkeypatch.setattr(classification.ClassificationTask, "loss", nan_gradient_at_step_3)
    recipe = write_recipe(tmp_path, **EIGHT_STEPS, checkpoint_interval_steps=2)
    run = tmp_path / "run"
    assert pss_train("--config", recipe, "--output", run) == 2
    err = one_line(capsys.readouterr().err)
    assert "NaN or inf after step 4" in err and "holds step 2, the last finite one" in err and "--resume" in err
    last = load_checkpoint(run / "checkpoint-last.pt")
    assert last["progress"]["step"] == 2 and all_finite(last["model"]) and all_finite(last["ema"] or {})
    assert all(r["loss"] == r["loss"] for r in read_jsonl(run / "train_log.jsonl"))  # the losses were finite
    assert lock_is_free(run)  # released on the error

    monkeypatch.setattr(classification.ClassificationTask, "loss", real)
    assert pss_train("--output", run, "--resume", "--set", "optim.lr=1e-4") == 0
    log = read_jsonl(run / "train_log.jsonl")
    assert [r["step"] for r in log] == list(range(16))
    # The resumed steps follow the same schedule at a tenth of the peak (1e-3 -> 1e-4).
    fresh = tmp_path / "fresh"
    assert pss_train("--config", recipe, "--output", fresh, "--set", "optim.lr=1e-4", "--set", "epochs=2") == 0
    ref = read_jsonl(fresh / "train_log.jsonl")
    assert [r["lr"] for r in log[2:]] == pytest.approx([r["lr"] for r in ref[2:]], rel=1e-9)
    assert all_finite(load_checkpoint(run / "checkpoint-last.pt")["model"])


# ----------------------------------------------------------------------------- run lock


def test_a_held_run_folder_is_refused_until_its_holder_dies(tmp_path, capsys):
    """Another process holds the folder (a live `pss train`): a second run and a --resume stop at once,
    naming the holder, and touch nothing; once the holder is SIGKILLed the folder is free again."""
    recipe = write_recipe(tmp_path, **EIGHT_STEPS, epochs=1)
    run = tmp_path / "run"
    assert pss_train("--config", recipe, "--output", run, "--set", "checkpoint_interval_steps=4") == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.name != LOCK_NAME}

    holder = subprocess.Popen(
        [sys.executable, "-c", f"import time\nfrom pss.outputs import hold_run_folder\n"
         f"with hold_run_folder({str(run)!r}):\n    print('held', flush=True)\n    time.sleep(600)\n"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        for args in (("--config", recipe, "--output", run, "--overwrite"), ("--output", run, "--resume")):
            assert pss_train(*args) == 2
            err = one_line(capsys.readouterr().err)
            assert f"is in use by pid {holder.pid}" in err and "choose another --output" in err
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.name != LOCK_NAME} == before
    finally:
        holder.kill()
        holder.wait()
    assert lock_is_free(run)  # the kernel dropped the lock with the process: never stale


def test_two_concurrent_runs_into_one_folder(tmp_path):
    """Two `pss train` into one --output, the second started while the first runs (its steps wait for
    a gate): the second exits with the holder's pid, the first finishes with one log line per step."""
    recipe = write_recipe(tmp_path, **EIGHT_STEPS, epochs=1)
    run = tmp_path / "run"
    gate = tmp_path / "go"
    first = child(["train", "--quiet", "--config", str(recipe), "--output", str(run)], gated_steps(gate))
    try:
        wait_for(lambda: (run / LOCK_NAME).is_file() and str(first.pid).encode() in (run / LOCK_NAME).read_bytes(),
                 first)
        second = subprocess.run([sys.executable, "-m", "pss", "train", "--quiet", "--config", str(recipe),
                                 "--output", str(run)], env=ENV, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        assert f"in use by pid {first.pid}" in one_line(second.stderr)
        gate.touch()
        assert first.wait(timeout=300) == 0, first.stderr.read().decode()[-2000:]
    finally:
        first.kill()
        first.wait()
    assert [r["step"] for r in read_jsonl(run / "train_log.jsonl")] == list(range(8))


# ----------------------------------------------------------------------------- signals and kills mid-write


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_checkpoint_write_finishes_the_write_then_stops(tmp_path, sig):
    recipe = write_recipe(tmp_path, **EIGHT_STEPS, checkpoint_interval_steps=1)
    run = tmp_path / "run"
    proc = child(["train", "--quiet", "--config", str(recipe), "--output", str(run)], SLOW_SAVE)
    try:
        wait_for(lambda: mid_write(run), proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err.decode()
    last = err.decode().strip().splitlines()[-1]
    assert last == "pss train: interrupted; continue from the last checkpoint with --resume", err.decode()
    assert "Traceback" not in err.decode()
    assert load_checkpoint(run / "checkpoint-last.pt")["progress"]["step"] == 1  # the write completed
    assert not list(run.glob(".*.tmp"))


def test_sigkill_mid_checkpoint_write_then_resume(tmp_path):
    recipe = write_recipe(tmp_path, **EIGHT_STEPS, checkpoint_interval_steps=3)
    run = tmp_path / "run"
    proc = child(["train", "--quiet", "--config", str(recipe), "--output", str(run)], SLOW_SAVE)
    try:  # the second checkpoint (step 6) is being written; step 3's must survive
        wait_for(lambda: (run / "checkpoint-last.pt").exists() and mid_write(run), proc)
    finally:
        proc.kill()
        proc.wait()
    assert load_checkpoint(run / "checkpoint-last.pt")["progress"]["step"] == 3
    assert pss_train("--output", run, "--resume") == 0
    assert [r["step"] for r in read_jsonl(run / "train_log.jsonl")] == list(range(16))
    assert not list(run.glob(".*.tmp"))


# ----------------------------------------------------------------------------- disk full


def test_disk_full_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    """A writer that runs out of space on the second checkpoint (as a full disk does)."""
    real, calls = torch.save, {"n": 0}

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            self.f.flush()

    def save(obj, f, *a, **k):
        calls["n"] += 1
        return real(obj, f if calls["n"] == 1 else Full(f), *a, **k)

    monkeypatch.setattr(torch, "save", save)
    recipe = write_recipe(tmp_path, **EIGHT_STEPS, checkpoint_interval_steps=2)
    run = tmp_path / "run"
    assert pss_train("--config", recipe, "--output", run) == 2
    err = one_line(capsys.readouterr().err)
    assert f"no space left on device in {str(run)!r}" in err and "KB free for checkpoint-last.pt" in err
    assert "KB for all the checkpoint files a run keeps" in err  # once it named only part of what they need
    monkeypatch.setattr(torch, "save", real)
    assert load_checkpoint(run / "checkpoint-last.pt")["progress"]["step"] == 2
    assert not list(run.glob(".*.tmp"))


@needs_mount
def test_disk_full_on_a_small_tmpfs(tmp_path):
    """A real full disk: a 600 KB tmpfs holds one checkpoint (~390 KB) but not a second beside it."""
    recipe = write_recipe(tmp_path, **EIGHT_STEPS, checkpoint_interval_steps=1)
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    script = ('mount -t tmpfs -o size=600k tmpfs "$1" || exit 99; '
              '"$2" -m pss train --quiet --config "$3" --output "$1/run"; rc=$?; cp -a "$1/run" "$4"; exit $rc')
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(mnt), sys.executable, str(recipe), str(out)],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    err = one_line(res.stderr.splitlines()[-1] + "\n")
    assert "no space left on device" in err and "free for checkpoint-last.pt" in err
    assert load_checkpoint(out / "checkpoint-last.pt")["progress"]["step"] == 1
    assert not list(out.glob(".*.tmp"))


# ----------------------------------------------------------------------------- unwritable outputs


def test_unwritable_outputs_fail_first_in_one_line(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    recipe = write_recipe(tmp_path, **EIGHT_STEPS)
    cases = [
        (["train", "--config", str(recipe), "--output", "/proc/pss-run"], "no folder can be created there"),
        (["train", "--config", str(recipe), "--output", str(a_file / "run")], "is a file, not a folder"),
        (["pretrain", "--set", "mim.mask_patch_size=8", "--output", str(a_file / "run")], "is a file, not a folder"),
        (["sweep", str(tmp_path / "none.pt"), "--output", str(a_file)], "is a file, not a folder"),
        (["report", str(tmp_path), "--output", str(a_file)], "is a file, not a folder"),
        (["viz", "schedule", "0.5", "--output", str(a_file / "s.png")], "is a file, not a folder"),
        (["viz", "patches", str(tmp_path / "none.pt"), "--images", str(tmp_path), "--output", "/proc/x/p.png"],
         "cannot write to --output"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = one_line(capsys.readouterr().err, argv[0])
        assert words in err, (argv, err)
    assert a_file.read_text() == "x" and not (tmp_path / "run").exists()


@needs_mount
def test_read_only_file_system(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = ('mount -t tmpfs -o ro,size=64k tmpfs "$1" || exit 99; '
              '"$2" -m pss train --quiet --output "$1/run"; echo "rc=$?" >&2; '
              '"$2" -m pss pretrain --quiet --set mim.mask_patch_size=8 --output "$1/run"; echo "rc=$?" >&2')
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(mnt), sys.executable],
                         env=ENV, capture_output=True, text=True, timeout=300)
    lines = res.stderr.splitlines()
    assert lines[-3:-2] == ["rc=2"] and lines[-1:] == ["rc=2"], res.stderr
    for command, line in (("train", lines[-4]), ("pretrain", lines[-2])):
        assert "the file system is read-only" in one_line(line + "\n", command)


# ----------------------------------------------------------------------------- hostile and corrupt inputs


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickles_never_run(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "checkpoint-last.pt"
    torch.save({"format": "pss-checkpoint", "model": {}, "optimizer": {}, "x": _Evil(marker)}, evil)
    recipe = write_recipe(tmp_path, **EIGHT_STEPS)
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 32)).save(images / "a.png")
    for argv in (["train", "--config", str(recipe), "--init", str(evil), "--output", str(tmp_path / "r1")],
                 ["train", "--resume", str(evil), "--output", str(tmp_path / "r2")],
                 ["sweep", str(evil), "--output", str(tmp_path / "s")],
                 ["viz", "patches", str(evil), "--images", str(images), "--output", str(tmp_path / "p.png")]):
        assert main(argv) == 2, argv
        assert "weights-only" in one_line(capsys.readouterr().err, argv[0])
    assert not marker.exists()


def test_truncated_and_garbage_checkpoints(tmp_path, capsys):
    recipe = write_recipe(tmp_path, **EIGHT_STEPS, epochs=1)
    run = tmp_path / "run"
    assert pss_train("--config", recipe, "--output", run) == 0
    data = (run / "checkpoint-last.pt").read_bytes()
    for name, content in (("cut.pt", data[: len(data) // 2]), ("junk.pt", os.urandom(4096)), ("empty.pt", b"")):
        (tmp_path / name).write_bytes(content)
        assert pss_train("--output", tmp_path / "r", "--resume", tmp_path / name) == 2
        err = one_line(capsys.readouterr().err)  # refused as corrupt, or as a (legacy) pickle it will not run
        assert "not a readable checkpoint" in err or "weights-only loading refuses" in err, err


# ----------------------------------------------------------------------------- round two: resume, advice, signals


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """(recipe, run folder) of a finished 1-epoch run of 8 steps; tests work on copies."""
    base = tmp_path_factory.mktemp("finished")
    recipe = write_recipe(base, **EIGHT_STEPS, epochs=1, select="random")
    assert pss_train("--config", recipe, "--output", base / "run") == 0
    return recipe, base / "run"


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns(LOCK_NAME))
    return dest


def test_extending_a_run_rebuilds_the_lr_schedule(finished_run, tmp_path):
    """A finished 1-epoch cosine run resumed with more epochs (and then also a new LR) once stayed at the
    schedule's floor (lr 1e-5) for every further step: each resumed step now has the LR of a run started
    with the new settings."""
    recipe, done = finished_run
    run = _copy(done, tmp_path / "run")
    for epochs, lr in ((2, 1e-3), (3, 3e-3)):
        extra = ["--set", f"optim.lr={lr}"] if lr != 1e-3 else []
        assert pss_train("--output", run, "--resume", "--set", f"epochs={epochs}", *extra) == 0
        fresh = tmp_path / f"fresh{epochs}"
        assert pss_train("--config", recipe, "--output", fresh, "--set", f"epochs={epochs}", *extra) == 0
        log, ref = read_jsonl(run / "train_log.jsonl"), read_jsonl(fresh / "train_log.jsonl")
        assert [r["step"] for r in log] == list(range(8 * epochs))
        done_steps = 8 * (epochs - 1)
        assert [r["lr"] for r in log[done_steps:]] == pytest.approx([r["lr"] for r in ref[done_steps:]], rel=1e-9)
        assert max(r["lr"] for r in log[done_steps:]) > 10 * min(r["lr"] for r in log[: done_steps])


def test_a_resume_names_junk_in_its_logs_and_reads_past_a_torn_last_line(finished_run, tmp_path, capsys):
    """Binary junk in val_log.jsonl made --resume a UnicodeDecodeError. A damaged log is now read as every
    reader reads it (pss.runfolder.read_jsonl): corruption is refused in one line naming the file, the line
    and the fix, before anything is written; a last line cut short by a kill is skipped."""
    _, done = finished_run
    run = _copy(done, tmp_path / "run")
    good = (run / "val_log.jsonl").read_bytes()
    files = lambda: {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != LOCK_NAME}  # noqa: E731
    before = files()
    with (run / "val_log.jsonl").open("ab") as f:
        f.write(b"\xff\xfe\x00junk\n[1, 2]\n{\"no_step\": 1}\n")
    assert pss_train("--output", run, "--resume", "--set", "epochs=2") == 2
    err = one_line(capsys.readouterr().err)
    assert "val_log.jsonl' is malformed: line 2 is not JSON" in err and "remove the line" in err
    assert files() == {**before, "val_log.jsonl": good + b"\xff\xfe\x00junk\n[1, 2]\n{\"no_step\": 1}\n"}  # nothing written
    (run / "val_log.jsonl").write_bytes(good + b'{"epoch": 1, "st')  # torn by a kill: skipped, then cut away
    assert pss_train("--output", run, "--resume", "--set", "epochs=2") == 0
    assert [r["step"] for r in read_jsonl(run / "val_log.jsonl")] == [8, 16]


def test_resuming_a_budget_run_with_the_same_command_reports_no_change(tmp_path, caplog):
    """The solved schedule parameter (cyclic low) differs from the recipe's by design: not a change."""
    recipe = write_recipe(tmp_path, **EIGHT_STEPS, epochs=1, budget=0.7)
    run = tmp_path / "run"
    assert pss_train("--config", recipe, "--output", run) == 0
    caplog.clear()
    assert pss_train("--config", recipe, "--output", run, "--resume") == 0
    assert "differ from the checkpoint's" not in caplog.text
    assert pss_train("--config", recipe, "--output", run, "--resume", "--set", "budget=0.8") == 0
    assert "differ from the checkpoint's: budget, schedule.low" in caplog.text


def test_a_run_stopped_before_its_first_checkpoint_gets_one_advice(tmp_path, capsys):
    """SIGINT before the first checkpoint: the run said --resume, --resume said start without it, starting
    without it said --resume or --overwrite. Now every message says the same: start again with --overwrite."""
    recipe = write_recipe(tmp_path, **EIGHT_STEPS, epochs=1)
    run = tmp_path / "run"
    advice = "it stopped before writing a checkpoint: start it again with --overwrite"
    first = child(["train", "--quiet", "--config", str(recipe), "--output", str(run)], gated_steps(tmp_path / "never"))
    try:
        wait_for(lambda: (run / "train_log.jsonl").exists() or (run / "config.yaml").exists(), first)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 130
    assert err.decode().strip().splitlines()[-1] == f"pss train: interrupted; {advice}"
    for args in (("--output", run, "--resume"), ("--config", recipe, "--output", run)):
        assert pss_train(*args) == 2
        assert advice in one_line(capsys.readouterr().err)
    # a folder holding only the lock (any run that failed before training leaves one) is no run
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / LOCK_NAME).write_text("")
    assert pss_train("--output", empty, "--resume") == 2
    assert "does not exist; start the run without --resume" in one_line(capsys.readouterr().err)


# A command whose main thread is inside one long C call (as in a large model's backward pass): libc's
# sleep, with the signals blocked in that thread so that no EINTR ends the call early; 'busy' is printed
# once the main thread is surely inside it.
STUCK_BENCH = (
    "import ctypes, signal, threading\n"
    "import pss.bench\n"
    "def _stuck(*a, **k):\n"
    "    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})\n"
    "    threading.Timer(0.5, lambda: print('busy', flush=True)).start()\n"
    "    ctypes.CDLL(None).sleep(60)\n"
    "pss.bench.speed_benchmark = _stuck\n"
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_command_stuck_in_a_long_call_stops_promptly_on_a_signal(tmp_path, sig):
    """`pss bench speed` ignored SIGTERM for more than 5 s (a training step of a large model on a CPU)."""
    from pss.interrupt import GRACE_S

    out = tmp_path / "new" / "speed.json"
    proc = child(["bench", "speed", "--model", "pss_vit_tiny_patch4_32", "--output", str(out)], STUCK_BENCH)
    try:
        assert proc.stdout.readline().strip() == b"busy"
        t = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=GRACE_S + 20)
        elapsed = time.monotonic() - t
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and elapsed < GRACE_S + 3, (proc.returncode, elapsed, err.decode())
    assert err.decode().strip().splitlines()[-1] == "pss bench: interrupted"
    assert out.parent.is_dir() and not out.exists()  # the folder was made first; no file half-written


def test_output_folders_are_made_before_the_work(tmp_path, monkeypatch, capsys):
    """`viz schedule -o newdir/x.png`, `viz patches --output newdir/`: FileNotFoundError after the work;
    `bench speed -o afile/x.json`: FileExistsError after the benchmark."""
    import pss.commands.bench

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    monkeypatch.setattr(pss.commands.bench, "speed_benchmark", lambda *a, **k: pytest.fail("benchmark ran"))
    assert main(["bench", "speed", "--model", "pss_vit_tiny_patch4_32", "-o", str(a_file / "x.json")]) == 2
    assert "is a file, not a folder" in one_line(capsys.readouterr().err, "bench")
    assert main(["viz", "schedule", "0.5", "--epochs", "1", "--steps-per-epoch", "4",
                 "-o", str(tmp_path / "new" / "deeper" / "x.png")]) == 0
    assert (tmp_path / "new" / "deeper" / "x.png").stat().st_size > 0
    assert main(["viz", "schedule", "0.5", "--epochs", "1", "--steps-per-epoch", "4", "-o", str(tmp_path / "dir") + "/"]) == 0
    assert (tmp_path / "dir" / "schedules.png").is_file()


def test_viz_patches_writes_into_a_new_folder_with_the_checkpoints_rule(finished_run, tmp_path, capsys):
    recipe, done = finished_run
    run = _copy(done, tmp_path / "run")
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(images / "a.png")
    from pss.models.hub import load_model
    import pss

    # the picture's title names the rule the model was trained with (it said "magnitude" for this one)
    assert [s.select for s in pss.samplers(load_model(run / "checkpoint-best.pt")[0])] == ["random"]
    assert main(["viz", "patches", str(run / "checkpoint-best.pt"), "--images", str(images), "--keep", "1,0.5",
                 "--output", str(tmp_path / "newdir") + "/"]) == 0
    assert (tmp_path / "newdir" / "patches.png").stat().st_size > 0


def test_benchmark_scripts_stop_with_one_line(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cifar10.py"), "--runs", "pss", "--set",
                          "not_a_key=1", "--output", str(tmp_path / "b")], env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2
    assert res.stderr.startswith("cifar10.py: error: unknown config key 'not_a_key'") and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1
