"""Where PSS pays, and where it stops: horizons, tokens traded for epochs, and a budget curve.

    python benchmarks/budget_study.py --data PATH --part horizons --horizons 15,45 --seeds 0,1
    python benchmarks/budget_study.py --data PATH --part budgets --budgets 0.8,0.6,0.4,0.3 --seeds 0,1
    python benchmarks/budget_study.py --data PATH --part finetune --horizons 15 --seeds 0,1
    python benchmarks/budget_study.py --data PATH --record-only      # record what has finished so far

PATH is a CIFAR-10 ImageNet-style folder or archive (`cifar10/{train,test}/<class>/*.jpg`). Every
arm uses the studies' CPU set-up with rotary position embedding (`pss.study.STUDY_CPU_ROPE`: the 4-block
ViT of width 96 on 1,000 images per class, 32 px, batch 64) and one keep-ratio grid of 0.1 for every arm
(`pss.study.study_arm`), so that low budgets are reachable. Each run's LR schedule fully decays over
its own length. Arms at a horizon of E epochs, each costing 0.6 of the E-epoch full run unless named:

  full                full-token baseline, E epochs (cost 1.0)
  equal_time          full-token baseline of 0.6 E epochs (warm-up scaled alike)
  recommended         cyclic keep ratio per epoch, random selection, budget 0.6 (the shipped recipe)
  fixed               a fixed random keep ratio solved for budget 0.6 (timm's patch_drop_rate, scheduled)
  tokens_for_epochs   1.5 E epochs at a fixed random keep ratio, total cost 0.6 (`budget_epochs: 1.5`)
  jitter              (only when asked, --arms jitter) recommended, with jittered-grid selection in training

`--part budgets` trains, at the first horizon, fixed and cyclic random at each budget against the
equal-time baseline of that budget (budget 0.6 reuses the horizon runs). Below 0.5, which a cyclic
schedule up to 1.0 cannot reach, the schedule arm is `cooldown`: a fixed random ratio whose last 10 % of
epochs run at every token. `--budget-arms` picks among fixed, schedule (cyclic or cooldown), equal_time
and tokens_for_epochs (1.5x the epochs at a fixed random ratio, total cost the budget; only when asked).

`--part finetune` is the fine-tuning setting: one SimMIM pre-training (`pss pretrain`, the shipped
recipe configs/cifar10_pretrain_simmim.yaml on the study's images and model, --pretrain-epochs), then,
at the first horizon, the arms above plus `paper` (cyclic, magnitude selection, budget 0.6) trained from
its encoder with layer-wise LR decay 0.75 (the shipped fine-tuning recipes' device). The setting is
meaningful only if training from scratch (the horizon's full run) trails the fine-tuned full run by at
least 3 points: the study trains the fine-tuned full run of the first seed, checks that, and stops
there (and says so in the record) when it fails.

Runs are resumable (re-run the same command: finished runs are re-read, killed ones resume exactly)
and go under --output (never committed). A run already in a record under --results (same name, seed
and overrides) is not trained again, so a study spread over several machines or sessions continues
from its committed records. On CPU run at most two studies side by side, each with
`OMP_NUM_THREADS=1` (e.g. `taskset -c 0` and `taskset -c 1`); the recorded times are then per core.
The record (`benchmarks/results/budget_study_<tag>_<date>.json` / `.md` / `.png`) covers every run
finished under --output with this set-up, and says per arm: seeds, FLOP cost, measured training time
and model-only time (training time less data wait) relative to the full run of the same seed, best
and final top-1, and the differences to the full and to the equal-time baseline per seed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import re
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing, e.g. on a GPU machine
sys.path.insert(0, str(ROOT / "benchmarks"))

from pss.equal_time import equal_time_overrides  # noqa: E402
from pss.demo import warm_up  # noqa: E402
from pss.errors import ConfigError  # noqa: E402
from pss.runfolder import RunDir  # noqa: E402
from pss.runinfo import run_info  # noqa: E402
from pss.study import (  # noqa: E402
    CPU_REDUCED_MODEL,
    RECORD_SUMMARY_KEYS,
    STUDY_CPU,
    STUDY_CPU_ROPE,
    STUDY_GRID,
    STUDY_RECIPE,
    TOKENS_FOR_EPOCHS,
    PlannedRun,
    add_study_arguments,
    derive,
    per_seed,
    planned_run,
    recorded_summaries,
    run_plan,
    run_state,
    study_arm,
    write_record,
)
from pss.analysis.report import versus  # noqa: E402
from results_page import write as write_results_page  # noqa: E402

log = logging.getLogger("pss.study")

RECIPE = STUDY_RECIPE
GRID = STUDY_GRID
SETUP = STUDY_CPU_ROPE
BUDGET = 0.6
ARMS = ("full", "equal_time", "recommended", "fixed", "tokens_for_epochs")
BUDGET_ARMS = ("fixed", "schedule", "equal_time", "tokens_for_epochs")
FT_ARMS = ("full", "equal_time", "recommended", "paper", "tokens_for_epochs")
PRETRAIN_RECIPE = "cifar10_pretrain_simmim"
# The study's data and loader for the pre-training; its model is the study's (rope, token pooling), its
# learning rate the recipe's at the study's batch (as benchmarks/pretrain_finetune.py --cpu-reduced).
PRETRAIN_SETUP = [*derive(STUDY_CPU, {"optim.base_lr": None, "epochs": None, "eval.interval": None}),
                  "model.name=pss_vit_tiny_patch4_32",
                  "model.kwargs=" + json.dumps({**CPU_REDUCED_MODEL, "pos_embed": "rope"}), "eval.interval=10"]
FINETUNE = ["optim.layer_decay=0.75"]
# A triangle wave from `low` up to 1.0 keeps at least half the tokens on average, so the cyclic schedule
# cannot reach budgets below ~0.5 (0.495 for the study model's FLOPs, with low -> 0). There the budget
# curve's schedule arm is `cooldown`: a fixed ratio whose last COOLDOWN_SHARE of the epochs run at every
# token (so the model still sees full sequences, which a fixed ratio never shows it).
CYCLIC_FLOOR = 0.5
COOLDOWN_SHARE = 0.1
GATE_POINTS = 3.0  # fine-tuned full run over from scratch, for the setting to mean anything


def _cooldown(budget: float, horizon: int) -> list[str]:
    """A fixed random keep ratio solved for `budget`, the last 10 % of the epochs at every token."""
    return [f"schedule={{name: fixed, rho: 0.6, grid: {GRID}, cooldown_epochs: {COOLDOWN_SHARE * horizon:g}}}",
            "select=random", f"budget={budget}"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="CIFAR-10 ImageNet-style folder or .tar.gz archive")
    p.add_argument("--part", default="horizons", choices=["horizons", "budgets", "finetune"], help="what to train")
    p.add_argument("--horizons", default="15,45", help="epochs of the full runs (comma-separated)")
    p.add_argument("--budgets", default="0.8,0.6,0.4,0.3", help="with --part budgets: compute budgets")
    p.add_argument("--arms", default=",".join(ARMS), help="with --part horizons: which arms")
    p.add_argument("--budget-arms", default="fixed,schedule,equal_time",
                   help=f"with --part budgets: which arms ({', '.join(BUDGET_ARMS)})")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    add_study_arguments(p, ROOT / "runs" / "budget_study", ROOT / "benchmarks" / "results")
    p.add_argument("--record-only", action="store_true", help="train nothing: record the runs finished so far")
    p.add_argument("--note", default="", help="a line on how the runs were measured, kept in the record")
    p.add_argument("--pretrain-epochs", type=int, default=100, help="with --part finetune: SimMIM epochs (1-100)")
    args = p.parse_args(argv)
    if not 1 <= args.pretrain_epochs <= 100:
        p.error(f"--pretrain-epochs {args.pretrain_epochs}: give 1 to 100")
    unknown = [a for a in args.budget_arms.split(",") if a and a not in BUDGET_ARMS]
    if unknown:
        p.error(f"--budget-arms: unknown arm {unknown[0]!r}; choose from {', '.join(BUDGET_ARMS)}")
    return args


def _ints(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def _floats(text: str) -> list[float]:
    return [float(s) for s in text.split(",") if s.strip()]


def _planned(name: str, seed: int, extra: list[str], args: argparse.Namespace, horizon: int) -> PlannedRun:
    return planned_run(name, seed, RECIPE, [*SETUP, f"epochs={horizon}", *args.overrides, *extra], args.data,
                       Path(args.output))


def _equal_time(name: str, seed: int, args: argparse.Namespace, horizon: int, ratio: float,
                start: tuple[str, ...] = ()) -> PlannedRun:
    """The full-token run of `ratio` of the horizon's epochs (`start`: overrides of a fine-tuning start)."""
    group = name.split("_", 1)[0]
    full = _planned(name, seed, [*start, *study_arm("full", 1.0)], args, horizon)
    return _planned(name, seed, [*start, *study_arm("full", 1.0),
                                 *equal_time_overrides(full.cfg, ratio, f"{group}_full")], args, horizon)


