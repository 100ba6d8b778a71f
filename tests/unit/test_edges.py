"""Edges a hostile user finds: inputs that once gave a traceback, a hang, silent damage or the wrong words.

Each test names what happened before; all are in-process and fast (tiny models, tiny files).
"""
from __future__ import annotations

import os
import random
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pss
from pss.budget import FlopCost, predicted_cost, solve_budget
from pss.checkpoint import load_checkpoint
from pss.cli import main
from pss.config import load_config, load_yaml
from pss.data.checks import check_data
from pss.data.readable import load_rgb
from pss.errors import CheckpointError, ConfigError, OutputError
from pss.schedule import SCHEDULES, CosineSchedule, CyclicSchedule, FixedSchedule, LinearSchedule, schedule_from_spec
from pss.select import select_tokens
from pss.train import check_config
from pss.config import DataConfig


def _tiny_vit():
    return pss.build_model("pss_vit_tiny_patch4_32", num_classes=2, depth=1, embed_dim=32, num_heads=2)


def _one_line(err: str, command: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith(f"pss {command}: error: "), err
    return err


# ----------------------------------------------------------------------------- schedules at any length


def _random_schedule(rng: random.Random):
    kind = rng.choice(list(SCHEDULES))
    kw = dict(grid=rng.choice([None, 0.2, 0.1, 0.25]), warmup_epochs=rng.choice([0, 0.5, 1]),
              cooldown_epochs=rng.choice([0, 0.3]))
    if kind == "cyclic":
        low = rng.uniform(0.01, 1)
        return CyclicSchedule(low=low, high=rng.uniform(low, 1.5), period_epochs=rng.choice([0.37, 0.5, 1, 2, 10]), **kw)
    if kind == "fixed":
        return FixedSchedule(rho=rng.uniform(0.01, 1), **kw)
    return SCHEDULES[kind](start=rng.uniform(0.01, 2), end=rng.uniform(0.01, 2), **kw)


def test_counts_are_exactly_the_per_step_values():
    rng = random.Random(0)
    checked = 0
    while checked < 150:
        sched, spe, total = _random_schedule(rng), rng.randint(1, 40), rng.randint(1, 500)
        try:
            sched.check_run(spe, total)
        except ConfigError:
            continue
        assert sched.counts(spe, total) == dict(sorted(Counter(sched.values(spe, total)).items())), (sched, spe, total)
        checked += 1
    # long stretches (galloping and bisection, not one call per step) give the same counts
    for sched in (LinearSchedule(start=0.2, end=1.0, grid=0.1), CosineSchedule(start=1.0, end=0.3, grid=0.05),
                  CyclicSchedule(low=0.3, period_epochs=700)):
        assert sched.counts(1000, 300_000) == dict(sorted(Counter(sched.values(1000, 300_000)).items()))


def test_huge_runs_are_counted_and_solved_in_well_under_a_second():
    """`pss schedule cyclic --epochs 1e6 --steps-per-epoch 1e6` ran 300 s, and a budget solve of a 1e9-epoch
    run hung: both enumerated every step."""
    t = time.perf_counter()
    counts = CyclicSchedule(low=0.2).counts(10**6, 10**12)
    assert sum(counts.values()) == 10**12 and counts[0.4] == 2.5 * 10**11
    assert LinearSchedule(start=0.2, end=1.0).mean(78, 78 * 10**9) == pytest.approx(0.6, abs=1e-3)
    cost = FlopCost(64, (1.0, 2.0, 0.05))
    plan = solve_budget(CyclicSchedule(low=0.2), 0.6, cost, 78, 78 * 10**9)
    short = solve_budget(CyclicSchedule(low=0.2), 0.6, cost, 78, 78 * 10)  # whole periods: the same plan
    assert plan.value == short.value and plan.predicted_cost <= 0.6
    assert plan.predicted_cost == pytest.approx(short.predicted_cost, rel=1e-12)
    assert predicted_cost(plan.schedule, cost, 78, 78 * 10**9) == plan.predicted_cost
    assert time.perf_counter() - t < 2.0


def test_schedule_command_bounds_what_it_prints(capsys):
    assert main(["schedule", "cyclic", "--epochs", "1000000", "--steps-per-epoch", "1000000"]) == 0
    out = capsys.readouterr().out
    assert "steps: 1000000000000" in out and "per epoch: not shown for runs over 1000000 steps" in out
    assert len(out.splitlines()) < 20
    assert main(["schedule", "cyclic", "--epochs", "1000000", "--steps-per-epoch", "1000000", "--json"]) == 2
    assert "leave out --json" in _one_line(capsys.readouterr().err, "schedule")


def test_a_spec_key_given_twice_is_refused():
    with pytest.raises(ConfigError, match="'low' is given twice"):
        schedule_from_spec("cyclic:low=0.2,low=0.4")


# ----------------------------------------------------------------------------- one recipe reader


@pytest.mark.parametrize("content, words", [
    (b"epochs: 2\nname: \xff\xfe\n", "is not UTF-8 text (byte 0xff"),
    (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    (b"epochs: [1, 2\n", "is not valid YAML"),
    (b"epochs: 1\nepochs: 2\n", "given twice"),
])
def test_every_recipe_decode_or_parse_failure_is_one_line(tmp_path, capsys, content, words):
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_yaml(recipe)
    for argv in (["train", "--config", str(recipe), "--output", str(tmp_path / "run")],
                 ["viz", "schedule", str(recipe), "--output", str(tmp_path / "s.png")]):
        assert main(argv) == 2
        assert words in _one_line(capsys.readouterr().err, argv[0])
    assert not (tmp_path / "run").exists() and not (tmp_path / "s.png").exists()


def test_set_values_go_through_the_same_reader():
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(None, ["model.kwargs.x=" + "[" * 5000 + "]" * 5000])


_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


def test_an_alias_bomb_is_refused_in_well_under_a_second(tmp_path, capsys):
    """A "billion laughs" recipe (9 ** 9 values in 600 bytes) grew memory ~90 MB/s without end, through
    --config, --set and pss viz schedule alike."""
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(_BOMB)
    t = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than 100000 values"):
        load_yaml(recipe)
    inline = "{" + _BOMB.strip().replace("\n", ", ") + "}"
    with pytest.raises(ConfigError, match=r"^--set 'model.kwargs.x=.*expands to more than 100000 values"):
        load_config(None, [f"model.kwargs.x={inline}"])
    assert time.perf_counter() - t < 1.0
    with pytest.raises(ConfigError, match="an alias refers to the value it is part of"):
        load_config(None, ["model.kwargs.x=&a [1, *a]"])
    for argv in (["viz", "schedule", str(recipe), "--output", str(tmp_path / "s.png")],
                 ["train", "--config", str(recipe), "--output", str(tmp_path / "run")]):
        assert main(argv) == 2
        assert "expands to more than 100000 values" in _one_line(capsys.readouterr().err, argv[0])
    # aliases that stay small are still YAML
    assert load_config(None, ["model.kwargs.x={a: &a [1, 2], b: *a}"]).model.kwargs["x"] == {"a": [1, 2], "b": [1, 2]}


def test_a_config_that_is_not_a_regular_file_is_named_for_what_it_is(tmp_path, capsys):
    """A folder or /dev/null given as --config said "not found"; a huge file was read whole."""
    for path, words in ((tmp_path, "is a folder, not a file"), ("/dev/null", "is a character device, not a file"),
                        (tmp_path / "none.yaml", "not found")):
        with pytest.raises(ConfigError, match=f"config file '{re.escape(str(path))}' {words}"):
            load_yaml(path)
        assert main(["train", "--config", str(path), "--output", str(tmp_path / "run")]) == 2
        assert f"'{path}' {words}" in _one_line(capsys.readouterr().err, "train")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (2 << 20) + b"\nepochs: 2\n")
    with pytest.raises(ConfigError, match="is over 1 MB"):
        load_yaml(big)


@pytest.mark.parametrize("text, value", [("15e-1", 1.5), ("6e-1", 0.6), ("1.5e3", 1500.0), ("1E-3", 0.001),
                                         ("-2e+2", -200.0), (".5e1", 5.0), ("1.0e-3", 0.001), ("1e", "1e")])
def test_every_exponent_form_is_a_number(text, value):
    """`budget_epochs=15e-1` was refused as text while `budget=6e-1` was accepted: YAML 1.1 reads an exponent
    as a float only with a dot and a sign, and only float-typed settings turned the text back into a number."""
    assert load_config(None, [f"model.kwargs.x={text}"]).model.kwargs["x"] == value


def test_budget_epochs_in_any_number_form_is_checked_as_a_number():
    cfg = load_config(None, ["schedule=cyclic", "budget=6e-1", "budget_epochs=15e-1"])
    assert cfg.budget == 0.6 and cfg.budget_epochs == 1.5


def test_too_large_a_budget_epochs_is_named_as_the_problem(capsys):
    """A huge budget_epochs was reported as a budget problem ("budget 0.006 is below what this schedule can
    reach"), naming a budget the user never gave; 1e300 said "budget must be in (0, 1], got 0.0"."""
    base = ["schedule", "cyclic", "--budget", "0.6", "--model", "pss_vit_tiny_patch4_32", "--epochs", "10",
            "--steps-per-epoch", "10"]
    assert main([*base, "--budget-epochs", "100"]) == 2
    err = _one_line(capsys.readouterr().err, "schedule")
    assert "budget 0.6 of 10 epochs, spent by budget_epochs 100 as 1000 epochs, leaves 0.006 of each of them" in err
    most = float(re.search(r"use budget_epochs ([0-9.]+) or less", err).group(1))
    assert 1 < most < 1.5 and err.startswith("pss schedule: error: budget 0.6 of 10 epochs")  # the user's numbers first
    assert main([*base, "--budget-epochs", str(most)]) == 0  # the factor it names fits
    capsys.readouterr()
    assert main([*base, "--budget-epochs", "1e300"]) == 2
    assert "leaving nothing of each" in _one_line(capsys.readouterr().err, "schedule")
    assert main([*base[:3], "0.3", *base[4:], "--budget-epochs", "100"]) == 2
    assert "budget 0.3 is below what this schedule can reach even without budget_epochs" in \
        _one_line(capsys.readouterr().err, "schedule")


def test_an_unknown_compile_mode_or_backend_fails_before_any_work():
    """`--set compile="{mode: fastest}"` was a RuntimeError from torch.compile after the budget solve."""
    with pytest.raises(ConfigError, match="unknown compile mode 'fastest'; choose one of default, .*reduce-overhead"):
        check_config(load_config(None, ["compile={mode: fastest}"]))
    with pytest.raises(ConfigError, match="unknown compile backend 'nope'"):
        check_config(load_config(None, ["compile={backend: nope}"]))
    check_config(load_config(None, ["compile={mode: max-autotune}"]))


def test_a_timm_model_refusing_a_recipe_option_is_one_line():
    """`pss train --config demo --model vit_tiny_patch16_224`: timm's AssertionError on pos_embed: rope."""
    with pytest.raises(ConfigError, match=r"'vit_tiny_patch16_224' does not accept these options \(pos_embed='rope'\)"):
        pss.build_model("vit_tiny_patch16_224", num_classes=2, img_size=32, pos_embed="rope")


# ----------------------------------------------------------------------------- images


def test_16_bit_grey_pngs_are_scaled_not_clipped(tmp_path):
    """PIL's convert('RGB') clips I;16 at 255: 99.8 % of the pixels of a 16-bit PNG came out white."""
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgb = np.asarray(load_rgb(tmp_path / "g16.png"))
    assert rgb.shape == (64, 64, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    expected = np.round(ramp.astype(np.float64) * 255 / 65535)
    assert np.abs(rgb[..., 0] - expected).max() <= 1 and (rgb[..., 0] == 255).mean() < 0.01
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "f.tiff")
    with pytest.raises(ValueError, match="floating-point image"):
        load_rgb(tmp_path / "f.tiff")


def test_the_run_header_counts_unreadable_images(tiny_image_folder):
    (tiny_image_folder / "train" / "glyph0" / "bad.png").write_bytes(b"not an image")
    line = check_data(DataConfig(path=str(tiny_image_folder))).describe()
    assert line == "12 train / 6 val images in 3 classes; 1 unreadable image(s) left out (every file scanned)"
    sampled = check_data(DataConfig(path=str(tiny_image_folder), scan_max_files=5, scan_sample_size=4)).describe()
    assert "a sample of 4 files scanned" in sampled


# ----------------------------------------------------------------------------- checkpoints


def test_random_bytes_are_not_called_pickled_objects(tmp_path):
    junk = tmp_path / "junk.pt"
    for seed in range(5):
        junk.write_bytes(random.Random(seed).randbytes(4096))
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(junk)
        assert "not a readable checkpoint" in str(e.value) and "pickled" not in str(e.value)


def _save_tiny_checkpoint(path, **extra):
    from pss.checkpoint import atomic_save, training_checkpoint
    from pss.config import config_to_dict

    cfg = load_config(None, ["model.name=pss_vit_tiny_patch4_32", "model.num_classes=2", "model.img_size=32",
                             "model.kwargs={depth: 1, embed_dim: 32, num_heads: 2}"])
    atomic_save({**training_checkpoint(model=_tiny_vit(), progress={}, config=config_to_dict(cfg)), **extra}, path)
    return path


def _shared_lists(levels: int, width: int) -> list:
    x: list = ["a"]
    for _ in range(levels):
        x = [x] * width
    return x


@pytest.mark.parametrize("field, bomb, words", [
    ("class_names", _shared_lists(60, 2), "nests its contents over 32 levels deep"),  # 2 ** 60 strings, 61 deep
    ("config", {"model": _shared_lists(8, 40)}, "holds over 1000000 values once its shared parts are counted"),
])
def test_a_checkpoint_of_shared_nested_lists_is_refused_as_it_is_read(tmp_path, capsys, field, bomb, words):
    """A 1.8 MB weights-only .pt whose `config` or `class_names` shared one list in many places hung pss sweep
    and pss viz: loading is cheap (the pickle memo), every later walk of it is not."""
    path = _save_tiny_checkpoint(tmp_path / "bomb.pt")
    torch.save({**torch.load(path, weights_only=True), field: bomb}, path)
    assert path.stat().st_size < 100_000
    t = time.perf_counter()
    with pytest.raises(CheckpointError, match=words):
        load_checkpoint(path)
    assert time.perf_counter() - t < 1.0
    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    for argv in (["sweep", str(path), "--device", "cpu", "--output", str(tmp_path / "sweep")],
                 ["viz", "patches", str(path), "--images", str(tmp_path / "x.png"), "--output", str(tmp_path / "p.png")]):
        assert main(argv) == 2
        assert words in _one_line(capsys.readouterr().err, argv[0])
    load_checkpoint(_save_tiny_checkpoint(tmp_path / "ok.pt"))  # a real checkpoint is well inside the bounds


def _safetensors_bytes(header: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header


@pytest.mark.parametrize("name, content, words", [
    ("truncated", None, "is not a readable .safetensors file"),
    ("header bomb", (10**15).to_bytes(8, "little") + b"{}", "is not a readable .safetensors file"),
    ("deep metadata", _safetensors_bytes(b'{"__metadata__": {"pss_config": "' + b"[" * 100_000 + b"]" * 100_000 + b'"}}'),
     "nests its metadata 'pss_config' past any checkpoint's depth"),
    ("missing", b"", "not found"),
])
def test_a_broken_safetensors_file_is_one_line_in_every_command(tmp_path, capsys, name, content, words):
    """Truncated or header-bomb .safetensors files were a traceback in pss sweep / pss viz (--init said one line);
    a missing one said it had "no config in its metadata"."""
    from pss.checkpoint import export_safetensors
    from pss.models.convert import load_state_dict_file
    from pss.models.hub import load_model

    path = tmp_path / "model.safetensors"
    if name == "truncated":
        export_safetensors(_tiny_vit().state_dict(), path, metadata={"pss_config": {}})
        path.write_bytes(path.read_bytes()[:300])
    elif name != "missing":
        path.write_bytes(content)
    readers = (load_model,) if name == "deep metadata" else (load_model, load_state_dict_file)  # --init: no metadata
    for read in readers:  # sweep / viz, and --init: the same words
        with pytest.raises(CheckpointError, match=re.escape(words)):
            read(path)
    assert main(["sweep", str(path), "--device", "cpu", "--output", str(tmp_path / "sweep")]) == 2
    assert words in _one_line(capsys.readouterr().err, "sweep")


def test_a_folder_or_device_given_as_weights_is_named_for_what_it_is(tmp_path):
    """`--init FOLDER` said the checkpoint was "not found"."""
    from pss.models.convert import load_state_dict_file

    with pytest.raises(CheckpointError, match=f"'{re.escape(str(tmp_path))}' is a folder, not a file: give a checkpoint file"):
        load_state_dict_file(tmp_path)
    with pytest.raises(CheckpointError, match="'/dev/null' is a character device, not a file"):
        load_state_dict_file("/dev/null")


def test_a_sweep_batch_far_past_the_memory_is_one_line(tmp_path, capsys):
    """`pss sweep --batch-size 100000` grew to 24 GB until the kernel killed it."""
    path = _save_tiny_checkpoint(tmp_path / "checkpoint-best.pt")
    assert main(["sweep", str(path), "--device", "cpu", "--batch-size", str(10**9), "--output", str(tmp_path / "s")]) == 2
    err = _one_line(capsys.readouterr().err, "sweep")
    fits = int(re.search(r"--batch-size 1000000000 needs about [0-9.]+ GB for one forward pass \([0-9.]+ MB per image\) "
                         r"and cpu has [0-9.]+ GB free: use --batch-size ([0-9]+) or less", err).group(1))
    from pss.flops import check_batch_fits

    check_batch_fits(_tiny_vit(), min(fits, 64))  # the batch it names (or the default) passes
    assert not (tmp_path / "s" / "sweep.json").exists()


# ----------------------------------------------------------------------------- Python API edges


def test_keep_ratio_values_python_takes():
    model = _tiny_vit().train()
    for value in (torch.tensor(0.5), np.float32(0.5), 0.5):
        pss.set_keep_ratio(model, value)
        assert pss.get_keep_ratio(model) == 0.5 and type(pss.samplers(model)[0].keep_ratio) is float
    for value in (True, False, torch.tensor([0.5, 0.6]), torch.tensor(1), float("nan"), "0.5"):
        with pytest.raises(ConfigError, match="keep ratio must be in"):
            pss.set_keep_ratio(model, value)
    with pss.use_keep_ratio(model, torch.tensor(0.25)):
        assert pss.get_keep_ratio(model) == 0.25


def test_keep_ratio_scheduler_edges():
    model = _tiny_vit()
    with pytest.raises(ConfigError, match="epochs must be a finite number > 0, got inf"):
        pss.KeepRatioScheduler(model, "cyclic", steps_per_epoch=10, epochs=float("inf"))
    sched = pss.KeepRatioScheduler(model, "cyclic", steps_per_epoch=10, epochs=2)
    for bad in ({}, {"step": -1}, {"step": "3"}, None):
        with pytest.raises(ConfigError, match="not a KeepRatioScheduler state_dict"):
            sched.load_state_dict(bad)
    sched.load_state_dict({"step": 5})
    assert sched.last_step == 5


def test_select_tokens_with_only_prefix_tokens_keeps_them():
    tokens = torch.randn(2, 1, 8)
    kept, idx = select_tokens(tokens, 0.5)
    assert kept is tokens and idx is None


def test_one_class_data_is_named_as_the_problem(tmp_path, capsys):
    """A one-class set with a budget said the budget was too low."""
    for split in ("train", "val"):
        (tmp_path / "one" / split / "a").mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (32, 32), (60 * i, 0, 0)).save(tmp_path / "one" / split / "a" / f"{i}.png")
    assert main(["train", "--config", "demo", "--data", str(tmp_path / "one"), "--output", str(tmp_path / "run"),
                 "--set", "batch_size=4"]) == 2  # (a batch larger than the 4 images is refused first, as such)
    err = _one_line(capsys.readouterr().err, "train")
    assert "the data has 1 class (a): a classifier needs at least 2 class folders" in err and "budget" not in err


# ----------------------------------------------------------------------------- output folders


@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "fifo", "folder"])
def test_a_lock_file_that_is_not_a_regular_file_is_refused_untouched(tmp_path, kind):
    """A `.pss.lock` symlinked to another file had that file truncated and overwritten by `pss train`."""
    from pss.outputs import LOCK_NAME, hold_run_folder

    run, victim = tmp_path / "run", tmp_path / "victim.txt"
    run.mkdir()
    victim.write_text("precious\n")
    lock = run / LOCK_NAME
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "dangling symlink":
        lock.symlink_to(tmp_path / "elsewhere.txt")
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    words = "is a symbolic link" if "symlink" in kind else "is not a regular file"
    with pytest.raises(OutputError, match=f"{re.escape(str(lock))}' {words}, not the lock file pss writes"):
        with hold_run_folder(run):
            pytest.fail("the folder was held")
    assert victim.read_text() == "precious\n" and not (tmp_path / "elsewhere.txt").exists()
    with hold_run_folder(tmp_path / "fresh") as held:  # a plain lock file still works
        assert (held / LOCK_NAME).is_file()


