"""The best way to spend a token budget: fewer tokens by dropping, by lower resolution, or both, at two scales.

    python benchmarks/token_study.py --data PATH --scales t256,t64 --budgets 0.6,0.33 --seeds 0,1
    python benchmarks/token_study.py --data PATH --record-only      # record what has finished so far

PATH is a CIFAR-10 ImageNet-style folder or archive (`cifar10/{train,test}/<class>/*.jpg`). Every run uses
the budget study's CPU set-up (`pss.study.STUDY_CPU_ROPE`: the 4-block ViT of width 96 with rotary
position embedding, 32 px, batch 64, one keep-ratio grid of 0.1, 15 epochs, each run's LR schedule fully
decayed over its own length) at one of two token scales, fixed before any run of this study trained:

  t64    4 px patches: 64 tokens per image, 1,000 training images per class (the budget study's runs)
  t256   2 px patches: 256 tokens per image, 500 training images per class (each step ~5x the t64 cost)

Arms at each scale and budget B (costs relative to the scale's 15-epoch full run):

  full               every token, full side, 15 epochs (cost 1.0; shared by every budget)
  equal_time         every token, full side, round(15 B) epochs
  fixed              a fixed random keep ratio solved for B, 15 epochs (timm's patch_drop_rate)
  tokens_for_epochs  1.5x the epochs at a fixed random keep ratio, total cost B (today's shipped default)
  res_curriculum     every token, the side growing from a start solved for B to full, the last 20 % of the
                     epochs at full side, 15 epochs (EfficientTrain++-like)
  res_for_epochs     the same curriculum over 1.5x the epochs, total cost B
  both               1.5x the epochs, the curriculum and a fixed random keep ratio solved jointly for B
                     (`budget_lever: both`: the side takes sqrt(B') of the cost, the keep ratio the rest)

Resolution for epochs is not planned below budget ~0.35: its full-side finish (the last 20 % of 1.5x the
epochs) costs 0.3 of the full run by itself. The drop arms train their solved keep ratio unrounded (no grid),
but for the budget study's t64 runs at 0.6, reused as they are (0.1 grid).

The curriculum's shape, decided before any result: `linear` (start -> full side) where the resolution
lever's share of the run's own budget is at least LINEAR_FLOOR (a linear ramp ending at full side cannot
cost less than about half of the full run), else `step` (the start side until the last 20 %, then full:
DeiT III's low-resolution phase then a full-resolution finish).

The t64 runs at budget 0.6 that the budget study already trained (full, equal_time, fixed, tokens for
epochs: same set-up, same overrides) are read from its records and not trained again. Runs are resumable
(re-run the same command), go under --output (never committed); a run already in a record under --results
(same seed and overrides) is not trained again. On CPU run at most two studies side by side, each with
`OMP_NUM_THREADS=1` and its own --seeds or --scales (`taskset -c 0` / `taskset -c 1`).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing, e.g. on a GPU machine
sys.path.insert(0, str(ROOT / "benchmarks"))

from pss.equal_time import equal_time_overrides  # noqa: E402
from pss.demo import warm_up  # noqa: E402
from pss.errors import ConfigError  # noqa: E402
from pss.analysis.sweep import interpolate  # noqa: E402
from pss.runfolder import RunDir  # noqa: E402
from pss.study import (  # noqa: E402
    CPU_REDUCED_MODEL,
    RECORD_SUMMARY_KEYS,
    STUDY_CPU_ROPE,
    STUDY_RECIPE,
    TOKENS_FOR_EPOCHS,
    PlannedRun,
    add_study_arguments,
    derive,
    per_seed,
    planned_run,
    recorded_summaries as recorded_rows,
    run_plan,
    run_state,
    study_arm,
    write_record,
)

log = logging.getLogger("pss.study")

RECIPE = STUDY_RECIPE

HORIZON = 15
FULL_FROM = 0.8  # the resolution arms' last 20 % of the epochs at full side
LINEAR_FLOOR = 0.55  # below this share of a run's own budget, the curriculum is a step, not a ramp
SCALES: dict[str, list[str]] = {
    "t64": STUDY_CPU_ROPE,
    "t256": derive(STUDY_CPU_ROPE, {"data.max_train_per_class": 500,
                                    "model.kwargs": json.dumps({**CPU_REDUCED_MODEL, "pos_embed": "rope", "patch_size": 2})}),
}
ARMS = ("full", "equal_time", "fixed", "tokens_for_epochs", "res_curriculum", "res_for_epochs", "both")
DROP_ARMS = ("fixed", "tokens_for_epochs")
# A fixed keep ratio needs no grid (one value); the budget study's 0.1 grid left up to 13 % of a budget unspent
# (at 256 tokens, rho 0.6 costs 0.52). Its runs are reused at t64 / 0.6 as they are; every other drop arm
# trains its solved ratio unrounded.
FIXED = "schedule={name: fixed, rho: 0.6, grid: null}"
# The inference dial: top-1 at these multiples of the full model's measured images/s, by each reduce rule, for
# the full run and the shipped arm (today: tokens for epochs at budget 0.6) of each scale and seed.
DIAL_SPEEDUPS = (1.5, 2.0, 3.0)
DIAL_KEEP = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15)
SHIPPED = "tokens_for_epochs"


def group(scale: str, budget: float) -> str:
    """Run-name prefix: the budget study's names at t64 (its runs are reused), the scale's name before them
    elsewhere; budget 0.6 is the budget study's horizon group `h15`, other budgets `b<B>`."""
    g = f"h{HORIZON}" if math.isclose(budget, 0.6) else f"b{budget:g}"
    return g if scale == "t64" else f"{scale}_{g}"


