"""End-to-end CIFAR-10 comparison: baseline vs PSS, trained side by side in one session.

    python benchmarks/cifar10.py --device cuda                  # full runs (shipped CIFAR-10 recipes)
    python benchmarks/cifar10.py --cpu-reduced                  # reduced, clearly labelled CPU set-up

Trains, with the shipped recipes and identical settings apart from the keep-ratio schedule:
  baseline               keep ratio 1.0 always (configs/cifar10_baseline.yaml)
  pss                    the recommended PSS recipe (configs/cifar10_pss.yaml: its budget sets the cost)
  paper_pss              the paper's recipe: cyclic 0.2 -> 1.0 per epoch, magnitude selection
                         (configs/paper_cifar10_pss.yaml)
  baseline_equal_time    the baseline trained for the `pss` run's cost against the full run: epochs x the
                         recipe's budget (also under tokens for epochs; pss.equal_time.cost_vs_full) or,
                         without one, x its measured time ratio; LR schedule fully decayed over the shorter run
then sweeps every best checkpoint over keep ratios (dynamic inference) and writes the run report.
Records `benchmarks/results/e2e_cifar10_<device>_<date>.json` and `.md` (see `record`); every PSS run
is compared with the full baseline and with the equal-time baseline of its seed.

Re-running the same command continues where it stopped (`pss.study`): a run whose folder holds
summary.json is done (its summary is re-read), one holding checkpoint-last.pt is resumed exactly,
anything else starts afresh; a folder holding a run of other settings is refused, --fresh starts every
run over. So on a machine that limits how long one command may run (a batch queue's wall-time limit,
a preemptible instance), run the same command again until it prints the record.

CIFAR-10: the recipes read class folders from ~/.cache/pss-data/cifar10 (train/, test/); `--data`
takes such a folder or a .tar.gz of it (extracted once into that cache). The shipped recipes (200
epochs) are sized for ~10 minutes per baseline run on one H100 (an estimate; see the recipes'
comments), ~30 minutes for the four runs of one seed; `--set epochs=100` halves that.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "benchmarks"))  # results_page, beside this script

from results_page import write as write_results_page  # noqa: E402
from pss.analysis.report import versus, write_report  # noqa: E402
from pss.analysis.sweep import sweep_checkpoints, write_sweep  # noqa: E402
from pss.demo import warm_up  # noqa: E402
from pss import study  # noqa: E402
from pss.study import PlannedRun, add_study_arguments, planned_equal_time, planned_run, run_plan, write_record  # noqa: E402
from pss.equal_time import cost_vs_full  # noqa: E402
from pss.runinfo import run_info  # noqa: E402

log = logging.getLogger("pss.e2e")

SWEEP_KEEP = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)

# name -> (recipe, overrides). Only the schedule / selection differ between runs.
RUNS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("cifar10_baseline", []),
    "pss": ("cifar10_pss", []),
    "paper_pss": ("paper_cifar10_pss", []),
    "baseline_equal_time": ("cifar10_baseline", []),  # + the equal-time length of `pss` (see `plan`)
    # earlier records' runs, still available by name
    "pss_cyclic_magnitude": ("paper_cifar10_pss", []),
    "pss_cyclic_random": ("paper_cifar10_pss", ["select=random"]),
    "pss_linear": ("paper_cifar10_pss", ["schedule={name: linear, start: 0.2, end: 1.0}"]),
}
DEFAULT_RUNS = ("baseline", "pss", "paper_pss", "baseline_equal_time")
EQUAL_TIME_OF = "pss"

# The CPU-sized version of the same comparison: pss.study's CPU-reduced set-up, shared by every benchmark.
CPU_REDUCED = study.CPU_REDUCED


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None,
                   help="CIFAR-10 folder or .tar.gz of one (extracted once to a cache); default: the recipes' data.path")
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--cpu-reduced", action="store_true", help="the reduced CPU configuration (labelled as such)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1")
    p.add_argument("--runs", default=",".join(DEFAULT_RUNS), help=f"subset of {','.join(RUNS)}")
    add_study_arguments(p, ROOT / "runs" / "e2e_cifar10", ROOT / "benchmarks" / "results")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    names = [n for n in args.runs.split(",") if n]
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        raise SystemExit(f"unknown run name(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    common = [*(CPU_REDUCED if args.cpu_reduced else []), *(["device=" + args.device] if args.device != "auto" else []),
              *args.overrides]
    out = Path(args.output)

    plan = make_plan(names, seeds, common, args.data, out)
    summaries = run_plan(plan, fresh=args.fresh, quiet=args.quiet, warm_up=warm_up)

    plan = [(run.name, run.seed, run.cfg) for run in plan]
    run_dirs = [Path(cfg.output_dir) for _, _, cfg in plan]
    labels = [f"{name}_s{seed}" for name, seed, _ in plan]
    device = plan[0][2].device if plan[0][2].device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    # throughput is timed on batches of 256 on the GPU, 64 (fewer repeats) on the reduced CPU set-up
    # each model at its deterministic default rule for the rule it was trained with (pss.select)
    sweep = sweep_checkpoints(run_dirs, keep_ratios=SWEEP_KEEP, device=device, names=labels,
                              batch_size=64 if args.cpu_reduced else 256, iters=3 if args.cpu_reduced else 10)
    write_sweep(sweep, out / "sweep")
    report = write_report(run_dirs, out / "report", names=labels)

    record_path = record(plan, summaries, sweep, args, device)
    print(Path(record_path).with_suffix(".md").read_text())
    print(f"report: {report['paths']['markdown']}\nsweep: {out / 'sweep' / 'sweep.png'}\nrecord: {record_path}")
    return 0


def make_plan(names: list[str], seeds: list[int], common: list[str], data: str, out: Path) -> list[PlannedRun]:
    """Every run's config, resolved now (bad input fails before anything trains). The equal-time
    baseline follows the `pss` run of its seed: its length is that run's cost against the full run
    (`pss.equal_time.cost_vs_full`): the recipe's budget, known now (under tokens for epochs the recipe's 0.6,
    not the longer run's own 0.4), or, without a budget, its measured time ratio (so it trains after both)."""
    plan = []
    for seed in seeds:
        for name in names:
            recipe, extra = RUNS[name]
            run = planned_run(name, seed, recipe, [*common, *extra], data, out)
            if name == "baseline_equal_time":
                of = planned_run(EQUAL_TIME_OF, seed, RUNS[EQUAL_TIME_OF][0], [*common, *RUNS[EQUAL_TIME_OF][1]], data, out)
                if cost_vs_full(of.cfg).budget is None and (EQUAL_TIME_OF not in names or "baseline" not in names):
                    raise SystemExit(f"baseline_equal_time needs the {EQUAL_TIME_OF} and baseline runs (its "
                                     f"{EQUAL_TIME_OF} recipe has no budget, so its length is their measured time ratio)")
                run = planned_equal_time(run, of)
            plan.append(run)
    return plan