# ----------------------------------------------------------------------------- cost files and specs


@pytest.mark.parametrize("step, data", [(0.0, 0.01), (-1, 0.01), (float("nan"), 0.01), (float("inf"), 0.01),
                                        ("abc", 0.01), (None, 0.01), (0.1, -1), (0.1, float("nan")), (0.1, "")])
def test_measured_times_that_are_no_times_are_refused(step, data):
    """`budget_cost: measured:...` took step times of 0, -1, NaN or inf and solved a nonsense schedule
    (predicted cost 0.0000); text or an empty value was a traceback."""
    from pss.preflight import Measurements

    with pytest.raises(ConfigError, match=r"\(speed.json \+ data.json\): a time must be a finite number of seconds"):
        Measurements({1.0: 0.1, 0.5: step} if data == 0.01 else {1.0: 0.1}, data, 8, True, source="speed.json + data.json")
    good = Measurements({"1.0": "0.1", 0.5: 0.06}, 0, 8, True)
    assert good.step_time_s == {1.0: 0.1, 0.5: 0.06} and good.data_time_s == 0.0


def _speed_file(tmp_path, times):
    import json

    path = tmp_path / "speed.json"
    path.write_text(json.dumps({"model": "pss_vit_tiny_patch4_32", "img_size": 32, "batch_size": 8, "results": [
        {"keep_ratio": r, "relative_time": t, "step_time_s": t} for r, t in times]}))
    return str(path)