def plan_horizons(args: argparse.Namespace, arms: list[str] | None = None) -> list[PlannedRun]:
    """Every horizon, each seed, each arm: horizon by horizon, seed by seed."""
    runs = []
    for horizon in _ints(args.horizons):
        for seed in _ints(args.seeds):
            for arm in arms or [a for a in args.arms.split(",") if a]:
                name = f"h{horizon}_{arm}"
                if arm == "equal_time":
                    runs.append(_equal_time(name, seed, args, horizon, BUDGET))
                else:
                    runs.append(_planned(name, seed, study_arm(arm, BUDGET), args, horizon))
    return runs


def plan_budgets(args: argparse.Namespace) -> list[PlannedRun]:
    """At the first horizon, each budget's --budget-arms: fixed and cyclic random (cooldown below the
    cyclic floor), that budget's equal-time baseline and, when asked, tokens for epochs (budget 0.6 is
    the horizon part's fixed / recommended / equal_time / tokens_for_epochs)."""
    horizon = _ints(args.horizons)[0]
    arms = [a for a in args.budget_arms.split(",") if a]
    runs = []
    for budget in _floats(args.budgets):
        if math.isclose(budget, BUDGET):
            continue
        for seed in _ints(args.seeds):
            for arm in BUDGET_ARMS:  # in this order, whatever order --budget-arms gives
                if arm not in arms:
                    continue
                if arm == "equal_time":
                    runs.append(_equal_time(f"b{budget:g}_equal_time", seed, args, horizon, budget))
                elif arm != "schedule":
                    runs.append(_planned(f"b{budget:g}_{arm}", seed, study_arm(arm, budget), args, horizon))
                elif budget >= CYCLIC_FLOOR:
                    runs.append(_planned(f"b{budget:g}_cyclic", seed, study_arm("cyclic", budget), args, horizon))
                else:  # out of the triangle's reach: a fixed ratio that still ends on full sequences
                    runs.append(_planned(f"b{budget:g}_cooldown", seed, _cooldown(budget, horizon), args, horizon))
    return runs