def _sweep_acc(sweep: dict, label: str) -> dict[str, float]:
    """{keep ratio as text: acc1} for one run of a sweep result."""
    for entry in sweep["checkpoints"]:
        if entry["name"] == label:
            return {f"{r['keep_ratio']:g}": r["acc1"] for r in entry["results"]}
    return {}


def record(plan, summaries, sweep, args, device) -> Path:
    """Write the e2e JSON record and a Markdown table under --results."""
    info = run_info(device)
    runs = []
    for name, seed, cfg in plan:
        s = summaries[(name, seed)]
        cost = cost_vs_full(cfg, s, summaries.get(("baseline", seed)))  # the recipe's budget, the cost vs the full run
        runs.append({
            "name": name, "schedule": s.get("schedule") or cfg.schedule.to_dict(), "select": cfg.select, "seed": seed,
            "epochs": cfg.epochs, "train_time_s": s["train_time_s"], "best_acc1": s["best_acc1"],
            "final_acc1": s["final_acc1"], "mean_keep_ratio": s["mean_keep_ratio"],
            "data_wait_fraction": s.get("data_wait_fraction"), "images_per_s": s.get("images_per_s"),
            "budget": s.get("budget"), "cost_vs_full": cost.to_dict() if cost.budget is not None else None,
            "equal_time_of": cfg.equal_time_of,
        })
    rec = {
        "kind": "e2e", "dataset": "cifar10" + ("-reduced-cpu" if args.cpu_reduced else ""),
        "device": info["device"], "torch": info["torch"], "timm": info["timm"], "commit": info["commit"],
        "date": dt.date.today().isoformat(),
        "recipe": {"baseline": "configs/cifar10_baseline.yaml", "pss": "configs/cifar10_pss.yaml",
                   "paper_pss": "configs/paper_cifar10_pss.yaml",
                   "overrides": (CPU_REDUCED if args.cpu_reduced else []) + args.overrides},
        "runs": runs,
        "sweep": {f"{n}_s{s}": _sweep_acc(sweep, f"{n}_s{s}") for n, s, _ in plan},
        "sweep_select": {e["name"]: e["select"] for e in sweep["checkpoints"]},  # each model's default rule
    }
    results = Path(args.results)
    tag = "cpu-reduced" if args.cpu_reduced else re.sub(r"[^A-Za-z0-9]+", "-", info["device"]).strip("-").lower()
    if args.tag:
        tag += "-" + re.sub(r"[^A-Za-z0-9]+", "-", args.tag).strip("-").lower()
    path = write_record(results / f"e2e_cifar10_{tag}_{rec['date']}.json", rec, to_markdown(rec))
    write_results_page(results)
    return path


