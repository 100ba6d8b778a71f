"""`pss schedule KIND ...`: print the keep ratio of every step of a run, as a summary or as JSON.

    pss schedule cyclic --low 0.2 --high 1.0 --epochs 3 --steps-per-epoch 10
    pss schedule linear --start 0.4 --end 1.0 --epochs 100 --steps-per-epoch 1250 --grid none
    pss schedule fixed --rho 0.6 --epochs 2 --steps-per-epoch 5 --json
    pss schedule cyclic --budget 0.6 --model pss_vit_small_patch16_224 --epochs 100 --steps-per-epoch 1250
    pss schedule spec "cyclic:low=0.2,high=1.0,cooldown_epochs=2" --epochs 20 --steps-per-epoch 100

`spec SPEC` takes the one-line schedule syntax every recipe and `--set schedule=...` accepts
(pss.schedule_from_spec), instead of one flag per parameter.

`--budget B` solves the schedule's free parameter (cyclic --low, linear/cosine --start, fixed --rho) so
that the run costs B of the full-token run: by the FLOPs of `--model` (options with --set, e.g. --set
pos_embed=rope), or by a `pss bench speed --json` file given as --budget-cost. The flags make the run's
recipe (`budget_config`), planned by the one entry a training run uses (pss.budget.plan), so the two
never disagree; a budget plans whole epochs, as a recipe does.

`--json` prints a JSON list of {"step", "epoch", "keep_ratio"}, one record per line; "epoch" is the
0-based integer epoch index (step // steps_per_epoch), as in train_log.jsonl.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pss.bounds import MAX_STEPS_PER_EPOCH, bounded, check_count, check_epochs, check_img_size
from pss.budget_spec import FREE_PARAMETER, CostSpec, check_budget_epochs
from pss.errors import ConfigError
from pss.schedule import MAX_LISTED_STEPS, SCHEDULES, Schedule, from_dict, schedule_from_spec

# Per-kind parameters: (flag, dataclass field, required, help).
_PARAMS: dict[str, list[tuple[str, str, bool, str]]] = {
    "fixed": [("--rho", "rho", True, "keep ratio in (0, 1]")],
    "linear": [
        ("--start", "start", True, "keep ratio at the first scheduled step"),
        ("--end", "end", True, "keep ratio at the last scheduled step (above 1 is clamped)"),
    ],
    "cosine": [
        ("--start", "start", True, "keep ratio at the first scheduled step"),
        ("--end", "end", True, "keep ratio at the last scheduled step (above 1 is clamped)"),
    ],
    "cyclic": [
        ("--low", "low", False, "bottom of the triangle wave (default 0.2)"),
        ("--high", "high", False, "top of the triangle wave, above 1 is clamped (default 1.0)"),
        ("--period-epochs", "period_epochs", False, "length of one cycle in epochs (default 1)"),
    ],
}


def _budget_epochs(text: str) -> float | str:
    """--budget-epochs value: auto, or a number (checked with the budget by pss.budget_spec.check_budget_epochs)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number (e.g. 1.5) or auto, got {text!r}") from None


