"""`pss schedule --budget` plans what a run plans: for every shipped recipe with a budget, the command (given
the recipe's settings as flags) and a run's set-up (`pss.train.Run.setup`) reach the same plan through the
one entry, `pss.budget.plan`.

The recipes run shrunk where it does not touch the plan: the built-in data (so the steps per epoch are the
run's), a one-block model of the recipe's name, side and options, on the CPU without the pre-flight; a
fine-tuning recipe starts from weights (`init`), as it would, and `pss schedule` is told --fine-tuning.
"""
from __future__ import annotations

import json

import pytest
import yaml

import pss.budget
from conftest import ROOT
from pss.tokens_for_epochs import describe_budget_epochs, starts_trained
from pss.cli import main
from pss.config import load_config, load_yaml
from pss.resolve import resolve_config
from pss.train import Run

RECIPES = sorted(p for p in (ROOT / "configs").glob("*.yaml") if load_yaml(p).get("budget") is not None)
SHRINK = ["data.path=null", "data.builtin_num_train=60", "data.builtin_num_val=20", "data.num_workers=0",
          "data.in_memory=false", "batch_size=12", "accum_steps=1", "device=cpu", "compile=false", "preflight=false",
          "model.kwargs.depth=1", "model.kwargs.embed_dim=32", "model.kwargs.num_heads=2"]


def test_the_recipes_with_a_budget_are_found():
    assert {p.stem for p in RECIPES} >= {"demo", "cifar10_pss", "cifar10_finetune_pss", "deit_small_224_pss",
                                         "vit_base_finetune_pss"}


def schedule_argv(recipe, overrides: list[str], steps_per_epoch: int) -> list[str]:
    """`pss schedule` flags for the recipe's own settings (before tokens for epochs)."""
    cfg = load_config(recipe, overrides)
    sched = ",".join(f"{k}={'none' if v is None else v}" for k, v in cfg.schedule.to_dict().items() if k != "name")
    argv = ["schedule", "spec", f"{cfg.schedule.name}:{sched}", "--epochs", str(cfg.epochs),
            "--steps-per-epoch", str(steps_per_epoch), "--budget", str(cfg.budget), "--model", cfg.model.name,
            "--img-size", str(cfg.data.img_size), "--budget-lever", cfg.budget_lever, "--budget-cost", str(cfg.budget_cost)]
    argv += [f"--set={k}={json.dumps(v)}" for k, v in cfg.model.kwargs.items()]
    if cfg.budget_epochs is not None:
        argv += ["--budget-epochs", str(cfg.budget_epochs)]
    if starts_trained(cfg):
        argv.append("--fine-tuning")
    if cfg.resolution is not None:
        argv += ["--resolution", yaml.safe_dump(cfg.resolution.to_dict(), default_flow_style=True).strip()]
    return argv


def init_weights(recipe, folder) -> list[str]:
    """A fine-tuning recipe's starting weights: the shrunk model's own, saved (none for the others)."""
    if "finetune" not in recipe.stem:
        return []
    from safetensors.torch import save_file

    from pss.train import build_model_for, resolve_data_geometry

    cfg = resolve_data_geometry(load_config(recipe, SHRINK), 10)
    path = folder / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in build_model_for(cfg, 10).state_dict().items()}, str(path))
    return [f"init={path}"]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_pss_schedule_plans_what_a_run_plans(recipe, tmp_path, capsys, monkeypatch):
    overrides = SHRINK + init_weights(recipe, tmp_path)
    cfg, _ = resolve_config(recipe, overrides, output=str(tmp_path / "run"))
    run = Run(cfg, quiet=True).setup()
    assert run.budget is not None and run.budget.cost is run.cost
    assert ("fine-tuning" in (run.cfg.budget_reference or {}).get("auto", "")) == ("finetune" in recipe.stem)

    planned = []
    real = pss.budget.plan
    monkeypatch.setattr(pss.budget, "plan", lambda *a, **k: planned.append(real(*a, **k)) or planned[-1])
    capsys.readouterr()
    assert main(schedule_argv(recipe, overrides, run.steps_per_epoch)) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    [plan] = planned
    assert plan == run.budget and plan.to_dict() == run.budget.to_dict()  # the schedule, resolution and costs
    assert f"steps: {run.cfg.epochs * run.steps_per_epoch} ({run.cfg.epochs} epochs x {run.steps_per_epoch}" in out
    if run.cfg.budget_reference is not None:  # tokens for epochs, said alike
        assert out.splitlines()[0] == describe_budget_epochs(run.cfg)
    assert f"predicted cost {run.budget.predicted_cost:.4f}" in out