def pretrain_run(args: argparse.Namespace) -> PlannedRun:
    """The one SimMIM pre-training every fine-tuning arm starts from (seed 0)."""
    return planned_run("pretrain", 0, PRETRAIN_RECIPE, [*PRETRAIN_SETUP, f"epochs={args.pretrain_epochs}",
                                                        *args.overrides], args.data, Path(args.output),
                       folder=f"pretrain_e{args.pretrain_epochs}")


def plan_finetune(args: argparse.Namespace) -> tuple[PlannedRun, list[PlannedRun], list[PlannedRun]]:
    """(pre-training, the gate's runs: from scratch and fine-tuned full of the first seed, every other
    fine-tuning run at the first horizon, seed by seed)."""
    horizon = _ints(args.horizons)[0]
    pre = pretrain_run(args)
    start = (f"init={RunDir(pre.folder).encoder}", *FINETUNE)
    runs = []
    for seed in _ints(args.seeds):
        for arm in FT_ARMS:
            name = f"ft{horizon}_{arm}"
            if arm == "equal_time":
                runs.append(_equal_time(name, seed, args, horizon, BUDGET, start))
            else:
                runs.append(_planned(name, seed, [*start, *study_arm(arm, BUDGET)], args, horizon))
    first = _ints(args.seeds)[0]
    scratch = _planned(f"h{horizon}_full", first, study_arm("full", 1.0), args, horizon)
    return pre, [scratch, runs[0]], runs[1:]