def resolution_shape(share: float) -> str:
    return "linear" if share >= LINEAR_FLOOR - 1e-9 else "step"


def reachable(arm: str, budget: float) -> bool:
    """Whether an arm can spend `budget` at all: resolution for epochs at 1.5x the epochs spends 1.5 x 0.2 of
    the recipe's cost on its full-side finish alone, so below ~0.35 it cannot (planned out, and said so)."""
    return not (arm == "res_for_epochs" and budget / TOKENS_FOR_EPOCHS < (1 - FULL_FROM) + 0.03)


def resolution_arm(budget: float, factor: float, lever: str) -> list[str]:
    """A resolution curriculum solved for `budget` over `factor` x the epochs (`lever`: resize, or both with a
    fixed random keep ratio); its shape by the rule of the module docstring."""
    own = budget / factor
    share = math.sqrt(own) if lever == "both" else own
    res = f"resolution={{name: {resolution_shape(share)}, start: 0.5, full_from: {FULL_FROM}}}"
    drop = [FIXED, "select=random"] if lever == "both" else study_arm("full", 1.0)
    extra = [f"budget_epochs={factor}"] if factor != 1 else []
    return [*drop, res, f"budget={budget}", f"budget_lever={lever}", *extra]


def overrides(arm: str, budget: float, reused: bool = False) -> list[str]:
    """An arm's overrides at `budget` (`reused`: the budget study's t64 runs at 0.6, on its 0.1 grid)."""
    if arm == "full":
        return study_arm("full", 1.0)
    if arm in DROP_ARMS and reused:
        return study_arm(arm, budget)
    if arm in DROP_ARMS:
        extra = [f"budget_epochs={TOKENS_FOR_EPOCHS}"] if arm == "tokens_for_epochs" else []
        return [FIXED, "select=random", f"budget={budget}", *extra]
    if arm == "res_curriculum":
        return resolution_arm(budget, 1, "resize")
    if arm == "res_for_epochs":
        return resolution_arm(budget, TOKENS_FOR_EPOCHS, "resize")
    if arm == "both":
        return resolution_arm(budget, TOKENS_FOR_EPOCHS, "both")
    raise ConfigError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="CIFAR-10 ImageNet-style folder or .tar.gz archive")
    p.add_argument("--scales", default="t256,t64", help=f"token scales ({', '.join(SCALES)}), in this order")
    p.add_argument("--budgets", default="0.6,0.33", help="compute budgets")
    p.add_argument("--arms", default=",".join(ARMS), help=f"which arms ({', '.join(ARMS)})")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    add_study_arguments(p, ROOT / "runs" / "token_study", ROOT / "benchmarks" / "results")
    p.add_argument("--record-only", action="store_true", help="train nothing: record the runs finished so far")
    p.add_argument("--note", default="", help="a line on how the runs were measured, kept in the record")
    p.add_argument("--dial", action="store_true",
                   help="train nothing: sweep the full and the shipped arm's finished runs (drop, merge, resize on "
                        "one measured images/s axis) and record top-1 at " + ", ".join(f"{s:g}x" for s in DIAL_SPEEDUPS)
                        + " the full model's images/s")
    p.add_argument("--dial-images", type=int, default=None, metavar="N",
                   help="evaluate the dial on the first N test images (default: all)")
    args = p.parse_args(argv)
    for what, given, known in (("--scales", args.scales, SCALES), ("--arms", args.arms, ARMS)):
        bad = [a for a in given.split(",") if a and a not in known]
        if bad:
            p.error(f"{what}: unknown {bad[0]!r}; choose from {', '.join(known)}")
    return args