def _grid(text: str) -> float:
    """--grid value: a float, or 0 / none / off for no rounding (0.0 tells the schedule 'off')."""
    if text.strip().lower() in ("none", "off", "null", "0"):
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "schedule",
        help="show the keep ratio of every step of a schedule",
        description="Show the keep ratio per step of a keep-ratio schedule (summary, or --json).",
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind in [*SCHEDULES, "spec"]:
        if kind == "spec":
            k = kinds.add_parser(kind, help="a one-line spec, e.g. cyclic:low=0.2,high=1.0 (as in recipes and --set)")
            k.add_argument("spec", metavar="SPEC", help="e.g. cyclic:low=0.2,high=1.0 or linear:start=0.4,end=1 or 0.6")
        else:
            k = kinds.add_parser(kind, help=(SCHEDULES[kind].__doc__ or "").splitlines()[0])
        for flag, dest, required, help_ in _PARAMS.get(kind, []):
            # with --budget the free parameter is solved, so it may be left out
            free = dest == FREE_PARAMETER[kind]
            k.add_argument(flag, dest=dest, type=float, default=None, required=required and not free,
                           help=help_ + (" (required unless --budget solves it)" if required and free else ""))
        k.add_argument("--epochs", **bounded(check_epochs), required=True, help="length of the run in epochs")
        k.add_argument("--steps-per-epoch", **bounded(check_count, high=MAX_STEPS_PER_EPOCH), required=True,
                       help="optimizer steps per epoch")
        k.add_argument("--grid", type=_grid, default=None,
                       help="round rho to multiples of this; 0 or none = off (default 0.2, fixed: off)")
        k.add_argument("--warmup-epochs", type=float, default=None, help="epochs at rho = 1.0 first")
        k.add_argument("--cooldown-epochs", type=float, default=None, help="epochs at rho = 1.0 last")
        k.add_argument("--json", action="store_true", help="print a JSON list of {step, epoch, keep_ratio}")
        k.add_argument("--budget", type=float, default=None,
                       help="solve the free parameter so the run costs this share of the full-token run (0, 1]")
        k.add_argument("--budget-epochs", type=_budget_epochs, default=None,
                       help="with --budget: spend it on this many times the epochs at fewer tokens (e.g. 1.5), "
                            "or auto: the factor the budget study measured to pay at this budget")
        k.add_argument("--fine-tuning", action="store_true",
                       help="with --budget-epochs auto: the run starts from trained weights (--init / --pretrained), "
                            "so auto follows what the budget study measured when fine-tuning")
        k.add_argument("--model", default=None, help="with --budget: the model whose FLOPs set the cost")
        k.add_argument("--img-size", **bounded(check_img_size), default=None, help="with --budget: the model's input size")
        k.add_argument("--num-classes", **bounded(check_count, what="classes"), default=10,
                       help="with --budget: the classes of the model's head, whose FLOPs count in the cost (a run "
                            "takes them from its data; default %(default)s)")
        k.add_argument("--set", dest="model_kwargs", action="append", default=[], metavar="KEY=VALUE",
                       help="with --budget: a model option, e.g. --set pos_embed=rope")
        k.add_argument("--resolution", default=None, metavar="MAPPING",
                       help="a resolution schedule beside it, e.g. '{name: linear, start: 0.5, full_from: 0.8}' "
                            "(needs --model): the sides per phase and the (side, keep ratio) graphs torch.compile keeps")
        k.add_argument("--budget-lever", default="auto", choices=["auto", "drop", "resize", "both"],
                       help="with --budget and --resolution: what the budget solves (as budget_lever in a recipe)")
        k.add_argument("--budget-cost", default="flops",
                       help="with --budget: flops (of --model, default) or a pss bench speed --json file")
    p.set_defaults(func=run)


def build_schedule(args: argparse.Namespace) -> Schedule:
    """The schedule the flags describe; flags left out take the schedule's own defaults. With --budget
    the free parameter may be left out (a placeholder is solved away)."""
    if args.kind == "spec":  # the one-line syntax; the flags for shared settings still apply on top
        base = schedule_from_spec(args.spec)
        extra = {n: getattr(args, n) for n in ("grid", "warmup_epochs", "cooldown_epochs") if getattr(args, n) is not None}
        return from_dict({**base.to_dict(), **extra}) if extra else base
    spec: dict[str, Any] = {"name": args.kind}
    names = [dest for _, dest, _, _ in _PARAMS[args.kind]] + ["grid", "warmup_epochs", "cooldown_epochs"]
    spec.update({n: getattr(args, n) for n in names if getattr(args, n) is not None})
    budget = getattr(args, "budget", None)
    for flag, dest, required, _ in _PARAMS[args.kind]:
        if required and dest not in spec:
            if budget is not None and dest == FREE_PARAMETER[args.kind]:
                spec[dest] = 0.5  # placeholder, replaced by the solver
            else:  # a usage error, answered as argparse answers one (exit status 2)
                print(f"pss schedule {args.kind}: error: the following arguments are required: {flag} "
                      "(or --budget to solve it)", file=sys.stderr)
                raise SystemExit(2)
    return from_dict(spec)


