"""Resolution schedules (pss.resolution), smaller patch grids in the PSS ViT, and one cost over side and keep
ratio (pss.budget): values, the exact position terms of a smaller grid, and the refusals."""
from __future__ import annotations

import math

import pytest
import timm
import torch

import pss
from pss.engine import BaseTask
from pss.tasks.classification import ClassificationTask
from pss.budget import FlopCost, plan_budget, predicted_cost
from pss.budget_spec import resolve_lever
from pss.config import load_config
from pss.errors import ConfigError
from pss.flops import count_flops
from pss.resolution import ResolutionSchedule, check_resolution, describe_sides, from_dict, patch_side
from pss.schedule import CyclicSchedule, FixedSchedule
from conftest import write_recipe


def _model(pos_embed: str = "rope", **kw) -> torch.nn.Module:
    return timm.create_model("pss_vit_tiny_patch4_32", depth=2, embed_dim=48, num_heads=3, num_classes=10,
                             pos_embed=pos_embed, **kw)


def test_sides_follow_the_shape_per_epoch_and_end_at_full_side():
    lin = ResolutionSchedule(name="linear", start=0.5, full_from=0.8)
    # 8 patches x (0.5 + 0.5 e / 8) = 4, 4.5, 5, ... patches, rounded half up; full side from epoch 8 (0.8 x 10)
    assert lin.epoch_sides(10, 32, 4) == [16, 20, 20, 24, 24, 28, 28, 32, 32, 32]
    step = ResolutionSchedule(name="step", start=0.5, full_from=0.5)
    assert step.epoch_sides(4, 224, 16) == [112, 112, 224, 224]
    cos = ResolutionSchedule(name="cosine", start=0.25, full_from=1.0)
    assert cos.epoch_sides(4, 32, 4) == [8, 12, 20, 28]  # 0.25 + 0.75 (1 - cos(pi e / 4)) / 2
    # per step: one side per epoch, a pure function of the step
    assert [lin.side(s, 3, 30, 32, 4) for s in (0, 2, 3, 5, 6, 29)] == [16, 16, 20, 20, 20, 32]
    assert step.counts(5, 20, 224, 16) == {112: 10, 224: 10}
    assert step.segments(5, 20, 224, 16) == [(0, 10, 112), (10, 20, 224)]


def test_a_side_is_whole_patches_between_one_patch_and_the_full_side():
    assert patch_side(0.51, 32, 4) == 16 and patch_side(0.57, 32, 4) == 20  # 4.08 -> 4, 4.56 -> 5 patches
    assert patch_side(0.01, 32, 4) == 4 and patch_side(1.0, 32, 4) == 32


@pytest.mark.parametrize("bad, message", [
    ({"name": "linear", "start": 0.8, "end": 0.5}, "above its end"),
    ({"name": "zigzag"}, "unknown resolution schedule"),
    ({"name": "linear", "start": 0}, "start must be a fraction"),
    ({"name": "linear", "full_from": 1.5}, "full_from must be a fraction"),
    ({"name": "linear", "begin": 0.5}, "unknown key"),
    ("fast", "must be a mapping"),
])
def test_bad_resolution_settings_are_one_line(bad, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(bad)


def test_recipe_keys_are_checked_where_the_config_is_read(tmp_path):
    cfg = load_config(write_recipe(tmp_path, resolution={"name": "step", "start": 0.5}, budget=0.6,
                                   schedule={"name": "fixed", "rho": 1.0}))
    assert cfg.resolution == ResolutionSchedule(name="step", start=0.5)
    assert resolve_lever(cfg.budget_lever, cfg.schedule, cfg.resolution) == "resize"
    with pytest.raises(ConfigError, match="above its end"):
        load_config(write_recipe(tmp_path, resolution={"name": "linear", "start": 0.9, "end": 0.6}))
    with pytest.raises(ConfigError, match="budget_lever resize needs a resolution schedule"):
        load_config(write_recipe(tmp_path, budget=0.6, budget_lever="resize"))
    with pytest.raises(ConfigError, match="unknown budget_lever"):
        load_config(write_recipe(tmp_path, budget_lever="shrink"))


def test_the_lever_a_budget_solves():
    res = ResolutionSchedule(name="linear")
    assert resolve_lever("auto", FixedSchedule(rho=1.0), None) == "drop"
    assert resolve_lever("auto", FixedSchedule(rho=1.0), res) == "resize"
    assert resolve_lever("auto", CyclicSchedule(), res) == "both"
    assert resolve_lever("drop", CyclicSchedule(), res) == "drop"


def test_models_and_tasks_that_cannot_train_smaller_grids_are_refused_in_one_line():
    res = ResolutionSchedule(name="linear")
    task = ClassificationTask(10)
    assert check_resolution(res, _model(), task) == (32, 4)
    assert check_resolution(None, _model(), task) is None
    fixed = pss.attach(timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, depth=1, num_classes=10))
    with pytest.raises(ConfigError, match="dynamic_img_size=True"):
        check_resolution(res, fixed, task)
    with pytest.raises(ConfigError, match="classification training"):
        check_resolution(res, _model(), BaseTask())
    with pytest.raises(ConfigError, match="at least 2 patches per side"):
        res.check_model(4, 4)
    with pytest.raises(ConfigError, match=r"start 0.05 is 1.6 px, below one 4 px patch: the smallest start .* is 0.125"):
        ResolutionSchedule(name="step", start=0.05).check_model(32, 4)