def test_a_speed_table_is_checked_and_solved_within_what_it_measured(tmp_path, capsys):
    """A speed table with 0 / -1 / NaN times was taken; a valid one with a fixed schedule asked for a step time
    at keep ratio 0.0001; `--budget-cost measured` said "file 'measured' not found"."""
    from pss.budget import TableCost

    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="holds relative times that are no step time"):
            TableCost.from_file(_speed_file(tmp_path, [(1.0, 1.0), (0.5, bad)]))
    table = _speed_file(tmp_path, [(1.0, 1.0), (0.8, 0.8), (0.6, 0.6), (0.4, 0.45), (0.2, 0.3)])
    base = ["schedule", "fixed", "--epochs", "2", "--steps-per-epoch", "10", "--budget-cost", table]
    assert main([*base, "--budget", "0.6"]) == 0
    assert "runs keep ratios 0.6 (solved rho = 0.6), predicted cost 0.6000" in capsys.readouterr().out
    assert main([*base, "--budget", "0.2"]) == 2  # below the table's cheapest row: the budget, not 0.0001
    err = _one_line(capsys.readouterr().err, "schedule")
    assert "budget 0.2 is below what this schedule can reach: the smallest possible is 0.300" in err and "0.0001" not in err
    for spec in ("measured", "measured:a.json,b.json"):
        assert main([*base[:-1], spec, "--budget", "0.6"]) == 2
        assert f"--budget-cost {spec} is timed in a training run" in _one_line(capsys.readouterr().err, "schedule")


