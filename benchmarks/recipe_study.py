"""Which PSS recipe is worth it? Every arm at the same compute budget, against the full baseline and
against baselines given the same training time, several seeds. Resumable (re-run the same command).

    python benchmarks/recipe_study.py --seeds 0,1                       # CPU set-up (below), all groups
    python benchmarks/recipe_study.py --seeds 0,1 --groups core         # the core comparison first
    python benchmarks/recipe_study.py --seeds 0,1 --record-only         # record what has finished so far

The record always covers every arm finished under --output with the same set-up, whichever groups the
command trains.

Every PSS arm trains with `budget: 0.6` (pss solves the schedule's free parameter so that the run's
training-step FLOPs are 0.6 of the full-token run's, pss.budget) and differs from the others in one
factor: selection rule (magnitude = the paper's, random, l2, grid, mixed = half top-magnitude, half
random), schedule shape (cyclic per epoch = the paper's, cyclic with a full-token cool-down over the
last 10 % of epochs, linear growth, fixed), position scheme (rel_bias = the paper's, rope), and
initialisation (ours vs the reference code's). The yardsticks are the full baseline and full-token
baselines of 0.6x and 0.8x the epochs (LR schedule fully decayed over the shorter run, warm-up scaled
alike): together they draw the equal-time frontier that a PSS run must beat to be worth it.

The CPU set-up (`pss.study.STUDY_CPU`): the 4-block ViT of width 96 on 1,000 CIFAR-10 images per class, 15
epochs, batch 64 (~9.5 minutes per full baseline on one core; the recorded study ran pinned to one core
with one thread, `OMP_NUM_THREADS=1 taskset -c 0`, so that its timings were not shared with other work);
`--set` adjusts it, and `--gpu` drops it for the shipped recipes' full-size set-up. Records `benchmarks/results/recipe_study_<tag>_<date>.json`
/ `.md` / `.png` from every finished run; run folders go under --output (never committed).
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
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "benchmarks"))  # results_page, beside this script

from results_page import write as write_results_page  # noqa: E402
from pss.equal_time import equal_time_overrides  # noqa: E402
from pss.demo import warm_up  # noqa: E402
from pss.runfolder import RunDir  # noqa: E402
from pss.runinfo import run_info  # noqa: E402
from pss.analysis.report import versus  # noqa: E402
from pss.study import (  # noqa: E402
    CPU_REDUCED_MODEL,
    STUDY_CPU,
    STUDY_RECIPE,
    PlannedRun,
    add_study_arguments,
    per_seed,
    planned_run,
    run_plan,
    run_state,
    write_record,
)

log = logging.getLogger("pss.study")

RECIPE = STUDY_RECIPE  # every arm starts from the full-token recipe; only what is listed differs
BUDGET = 0.6
SWEEP_KEEP = (1.0, 0.8, 0.6, 0.5, 0.4, 0.2)
MODEL = CPU_REDUCED_MODEL  # STUDY_CPU's model; its kwargs are given per arm (`_model`)


def _model(**changes: Any) -> str:
    return "model.kwargs=" + json.dumps({**MODEL, **changes})


def _pss(schedule: str, select: str, **model: Any) -> list[str]:
    return [f"schedule={schedule}", f"select={select}", f"budget={BUDGET}", *([_model(**model)] if model else [])]


CYCLIC = "{name: cyclic, low: 0.2, high: 1.0}"
# name -> overrides on top of RECIPE + the set-up. "equal_time:<run>@<ratio>" marks a full-token run
# whose length is <ratio> of the full baseline's (filled in by `plan`).
ARMS: dict[str, list[str]] = {
    "baseline": [],
    "baseline_equal_time": ["equal_time:baseline@0.6"],
    "pss_cyclic_magnitude": _pss(CYCLIC, "magnitude"),  # the paper's recipe
    "pss_cyclic_random": _pss(CYCLIC, "random"),
    "pss_cyclic_random_cooldown": _pss("{name: cyclic, low: 0.2, high: 1.0, cooldown_epochs: COOLDOWN}", "random"),
    "pss_cyclic_mixed": _pss(CYCLIC, "mixed"),
    "baseline_0.8": ["equal_time:baseline@0.8"],
    "pss_cyclic_l2": _pss(CYCLIC, "l2"),
    "pss_cyclic_grid": _pss(CYCLIC, "grid"),
    "pss_linear_random": _pss("{name: linear, start: 0.2, end: 1.0}", "random"),
    "pss_fixed_random": _pss("{name: fixed, rho: 0.6}", "random"),
    "pss_cyclic_magnitude_cooldown": _pss("{name: cyclic, low: 0.2, high: 1.0, cooldown_epochs: COOLDOWN}", "magnitude"),
    "baseline_rope": [_model(pos_embed="rope")],
    "baseline_rope_equal_time": [_model(pos_embed="rope"), "equal_time:baseline_rope@0.6"],
    "pss_rope_cyclic_random": _pss(CYCLIC, "random", pos_embed="rope"),
    "baseline_refinit": [_model(weight_init="reference")],
    "pss_cyclic_random_refinit": _pss(CYCLIC, "random", weight_init="reference"),
}
GROUPS = {
    "core": ["baseline", "baseline_equal_time", "pss_cyclic_magnitude", "pss_cyclic_random"],
    "variants": ["pss_cyclic_random_cooldown", "pss_cyclic_mixed"],
    "schedule": ["baseline_0.8", "pss_linear_random", "pss_fixed_random", "pss_cyclic_magnitude_cooldown"],
    "select": ["pss_cyclic_l2", "pss_cyclic_grid"],
    "position": ["baseline_rope", "baseline_rope_equal_time", "pss_rope_cyclic_random"],
    "init": ["baseline_refinit", "pss_cyclic_random_refinit"],
}
COOLDOWN_SHARE = 0.1  # full-token cool-down: this share of the epochs (FLIP's "unmasked tuning")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None,
                   help="CIFAR-10 folder or .tar.gz of one (extracted once to a cache); default: the recipe's data.path")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    p.add_argument("--groups", default=",".join(GROUPS), help=f"which groups of arms, in order: {','.join(GROUPS)}")
    p.add_argument("--runs", default=None, help="instead of --groups: these arms")
    p.add_argument("--gpu", action="store_true", help="the shipped recipe's full set-up instead of STUDY_CPU")
    add_study_arguments(p, ROOT / "runs" / "recipe_study", ROOT / "benchmarks" / "results")
    p.add_argument("--record-only", action="store_true", help="train nothing: record the runs finished so far")
    return p.parse_args(argv)


def plan(args: argparse.Namespace, every_arm: bool = False) -> list[PlannedRun]:
    """Every run, in order (group by group, each group for every seed), configs resolved now; with
    `every_arm`, those of every group whatever --groups / --runs say (what the record may cover)."""
    if every_arm:
        args = argparse.Namespace(**{**vars(args), "runs": None, "groups": ",".join(GROUPS)})
    names = [n for n in args.runs.split(",") if n] if args.runs else [
        n for g in args.groups.split(",") if g for n in GROUPS.get(g) or _unknown("group", g, GROUPS)]
    for n in names:
        if n not in ARMS:
            _unknown("arm", n, ARMS)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    common = [*([] if args.gpu else [*STUDY_CPU, _model()]), *args.overrides]
    out = Path(args.output)
    runs: list[PlannedRun] = []
    order = [names] if args.runs else [[n for n in GROUPS[g] if n in names] for g in args.groups.split(",") if g]
    for group in order:
        for seed in seeds:
            for name in group:
                extra = [o for o in ARMS[name] if not o.startswith("equal_time:")]
                if "COOLDOWN" in " ".join(extra):
                    epochs = planned_run(name, seed, RECIPE, common, args.data, out).cfg.epochs
                    extra = [o.replace("COOLDOWN", str(max(1, round(COOLDOWN_SHARE * epochs)))) for o in extra]
                run = planned_run(name, seed, RECIPE, [*common, *extra], args.data, out)
                for o in ARMS[name]:
                    if o.startswith("equal_time:"):
                        of, ratio = o.split(":", 1)[1].split("@")
                        # the ratio is the study's compute budget, known before anything trains
                        run = planned_run(name, seed, RECIPE,
                                          [*common, *extra, *equal_time_overrides(run.cfg, float(ratio), of)],
                                          args.data, out)
                runs.append(run)
    return runs


def _unknown(kind: str, name: str, known: dict) -> list[str]:
    raise SystemExit(f"unknown {kind} {name!r}; choose from {', '.join(known)}")


def sweep_run(run: PlannedRun, device: str = "cpu") -> dict[str, float]:
    """Top-1 by keep ratio at inference with the model's default rule for its training rule
    (`pss.select.DEFAULT_INFERENCE_SELECT`), cached in the run folder under that rule's name: a later
    version that changes the default sweeps again instead of reading the other rule's figures."""
    from pss.analysis.sweep import sweep_checkpoints
    from pss.select import default_inference_select

    cache = run.folder / f"study_sweep_{default_inference_select(run.cfg.trained_select)}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    res = sweep_checkpoints([run.folder], keep_ratios=SWEEP_KEEP, device=device,
                            names=[run.label], batch_size=64, warmup=0, iters=1)
    accs = {f"{r['keep_ratio']:g}": r["acc1"] for r in res["checkpoints"][0]["results"]}
    cache.write_text(json.dumps(accs) + "\n")
    return accs


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    runs = plan(args)
    if args.record_only:
        for r in runs:
            run_state(r.folder, r.settings, False)  # a folder of other settings is refused, as when training
    else:
        run_plan(runs, fresh=args.fresh, quiet=args.quiet, warm_up=warm_up)
    # The record covers every arm finished under --output with these settings, not only the groups of
    # this command: recording a later group never drops the earlier ones.
    runs = [r for r in plan(args, every_arm=True) if RunDir(r.folder).is_finished(r.settings)]
    summaries = {(r.name, r.seed): RunDir(r.folder).read_summary() for r in runs}
    if not runs:
        raise SystemExit("no finished runs to record yet; run without --record-only first")
    device = "cuda" if args.gpu else "cpu"
    sweeps = {r.label: sweep_run(r, device) for r in runs}
    path = record(runs, summaries, sweeps, args, device)
    print(path.with_suffix(".md").read_text())
    print(f"record: {path}\npicture: {path.with_suffix('.png')}")
    return 0


