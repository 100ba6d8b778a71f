"""End-to-end CIFAR-10 comparison: baseline vs PSS, trained side by side in one session.

    python benchmarks/cifar10.py --device cuda                  # full runs (shipped CIFAR-10 recipes)
    python benchmarks/cifar10.py --cpu-reduced                  # reduced, clearly labelled CPU set-up

Trains, with the shipped recipes (configs/cifar10_baseline.yaml, configs/cifar10_pss.yaml) and
identical settings apart from the schedule:
  baseline               keep ratio 1.0 always
  pss_cyclic_magnitude   cyclic 0.2 -> 1.0 per epoch, magnitude selection (the paper's recipe)
  pss_cyclic_random      cyclic 0.2 -> 1.0 per epoch, random selection
  pss_linear             linear 0.2 -> 1.0 over the run, magnitude selection
then sweeps every best checkpoint over keep ratios (dynamic inference) and writes the run report.
Records `benchmarks/results/e2e_cifar10_<device>_<date>.json` and `.md` (see `record`).

Re-running the same command continues where it stopped, so a limit on one command's duration (10
minutes on a lent GPU machine) is no obstacle: a run whose folder holds summary.json is done (its
summary is re-read), one holding checkpoint-last.pt is resumed (exactly, see `pss train --resume`),
anything else starts afresh. A folder holding a run of other settings is refused; --fresh starts
every run over. Each run's settings are kept in its folder's e2e_run.json.

Planning for one H100 (30 minutes of device time per session; estimates, no GPU figure recorded
yet): the shipped recipes (200 epochs) are sized for ~10 minutes per baseline run, so the four
runs of one seed take ~30 minutes; `--set epochs=100` halves that.

On a lent GPU machine (only the working tree travels, without ../shared; the 19 MB archive must be in it):
    mkdir -p data && cp ../shared/data/cifar10-jpg.tar.gz data/          # here, once; data/ is git-ignored
    run (carry: ["data"], timeout_s: 600), the same command again until it prints the record (runs/ stays
    on the machine while it is held; never carry runs/ from here: a carried path replaces the one there):
        PYTHONPATH=src python benchmarks/cifar10.py --device cuda --data data/cifar10-jpg.tar.gz \
            && cp benchmarks/results/e2e_cifar10_* $OUT/
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing, e.g. on the GPU machine

from pss.analysis.demo import warm_up  # noqa: E402
from pss.analysis.report import write_report  # noqa: E402
from pss.analysis.sweep import sweep_checkpoints, write_sweep  # noqa: E402
from pss.runinfo import run_info  # noqa: E402
from pss.train import resolve_config, train  # noqa: E402

log = logging.getLogger("pss.e2e")

ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
SWEEP_KEEP = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)

# name -> (recipe, overrides). Only the schedule / selection differ between runs.
RUNS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("cifar10_baseline", []),
    "pss_cyclic_magnitude": ("cifar10_pss", ["select=magnitude"]),
    "pss_cyclic_random": ("cifar10_pss", ["select=random"]),
    "pss_linear": ("cifar10_pss", ["schedule={name: linear, start: 0.2, end: 1.0}", "select=magnitude"]),
}

# A CPU-sized version of the same comparison (2 idle cores: several minutes for the four runs): a smaller
# ViT, a class-balanced subset of CIFAR-10, fewer epochs, no Mixup/CutMix (too few epochs for them
# to pay off). The ratios between runs are what it shows; its absolute accuracy is not CIFAR-10's.
CPU_REDUCED = [
    "model.kwargs={depth: 4, embed_dim: 96, num_heads: 3, pos_embed: rel_bias}",
    "model.drop_path_rate=0.0",
    "data.max_train_per_class=500",
    "data.max_val_per_class=200",
    "data.num_workers=2",
    "data.re_prob=0.0",
    "mixup={mixup_alpha: 0.0, cutmix_alpha: 0.0}",
    "label_smoothing=0.0",
    "epochs=10",
    "batch_size=64",
    "lr_sched.warmup_epochs=1",
    "optim.base_lr=2.0e-3",
    "optim.base_batch_size=64",
    "eval.interval=1",
    "log_interval=10",
    "checkpoint_interval_epochs=100",
    "device=cpu",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ARCHIVE), help="CIFAR-10 folder or the shared .tar.gz (extracted once to a cache)")
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--cpu-reduced", action="store_true", help="the reduced CPU configuration (labelled as such)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1")
    p.add_argument("--runs", default=",".join(RUNS), help=f"subset of {','.join(RUNS)}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra recipe override for every run (e.g. --set epochs=100)")
    p.add_argument("--output", default=str(ROOT / "runs" / "e2e_cifar10"), help="run folders go here")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="where the record is written")
    p.add_argument("--tag", default="", help="added to the record's file name, e.g. 30ep (keeps same-day records apart)")
    p.add_argument("--fresh", action="store_true", help="start every run over instead of continuing finished/killed ones")
    p.add_argument("--quiet", action="store_true")
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

    # Resolve every config first: bad input fails before any training starts.
    plan = []
    for seed in seeds:
        for name in names:
            recipe, extra = RUNS[name]
            overrides = [*common, *extra, f"seed={seed}"]
            cfg, _ = resolve_config(recipe, overrides, data=args.data, output=str(out / f"{name}_s{seed}"))
            plan.append((name, seed, cfg, {"recipe": recipe, "overrides": overrides, "data": args.data}))

    states = {(name, seed): run_state(cfg, settings, args.fresh) for name, seed, cfg, settings in plan}
    if any(state != "done" for state in states.values()):
        warm_up(plan[0][2])  # one-time process costs are not billed to the first run
    summaries = {}
    for name, seed, cfg, settings in plan:
        folder, state = Path(cfg.output_dir), states[(name, seed)]
        if state == "done":
            log.info("e2e: %s (seed %d) finished earlier: %s", name, seed, folder)
            summaries[(name, seed)] = json.loads((folder / "summary.json").read_text())
            continue
        log.info("e2e: %s %s (seed %d) -> %s", "resuming" if state == "resume" else "training", name, seed, folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "e2e_run.json").write_text(json.dumps(settings, indent=1) + "\n")
        if state == "resume":
            summaries[(name, seed)] = train(cfg, resume_from=folder / "checkpoint-last.pt", quiet=args.quiet)
        else:
            summaries[(name, seed)] = train(cfg, overwrite=True, quiet=args.quiet)

    plan = [(name, seed, cfg) for name, seed, cfg, _ in plan]
    run_dirs = [Path(cfg.output_dir) for _, _, cfg in plan]
    labels = [f"{name}_s{seed}" for name, seed, _ in plan]
    device = plan[0][2].device if plan[0][2].device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    # throughput is timed on batches of 256 on the GPU, 64 (fewer repeats) on the reduced CPU set-up
    sweep = sweep_checkpoints(run_dirs, keep_ratios=SWEEP_KEEP, method="magnitude", device=device, names=labels,
                              batch_size=64 if args.cpu_reduced else 256, iters=3 if args.cpu_reduced else 10)
    write_sweep(sweep, out / "sweep")
    report = write_report(run_dirs, out / "report", names=labels)

    record_path = record(plan, summaries, sweep, args, device)
    print(Path(record_path).with_suffix(".md").read_text())
    print(f"report: {report['paths']['markdown']}\nsweep: {out / 'sweep' / 'sweep.png'}\nrecord: {record_path}")
    return 0


def run_state(cfg, settings: dict, fresh: bool) -> str:
    """"done", "resume" or "fresh" for one planned run; a folder holding other settings is refused."""
    folder = Path(cfg.output_dir)
    marker = folder / "e2e_run.json"
    if fresh or not marker.exists():
        return "fresh"
    before = json.loads(marker.read_text())
    if before != settings:
        raise SystemExit(f"{folder} holds a run of other settings:\n  {before}\nnow:\n  {settings}\n"
                         "run with --fresh to start over, or choose another --output")
    if (folder / "summary.json").exists():
        return "done"
    return "resume" if (folder / "checkpoint-last.pt").exists() else "fresh"


def _sweep_acc(sweep: dict, label: str) -> dict[str, float]:
    """{keep ratio as text: acc1} for one run of a sweep result."""
    for entry in sweep["checkpoints"]:
        if entry["name"] == label:
            return {f"{r['keep_ratio']:g}": r["acc1"] for r in entry["results"]}
    return {}


def record(plan, summaries, sweep, args, device) -> Path:
    """Write the e2e JSON (issue 5's schema) and a Markdown table under --results."""
    info = run_info(device)
    runs = []
    for name, seed, cfg in plan:
        s = summaries[(name, seed)]
        runs.append({
            "name": name, "schedule": cfg.schedule.to_dict(), "select": cfg.select, "seed": seed,
            "epochs": cfg.epochs, "train_time_s": s["train_time_s"], "best_acc1": s["best_acc1"],
            "final_acc1": s["final_acc1"], "mean_keep_ratio": s["mean_keep_ratio"],
            "data_wait_fraction": s.get("data_wait_fraction"), "images_per_s": s.get("images_per_s"),
        })
    rec = {
        "kind": "e2e", "dataset": "cifar10" + ("-reduced-cpu" if args.cpu_reduced else ""),
        "device": info["device"], "torch": info["torch"], "timm": info["timm"], "commit": info["commit"],
        "date": dt.date.today().isoformat(),
        "recipe": {"baseline": "configs/cifar10_baseline.yaml", "pss": "configs/cifar10_pss.yaml",
                   "overrides": (CPU_REDUCED if args.cpu_reduced else []) + args.overrides},
        "runs": runs,
        "sweep": {f"{n}_s{s}": _sweep_acc(sweep, f"{n}_s{s}") for n, s, _ in plan},
    }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    tag = "cpu-reduced" if args.cpu_reduced else re.sub(r"[^A-Za-z0-9]+", "-", info["device"]).strip("-").lower()
    if args.tag:
        tag += "-" + re.sub(r"[^A-Za-z0-9]+", "-", args.tag).strip("-").lower()
    path = results / f"e2e_cifar10_{tag}_{rec['date']}.json"
    path.write_text(json.dumps(rec, indent=2) + "\n")
    path.with_suffix(".md").write_text(to_markdown(rec))
    return path


def to_markdown(rec: dict) -> str:
    """The comparison against each seed's baseline: time ratio, top-1 difference, dynamic inference."""
    base = {r["seed"]: r for r in rec["runs"] if r["name"] == "baseline"}
    lines = [
        f"# CIFAR-10 end to end: baseline vs PSS ({rec['dataset']})", "",
        f"device: {rec['device']}; torch {rec['torch']}, timm {rec['timm']}; commit {rec['commit']}; {rec['date']}",
        f"overrides: {', '.join(rec['recipe']['overrides']) or 'none (shipped recipes)'}", "",
        "| run | seed | epochs | train time (s) | time / baseline | best top-1 | diff (points) | final top-1 "
        "| mean rho | data wait | top-1 @ rho 0.5 | drop @ 0.5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rec["runs"]:
        b = base.get(r["seed"])
        ratio = r["train_time_s"] / b["train_time_s"] if b else float("nan")
        diff = r["best_acc1"] - b["best_acc1"] if b else float("nan")
        sw = rec["sweep"].get(f"{r['name']}_s{r['seed']}", {})
        half, full = sw.get("0.5"), sw.get("1")
        drop = (full - half) if half is not None and full is not None else None
        wait = r["data_wait_fraction"]
        lines.append(
            f"| {r['name']} | {r['seed']} | {r['epochs']} | {r['train_time_s']:.1f} | {ratio:.3f} | {r['best_acc1']:.2f} "
            f"| {diff:+.2f} | {r['final_acc1']:.2f} | {r['mean_keep_ratio']:.3f} | "
            f"{'-' if wait is None else f'{100 * wait:.1f}%'} | {'-' if half is None else f'{half:.2f}'} "
            f"| {'-' if drop is None else f'{drop:.2f}'} |"
        )
    lines += ["", "Dynamic inference (top-1 % by keep ratio at inference):", ""]
    keeps = sorted({k for v in rec["sweep"].values() for k in v}, key=float, reverse=True)
    lines += ["| run | " + " | ".join(keeps) + " |", "|---|" + "---|" * len(keeps)]
    for label, accs in rec["sweep"].items():
        lines.append(f"| {label} | " + " | ".join(f"{accs.get(k, float('nan')):.1f}" for k in keeps) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