def _model(args: argparse.Namespace, why: str) -> Any:
    import pss
    from pss.config import parse_kwargs

    if not args.model:
        raise ConfigError(f"{why} needs --model NAME (the model whose FLOPs set the cost and whose patches set the sides)")
    return pss.build_model(args.model, num_classes=args.num_classes, img_size=args.img_size, **parse_kwargs(args.model_kwargs))


def budget_config(args: argparse.Namespace, sched: Schedule, resolution: Any = None) -> Any:
    """The recipe `--budget` plans: the flags' model (name, --img-size, --set options), schedule, resolution
    schedule, epochs and budget settings as a TrainConfig, resolved as `pss train` resolves a recipe (tokens
    for epochs applied, for a run from trained weights with --fine-tuning)."""
    from pss.config import ModelConfig, TrainConfig, parse_kwargs
    from pss.tokens_for_epochs import apply_budget_epochs

    if not float(args.epochs).is_integer():
        raise ConfigError(f"--budget plans a run as pss train does, in whole epochs: give --epochs as a whole number "
                          f"(got {args.epochs:g})")
    spec = CostSpec.parse(args.budget_cost)
    if spec.kind == "measured":  # a training run's cost model: it needs the run's loader
        raise ConfigError(f"--budget-cost {args.budget_cost} is timed in a training run, with its data loader (pss "
                          "train --set budget_cost=measured); here give flops (with --model) or a pss bench speed "
                          "--json file")
    model = ModelConfig(name=args.model or ModelConfig.name, img_size=args.img_size, num_classes=args.num_classes,
                        kwargs=parse_kwargs(args.model_kwargs))
    cfg = TrainConfig(model=model, schedule=sched, resolution=resolution, epochs=int(args.epochs), budget=args.budget,
                      budget_epochs=args.budget_epochs, budget_lever=args.budget_lever, budget_cost=spec)
    return apply_budget_epochs(cfg, fine_tuning=args.fine_tuning)


def solve(args: argparse.Namespace, cfg: Any, spe: int, model: Any = None) -> Any:
    """--budget: the plan of `cfg` (`budget_config`) through the one entry a run uses (pss.budget.plan), on the
    FLOPs of --model (built here unless given) or the --budget-cost speed report (checked against --model
    where one is given)."""
    from pss.budget import plan

    if model is None and (cfg.budget_cost.kind == "flops" or args.model):
        model = _model(args, "--budget")
    return plan(cfg, model, spe)


def resolution_lines(resolution: Any, sched: Schedule, spe: int, total: int, geometry: tuple[int, int]) -> list[str]:
    """The sides per phase and the (side, keep ratio) pairs a compiled model keeps one graph each for."""
    from pss.resolution import describe_sides, joint_counts

    pairs = joint_counts(sched, resolution, spe, total, *geometry)
    shapes = "; ".join(f"{side} px x keep {', '.join(f'{r:g}' for r in counts)}" for side, counts in pairs.items())
    n = sum(len(c) for c in pairs.values())
    return [f"resolution: {describe_sides(resolution, -(-total // spe), *geometry)}",
            f"torch.compile: {n} training graph(s), one per (side, keep ratio): {shapes}"]