@pytest.mark.parametrize("spec", ["1.5", "0", "-0.2"])
def test_a_keep_ratio_spec_out_of_range_says_so(spec):
    """The spec strings "1.5" and "0" said "unknown schedule"."""
    with pytest.raises(ConfigError, match=r"fixed rho must be a keep ratio in \(0, 1\]"):
        schedule_from_spec(spec)


# ----------------------------------------------------------------------------- data that hangs


def test_a_named_pipe_called_png_is_not_an_image(tiny_image_folder):
    """A fifo named x.png blocked the data scan for ever (opening it waits for a writer)."""
    os.mkfifo(tiny_image_folder / "train" / "glyph0" / "pipe.png")
    report = check_data(DataConfig(path=str(tiny_image_folder)))
    assert report.train_counts == {"glyph0": 4, "glyph1": 4, "glyph2": 4} and report.corrupt == []
    assert not any("pipe.png" in p for p, _ in report.train_samples)


def test_far_too_many_loader_workers_are_refused_before_any_start(tiny_image_folder):
    """`data.num_workers=1000` stalled a run after 3 steps."""
    from pss.data import build_datasets, build_loader
    from pss.data.loaders import max_workers

    cfg = DataConfig(path=str(tiny_image_folder), num_workers=max_workers() + 1)
    train, _, _ = build_datasets(cfg)
    with pytest.raises(ConfigError, match=rf"data.num_workers {max_workers() + 1} is more loader processes than this "
                                          rf"machine's \d+ CPU\(s\) can feed \(at most {max_workers()}\)"):
        build_loader(train, 4, True, cfg)
    assert max_workers() >= 64  # the recipes' 8 or 10 pass on any machine
    build_loader(train, 4, True, DataConfig(path=str(tiny_image_folder), num_workers=10))


