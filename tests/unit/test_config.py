"""Training config: every shipped recipe validates; overrides, unknown keys and impossible values."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from pss.config import (
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    diff_configs,
    find_recipe,
    load_config,
    save_config,
)
from pss.errors import ConfigError
from pss.schedule import CyclicSchedule, FixedSchedule
from pss.train import check_config
from conftest import ROOT

CONFIGS = ROOT / "configs"
RECIPES = sorted(CONFIGS.glob("*.yaml"))
EXPECTED = {
    "deit_small_224_baseline", "deit_small_224_pss", "vit_base_finetune_baseline", "vit_base_finetune_pss",
    "cifar10_baseline", "cifar10_pss", "demo",
}


# What the recipe study (random selection) and the budget study (from scratch: tokens for epochs, a fixed
# keep ratio; fine-tuning, unmeasured there: the cyclic schedule) chose; every recommended *_pss recipe
# carries the one of its situation.
RECOMMENDED = {
    "scratch": {"budget": 0.6, "budget_epochs": "auto", "select": "random", "schedule": {"name": "fixed", "grid": None}},
    # the budget study's fine-tuning setting found the same (tokens for epochs the best PSS arm)
    "finetune": {"budget": 0.6, "budget_epochs": "auto", "select": "random", "schedule": {"name": "fixed", "grid": None}},
}


def test_all_recipes_are_shipped():
    assert EXPECTED <= {p.stem for p in RECIPES}
    pss_recipes = {p.stem for p in RECIPES if p.stem.endswith("_pss") and not p.stem.startswith("paper_")}
    assert {f"paper_{n}" for n in pss_recipes} <= {p.stem for p in RECIPES}  # the paper's settings stay available


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_validates_and_round_trips(path, tmp_path):
    cfg = load_config(path)
    check_config(cfg)  # model name known to the registry, the task's own checks
    assert cfg.peak_lr() > 0
    # The paper's PSS recipes differ from their baselines only in the schedule (and comments); the
    # recommended ones in the selection rule and the compute budget that solves the schedule.
    if path.stem.endswith("_pss"):
        paper = path.stem.startswith("paper_")
        stem = path.stem.removeprefix("paper_")[: -len("_pss")]
        base = load_config(path.with_name(stem + "_baseline.yaml"))
        diff = diff_configs(config_to_dict(base), config_to_dict(cfg))
        if paper:
            # ... and, where our baseline moved to rope (from scratch at 32 px, by the recipe study), in
            # the paper's position scheme, relative position bias
            assert cfg.model.kwargs.get("pos_embed") == "rel_bias"
            assert [k for k in diff if k != "model.kwargs.pos_embed"] == [
                "schedule.grid", "schedule.high", "schedule.low", "schedule.name", "schedule.period_epochs", "schedule.rho"]
            assert isinstance(cfg.schedule, CyclicSchedule) and (cfg.schedule.low, cfg.schedule.high) == (0.2, 1.0)
            assert cfg.select == "magnitude" and cfg.budget is None
        else:
            want = RECOMMENDED["finetune" if "finetune" in stem else "scratch"]
            assert {k for k in diff if not k.startswith("schedule.")} == {"select", "budget"} | (
                {"budget_epochs"} if want["budget_epochs"] else set())
            assert (cfg.budget, cfg.budget_epochs, cfg.select) == (want["budget"], want["budget_epochs"], want["select"])
            assert {k: getattr(cfg.schedule, k) for k in want["schedule"]} == want["schedule"]
    # The resolved config written into a run folder loads back to the same config.
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_paper_hyperparameters():
    deit = load_config(CONFIGS / "deit_small_224_pss.yaml")
    assert deit.epochs == 300 and deit.batch_size == 1024 and deit.peak_lr() == pytest.approx(1e-3)
    assert deit.optim.weight_decay == 0.05 and deit.lr_sched.warmup_epochs == 5 and deit.label_smoothing == 0.1
    assert (deit.mixup.mixup_alpha, deit.mixup.cutmix_alpha) == (0.8, 1.0)
    assert deit.data.auto_augment == "rand-m9-mstd0.5-inc1" and deit.data.re_prob == 0.25
    assert deit.model.drop_path_rate == 0.1
    ft = load_config(CONFIGS / "vit_base_finetune_pss.yaml")
    assert ft.epochs == 100 and ft.optim.layer_decay == 0.65 and ft.model.drop_path_rate == 0.1
    assert ft.peak_lr() == pytest.approx(1.25e-3 * 2048 / 512)
    c10 = load_config(CONFIGS / "cifar10_pss.yaml")
    assert c10.data.val_split == "test" and c10.data.in_memory and c10.data.path == "hf:uoft-cs/cifar10"


def test_overrides_dotted_yaml_values():
    cfg = load_config(CONFIGS / "demo.yaml", [
        "epochs=3", "optim.lr=1e-3", "model.kwargs={depth: 2, embed_dim: 32}", "schedule=0.5",
        "data.path=null", "optim.betas=[0.9, 0.95]", "mixup.mixup_alpha=0.2",
    ])
    assert cfg.epochs == 3 and cfg.optim.lr == 1e-3 and cfg.peak_lr() == 1e-3
    assert cfg.model.kwargs == {"depth": 2, "embed_dim": 32}
    assert cfg.schedule == FixedSchedule(rho=0.5)
    assert cfg.optim.betas == [0.9, 0.95] and cfg.mixup.enabled


def test_yaml_1_1_exponents_and_ints_become_floats():
    cfg = config_from_dict({"optim": {"lr": "5e-4", "weight_decay": 0}})  # YAML 1.1 reads 5e-4 as a string
    assert cfg.optim.lr == 5e-4 and isinstance(cfg.optim.weight_decay, float)


@pytest.mark.parametrize(
    "override, words",
    [
        ("optim.lrr=1", ["optim.lrr", "did you mean 'lr'", "valid keys under optim"]),
        ("epoch=3", ["'epoch'", "epochs"]),
        ("data.pathh=x", ["data.pathh", "path"]),
        ("model.nam=x", ["model.nam", "name"]),
        ("epochs=0", ["epochs", ">= 1"]),
        ("epochs=1.5", ["epochs", "integer"]),
        ("optim.lr=fast", ["optim.lr", "number"]),
        ("optim.lr=-1", ["optim.lr", "> 0"]),
        ("batch_size=10", ["batch_size", "accum_steps"]),  # with accum_steps=4 below
        ("schedule.name=zigzag", ["schedule", "zigzag", "cyclic"]),
        ("schedule.low=1.5", ["low", "high"]),
        ("select=best", ["select", "magnitude"]),
        ("amp=fp8", ["amp", "bf16"]),
        ("model.drop_path_rate=1.5", ["drop_path_rate"]),
        ("lr_sched.name=exp", ["lr_sched.name", "cosine"]),
        ("data.on_corrupt=ignore", ["on_corrupt", "skip"]),
        ("model=3", ["model", "mapping"]),
        ("epochs", ["key=value"]),
        ("epochs.x=1", ["epochs", "not a section"]),
    ],
)
def test_bad_values_name_the_problem(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "demo.yaml", ["accum_steps=4", override])
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_unknown_model_name_is_refused_with_suggestion():
    cfg = load_config(CONFIGS / "demo.yaml", ["model.name=pss_vit_tiny_patch4_23"])
    with pytest.raises(ConfigError, match="unknown model.name.*did you mean.*pss_vit_tiny_patch4_32"):
        check_config(cfg)


def test_unknown_optimizer_is_refused_by_check_config_before_any_data():
    # timm knows the optimizers: the optimisation layer (pss.optim) checks the name, check_config asks it
    cfg = load_config(CONFIGS / "demo.yaml", ["optim.opt=adamz"])
    with pytest.raises(ConfigError) as e:
        check_config(cfg)
    assert "optim.opt" in str(e.value) and "adamw" in str(e.value)


def test_default_normalisation_is_timms():
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from pss.config import IMAGENET_MEAN, IMAGENET_STD

    assert (IMAGENET_MEAN, IMAGENET_STD) == (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    assert TrainConfig().data.mean == IMAGENET_DEFAULT_MEAN


def test_recipe_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("epochs: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def test_defaults_and_dict_round_trip():
    cfg = TrainConfig()
    d = config_to_dict(cfg)
    yaml.safe_dump(d)  # plain types only
    assert config_from_dict(d) == cfg
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


def test_empty_recipes_and_duplicate_keys_are_refused(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing but a comment\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(tmp_path / "empty.yaml")
    (tmp_path / "dup.yaml").write_text("epochs: 2\noptim:\n  lr: 1.0e-3\n  lr: 1.0e-4\n")
    with pytest.raises(ConfigError, match=r"key 'lr' is given twice \(line 4\)"):
        load_config(tmp_path / "dup.yaml")
    (tmp_path / "dup_top.yaml").write_text("epochs: 2\nepochs: 3\n")
    with pytest.raises(ConfigError, match="'epochs' is given twice"):
        load_config(tmp_path / "dup_top.yaml")


@pytest.mark.parametrize("recipe", ["demo", "cifar10_pss"])
def test_loading_a_recipe_does_not_import_the_data_pipeline(recipe):
    # DataConfig lives in pss.config: validating a recipe's data section needs none of pss.data (its
    # image decoding, folders and loaders), unless the recipe asks timm to parse an auto_augment policy.
    # (torchvision and PIL are loaded anyway: `import pss` registers its models with timm, which imports
    # torchvision, and OptimConfig asks timm.optim for the optimizer names.)
    code = ("import sys, pss.config; pss.config.load_config(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m == 'pss.data' or m.startswith('pss.data.')))")
    res = subprocess.run([sys.executable, "-c", code, str(CONFIGS / f"{recipe}.yaml")], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_find_recipe_by_path_or_shipped_name(tmp_path):
    assert find_recipe("demo") == find_recipe("demo.yaml") == CONFIGS / "demo.yaml"
    (tmp_path / "mine.yaml").write_text("epochs: 2\n")
    assert find_recipe(tmp_path / "mine.yaml") == tmp_path / "mine.yaml"
    with pytest.raises(ConfigError, match="'no_such_recipe' not found; shipped recipes: .*demo"):
        find_recipe("no_such_recipe")


def test_a_users_epochs_scale_the_recipes_lr_warmup_and_cooldown(caplog):
    """`--epochs 2` on cifar10_pss once kept its 10 warm-up epochs: the whole run was LR warm-up."""
    import logging

    from pss.resolve import resolve_config

    with caplog.at_level(logging.INFO, logger="pss.train"):
        cfg, _ = resolve_config("cifar10_pss", ["epochs=20", "budget_epochs=null", "lr_sched.name=cosine"],
                                data="builtin", output="unused")
    assert (cfg.epochs, cfg.lr_sched.warmup_epochs) == (20, 1.0)  # 10 of 200 -> 1 of 20
    assert "epochs 20 instead of the recipe's 200: LR warmup_epochs 10 -> 1" in caplog.text
    # tokens for epochs scales on top of it: 30 epochs, 1.5 warm-up
    cfg, _ = resolve_config("cifar10_pss", ["epochs=20"], data="builtin", output="unused")
    assert (cfg.epochs, cfg.lr_sched.warmup_epochs) == (30, 1.5)
    # what the command sets is kept; the recipe's own epochs change nothing
    cfg, _ = resolve_config("cifar10_pss", ["epochs=20", "lr_sched.warmup_epochs=3", "budget_epochs=null"],
                            data="builtin", output="unused")
    assert cfg.lr_sched.warmup_epochs == 3
    cfg, _ = resolve_config("cifar10_baseline", [], data="builtin", output="unused")
    assert (cfg.epochs, cfg.lr_sched.warmup_epochs) == (200, 10)