def _list(text: str, kind: type = str) -> list[Any]:
    return [kind(s) for s in text.split(",") if s.strip()]


def _planned(name: str, seed: int, scale: str, extra: list[str], args: argparse.Namespace) -> PlannedRun:
    return planned_run(name, seed, RECIPE, [*SCALES[scale], f"epochs={HORIZON}", *args.overrides, *extra], args.data,
                       Path(args.output))


def plan(args: argparse.Namespace) -> list[PlannedRun]:
    """Scale by scale (the expensive t256 first by default), seed by seed, the full run first, then each
    budget's arms; the full run appears once per scale and seed."""
    runs: list[PlannedRun] = []
    arms = _list(args.arms)
    for scale in _list(args.scales):
        for seed in _list(args.seeds, int):
            full = _planned(f"{group(scale, 0.6)}_full", seed, scale, overrides("full", 1.0), args)
            if "full" in arms:
                runs.append(full)
            for budget in _list(args.budgets, float):
                g = group(scale, budget)
                for arm in arms:
                    if arm == "full" or not reachable(arm, budget):
                        continue
                    if arm == "equal_time":
                        runs.append(_planned(f"{g}_equal_time", seed, scale, [
                            *overrides("full", 1.0), *equal_time_overrides(full.cfg, budget, f"{g}_full")], args))
                    else:
                        reused = scale == "t64" and math.isclose(budget, 0.6)
                        runs.append(_planned(f"{g}_{arm}", seed, scale, overrides(arm, budget, reused), args))
    return runs


def recorded_summaries(results: Path) -> dict[tuple[int, tuple[str, ...]], dict[str, Any]]:
    """(seed, overrides) -> summary of the runs kept in the budget study's and this study's records (the
    newest record wins): the t64 runs at 0.6 are the budget study's, whatever they were named there."""
    rows = recorded_rows(results, ("budget_study_*.json", "token_study_*.json"))
    return {(seed, overrides): s for (_, seed, overrides), s in rows.items()}


def _key(run: PlannedRun) -> tuple[int, tuple[str, ...]]:
    return run.seed, tuple(run.settings["overrides"])


def every_run(args: argparse.Namespace) -> list[PlannedRun]:
    """Every run of this study (what a record may cover), whatever --scales / --arms say: seeds 0-2 (the
    study's plan), any seed asked for, and any seed a record of this study holds (a later record keeps it)."""
    held = {seed for (_, seed, _) in recorded_rows(Path(args.results), ("token_study_*.json",))}
    seeds = sorted({0, 1, 2} | set(_list(args.seeds, int)) | held)
    every = argparse.Namespace(**{**vars(args), "scales": ",".join(SCALES), "arms": ",".join(ARMS),
                                  "budgets": "0.6,0.33", "seeds": ",".join(map(str, seeds))})
    return plan(every)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    recorded = recorded_summaries(Path(args.results))
    runs = plan(args)
    todo = [r for r in runs if _key(r) not in recorded or RunDir(r.folder).is_finished()]
    for r in runs:
        if r not in todo:
            log.info("study: %s (seed %d) is in a record already", r.name, r.seed)
    if args.dial:
        run_dial(args)
        todo = [r for r in todo if RunDir(r.folder).is_finished()]  # record what exists, train nothing
    for r in todo:
        if args.record_only or args.dial:
            run_state(r.folder, r.settings, False)  # a folder of other settings is refused, as when training
            continue
        run_plan([r], fresh=args.fresh, quiet=args.quiet, warm_up=warm_up)
        # the record after every run: a session cut short keeps every run that finished
        record(every_run(args), recorded_summaries(Path(args.results)), args)
    path = record(every_run(args), recorded, args)
    if path is not None:
        print(path.with_suffix(".md").read_text())
    return 0


