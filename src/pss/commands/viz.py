"""`pss viz patches|schedule`: pictures of the kept patches and of keep-ratio schedules.

    pss viz patches runs/pss/checkpoint-best.pt --images cat.png dogs/ --keep 1.0,0.6,0.2 --output patches.png
    pss viz schedule cyclic:low=0.2,high=1.0 linear:start=0.4,end=1.0 configs/demo.yaml \\
        --epochs 5 --steps-per-epoch 50 --output schedules.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pss.analysis import viz
from pss.analysis.sweep import parse_keep_ratios
from pss.bounds import MAX_STEPS_PER_EPOCH, bounded, check_count, check_epochs
from pss.errors import ConfigError
from pss.outputs import check_output_file
from pss.runtime import resolve_device
from pss.schedule import MAX_LISTED_STEPS, Schedule, is_schedule_spec, schedule_from_spec
from pss.select import SELECT_RULES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("viz", help="pictures: kept patches per keep ratio, keep-ratio schedules",
                              description="Draw which patches a model keeps, or keep-ratio schedules.")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")

    k = kinds.add_parser(
        "patches",
        help="grid of images x keep ratios with the dropped patches greyed out",
        description="Run a checkpoint on some images at several keep ratios; draw one row per image and one "
        "column per keep ratio, the patches the model dropped greyed out, titled with its prediction.",
    )
    k.add_argument("checkpoint", metavar="CKPT", help="checkpoint (.pt) written by pss train")
    k.add_argument("--images", nargs="+", required=True, metavar="FILE_OR_DIR",
                   help="image files, or folders searched recursively for images")
    k.add_argument("--keep", default="1.0,0.8,0.6,0.4,0.2", help="comma-separated keep ratios (columns)")
    k.add_argument("--select", choices=SELECT_RULES, default=None, help="selection rule (default: the deterministic one for the rule the checkpoint was trained with)")
    k.add_argument("--max-images", **bounded(check_count), default=8, help="at most this many images (rows); default 8")
    k.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...")
    k.add_argument("--output", "-o", required=True, metavar="FILE.png",
                   help="picture to write (a folder: FOLDER/patches.png)")
    k.set_defaults(func=run_patches)

    s = kinds.add_parser(
        "schedule",
        help="keep ratio against the epoch for one or more schedules",
        description="Plot keep ratio against the epoch for schedules given as specs "
        "(cyclic:low=0.2,high=1.0, linear:start=0.4,end=1, cosine:start=0.2,end=1,grid=none, 0.5 for fixed) "
        "and/or YAML recipes, by path or shipped name such as demo, drawn as pss train runs them: their "
        "epochs (budget_epochs applied), a budget's solved schedule, and a resolution schedule's training "
        f"side on a second axis. Runs of up to {viz.PER_STEP_EPOCHS} epochs are drawn step by step, longer "
        "ones per epoch (the range and mean of each epoch's keep ratios).",
    )
    s.add_argument("schedules", nargs="+", metavar="SPEC_OR_YAML", help="schedule specs and/or recipe files")
    s.add_argument("--epochs", **bounded(check_epochs), default=None,
                   help="run length in epochs, for recipes as pss train --epochs (default: each recipe's; specs: "
                   "as long as the first recipe trains, else 3)")
    s.add_argument("--steps-per-epoch", **bounded(check_count, high=MAX_STEPS_PER_EPOCH), default=100,
                   help="optimizer steps per epoch (default 100; in a run the data sets it: images / batch size)")
    s.add_argument("--output", "-o", required=True, metavar="FILE.png",
                   help="picture to write (a folder: FOLDER/schedules.png)")
    s.set_defaults(func=run_schedule)


def run_patches(args: argparse.Namespace) -> int:
    from pss.models.hub import load_model

    keep = parse_keep_ratios(args.keep)
    output = check_output_file(args.output, "patches.png")
    files = viz.find_images(args.images)[: args.max_images]
    model, cfg = load_model(args.checkpoint, resolve_device(args.device))
    x, display = viz.load_images(files, viz.eval_data_config(model, cfg))
    result = viz.plot_patch_grid(model, x, display, keep, output, class_names=viz.class_names(cfg, args.checkpoint),
                                 select=args.select, row_labels=[f"{f.parent.name}/{f.name}" for f in files])
    for f, row in zip(files, result["predictions"]):
        print(f"{f}: " + ", ".join(f"rho {p['keep_ratio']:g} -> {p['name']} {p['prob']:.0%}" for p in row))
    print(f"picture: {result['path']}")
    return 0


def _recipe_run(item: str, epochs: int | None, steps_per_epoch: int) -> tuple[str, viz.ScheduleRun]:
    """A YAML training recipe (file or shipped name) as `pss train` would run it (its epochs, or `epochs`
    as --epochs gives them, with budget_epochs applied; a budget solved): its label and ScheduleRun."""
    from pss.resolve import resolve_config

    cfg, _ = resolve_config(item, [f"epochs={epochs:g}"] if epochs is not None else [], output="-")
    _check_length(cfg.epochs, steps_per_epoch)
    run = viz.trained_schedule(cfg, steps_per_epoch)
    budget = f", budget {(cfg.budget_reference or {}).get('budget', cfg.budget):g}" if cfg.budget is not None else ""
    return f"{Path(item).name} ({run.schedule.name}{budget})", run


def _check_length(epochs: float, steps_per_epoch: int) -> int:
    """The run's steps, refused in one line when there is nothing or too much to draw."""
    if not epochs > 0 or steps_per_epoch < 1:
        raise ConfigError("--epochs must be > 0 and --steps-per-epoch >= 1")
    total = max(1, int(epochs * steps_per_epoch + 0.5))
    if total > MAX_LISTED_STEPS:
        raise ConfigError(f"{total} steps are too many to draw (at most {MAX_LISTED_STEPS}); give fewer --epochs or "
                          "--steps-per-epoch (the shape repeats), or see the counts with pss schedule")
    return total


def run_schedule(args: argparse.Namespace) -> int:
    output = check_output_file(args.output, "schedules.png")
    spe = args.steps_per_epoch
    recipes = {item: _recipe_run(item, args.epochs, spe) for item in args.schedules if not is_schedule_spec(item)}
    # specs run --epochs, else as long as the first recipe trains, else 3 epochs
    first = next(iter(recipes.values()), None)
    epochs = args.epochs if args.epochs is not None else first[1].total_steps / spe if first else 3
    total = _check_length(epochs, spe)
    schedules: dict[str, Schedule | viz.ScheduleRun] = {}
    for item in args.schedules:
        if item in recipes:  # a recipe file, or a shipped recipe's name (demo, cifar10_pss, ...)
            label, run = recipes[item]
            schedules[label] = run
        else:
            schedules[item] = schedule_from_spec(item)
    for s in schedules.values():
        (s.schedule if isinstance(s, viz.ScheduleRun) else s).check_run(
            spe, s.total_steps if isinstance(s, viz.ScheduleRun) else total)
    result = viz.plot_schedules(schedules, spe, total, output)
    for label, mean in result["mean_keep_ratio"].items():
        note = schedules[label].note if isinstance(schedules[label], viz.ScheduleRun) else ""
        print(f"{label}: mean keep ratio {mean:.3f} over {result['epochs'][label]:g} epochs" + (f" ({note})" if note else ""))
    print(f"picture: {result['path']} (keep ratios drawn {result['drawn']})")
    return 0