def gate(summaries: dict[str, dict[str, Any]], horizon: int, seed: int) -> dict[str, Any] | None:
    """Is the fine-tuning setting meaningful: the fine-tuned full run over the from-scratch one (final
    top-1, first seed), against GATE_POINTS; None until both have finished."""
    ft, scratch = summaries.get(f"ft{horizon}_full_s{seed}"), summaries.get(f"h{horizon}_full_s{seed}")
    if ft is None or scratch is None:
        return None
    gain = ft["final_acc1"] - scratch["final_acc1"]
    return {"seed": seed, "finetuned": ft["final_acc1"], "scratch": scratch["final_acc1"], "gain": gain,
            "required": GATE_POINTS, "meaningful": gain >= GATE_POINTS}


def every_run(args: argparse.Namespace) -> list[PlannedRun]:
    """Every run this set-up can hold (what the record may cover), whatever --part says."""
    every = argparse.Namespace(**{**vars(args), "arms": ",".join((*ARMS, "jitter")), "seeds": "0,1,2,3",
                                  "horizons": ",".join(dict.fromkeys([args.horizons.split(",")[0], "15", "30", "45"])),
                                  "budgets": "0.8,0.6,0.5,0.4,0.3,0.2", "budget_arms": ",".join(BUDGET_ARMS)})
    runs = plan_horizons(every)
    pre, gate_runs, ft_runs = plan_finetune(every)
    return runs + plan_budgets(every) + [pre] + gate_runs[1:] + ft_runs


def _overrides(run: PlannedRun) -> list[str]:
    """The run's overrides as a record keeps them: a path under --output (the fine-tuning runs' `init`)
    written from `$OUTPUT`, so that the record names no folder of the machine that trained it and matches
    the same runs under another --output."""
    out = f"{run.folder.parent}/"
    return [o.replace(out, "$OUTPUT/") for o in run.settings["overrides"]]


def _key(run: PlannedRun) -> tuple[str, int, tuple[str, ...]]:
    return run.name, run.seed, tuple(_overrides(run))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        recorded = recorded_summaries(Path(args.results), ("budget_study_*.json",))
        if args.part == "finetune":
            pre, gate_runs, ft_runs = plan_finetune(args)
            stages = [[pre, *gate_runs], ft_runs]
        else:
            stages = [plan_horizons(args) if args.part == "horizons" else plan_budgets(args)]
        every = every_run(args)
        for i, runs in enumerate(stages):
            if i and not _gate_passed(every, recorded, args):
                break
            _train(runs, recorded, args)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    summaries = _summaries(every, recorded)
    done = [r for r in every if r.label in summaries]
    if not done:
        raise SystemExit("no finished runs to record yet; run without --record-only first")
    path = record(done, summaries, args)
    print(path.with_suffix(".md").read_text())
    print(f"record: {path}\npicture: {path.with_suffix('.png')}")
    return 0