# ---------------------------------------------------------------------------------------------
# the inference dial of the full run and the shipped arm

def dial_pair(args: argparse.Namespace, scale: str, seed: int) -> tuple[PlannedRun, PlannedRun]:
    """The full run and the shipped arm (at budget 0.6) of one scale and seed, as planned."""
    runs = {r.name: r for r in every_run(args) if r.seed == seed}
    g = group(scale, 0.6)
    return runs[f"{g}_full"], runs[f"{g}_{SHIPPED}"]


def dial_folder(args: argparse.Namespace, scale: str, seed: int) -> Path:
    return Path(args.output) / f"dial_{scale}_s{seed}"


def run_dial(args: argparse.Namespace) -> None:
    """Sweep each (scale, seed) whose full run and shipped arm have finished, once (the sweep.json is kept):
    drop (each model's default rule), merge (ToMe) and resize, all points timed interleaved."""
    from pss.analysis.sweep import sweep_checkpoints, write_sweep

    for scale in _list(args.scales):
        for seed in _list(args.seeds, int):
            pair = dial_pair(args, scale, seed)
            out = dial_folder(args, scale, seed)
            if (out / "sweep.json").exists():
                log.info("dial: %s seed %d swept already (%s)", scale, seed, out)
                continue
            missing = [r.label for r in pair if not RunDir(r.folder).is_finished()]
            if missing:
                log.info("dial: %s seed %d waits for %s to finish", scale, seed, ", ".join(missing))
                continue
            result = sweep_checkpoints([r.folder for r in pair], data=args.data, keep_ratios=DIAL_KEEP,
                                       names=["full", SHIPPED], max_images=args.dial_images, reduce="all")
            write_sweep(result, out)



def dial_columns(result: dict[str, Any], scale: str, seed: int) -> dict[str, Any]:
    """Top-1 at DIAL_SPEEDUPS x the full model's measured images/s (every token, full side), per model and
    reduce rule, interpolated along each rule's measured curve; the best rule per model and speed-up."""
    entries = result["checkpoints"]
    full = next(e for e in entries if e["name"].startswith("full") and e["reduce"] == "drop")
    base = next(r["images_per_s"] for r in full["results"] if r["keep_ratio"] == 1.0)
    models: dict[str, Any] = {}
    for e in entries:
        model = "full" if e["name"].startswith("full") else SHIPPED
        curve = [(r["images_per_s"], r["acc1"]) for r in e["results"]
                 if r.get("acc1") is not None and r.get("images_per_s")]
        at = {f"{x:g}": interpolate(curve, x * base) for x in DIAL_SPEEDUPS}
        reach = max(ips for ips, _ in curve) / base
        models.setdefault(model, {})[e["reduce"]] = {"top1_at": at, "reach": reach}
    for rules in models.values():
        rules["best"] = {k: max((v["top1_at"][k] for v in rules.values() if v["top1_at"][k] is not None),
                                default=None) for k in (f"{x:g}" for x in DIAL_SPEEDUPS)}
    met = {k: (None if models[SHIPPED]["best"][k] is None or models["full"]["best"][k] is None
               else models[SHIPPED]["best"][k] >= models["full"]["best"][k]) for k in models["full"]["best"]}
    return {"scale": scale, "seed": seed, "full_images_per_s": base, "images": full["results"][0].get("num_images"),
            "device": result.get("device"), "models": models, "shipped_best_at_least_full_best": met}