def run(args: argparse.Namespace) -> int:
    sched = build_schedule(args)
    if not args.epochs > 0:
        raise ConfigError(f"--epochs must be > 0, got {args.epochs:g}")
    spe = args.steps_per_epoch
    if spe < 1:
        raise ConfigError(f"--steps-per-epoch must be >= 1, got {spe}")
    plan = cfg = resolution = geometry = model = None
    if args.resolution is not None:
        from pss.config import parse_yaml
        from pss.resolution import check_resolution, from_dict as resolution_from_dict
        from pss.tasks.classification import ClassificationTask

        resolution = resolution_from_dict(parse_yaml(args.resolution, f"--resolution {args.resolution!r}"))
        model = _model(args, "--resolution")
        geometry = check_resolution(resolution, model, ClassificationTask(10))
    epochs = args.epochs
    if args.budget is not None:
        cfg = budget_config(args, sched, resolution)
        plan = solve(args, cfg, spe, model)
        sched, resolution, epochs = plan.schedule, plan.resolution or resolution, cfg.epochs
    elif args.budget_epochs is not None:  # tokens for epochs spends a budget, and none is given
        check_budget_epochs(args.budget_epochs, None)  # a factor: refused, naming it
        raise ConfigError("budget_epochs auto needs a budget to choose the factor for (e.g. --budget 0.6)")
    total = max(1, int(epochs * spe + 0.5))  # round half up, at least one step
    counts = sched.counts(spe, total)  # also checks that warm-up + cool-down fit the run
    if args.json:
        if total > MAX_LISTED_STEPS:
            raise ConfigError(f"--json lists every step, and this run has {total} (at most {MAX_LISTED_STEPS}); "
                              "leave out --json for the summary, or give fewer --epochs")
        rows = [json.dumps({"step": s, "epoch": s // spe, "keep_ratio": v}) for s, v in enumerate(sched.values(spe, total))]
        print("[\n" + ",\n".join(rows) + "\n]")
    else:
        if plan is not None:
            from pss.evidence import recommended_lever, recommended_shape
            from pss.tokens_for_epochs import describe_budget_epochs

            if cfg.budget_reference is not None:
                print(describe_budget_epochs(cfg))
            print(budget_header(plan, counts, sched.to_dict().get("grid")) if plan.lever == "drop" else plan.describe())
            if plan.unspent():
                print("warning: " + plan.unspent())
            print("recommended: " + recommended_shape(args.budget))
            print("how to spend: " + recommended_lever(args.budget))
        print(summary(sched, counts, spe, total))
        if resolution is not None:
            print("\n".join(resolution_lines(resolution, sched, spe, total, geometry)))
    return 0


def budget_header(plan: Any, counts: dict[float, int], grid: float | None) -> str:
    """The --budget line: the keep ratios that run (after the grid's rounding), then the solved parameter."""
    distinct = sorted(counts)
    runs = ", ".join(f"{v:g}" for v in distinct) if len(distinct) <= 6 else f"{distinct[0]:g} to {distinct[-1]:g}"
    where = f" on the {grid:g} grid (solved {plan.parameter} = {plan.value:.4g} before rounding)" if grid else \
        f" (solved {plan.parameter} = {plan.value:.4g})"
    budget, cost = plan.headline()
    return f"{budget}: runs keep ratios {runs}{where}, {cost} (cost model: {plan.cost_model})"


def summary(sched: Schedule, counts: dict[float, int], steps_per_epoch: int, total: int) -> str:
    """Readable report: parameters, run length, mean rho, distinct rhos, and a per-epoch view."""
    params = ", ".join(f"{k}={v}" for k, v in sched.to_dict().items() if k != "name")
    epochs = -(-total // steps_per_epoch)
    lines = [
        f"schedule: {sched.name}({params})",
        f"steps: {total} ({total / steps_per_epoch:g} epochs x {steps_per_epoch} steps/epoch)",
        f"mean keep ratio: {sum(v * n for v, n in counts.items()) / total:.4f} (share of patch tokens vs. rho = 1.0)",
        "keep ratios (value: steps, share):",
    ]
    for v, n in counts.items():
        lines.append(f"  {v!s:<9} {n:>8d} steps  {100 * n / total:5.1f}%")
    if total > MAX_LISTED_STEPS:
        lines.append(f"per epoch: not shown for runs over {MAX_LISTED_STEPS} steps")
        return "\n".join(lines)
    values = sched.values(steps_per_epoch, total)
    # Per epoch: identical consecutive epochs collapse to one line, so long runs stay short.
    lines.append("per epoch (mean, min, max" + (", every step" if steps_per_epoch <= 20 else "") + "):")
    chunks = [tuple(values[e * steps_per_epoch:(e + 1) * steps_per_epoch]) for e in range(epochs)]
    e = 0
    while e < epochs:
        last = e
        while last + 1 < epochs and chunks[last + 1] == chunks[e]:
            last += 1
        c = chunks[e]
        label = f"epoch {e + 1}" if last == e else f"epochs {e + 1}-{last + 1}"  # counted from 1, as training prints
        line = f"  {label:<14} mean {sum(c) / len(c):.3f}  min {min(c)}  max {max(c)}"
        if steps_per_epoch <= 20:
            line += "  [" + " ".join(map(str, c)) + "]"
        lines.append(line)
        e = last + 1
    return "\n".join(lines)