# ---------------------------------------------------------------------------------------------
# the record


def record(runs: list[PlannedRun], summaries: dict, sweeps: dict, args: argparse.Namespace, device: str) -> Path:
    info = run_info(device)
    rows = []
    for r in runs:
        s = summaries[(r.name, r.seed)]
        rows.append({
            "name": r.name, "seed": r.seed, "epochs": r.cfg.epochs, "schedule": s.get("schedule") or r.cfg.schedule.to_dict(),
            "select": r.cfg.select, "pos_embed": r.cfg.model.kwargs.get("pos_embed"),
            "weight_init": r.cfg.model.kwargs.get("weight_init", "timm"), "budget": s.get("budget"),
            "equal_time_of": r.cfg.equal_time_of, "train_time_s": s["train_time_s"], "best_acc1": s["best_acc1"],
            "final_acc1": s["final_acc1"], "mean_keep_ratio": s["mean_keep_ratio"],
            "data_wait_fraction": s.get("data_wait_fraction"), "sweep": sweeps[r.label],
        })
    rec = {
        "kind": "recipe_study", "setup": "gpu" if args.gpu else "cpu-study",
        "device": info["device"], "torch": info["torch"], "timm": info["timm"], "commit": info["commit"],
        "date": dt.date.today().isoformat(), "recipe": RECIPE, "budget": BUDGET, "sweep_select": "default",
        "overrides": ([] if args.gpu else [*STUDY_CPU, _model()]) + args.overrides, "runs": rows,
        "arms": summarise(rows),
    }
    results = Path(args.results)
    tag = rec["setup"] + (("-" + re.sub(r"[^A-Za-z0-9]+", "-", args.tag).strip("-").lower()) if args.tag else "")
    path = write_record(results / f"recipe_study_{tag}_{rec['date']}.json", rec, to_markdown(rec))
    plot(rec, path.with_suffix(".png"))
    write_results_page(results)
    return path


