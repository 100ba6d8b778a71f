"""`pss sweep` and `pss viz` end to end on tiny checkpoints of the built-in set (CPU, seconds)."""
import json

import matplotlib.image as mpimg
import pytest
import torch

import pss
from pss.checkpoint import atomic_save, training_checkpoint
from pss.cli import main
from pss.config import DataConfig, ModelConfig, TrainConfig, config_to_dict
from pss.data import builtin_class_names

TINY = dict(depth=2, embed_dim=32, num_heads=2)


def save_run(folder, schedule, seed: int) -> str:
    """A run folder with a checkpoint-best.pt as `pss train` writes it (untrained weights)."""
    cfg = TrainConfig(
        model=ModelConfig(name="pss_vit_tiny_patch4_32", num_classes=3, img_size=32, kwargs=TINY),
        data=DataConfig(builtin_num_train=12, builtin_num_val=6, builtin_num_classes=3, num_workers=0),
        schedule=schedule, select="magnitude",  # the paper's rule: its inference default differs from a baseline's
    )
    torch.manual_seed(seed)
    model = pss.build_model("pss_vit_tiny_patch4_32", 3, img_size=32, **TINY)
    ckpt = training_checkpoint(model=model, progress={"step": 0, "epoch": 0}, config=config_to_dict(cfg),
                               class_names=builtin_class_names(3))
    path = folder / "checkpoint-best.pt"
    atomic_save(ckpt, path)
    return str(path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    (root / "baseline").mkdir()
    (root / "pss").mkdir()
    return [save_run(root / "baseline", 1.0, 0), save_run(root / "pss", {"name": "cyclic"}, 1)]


def test_sweep_command(checkpoints, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", *checkpoints, "--keep", "1.0,0.5,0.25", "--batch-size", "4", "--warmup", "1",
            "--iters", "1", "--device", "cpu", "--output", str(out)]
    assert main(argv) == 0
    printed, err = capsys.readouterr()
    assert "picture:" in printed
    # progress on stderr, one bar over every batch: 2 models x 3 keep ratios, each timed (1 + 1 batches) and
    # evaluated on the 6 validation images (2 batches of 4)
    assert "sweep: pss" in err and "24/24" in err
    result = json.loads((out / "sweep.json").read_text())
    assert result["keep_ratios"] == [1.0, 0.5, 0.25] and result["select"] == "default"
    # each model at the deterministic default for the rule it was trained with, said in the output
    assert [(c["trained_select"], c["select"]) for c in result["checkpoints"]] == [(None, "grid"), ("magnitude", "magnitude")]
    assert "grid selection (the default for models trained with every token)" in printed
    assert result["precision"] == "fp32" and result["device"].startswith("cpu")
    assert [c["name"] for c in result["checkpoints"]] == ["baseline", "pss"]
    assert result["checkpoints"][1]["trained_schedule"]["name"] == "cyclic"
    for entry in result["checkpoints"]:
        rows = entry["results"]
        assert [r["keep_ratio"] for r in rows] == [1.0, 0.5, 0.25]
        for r in rows:
            assert set(r) >= {"acc1", "acc5", "loss", "images_per_s", "gflops_per_image", "tokens"}
            assert r["num_images"] == 6 and 0 <= r["acc1"] <= 100 and r["images_per_s"] > 0
        assert [r["tokens"] for r in rows] == [65, 33, 17]
        g = [r["gflops_per_image"] for r in rows]
        assert g[0] > g[1] > g[2] > 0
    img = mpimg.imread(out / "sweep.png")
    assert img.shape[:2] == (500, 1200) and img[..., :3].std() > 0.05


def test_sweep_help_names_the_default_rules_the_code_uses(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    assert pss.select.DEFAULT_INFERENCE_SELECT[None] == "grid"
    assert "grid for models trained at every token (baselines) and those trained with random" in text
    assert "magnitude for models trained with magnitude" in text and "--quiet" in text


def test_sweep_reduce_both_and_every_rule(checkpoints, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", *checkpoints, "--keep", "1.0,0.5", "--batch-size", "4", "--warmup", "0", "--iters", "1",
            "--device", "cpu", "--select", "all", "--reduce", "both", "--merge-r", "0,4,8", "--quiet", "--output", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().err == ""  # --quiet: no progress bar
    result = json.loads((out / "sweep.json").read_text())
    entries = result["checkpoints"]
    assert result["reduce"] == "both" and result["select"] == "all"
    rules = len(pss.select.SELECT_RULES)
    assert [e["name"] for e in entries[:rules + 1]] == [f"baseline ({r})" for r in pss.select.SELECT_RULES] + ["baseline (ToMe)"]
    merge = entries[rules]
    assert merge["reduce"] == "merge" and [r["merge_r"] for r in merge["results"]] == [0, 4, 8]
    assert [r["tokens"] for r in merge["results"]] == [65, 63, 61]  # 1 + mean of (64, 64), (64, 60), (64, 56)
    g = [r["gflops_per_image"] for r in merge["results"]]
    assert g[0] > g[1] > g[2] > 0 and all(r["images_per_s"] > 0 and r["num_images"] == 6 for r in merge["results"])
    # r = 0 is the model itself: the same top-1 as every token
    assert merge["results"][0]["acc1"] == entries[0]["results"][0]["acc1"]
    assert mpimg.imread(out / "sweep.png")[..., :3].std() > 0.05


def test_sweep_reduce_all_puts_a_lower_resolution_beside_drop_and_merge(checkpoints, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", checkpoints[0], "--keep", "1.0,0.5,0.25", "--batch-size", "4", "--warmup", "0", "--iters", "1",
            "--device", "cpu", "--reduce", "all", "--merge-r", "0,4", "--output", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    entries = json.loads((out / "sweep.json").read_text())["checkpoints"]
    assert [e["reduce"] for e in entries] == ["drop", "merge", "resize"]
    rows = entries[2]["results"]
    # sqrt(rho) of the 32 px side in whole 4 px patches: 32, 22.6 -> 24, 16 px; the share of patches each keeps
    assert [(r["side"], r["keep_ratio"], r["tokens"]) for r in rows] == [(32, 1.0, 65), (24, 0.5625, 37), (16, 0.25, 17)]
    assert rows[0]["acc1"] == entries[0]["results"][0]["acc1"]  # the model's own side: the model itself
    g = [r["gflops_per_image"] for r in rows]
    assert g[0] > g[1] > g[2] > 0 and all(r["images_per_s"] > 0 for r in rows)
    assert "lower input resolution" in printed and " 16 px top-1" in printed


@pytest.mark.parametrize("extra,message", [
    (["--reduce", "merge", "--merge-r", "40"], "merge rate r=40 would leave block 1 of 2 fewer tokens"),
    (["--select", "topk"], "unknown selection rule 'topk' for this version of pss"),
    (["--reduce", "merge", "--merge-r", "a"], "--merge-r takes comma-separated integers"),
])
def test_sweep_bad_reduce_and_select(checkpoints, tmp_path, capsys, extra, message):
    assert main(["sweep", checkpoints[0], "--device", "cpu", *extra, "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o" / "sweep.json").exists()


def test_sweep_bad_checkpoint(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.pt"), "--output", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err


def test_viz_patches_command(checkpoints, tmp_path, capsys):
    from pss.data import write_builtin_folder

    images = write_builtin_folder(tmp_path / "imgs", DataConfig(builtin_num_train=3, builtin_num_val=3,
                                                                builtin_num_classes=3))
    out = tmp_path / "patches.png"
    argv = ["viz", "patches", checkpoints[1], "--images", str(images / "val"), "--keep", "1.0,0.5,0.25",
            "--device", "cpu", "--output", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "rho 0.25 -> glyph" in printed  # class names come from the checkpoint
    img = mpimg.imread(out)
    assert img.shape[:2] == (100 * (3 * 2 + 0.5), 100 * (3 * 2 + 0.6))  # 3 images x 3 keep ratios
    assert img[..., :3].std() > 0.05
    assert main(["viz", "patches", checkpoints[1], "--images", str(tmp_path / "none"), "--output", str(out)]) == 2


def test_viz_schedule_command(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("epochs: 4\nschedule: {name: linear, start: 0.2, end: 1.0}\n")
    out = tmp_path / "sched.png"
    argv = ["viz", "schedule", "cyclic:low=0.2,high=1.0", "0.5", str(recipe), "demo", "--steps-per-epoch", "20",
            "--output", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "cyclic:low=0.2,high=1.0: mean keep ratio 0.600 over 4 epochs" in printed  # the first recipe's length
    assert "recipe.yaml (linear): mean keep ratio" in printed
    # a shipped recipe, by name, drawn as it trains: its budget solved (a cyclic low = 0.2222 on the 0.2 grid)
    assert "demo (cyclic, budget 0.6): mean keep ratio 0.600 over 10 epochs (" in printed and "low = 0.2222" in printed
    assert "(keep ratios drawn per step)" in printed
    assert mpimg.imread(out).shape[:2] == (450, 900)
    assert main(["viz", "schedule", "wavy:low=1", "--output", str(out)]) == 2
    assert "unknown schedule" in capsys.readouterr().err


def test_viz_schedule_draws_a_budget_recipe_as_it_trains(tmp_path, capsys):
    """The recommended recipe: 200 epochs' budget 0.6 spent as 300 epochs at the solved fixed keep ratio, drawn
    per epoch (a cyclic wave per epoch over 300 epochs would fill the plot); --epochs as pss train takes it."""
    out = tmp_path / "sched.png"
    assert main(["viz", "schedule", "cifar10_pss", "cyclic", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cifar10_pss (fixed, budget 0.6): mean keep ratio 0.398 over 300 epochs (budget 0.6 of 200 epochs spent " \
           "as 300 epochs (budget_epochs auto: from scratch" in printed and "rho = 0.3984" in printed
    assert "cyclic: mean keep ratio 0.600 over 300 epochs" in printed and "drawn per epoch" in printed
    assert main(["viz", "schedule", "cifar10_pss", "--epochs", "20", "--output", str(out)]) == 0
    assert "over 30 epochs" in capsys.readouterr().out  # --epochs 20 x budget_epochs auto (1.5)


def test_sweep_checks_the_data_classes_against_the_checkpoint(checkpoints, tmp_path, capsys):
    """A 3-class model on a 2-class folder: refused by default; --classes by-name maps the two classes
    (a subset, by name) to the model's outputs; a class the model never saw is refused by name too."""
    from pss.data import write_builtin_folder

    two = write_builtin_folder(tmp_path / "two", DataConfig(builtin_num_train=4, builtin_num_val=4,
                                                            builtin_num_classes=2))
    base = ["sweep", checkpoints[0], "--data", str(two), "--keep", "1.0", "--batch-size", "4", "--warmup", "0",
            "--iters", "1", "--device", "cpu"]
    assert main([*base, "--output", str(tmp_path / "s0")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "are not those" in err and "--classes by-name" in err
    assert not (tmp_path / "s0" / "sweep.json").exists()
    assert main([*base, "--classes", "by-name", "--output", str(tmp_path / "s1")]) == 0
    assert json.loads((tmp_path / "s1" / "sweep.json").read_text())["checkpoints"][0]["results"][0]["num_images"] == 4
    (two / "val" / "glyph1").rename(two / "val" / "cat")
    (two / "train" / "glyph1").rename(two / "train" / "cat")
    assert main([*base, "--classes", "by-name", "--output", str(tmp_path / "s2")]) == 2
    assert "data classes unknown to" in capsys.readouterr().err
    assert main([*base, "--classes", "as-is", "--output", str(tmp_path / "s3")]) == 0


def test_viz_output_folder_gets_a_file_name_and_prints_it(tmp_path, capsys):
    out = tmp_path / "pictures"
    out.mkdir()
    assert main(["viz", "schedule", "0.5", "--output", str(out)]) == 0
    assert f"picture: {out / 'schedules.png'}" in capsys.readouterr().out
    assert (out / "schedules.png").is_file() and not (tmp_path / "pictures.png").exists()