def dial_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The dial of every (scale, seed) swept under --output, else as the newest record of this study has it."""
    kept: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(Path(args.results).glob("token_study_*.json")):
        for row in json.loads(path.read_text()).get("dial", []):
            kept[(row["scale"], row["seed"])] = row
    for scale in SCALES:
        for seed in sorted({0, 1, *_list(args.seeds, int)}):
            swept = dial_folder(args, scale, seed) / "sweep.json"
            if swept.exists():
                kept[(scale, seed)] = dial_columns(json.loads(swept.read_text()), scale, seed)
    return [kept[k] for k in sorted(kept)]


# ---------------------------------------------------------------------------------------------
# the record

def _parse(name: str) -> tuple[str, float, str]:
    """(scale, budget, arm) of a run name (`group`'s inverse)."""
    scale = "t64"
    if name.startswith("t256_"):
        scale, name = "t256", name[len("t256_"):]
    g, arm = name.split("_", 1)
    return scale, (0.6 if g.startswith("h") else float(g[1:])), arm


def _row(run: PlannedRun, s: dict[str, Any], horizon: int) -> dict[str, Any]:
    """One finished run; its FLOP cost relative to the full run of its scale (`horizon` epochs)."""
    scale, budget, arm = _parse(run.name)
    own = (s.get("budget") or {}).get("realised_cost")
    plan_ = (s.get("budget") or {})
    return {"name": run.name, "scale": scale, "budget": 1.0 if arm == "full" else budget, "arm": arm, "seed": run.seed,
            "epochs": run.cfg.epochs, "flop_cost": (1.0 if own is None else own) * run.cfg.epochs / horizon,
            "train_time_s": s["train_time_s"], "best_acc1": s["best_acc1"], "final_acc1": s["final_acc1"],
            "mean_keep_ratio": s.get("mean_keep_ratio"), "schedule": s.get("schedule"),
            "resolution": plan_.get("resolution") if isinstance(plan_, dict) else None,
            "overrides": list(run.settings["overrides"]), "summary": {k: s.get(k) for k in RECORD_SUMMARY_KEYS}}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (scale, budget, arm): means over the seeds whose full run has finished, per-seed differences to the
    full and the equal-time run of the same scale, budget and seed (final and best top-1), time vs full."""
    import statistics

    from pss.analysis.report import versus

    by = {(r["scale"], r["arm"] if r["arm"] == "full" else f"{r['budget']:g}/{r['arm']}", r["seed"]): r for r in rows}
    out = []
    for key in dict.fromkeys((r["scale"], r["budget"], r["arm"]) for r in rows):
        scale, budget, arm = key
        mine = [r for r in rows if (r["scale"], r["budget"], r["arm"]) == key and (scale, "full", r["seed"]) in by]
        if not mine:
            continue
        a: dict[str, Any] = {"scale": scale, "budget": budget, "arm": arm, "seeds": [r["seed"] for r in mine],
                             "epochs": mine[0]["epochs"], "flop_cost": statistics.fmean(r["flop_cost"] for r in mine)}
        for k in ("best_acc1", "final_acc1"):
            a[k] = statistics.fmean(r[k] for r in mine)
        a["time_vs_full"] = statistics.fmean(r["train_time_s"] / by[(scale, "full", r["seed"])]["train_time_s"]
                                             for r in mine)
        for label, ref in (("full", lambda r: by.get((scale, "full", r["seed"]))),
                           ("equal_time", lambda r: by.get((scale, f"{budget:g}/equal_time", r["seed"])))):
            pairs = [(r, ref(r)) for r in mine if ref(r) is not None and ref(r) is not r]
            if pairs:
                vs = [versus(r, b) for r, b in pairs]
                a[f"final_vs_{label}"] = [v["final_vs_full"] for v in vs]
                a[f"best_vs_{label}"] = [v["best_vs_full"] for v in vs]
        out.append(a)
    return out


def _sides(r: dict[str, Any]) -> str:
    res = r.get("resolution")
    return f"{res['name']} from {res['start']:.3g}" if res else "-"


def to_markdown(rec: dict[str, Any]) -> str:
    lines = ["# The best way to spend a token budget: drop, resize or both (CPU study set-up)", "",
             f"device: {rec['device']}; torch {rec['torch']}, timm {rec['timm']}; commit {rec['commit']}; {rec['date']}",
             f"set-up: recipe {rec['recipe']} + pss.study STUDY_CPU_ROPE; t64: 4 px patches, 1,000 images per class; t256: "
             "2 px patches, 500 images per class; 15 epochs; every arm and rule in benchmarks/token_study.py", "",
             "Means over seeds; differences in top-1 points against the run of the same scale and seed, per seed in "
             "brackets. Cost: FLOPs of the training steps relative to the scale's full run (side and keep ratio counted). "
             "Time: measured training time relative to the full run of the same seed (CPU, shared machine: compare "
             "the FLOP cost)." + (f" {rec['note']}" if rec.get("note") else ""), "",
             "| scale | budget | arm | epochs | seeds | cost | time vs full | best | final | final vs full | "
             "final vs equal time | best vs equal time |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in rec["arms"]:
        lines.append(f"| {a['scale']} | {a['budget']:g} | {a['arm']} | {a['epochs']} | {','.join(map(str, a['seeds']))} | "
                     f"{a['flop_cost']:.3f} | {a['time_vs_full']:.2f} | {a['best_acc1']:.2f} | {a['final_acc1']:.2f} | "
                     f"{per_seed(a.get('final_vs_full'))} | {per_seed(a.get('final_vs_equal_time'))} | "
                     f"{per_seed(a.get('best_vs_equal_time'))} |")
    lines += ["", "Per run:", "", "| run | seed | epochs | mean keep ratio | resolution | cost | train time (s) | best | final |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rec["runs"]:
        rho = r.get("mean_keep_ratio")  # as trained (after any grid's rounding)
        lines.append(f"| {r['name']} | {r['seed']} | {r['epochs']} | {'-' if rho is None else f'{rho:.3g}'} | "
                     f"{_sides(r)} | {r['flop_cost']:.3f} | {r['train_time_s']:.0f} | {r['best_acc1']:.2f} | "
                     f"{r['final_acc1']:.2f} |")
    if rec.get("dial"):
        lines += ["", "The inference dial: top-1 at 1.5x / 2x / 3x the full model's measured images/s (every token, full "
                  "side), interpolated along each reduce rule's measured curve ('-': the rule does not reach that "
                  "speed); drop at each model's default rule, merge = ToMe, resize = a lower input side. Every point "
                  "of a sweep was timed interleaved on one machine.", "",
                  "| scale | seed | model | rule | " + " | ".join(f"top-1 at {x:g}x" for x in DIAL_SPEEDUPS)
                  + " | reach |", "|---|---|---|---|" + "---|" * len(DIAL_SPEEDUPS) + "---|"]
        for d in rec["dial"]:
            for model, rules in d["models"].items():
                for rule, v in rules.items():
                    at = v if rule == "best" else v["top1_at"]
                    cells = " | ".join("-" if at[f"{x:g}"] is None else f"{at[f'{x:g}']:.2f}" for x in DIAL_SPEEDUPS)
                    reach = "" if rule == "best" else f"{v['reach']:.2f}x"
                    lines.append(f"| {d['scale']} | {d['seed']} | {model} | {rule} | {cells} | {reach} |")
    return "\n".join(lines) + "\n"


def record(every: list[PlannedRun], recorded: dict, args: argparse.Namespace) -> Path | None:
    """The record of every finished run of the study (from its folder, else from a committed record): the
    t64 runs the budget study trained count here under this study's names."""
    import datetime as dt

    from pss.runinfo import run_info

    rows = []
    horizon = {_parse(r.name)[0]: r.cfg.epochs for r in every if _parse(r.name)[2] == "full"}
    for r in every:
        s = RunDir(r.folder).read_summary() or recorded.get(_key(r))
        if s is not None:
            rows.append(_row(r, s, horizon[_parse(r.name)[0]]))
    if not rows:
        log.info("study: no finished runs to record yet")
        return None
    rec = {"kind": "token_study", **run_info("cpu"), "date": dt.date.today().isoformat(), "recipe": RECIPE,
           "scales": {k: v for k, v in SCALES.items()}, "note": args.note, "runs": rows, "arms": summarise(rows),
           "dial": dial_rows(args)}
    tag = "cpu" + (f"-{args.tag}" if args.tag else "")
    path = Path(args.results) / f"token_study_{tag}_{rec['date']}.json"
    write_record(path, rec, to_markdown(rec).splitlines())
    from results_page import write as write_results_page

    write_results_page(Path(args.results))
    return path


if __name__ == "__main__":
    from pss.cli import guarded  # a ConfigError is one line, a signal exit code 130

    raise SystemExit(guarded("token_study.py", main))