def _reference(name: str) -> tuple[str, str]:
    """(full baseline, equal-time baseline) an arm is compared with: the rope arms with rope baselines."""
    if "rope" in name:
        return "baseline_rope", "baseline_rope_equal_time"
    return "baseline", "baseline_equal_time"


def summarise(rows: list[dict]) -> list[dict]:
    """Per arm: means over seeds and per-seed differences to its full and equal-time baselines."""
    by = {(r["name"], r["seed"]): r for r in rows}
    arms = []
    for name in dict.fromkeys(r["name"] for r in rows):
        mine = [r for r in rows if r["name"] == name]
        full, eq = _reference(name)
        out: dict[str, Any] = {"name": name, "seeds": [r["seed"] for r in mine]}
        for key in ("best_acc1", "final_acc1", "mean_keep_ratio"):
            out[key] = statistics.fmean(r[key] for r in mine)
        out["final_acc1_spread"] = max(r["final_acc1"] for r in mine) - min(r["final_acc1"] for r in mine)
        for ref_name, label in ((full, "full"), (eq, "equal_time")):
            pairs = [(r, by.get((ref_name, r["seed"]))) for r in mine]
            pairs = [(r, b) for r, b in pairs if b is not None]
            if not pairs:
                continue
            vs = [versus(r, b) for r, b in pairs]  # the report's comparison, per seed
            out[f"time_vs_{label}"] = statistics.fmean(v["time_vs_full"] for v in vs)
            if name != ref_name:  # an arm against itself has no difference to show
                out[f"final_diff_vs_{label}"] = [v["final_vs_full"] for v in vs]
                out[f"best_diff_vs_{label}"] = [v["best_vs_full"] for v in vs]
            if label == "full":
                drops = [(r["sweep"]["1"] - r["sweep"]["0.5"], b["sweep"]["1"] - b["sweep"]["0.5"]) for r, b in pairs
                         if "0.5" in r["sweep"] and "0.5" in b["sweep"]]
                if drops:
                    out["drop_at_0.5"] = statistics.fmean(d for d, _ in drops)
                    out["baseline_drop_at_0.5"] = statistics.fmean(d for _, d in drops)
        arms.append(out)
    return arms