def _train(runs: list[PlannedRun], recorded: dict, args: argparse.Namespace) -> None:
    """Train (or with --record-only, only check) the runs not already in a record."""
    todo = [r for r in runs if RunDir(r.folder).is_finished(r.settings) or _key(r) not in recorded]
    for r in runs:
        if r not in todo:
            log.info("study: %s (seed %d) is in a record already", r.name, r.seed)
    if args.record_only:
        for r in todo:
            run_state(r.folder, r.settings, False)  # a folder of other settings is refused, as when training
    else:
        run_plan(todo, fresh=args.fresh, quiet=args.quiet, warm_up=warm_up)


def _summaries(every: list[PlannedRun], recorded: dict) -> dict[str, dict[str, Any]]:
    """label -> summary of every finished run, from its folder or else from a committed record."""
    summaries = {r.label: RunDir(r.folder).read_summary() for r in every if RunDir(r.folder).is_finished(r.settings)}
    summaries.update({r.label: recorded[_key(r)] for r in every if r.label not in summaries and _key(r) in recorded})
    return summaries


def _gate_passed(every: list[PlannedRun], recorded: dict, args: argparse.Namespace) -> bool:
    g = gate(_summaries(every, recorded), _ints(args.horizons)[0], _ints(args.seeds)[0])
    if g is None:
        log.info("study: the fine-tuning gate's runs have not finished; the other fine-tuning arms wait")
        return False
    if not g["meaningful"]:
        log.info("study: fine-tuned full run %.2f vs from scratch %.2f (%+.2f, needs +%.0f): the fine-tuning "
                 "setting is not meaningful at this size; no further fine-tuning arms", g["finetuned"], g["scratch"],
                 g["gain"], GATE_POINTS)
    return g["meaningful"]


# ---------------------------------------------------------------------------------------------
# the record


def _row(run: PlannedRun, s: dict[str, Any], horizon: int) -> dict[str, Any]:
    """One finished run; its FLOP cost is relative to the full run of its horizon (a run's own budget
    plan is relative to its own length at keep ratio 1.0)."""
    wait = s.get("data_wait_fraction") or 0.0
    group, arm = run.name.split("_", 1)
    reference = int(group.lstrip("hft")) if group[0] in "hf" else horizon
    own = (s.get("budget") or {}).get("realised_cost")
    return {
        "name": run.name, "group": group, "arm": arm, "seed": run.seed, "epochs": run.cfg.epochs,
        "schedule": s.get("schedule"), "select": run.cfg.select,
        "flop_cost": (1.0 if own is None else own) * run.cfg.epochs / reference,
        "train_time_s": s["train_time_s"], "model_time_s": s["train_time_s"] * (1.0 - wait),
        "best_acc1": s["best_acc1"], "final_acc1": s["final_acc1"], "mean_keep_ratio": s["mean_keep_ratio"],
        "recipe": run.settings["recipe"], "overrides": _overrides(run),
        "summary": {k: s.get(k) for k in RECORD_SUMMARY_KEYS},
    }


def _reference(row: dict[str, Any]) -> tuple[str, str, float]:
    """(full run, equal-time run, the arm's nominal cost) an arm is compared with."""
    group = row["group"]
    if group.startswith("b"):  # budget curve at the first horizon
        budget = float(group[1:])
        return "full", f"{group}_equal_time", budget
    return f"{group}_full", f"{group}_equal_time", 1.0 if row["arm"] == "full" else BUDGET