@pytest.mark.parametrize("coords", ["integer", "rescaled"])
def test_a_smaller_grid_gets_the_positions_its_coordinates_say(coords):
    """rope: integer coordinates are the full grid's rows (i, j), rescaled ones the rows (2i, 2j) of a grid of
    half the side; rel_bias: the full table's rows of the offsets the smaller grid has."""
    model = _model("rope", rope_coords=coords)
    _, rope = model.grid_tables((4, 4))
    full = model.rope_embed
    step = 1 if coords == "integer" else 2
    rows = torch.tensor([1 + (step * i) * 8 + step * j for i in range(4) for j in range(4)])
    assert torch.equal(rope[1:], full[rows]) and torch.equal(rope[:1], full[:1])
    assert model.grid_tables((4, 4))[1] is rope  # built once, kept

    bias = _model("rel_bias")
    index, _ = bias.grid_tables((4, 4))
    keep = torch.tensor([0] + [1 + i * 8 + j for i in range(4) for j in range(4)])  # CLS + the top-left 4 x 4
    assert torch.equal(index, bias.relative_position_index[keep][:, keep])


@pytest.mark.parametrize("pos_embed", ["rope", "rel_bias", "learned"])
def test_every_position_scheme_trains_on_a_smaller_grid_and_full_side_is_unchanged(pos_embed):
    torch.manual_seed(0)
    model = _model(pos_embed)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model.eval()(x)
        model.train()
        pss.set_keep_ratio(model, 0.5, select="random")
        small = model(torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", antialias=True))
        assert small.shape == (2, 10) and torch.isfinite(small).all()
        assert torch.equal(model.eval()(x), before)  # the full side after a smaller grid: the same logits
    # the full side takes the model's own buffers, not a rebuilt table
    assert model.grid_tables(model.grid) == (model.relative_position_index, model.rope_embed)
    with pytest.raises(ValueError, match="whole 4 px patches"):
        model(torch.randn(1, 3, 18, 18))


def test_the_flop_cost_counts_side_and_keep_ratio_as_the_model_runs_them():
    model = _model("rope").train()
    cost = FlopCost.for_model(model)
    full = count_flops(model, torch.randn(1, 3, 32, 32), 1.0, backward=True)
    for side, rho in ((16, 1.0), (24, 0.5), (12, 0.6)):
        counted = count_flops(model, torch.randn(1, 3, side, side), rho, backward=True)
        assert cost(rho, side) == pytest.approx(counted / full, rel=1e-9)
    assert cost(0.5) == cost(0.5, 32)


def test_a_budget_solves_the_start_side_or_both_levers():
    model = _model("rope").train()
    cost = FlopCost.for_model(model)
    res = ResolutionSchedule(name="linear", start=0.5, full_from=0.8)
    plan = plan_budget(FixedSchedule(rho=1.0), res, "auto", 0.7, cost, 10, 100)
    assert plan.lever == "resize" and plan.schedule == FixedSchedule(rho=1.0)
    assert plan.predicted_cost <= 0.7 + 1e-9
    assert plan.predicted_cost == predicted_cost(plan.schedule, cost, 10, 100, plan.resolution)
    higher = dataclasses_replace_start(plan.resolution, plan.resolution.start + 0.05)
    assert predicted_cost(plan.schedule, cost, 10, 100, higher) > 0.7  # the largest start within the budget
    assert "resolution (linear) start = " in plan.describe()

    both = plan_budget(FixedSchedule(rho=0.6), res, "auto", 0.5, cost, 10, 100)
    assert both.lever == "both" and both.predicted_cost <= 0.5 + 1e-9
    side_alone = predicted_cost(FixedSchedule(rho=1.0), cost, 10, 100, both.resolution)
    assert side_alone <= math.sqrt(0.5) + 1e-9 and side_alone > math.sqrt(0.5) - 0.1  # the side's half of the saving
    assert both.schedule.rho < 1.0

    with pytest.raises(ConfigError, match="below what the linear resolution schedule can reach.*step shape"):
        plan_budget(FixedSchedule(rho=1.0), res, "resize", 0.3, cost, 10, 100)
    with pytest.raises(ConfigError, match="lower resolution.full_from"):
        plan_budget(FixedSchedule(rho=1.0), ResolutionSchedule(name="step", full_from=0.5), "resize", 0.3, cost, 10, 100)


def dataclasses_replace_start(res: ResolutionSchedule, start: float) -> ResolutionSchedule:
    return res.with_start(min(1.0, start))


def test_the_run_header_names_every_phase():
    text = describe_sides(ResolutionSchedule(name="step", start=0.5, full_from=0.5), 4, 32, 4)
    assert text == ("step start 0.5: 16 px (16 patches) epochs 1-2, 32 px (64 patches) epochs 3-4; "
                    "evaluation at 32 px")


def test_pss_schedule_shows_sides_per_phase_and_the_graphs_a_compiled_model_keeps(capsys):
    from pss.cli import main

    model = ["--model", "pss_vit_tiny_patch4_32", "--set", "depth=2", "--set", "embed_dim=48", "--set", "num_heads=3"]
    assert main(["schedule", "fixed", "--rho", "0.5", "--epochs", "4", "--steps-per-epoch", "5",
                 "--resolution", "{name: step, start: 0.5, full_from: 0.5}", *model]) == 0
    out = capsys.readouterr().out
    assert "resolution: step start 0.5: 16 px (16 patches) epochs 1-2, 32 px (64 patches) epochs 3-4" in out
    assert "torch.compile: 2 training graph(s), one per (side, keep ratio): 16 px x keep 0.5; 32 px x keep 0.5" in out
    # a budget solves the start side, as a run would (pss.budget.plan_budget)
    assert main(["schedule", "fixed", "--rho", "1.0", "--epochs", "10", "--steps-per-epoch", "5", "--budget", "0.7",
                 "--resolution", "{name: linear, start: 0.5}", *model]) == 0
    out = capsys.readouterr().out
    assert "budget 0.7: resolution (linear) start = " in out and "32 px (64 patches) epochs 8-10" in out
    assert main(["schedule", "fixed", "--rho", "0.5", "--epochs", "4", "--steps-per-epoch", "5",
                 "--resolution", "{name: step, start: 2}", *model]) == 2
    assert "start must be a fraction" in capsys.readouterr().err


def test_a_folder_decodes_and_augments_at_the_side_in_its_workers(tmp_path):
    """A lower training resolution on a folder of images: JPEGs decoded at about the side (PIL's draft), the
    train transform built for the side; the loader's batches come at the side, and back at full side after."""
    from PIL import Image

    from pss.config import DataConfig
    from pss.data import build_datasets, build_loader
    from pss.data.readable import load_rgb

    jpg = tmp_path / "a.jpg"
    Image.new("RGB", (64, 48), (200, 10, 10)).save(jpg, quality=90)
    assert load_rgb(jpg).size == (64, 48)
    assert load_rgb(jpg, draft=16).size == (32, 24)  # the 1/2 DCT scale: the smallest with both sides >= 16 px
    png = tmp_path / "a.png"
    Image.new("RGB", (64, 48)).save(png)
    assert load_rgb(png, draft=16).size == (64, 48)  # not a JPEG: decoded in full

    root = tmp_path / "data"
    for split, n in (("train", 8), ("val", 2)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (i * 20, 0, 0)).save(root / split / c / f"{i}.jpg")
    cfg = DataConfig(path=str(root), img_size=32, in_memory=False, num_workers=1)
    train, _, _ = build_datasets(cfg)
    loader = build_loader(train, 4, True, cfg)
    assert loader.set_side(16) is True
    assert next(iter(loader))[0].shape == (4, 3, 16, 16)
    assert loader.set_side(None) is True
    assert next(iter(loader))[0].shape == (4, 3, 32, 32)


def test_a_timm_vit_with_dynamic_img_size_trains_smaller_grids_through_attach():
    from pss.resolution import model_geometry

    model = pss.attach(timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, depth=1, num_classes=10,
                                         dynamic_img_size=True))
    assert model_geometry(model) == (32, 4)
    model.train()
    pss.set_keep_ratio(model, 0.5, select="random")
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    cost = FlopCost.for_model(model)
    counted = count_flops(model, torch.randn(1, 3, 16, 16), 0.5, backward=True)
    assert cost(0.5, 16) == pytest.approx(counted / count_flops(model, torch.randn(1, 3, 32, 32), 1.0, backward=True))
