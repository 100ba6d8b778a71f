"""How good is the pre-flight? Its predicted wall-clock ratio against the realised one, with a loader made
slow on purpose and a fast one, and `budget: 0.6` + `budget_cost: measured` with the slow loader.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/preflight_check.py --data ~/.cache/pss-data/cifar10

The recipe-study model (pss_vit_tiny_patch4_32, depth 4, width 96, rel_bias) at batch 64 on a class-balanced
subset of CIFAR-10 (JPEG files), trained on the study harness (pss.study), every run with `preflight: true`:

  slow loader   data.in_memory: false, 1 worker: every image is decoded from JPEG and augmented (timm) per
                step; on a machine where the worker and the model share the cores, its time adds to each step
  fast loader   data.in_memory: true (decoded once, cut and flipped batch-wise)

For each loader: the full-token run and a PSS run (cyclic 0.2 -> 1.0 per epoch, random selection), then,
with the slow loader, the PSS run with `budget: 0.6` and `budget_cost: measured`. Realised ratios: the
PSS run's training time over its loader's full-token run (side by side, same session), and the run's
own step times relative to its full-token steps (`realised_time_ratio`, the loader's waits included).
Writes `benchmarks/results/preflight_check_<date>[_<tag>].json` and `.md`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pss.study import (  # noqa: E402
    CPU_REDUCED,
    add_study_arguments,
    derive,
    planned_run,
    record_header,
    run_plan,
    write_record,
)

# pss.study's CPU-reduced set-up with 20 held-out images per class, no evaluation until the end, and the
# pre-flight on; the training images per class, the loader and the epochs are set per arm.
COMMON = [
    *derive(CPU_REDUCED, {"data.max_train_per_class": None, "data.max_val_per_class": 20, "data.num_workers": None,
                          "epochs": None, "eval.interval": 100, "log_interval": 20}),
    "preflight=true",
]
LOADERS = {"slow": ["data.in_memory=false", "data.num_workers=1"], "fast": ["data.in_memory=true", "data.num_workers=0"]}
PSS = ["schedule={name: cyclic, low: 0.2, high: 1.0, period_epochs: 1}", "select=random"]
BUDGET = ["schedule={name: cyclic, low: 0.2, high: 1.0, period_epochs: 1}", "select=random", "budget_cost=measured"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="~/.cache/pss-data/cifar10", help="CIFAR-10 folder or .tar.gz archive")
    p.add_argument("--per-class", type=int, default=100, help="training images per class")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=float, default=0.6, help="of the budget_cost: measured run (slow loader)")
    p.add_argument("--note", default="", help="recorded with the figures (e.g. the machine was shared)")
    add_study_arguments(p, ROOT / "runs" / "preflight_check", ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = str(Path(args.data).expanduser())
    common = [*COMMON, f"epochs={args.epochs}", f"data.max_train_per_class={args.per_class}", *args.overrides]
    out = Path(args.output)
    arms = [("full_slow", LOADERS["slow"] + ["schedule=1.0"]), ("pss_slow", LOADERS["slow"] + PSS),
            ("budget_slow", LOADERS["slow"] + BUDGET + [f"budget={args.budget}"]), ("full_fast", LOADERS["fast"] + ["schedule=1.0"]),
            ("pss_fast", LOADERS["fast"] + PSS)]
    plan = [planned_run(name, args.seed, "cifar10_baseline", [*common, *extra], data, out) for name, extra in arms]
    summaries = run_plan(plan, fresh=args.fresh, quiet=args.quiet)

    rows = []
    for run in plan:
        s = summaries[(run.name, run.seed)]
        full = summaries[(f"full_{run.name.split('_')[1]}", run.seed)]
        pre = s.get("preflight") or {}
        row = {"run": run.name, "train_time_s": s["train_time_s"], "mean_keep_ratio": s["mean_keep_ratio"],
               "data_wait_fraction": s["data_wait_fraction"], "predicted_time_ratio": pre.get("time_ratio"),
               "model_time_ratio": pre.get("model_time_ratio"), "bound": pre.get("bound"), "message": pre.get("message"),
               "realised_in_run": pre.get("realised_time_ratio"),
               "realised_vs_full_run": s["train_time_s"] / full["train_time_s"],
               "loader_images_per_s": pre.get("loader_images_per_s"), "final_acc1": s.get("final_acc1")}
        if row["predicted_time_ratio"]:
            row["error_vs_full_run"] = row["realised_vs_full_run"] / row["predicted_time_ratio"] - 1
            if row["realised_in_run"]:
                row["error_in_run"] = row["realised_in_run"] / row["predicted_time_ratio"] - 1
        if s.get("budget"):
            b = s["budget"]
            row["budget"] = {k: b.get(k) for k in ("budget", "cost_model", "predicted_cost", "value", "realised_time_ratio")}
        rows.append(row)
    info = {k: summaries[(plan[0].name, plan[0].seed)].get(k) for k in ("device", "torch", "timm", "commit")}
    rec = {"kind": "preflight_check", **info, "date": dt.date.today().isoformat(), "note": args.note,
           "command": "python benchmarks/preflight_check.py " + " ".join(argv or sys.argv[1:]), "seed": args.seed,
           "overrides": common, "runs": rows}
    md = [*record_header(f"Pre-flight prediction vs realised wall-clock ratio ({rec['device']}, seed {args.seed})", rec),
          "| run | mean rho | train time (s) | data wait | predicted ratio | model alone | bound | realised vs full run "
          "| error | realised in run | error |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    f = lambda v, fmt="{:.3f}": "-" if v is None else fmt.format(v)  # noqa: E731
    for r in rows:
        md.append(f"| {r['run']} | {f(r['mean_keep_ratio'])} | {r['train_time_s']:.1f} | {f(r['data_wait_fraction'], '{:.0%}')} "
                  f"| {f(r['predicted_time_ratio'])} | {f(r['model_time_ratio'])} | {r['bound'] or '-'} "
                  f"| {f(r['realised_vs_full_run'])} | {f(r.get('error_vs_full_run'), '{:+.1%}')} "
                  f"| {f(r['realised_in_run'])} | {f(r.get('error_in_run'), '{:+.1%}')} |")
    md += ["", "Pre-flight messages:", ""] + [f"- {r['run']}: {r['message']}" for r in rows if r["message"]]
    budget = [r for r in rows if r.get("budget")]
    for r in budget:
        b = r["budget"]
        md += ["", f"{r['run']}: budget {b['budget']} ({b['cost_model']}): solved low = {b['value']}, predicted cost "
               f"{b['predicted_cost']:.3f}, realised {r['realised_vs_full_run']:.3f} of the full run's time "
               f"({r['realised_vs_full_run'] / b['predicted_cost'] - 1:+.1%}), {f(b['realised_time_ratio'])} in the run."]
    path = write_record(Path(args.results) / f"preflight_check_{rec['date']}{'_' + args.tag if args.tag else ''}.json",
                        rec, md)
    print("\n".join(md))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