def summarise(rows: list[dict[str, Any]], horizon: int) -> list[dict[str, Any]]:
    by = {(r["name"], r["seed"]): r for r in rows}
    out = []
    for name in dict.fromkeys(r["name"] for r in rows):
        mine = [r for r in rows if r["name"] == name]
        full, eq, nominal = _reference(mine[0])
        if full == "full":
            full = f"h{horizon}_full"
        # Means over the seeds whose full run has finished, so that every figure of an arm compares like
        # with like; the other runs stay in the per-run table (and in the record, for a later session).
        mine = [r for r in mine if (full, r["seed"]) in by]
        if not mine:
            continue
        a: dict[str, Any] = {"name": name, "group": mine[0]["group"], "arm": mine[0]["arm"], "nominal_cost": nominal,
                             "seeds": [r["seed"] for r in mine], "epochs": mine[0]["epochs"]}
        for key in ("best_acc1", "final_acc1", "mean_keep_ratio"):
            a[key] = statistics.fmean(r[key] for r in mine)
        for ref, label in ((full, "full"), (eq, "equal_time")):
            pairs = [(r, by.get((ref, r["seed"]))) for r in mine]
            pairs = [(r, b) for r, b in pairs if b is not None]
            if not pairs:
                continue
            # the report's comparison, per seed (a run against itself has no difference)
            vs = [versus(r, *((b, None) if label == "full" else (None, b))) if name != ref else versus(r, r, r)
                  for r, b in pairs]
            if label == "full":
                a["time_vs_full"] = statistics.fmean(v["time_vs_full"] for v in vs)
                a["model_time_vs_full"] = statistics.fmean(r["model_time_s"] / b["model_time_s"] for r, b in pairs)
            if name != ref:
                a[f"final_vs_{label}"] = [v[f"final_vs_{label}"] for v in vs]
                a[f"best_vs_{label}"] = [v[f"best_vs_{label}"] for v in vs]
        out.append(a)
    return out


def record(runs: list[PlannedRun], summaries: dict[str, dict], args: argparse.Namespace) -> Path:
    info = run_info("cpu")
    horizon = _ints(args.horizons)[0]
    rows = [_row(r, summaries[r.label], horizon) for r in runs if r.name != "pretrain"]
    rec = {
        "kind": "budget_study", "setup": "cpu-study-rope-grid0.1", **info, "date": dt.date.today().isoformat(),
        "recipe": RECIPE, "overrides": SETUP + args.overrides, "budget": BUDGET, "tokens_for_epochs": TOKENS_FOR_EPOCHS,
        "note": args.note, "runs": rows, "arms": summarise(rows, horizon),
    }
    for r in runs:
        if r.name == "pretrain":
            s = summaries[r.label]
            rec["pretrain"] = {"recipe": r.settings["recipe"], "overrides": _overrides(r),
                               "finetune_overrides": FINETUNE, "summary": {k: s.get(k) for k in RECORD_SUMMARY_KEYS + ("final_loss",)}}
            rec["finetune_gate"] = gate(summaries, horizon, _ints(args.seeds)[0])
    results = Path(args.results)
    tag = "cpu" + (("-" + re.sub(r"[^A-Za-z0-9]+", "-", args.tag).strip("-").lower()) if args.tag else "")
    path = write_record(results / f"budget_study_{tag}_{rec['date']}.json", rec, to_markdown(rec))
    plot(rec, path.with_suffix(".png"))
    write_results_page(results)
    return path