def to_markdown(rec: dict) -> str:
    lines = [
        f"# PSS recipe study at equal budget ({rec['budget']:g} of the full run's FLOPs), {rec['setup']}", "",
        f"device: {rec['device']}; torch {rec['torch']}, timm {rec['timm']}; commit {rec['commit']}; {rec['date']}",
        f"set-up: recipe {rec['recipe']} + {', '.join(rec['overrides'])}", "",
        "Means over seeds; differences in top-1 points, per seed in brackets. 'vs equal time': against the full-token "
        "run of 0.6x the epochs (LR schedule fully decayed). Time: training steps only, relative to the full baseline "
        "of the same seed, runs measured one after another (on CPU: pinned to one core, one thread).", "",
        "| arm | seeds | time vs full | best top-1 | final top-1 | final vs full | final vs equal time | best vs equal time "
        "| mean rho | top-1 lost at rho 0.5, each model's default rule at inference (baseline's) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in rec["arms"]:
        drop = (f"{a['drop_at_0.5']:.2f} ({a['baseline_drop_at_0.5']:.2f})" if "drop_at_0.5" in a else "-")
        lines.append(
            f"| {a['name']} | {','.join(map(str, a['seeds']))} | {a.get('time_vs_full', math.nan):.2f} | "
            f"{a['best_acc1']:.2f} | {a['final_acc1']:.2f} | {per_seed(a.get('final_diff_vs_full'))} | "
            f"{per_seed(a.get('final_diff_vs_equal_time'))} | {per_seed(a.get('best_diff_vs_equal_time'))} | "
            f"{a['mean_keep_ratio']:.3f} | {drop} |"
        )
    lines += ["", "Per run:", "", "| run | seed | epochs | schedule (solved) | select | train time (s) | best | final |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rec["runs"]:
        s = r["schedule"]
        sched = s["name"] + "(" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items()
                                            if k not in ("name", "grid", "period_epochs", "warmup_epochs") and v) + ")"
        lines.append(f"| {r['name']} | {r['seed']} | {r['epochs']} | {sched} | {r['select']} | {r['train_time_s']:.0f} "
                     f"| {r['best_acc1']:.2f} | {r['final_acc1']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(rec: dict, path: Path) -> None:
    """Left: final top-1 against training time (relative to the full baseline), the full-token runs
    joined as the equal-time frontier; right: dynamic-inference curves (mean over seeds)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5.5), dpi=100, layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    base = {r["seed"]: r["train_time_s"] for r in rec["runs"] if r["name"] == "baseline"}
    pts: dict[str, list[tuple[float, float]]] = {}
    for r in rec["runs"]:
        if r["seed"] in base:
            pts.setdefault(r["name"], []).append((r["train_time_s"] / base[r["seed"]], r["final_acc1"]))
    frontier = sorted((statistics.fmean(x for x, _ in v), statistics.fmean(y for _, y in v))
                      for n, v in pts.items() if n in ("baseline", "baseline_equal_time", "baseline_0.8"))
    if frontier:
        ax.plot(*zip(*frontier), "k--", marker="s", label="full-token baselines (equal-time frontier)")
    for i, (name, v) in enumerate(pts.items()):
        if name.startswith("baseline") and "rope" not in name and "refinit" not in name:
            continue
        color = f"C{i % 10}"
        ax.scatter(*zip(*v), color=color, alpha=0.35, s=18)
        ax.scatter(statistics.fmean(x for x, _ in v), statistics.fmean(y for _, y in v), color=color, s=60,
                   marker="o" if name.startswith("pss") else "D", label=name)
    ax.set_xlabel("training time / full baseline's (same seed)")
    ax.set_ylabel("final top-1 (%)")
    ax.set_title("Accuracy against training time (small: seeds, large: mean)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    curves: dict[str, list[dict[str, float]]] = {}
    for r in rec["runs"]:
        curves.setdefault(r["name"], []).append(r["sweep"])
    for i, (name, sweeps) in enumerate(curves.items()):
        keys = sorted(set.intersection(*(set(s) for s in sweeps)), key=float)
        ax2.plot([float(k) for k in keys], [statistics.fmean(s[k] for s in sweeps) for k in keys], marker="o",
                 markersize=3, color=f"C{i % 10}", linestyle="--" if name.startswith("baseline") else "-", label=name)
    ax2.set_xlabel("keep ratio at inference (magnitude selection)")
    ax2.set_ylabel("top-1 (%)")
    ax2.set_title("Dynamic inference (mean over seeds)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    fig.savefig(path)


if __name__ == "__main__":
    from pss.cli import guarded  # a ConfigError is one line, a signal exit code 130

    raise SystemExit(guarded("recipe_study.py", main))