def budget_cell(run: dict) -> str:
    """The budget the recipe gave and what the run cost against the full run (`pss.equal_time.cost_vs_full`;
    under tokens for epochs not the longer run's own per-run budget), e.g. "0.6 (0.581)"."""
    if not run.get("budget"):
        return "-"
    cost = cost_vs_full(summary={"budget": run["budget"]})
    spent = cost.realised if cost.realised is not None else cost.predicted
    return f"{cost.budget:g}" + ("" if spent is None else f" ({spent:.3f})")


def to_markdown(rec: dict) -> str:
    """Every run against its seed's full baseline and equal-time baseline: time ratio, top-1 (best and
    final) differences, dynamic inference. Records written before the equal-time baseline existed (no
    `equal_time_of` field) read as before, without those columns filled."""
    base = {r["seed"]: r for r in rec["runs"] if r["name"] == "baseline"}
    equal = {r["seed"]: r for r in rec["runs"] if r.get("equal_time_of")}

    def diff(v: float | None) -> str:
        return "-" if v is None else f"{v:+.2f}"

    lines = [
        f"# CIFAR-10 end to end: baseline vs PSS ({rec['dataset']})", "",
        f"device: {rec['device']}; torch {rec['torch']}, timm {rec['timm']}; commit {rec['commit']}; {rec['date']}",
        f"overrides: {', '.join(rec['recipe']['overrides']) or 'none (shipped recipes)'}", "",
        "Differences in top-1 points against the same seed's full baseline and equal-time baseline (the full-token "
        "recipe trained for the PSS run's cost, LR schedule fully decayed over the shorter run).", "",
        "| run | seed | epochs | budget (realised cost vs full run) | train time (s) | time / baseline | best top-1 | final top-1 "
        "| best vs full | final vs full | best vs equal time | final vs equal time | mean rho | data wait "
        "| top-1 @ rho 0.5 | drop @ 0.5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rec["runs"]:
        vs = versus(r, base.get(r["seed"]), equal.get(r["seed"]))
        ratio = vs["time_vs_full"] if vs["time_vs_full"] is not None else float("nan")
        sw = rec["sweep"].get(f"{r['name']}_s{r['seed']}", {})
        half, full = sw.get("0.5"), sw.get("1")
        drop = (full - half) if half is not None and full is not None else None
        wait = r["data_wait_fraction"]
        budget = budget_cell(r)
        lines.append(
            f"| {r['name']} | {r['seed']} | {r['epochs']} | {budget} | {r['train_time_s']:.1f} | {ratio:.3f} "
            f"| {r['best_acc1']:.2f} | {r['final_acc1']:.2f} | {diff(vs['best_vs_full'])} | {diff(vs['final_vs_full'])} "
            f"| {diff(vs['best_vs_equal_time'])} | {diff(vs['final_vs_equal_time'])} | {r['mean_keep_ratio']:.3f} | "
            f"{'-' if wait is None else f'{100 * wait:.1f}%'} | {'-' if half is None else f'{half:.2f}'} "
            f"| {'-' if drop is None else f'{drop:.2f}'} |"
        )
    rules = rec.get("sweep_select")  # records before the per-model default rules were swept with magnitude
    how = "each model's default selection rule" if rules else "magnitude selection"
    lines += ["", f"Dynamic inference (top-1 % by keep ratio at inference, {how}):", ""]
    keeps = sorted({k for v in rec["sweep"].values() for k in v}, key=float, reverse=True)
    lines += ["| run | " + " | ".join(keeps) + " |", "|---|" + "---|" * len(keeps)]
    for label, accs in rec["sweep"].items():
        lines.append(f"| {label} | " + " | ".join(f"{accs.get(k, float('nan')):.1f}" for k in keeps) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from pss.cli import guarded  # a ConfigError is one line, a signal exit code 130

    raise SystemExit(guarded("cifar10.py", main))