def to_markdown(rec: dict[str, Any]) -> str:
    lines = [
        "# Where PSS pays: horizons, tokens for epochs, budgets (CPU study set-up)", "",
        f"device: {rec['device']}; torch {rec['torch']}, timm {rec['timm']}; commit {rec['commit']}; {rec['date']}",
        f"set-up: recipe {rec['recipe']} + {', '.join(rec['overrides'])}", "",
        "Means over seeds; differences in top-1 points, per seed in brackets. 'equal time': the full-token run "
        "of the arm's cost in epochs (LR schedule fully decayed). Cost: FLOPs of the training steps relative to "
        "the full run of the horizon (cost model over the steps that ran). Time: measured training time relative "
        "to the full run of the same seed (model: less data wait); on CPU two runs side by side, one core and "
        "one thread each." + (f" {rec['note']}" if rec.get("note") else ""), "",
        "| arm | epochs | seeds | cost | time vs full | model time | best | final | final vs full | final vs equal time "
        "| best vs equal time | mean rho |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in rec["arms"]:
        cost = statistics.fmean(r["flop_cost"] for r in rec["runs"] if r["name"] == a["name"])
        lines.append(
            f"| {a['name']} | {a['epochs']} | {','.join(map(str, a['seeds']))} | {cost:.3f} | "
            f"{a.get('time_vs_full', math.nan):.2f} | {a.get('model_time_vs_full', math.nan):.2f} | {a['best_acc1']:.2f} | "
            f"{a['final_acc1']:.2f} | {per_seed(a.get('final_vs_full'))} | {per_seed(a.get('final_vs_equal_time'))} | "
            f"{per_seed(a.get('best_vs_equal_time'))} | {a['mean_keep_ratio']:.3f} |")
    lines += _finetune_lines(rec)
    lines += ["", "Commands that trained these runs (each with `--data PATH --output DIR`; on CPU two at a time, "
              "e.g. `taskset -c 0 env OMP_NUM_THREADS=1 python ...`); re-running one trains only what is missing:",
              "", *(f"    python benchmarks/budget_study.py {c}" for c in commands(rec["runs"]))]
    lines += ["", "Per run (an arm's means above cover the seeds whose full run has finished):", "", "| run | seed | epochs | schedule (solved parameter, before grid rounding) | train time (s) | best | final |",
              "|---|---|---|---|---|---|---|"]
    for r in rec["runs"]:
        s = r["schedule"] or {}
        sched = s.get("name", "?") + "(" + ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items()
            if k not in ("name", "grid", "period_epochs", "warmup_epochs") and v) + ")"
        lines.append(f"| {r['name']} | {r['seed']} | {r['epochs']} | {sched} | {r['train_time_s']:.0f} | "
                     f"{r['best_acc1']:.2f} | {r['final_acc1']:.2f} |")
    return "\n".join(lines) + "\n"


def commands(rows: list[dict[str, Any]]) -> list[str]:
    """The study's arguments that plan the given runs: per horizon (or budget), the arms of each seed set."""
    seeds: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        seeds.setdefault((r["group"], r["arm"]), []).append(r["seed"])
    by: dict[tuple[str, str], list[str]] = {}
    for (group, arm), ss in seeds.items():
        by.setdefault((group, ",".join(map(str, sorted(ss)))), []).append(arm)
    first = min((int(g[1:]) for g, _ in by if g.startswith("h")), default=15)
    out = []
    for (group, ss), arms in by.items():
        if group.startswith("ft"):
            out.append(f"--part finetune --horizons {group[2:]} --seeds {ss}")
        elif group.startswith("b"):
            picked = dict.fromkeys("schedule" if a in ("cyclic", "cooldown") else a for a in arms)
            out.append(f"--part budgets --horizons {first} --budgets {group[1:]} --budget-arms {','.join(picked)} "
                       f"--seeds {ss}")
        else:
            out.append(f"--part horizons --horizons {group[1:]} --arms {','.join(arms)} --seeds {ss}")
    return list(dict.fromkeys(out))


def _finetune_lines(rec: dict[str, Any]) -> list[str]:
    """The fine-tuning setting: its pre-training and whether the setting is meaningful (the gate)."""
    pre = rec.get("pretrain")
    if not pre:
        return []
    s, g = pre["summary"], rec.get("finetune_gate")
    lines = ["", f"Fine-tuning (the ft rows): every arm starts from one SimMIM pre-training ({pre['recipe']}, "
             f"{s.get('epochs')} epochs on the study's images and model, {s.get('train_time_s') or 0:.0f} s, final "
             f"masked-pixel L1 {s.get('final_loss') or float('nan'):.4f}) with {', '.join(pre['finetune_overrides'])}."]
    if g is None:
        lines.append("The gate (fine-tuned full run against the same run from scratch) has not been measured yet.")
    else:
        verdict = "the setting is meaningful" if g["meaningful"] else (
            "the setting is NOT meaningful at this size: no further fine-tuning arms were trained")
        lines.append(f"Gate, seed {g['seed']}: fine-tuned full run {g['finetuned']:.2f} against {g['scratch']:.2f} "
                     f"from scratch ({g['gain']:+.2f} points; needs +{g['required']:.0f}): {verdict}.")
    return lines