# ----------------------------------------------------------------------------- advice


def test_the_advice_after_a_resumed_run_diverges_names_a_file_that_exists(tmp_path):
    """After `--resume CKPT -o NEWFOLDER` diverged, the message named NEWFOLDER/checkpoint-last.pt, which the
    new run had not written."""
    from pss.runfolder import RunDir
    from pss.runwriter import Checkpointer

    old = _save_tiny_checkpoint(tmp_path / "old" / "checkpoint-last.pt")
    new = tmp_path / "new"
    cp = Checkpointer(new, resumed_from=old)
    cp.saved_step = 12  # what the engine records for a resumed run before its first save
    advice = cp.last_good()
    named = Path(re.match(r"(\S+) holds step 12, the last finite one", advice).group(1))
    assert named == old and named.is_file() and not (new / RunDir.LAST).exists()
    assert f"--resume {old} --output {new} --set optim.lr=" in advice
    fresh = Checkpointer(new)  # a run that saved its own checkpoint names it, and --resume alone
    fresh.saved_step = 3
    assert fresh.last_good().startswith(f"{new / RunDir.LAST} holds step 3") and "--resume (e.g." in fresh.last_good()


def test_an_empty_split_is_named_as_such_not_as_a_batch_size_problem():
    """An empty split (no image listed or readable) once read "batch_size 8 is larger than this rank's 0 images"."""
    import torch

    from pss.config import DataConfig
    from pss.data import build_loader
    from pss.data.datasets import InMemoryDataset

    empty = InMemoryDataset(torch.zeros(0, 3, 32, 32, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), ["a"],
                            (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ConfigError, match="the training split holds no images"):
        build_loader(empty, 8, True, DataConfig())
    with pytest.raises(ConfigError, match="the evaluation split holds no images"):
        build_loader(empty, 8, False, DataConfig())


def test_an_unreachable_hub_turns_the_libraries_cache_only_at_once(monkeypatch):
    """An unreachable hub printed 22-46 retry lines over 23-50 s before the clear line: one connection attempt
    now decides, and the hub libraries read their cache at once."""
    import os
    import socket
    import time

    from pss import hubnet

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setattr(hubnet, "_checked", {})
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", hc.HF_HUB_OFFLINE)  # restored after the test

    def refused(*a, **k):
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    t0 = time.perf_counter()
    assert hubnet.cache_only_when_offline() is True
    assert time.perf_counter() - t0 < 1
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    monkeypatch.setattr(hubnet, "_checked", {"127.0.0.1:9": True})
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    assert hubnet.cache_only_when_offline() is False  # a hub that answers: the libraries as they are