def plot(rec: dict[str, Any], path: Path) -> None:
    """Left: final top-1 against the horizon for each arm (mean over seeds, seeds as dots); middle: the
    budget curve at the first horizon (final top-1 against cost for fixed, cyclic, cool-down, equal-time
    and tokens for epochs); right, once fine-tuning arms have finished: their final top-1 against cost."""
    from matplotlib.figure import Figure

    ft = [a for a in rec["arms"] if a["group"].startswith("ft")]
    fig = Figure(figsize=(18 if ft else 12, 5), dpi=100, layout="constrained")
    ax, ax2, *ax3 = fig.subplots(1, 3 if ft else 2)
    for i, arm in enumerate(ARMS):
        pts = sorted((int(a["group"][1:]), a["final_acc1"]) for a in rec["arms"]
                     if a["arm"] == arm and a["group"].startswith("h"))
        if pts:
            ax.plot(*zip(*pts), marker="o", color=f"C{i}", label=arm)
            for r in rec["runs"]:
                if r["arm"] == arm and r["group"].startswith("h"):
                    ax.scatter(int(r["group"][1:]), r["final_acc1"], color=f"C{i}", alpha=0.35, s=14)
    ax.set_xlabel("horizon: epochs of the full run (each arm costs 0.6 of it, full: 1.0)")
    ax.set_ylabel("final top-1 (%)")
    ax.set_title("Accuracy against horizon")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    horizon = min((int(a["group"][1:]) for a in rec["arms"] if a["group"].startswith("h")), default=None)
    for i, (kind, arms) in enumerate((("fixed", ("fixed",)), ("cyclic", ("cyclic", "recommended")),
                                      ("fixed + full-token cool-down", ("cooldown",)),
                                      ("equal_time", ("equal_time",)),
                                      ("tokens for epochs", ("tokens_for_epochs",)))):
        pts = []
        for a in rec["arms"]:
            if a["arm"] not in arms:
                continue
            if a["group"].startswith("b"):
                pts.append((a["nominal_cost"], a["final_acc1"]))
            elif horizon is not None and a["group"] == f"h{horizon}":
                pts.append((BUDGET, a["final_acc1"]))
        if pts:
            ax2.plot(*zip(*sorted(pts)), marker="o", color=f"C{i}", label=kind)
    full = [a["final_acc1"] for a in rec["arms"] if horizon is not None and a["name"] == f"h{horizon}_full"]
    if full:
        ax2.axhline(full[0], color="k", linestyle="--", label="full (cost 1.0)")
    ax2.set_xlabel("compute budget (share of the full run's FLOPs)")
    ax2.set_ylabel("final top-1 (%)")
    ax2.set_title(f"Budget curve at {horizon} epochs" if horizon else "Budget curve")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    if ft:  # the fine-tuning arms: final top-1 against FLOP cost, mean over seeds, seeds as dots
        for i, a in enumerate(ft):
            runs = [r for r in rec["runs"] if r["name"] == a["name"]]
            cost = statistics.fmean(r["flop_cost"] for r in runs)
            ax3[0].scatter([cost] * len(runs), [r["final_acc1"] for r in runs], color=f"C{i}", alpha=0.35, s=14)
            ax3[0].scatter(cost, a["final_acc1"], color=f"C{i}", marker="D", label=a["arm"])
        ax3[0].set_xlabel("FLOP cost (share of the fine-tuned full run)")
        ax3[0].set_ylabel("final top-1 (%)")
        ax3[0].set_title(f"Fine-tuning from the SimMIM encoder ({ft[0]['group'][2:]}-epoch horizon)")
        ax3[0].grid(alpha=0.3)
        ax3[0].legend(fontsize=8)
    fig.savefig(path)


if __name__ == "__main__":
    from pss.cli import guarded  # a ConfigError is one line, a signal exit code 130

    raise SystemExit(guarded("budget_study.py", main))
