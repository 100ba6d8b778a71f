"""The PSS paper's pre-trained setting on CIFAR-10, end to end, in one command.

    python benchmarks/pretrain_finetune.py --data data/cifar10-jpg.tar.gz      # GPU: the shipped recipes
    python benchmarks/pretrain_finetune.py --cpu-smoke                         # CPU, ~1 min: the pipeline only
    python benchmarks/pretrain_finetune.py --cpu-reduced --data path/to/cifar10-jpg.tar.gz
                                  # CPU, ~10 min: a smaller model on a CIFAR-10 subset, labelled as such

Four `pss` runs, each in its own folder under --workdir (default runs/pretrain_finetune), planned and
run by `pss.study` (the engine every benchmark uses), in this order:

    pretrain     pss pretrain --config configs/cifar10_pretrain_simmim.yaml          SimMIM, every patch
    ft_baseline  pss train --config configs/cifar10_finetune_baseline.yaml --init pretrain/encoder.safetensors
    ft_pss       pss train --config configs/cifar10_finetune_pss.yaml --init pretrain/encoder.safetensors
                 (the recommended recipe: its budget of 0.6 spent as 1.5x the epochs at fewer tokens)
    scratch      pss train --config configs/cifar10_finetune_baseline.yaml --set optim.layer_decay=null
                 (the same model and epochs from random weights; layer-wise LR decay is a fine-tuning
                 device that would only slow the lower layers of a model learning from scratch)

It then writes benchmarks/results/pretrain_finetune_<device>_<date>.json and .md: device, torch and
timm versions, git commit, each run's training time and top-1, the fine-tuning time ratio
PSS / baseline and the top-1 difference against the paper's (ViT-B on ImageNet, 4 A100s:
24.6 h -> 17.0 h = 0.69x, 83.7 % -> 83.5 % = -0.26 points), and fine-tuned vs from-scratch top-1.
Times are `train_time_s` from each run's summary.json: training steps only (no evaluation, no
checkpoint writing, no data decoding), summed over resumed segments.

Re-running the same command continues where it stopped: a stage whose folder holds summary.json
is done (skipped), one holding checkpoint-last.pt is resumed, anything else starts afresh. On a
machine that limits how long one command may run (a batch queue's wall-time limit, a preemptible
instance), run the same command again until it prints the result. --fresh starts every stage over.
Changing the command's settings between invocations is refused (it would mix runs of different settings).

Expected duration on one H100 (estimate, not a measurement; see the recipes' comments for how it
was made): pre-training ~6 min, fine-tuning ~6 min (baseline) and ~5 min (PSS), from scratch
~6 min: about 23 minutes for the four runs.

Every stage's config is resolved before anything trains (bad input fails first); checkpoints every 5
epochs (the recipes') bound the work a kill loses.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "benchmarks"))  # results_page, beside this script

from results_page import write as write_results_page  # noqa: E402
from pss.analysis.report import versus  # noqa: E402
from pss.runfolder import RunDir  # noqa: E402
from pss.study import CPU_REDUCED, CPU_REDUCED_MODEL, PlannedRun, derive, planned_run, run_plan, write_record  # noqa: E402
CONFIGS = ROOT / "configs"
RESULTS = ROOT / "benchmarks" / "results"

# McDanel & Huynh (arXiv 2208.09520): SimMIM ViT-B fine-tuned on ImageNet-1k, 4 A100s.
PAPER = {
    "setting": "SimMIM-pretrained ViT-B/16 fine-tuned on ImageNet-1k, 4 A100 GPUs",
    "baseline_hours": 24.6,
    "pss_hours": 17.0,
    "time_ratio": 0.69,
    "top1_baseline": 83.7,
    "top1_pss": 83.5,
    "top1_delta": -0.26,
}

STAGES = ("pretrain", "ft_baseline", "ft_pss", "scratch")

# --cpu-smoke: the same recipes shrunk to a 2-block model on 128 built-in images (4 steps per epoch).
SMOKE_SETS = [
    "device=cpu",
    "data.path=null",
    "data.builtin_num_train=128",
    "data.builtin_num_val=64",
    "data.num_workers=0",
    "model.name=pss_vit_tiny_patch4_32",
    "model.kwargs.depth=2",
    "model.kwargs.embed_dim=32",
    "model.kwargs.num_heads=2",
    "batch_size=32",
    "optim.base_batch_size=32",  # the recipes' learning rates, not scaled down to the small batch
    "lr_sched.warmup_epochs=1",
    "eval.interval=1",
    "log_interval=4",
    "checkpoint_interval_epochs=1",
]
SMOKE_EPOCHS = {"pretrain": 3, "finetune": 3}

# --cpu-reduced: pss.study's CPU-reduced set-up (as benchmarks/cifar10.py --cpu-reduced) on the fine-tuning
# recipes' model: the 4-block ViT of width 96 with the recipes' other model settings (layer scale, pooling),
# their learning rates; pre-training for 20 epochs, evaluated every 5.
REDUCED_SETS = [
    *derive(CPU_REDUCED, {"model.kwargs": None, "optim.base_lr": None, "epochs": None, "eval.interval": None}),
    "model.name=pss_vit_tiny_patch4_32",
    *(f"model.kwargs.{k}={v}" for k, v in CPU_REDUCED_MODEL.items() if k != "pos_embed"),
]
REDUCED_PRETRAIN = ["epochs=20", "eval.interval=5"]
REDUCED_FINETUNE = ["epochs=10", "eval.interval=1"]


def plan(args: argparse.Namespace, workdir: Path) -> list[PlannedRun]:
    """The four runs (`STAGES`, in order), configs resolved now: each stage's recipe + the set-up's
    overrides + the command's --set-pretrain / --set-finetune (last, so they win)."""
    common = list(SMOKE_SETS) if args.cpu_smoke else list(REDUCED_SETS) if args.cpu_reduced else []
    if args.cpu_smoke:
        ft_extra, pre_extra = [f"epochs={SMOKE_EPOCHS['finetune']}"], [f"epochs={SMOKE_EPOCHS['pretrain']}"]
    elif args.cpu_reduced:
        ft_extra, pre_extra = REDUCED_FINETUNE, REDUCED_PRETRAIN
    else:
        ft_extra, pre_extra = [], []
    ft_sets = [*common, *ft_extra, *args.set_finetune]
    encoder = f"init={RunDir(workdir / 'pretrain').encoder}"
    stages = {
        "pretrain": ("cifar10_pretrain_simmim.yaml", [*common, *pre_extra, *args.set_pretrain]),
        "ft_baseline": ("cifar10_finetune_baseline.yaml", [*ft_sets, encoder]),
        "ft_pss": ("cifar10_finetune_pss.yaml", [*ft_sets, encoder]),
        "scratch": ("cifar10_finetune_baseline.yaml", [*ft_sets, "optim.layer_decay=null"]),
    }
    data = None if args.cpu_smoke else args.data
    return [planned_run(name, 0, str(CONFIGS / recipe), sets, data, workdir, folder=name)
            for name, (recipe, sets) in stages.items() if name in args.stages]


def _run_record(summary: dict[str, Any], folder: str) -> dict[str, Any]:
    keys = ("train_time_s", "wall_time_s", "epochs", "steps", "final_acc1", "best_acc1", "final_acc5", "final_loss",
            "best_loss", "mean_keep_ratio", "images_per_s", "batch_size", "model", "num_params", "amp", "schedule",
            "resumed")
    return {"folder": folder, **{k: summary[k] for k in keys if k in summary}}


def build_record(args: argparse.Namespace, runs: list[PlannedRun], summaries: dict[str, dict[str, Any]],
                 wall_s: float) -> dict[str, Any]:
    base, pss_run, pre = (summaries[k] for k in ("ft_baseline", "ft_pss", "pretrain"))
    scratch = summaries.get("scratch")
    vs = versus(pss_run, base)  # the report's comparison
    ratio, delta = vs["time_vs_full"], vs["final_vs_full"]
    return {
        "benchmark": "pretrain_finetune",
        "mode": "cpu-smoke" if args.cpu_smoke else "cpu-reduced" if args.cpu_reduced else "full",
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "device": base.get("device"),
        "torch": base.get("torch"),
        "timm": base.get("timm"),
        "commit": base.get("commit") or args.commit,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        # recipes relative to the checkout, folders relative to --workdir: the record names no machine's paths
        "stages": {r.name: {"recipe": str(Path(r.settings["recipe"]).relative_to(ROOT)),
                            "overrides": [o.replace(str(args.workdir.resolve()), "WORKDIR") for o in r.settings["overrides"]]}
                   for r in runs},
        "runs": {r.name: _run_record(summaries[r.name], r.name) for r in runs},
        "result": {
            "finetune_time_ratio_pss_over_baseline": ratio,
            "finetune_top1_baseline": base["final_acc1"],
            "finetune_top1_pss": pss_run["final_acc1"],
            "finetune_top1_delta_pss_minus_baseline": delta,
            "scratch_top1": scratch["final_acc1"] if scratch else None,
            "pretraining_gain_top1": versus(base, scratch)["final_vs_full"] if scratch else None,
            "pretrain_time_s": pre["train_time_s"],
            "pretrain_final_val_loss": pre.get("final_loss"),
            "mean_keep_ratio_pss": pss_run.get("mean_keep_ratio"),
            "benchmark_wall_s_this_invocation": wall_s,
        },
        "paper": PAPER,
        "vs_paper": {
            "time_ratio": f"{ratio:.2f}x vs {PAPER['time_ratio']}x" if ratio is not None else None,
            "top1_delta": f"{delta:+.2f} vs {PAPER['top1_delta']:+.2f} points",
        },
        "notes": [
            "top-1 is the final epoch's (final_acc1), at keep ratio 1.0 on the full test split",
            "times are train_time_s: training steps only, excluding evaluation, checkpoints and data decoding",
            "the paper's numbers are ViT-B on ImageNet (4 A100s); this run is a smaller model on CIFAR-10",
        ],
    }


def to_markdown(rec: dict[str, Any]) -> str:
    """The record as Markdown (also what benchmarks/results/README.md shows)."""
    r, runs = rec["result"], rec["runs"]

    def fmt(v: Any, spec: str = ".2f") -> str:
        return "-" if v is None else format(v, spec)

    lines = [
        f"# Pre-training + fine-tuning with PSS ({rec['mode']})",
        "",
        f"{rec['date']} on {rec['device']}; torch {rec['torch']}, timm {rec['timm']}, commit {rec['commit']}.",
        f"Command: `{rec['command']}`",
        "",
        "| run | epochs | train time (s) | images/s | mean keep ratio | final top-1 (%) | best top-1 (%) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k in ("ft_baseline", "ft_pss", "scratch"):
        if k not in runs:
            continue
        x = runs[k]
        lines.append(f"| {k} | {x.get('epochs')} | {fmt(x.get('train_time_s'), '.1f')} | {fmt(x.get('images_per_s'), ',.0f')} "
                     f"| {fmt(x.get('mean_keep_ratio'), '.3f')} | {fmt(x.get('final_acc1'))} | {fmt(x.get('best_acc1'))} |")
    p = runs["pretrain"]
    lines += [
        "",
        f"Pre-training (SimMIM): {p.get('epochs')} epochs, {fmt(p.get('train_time_s'), '.1f')} s, "
        f"final validation masked-pixel L1 {fmt(p.get('final_loss'), '.4f')}.",
        "",
        "| | this run | paper (ViT-B, ImageNet, 4 A100) |",
        "| --- | ---: | ---: |",
        f"| fine-tuning time PSS / baseline | {fmt(r['finetune_time_ratio_pss_over_baseline'])}x | {PAPER['time_ratio']}x "
        f"({PAPER['pss_hours']} h / {PAPER['baseline_hours']} h) |",
        f"| top-1 PSS - baseline (points) | {r['finetune_top1_delta_pss_minus_baseline']:+.2f} | {PAPER['top1_delta']:+.2f} |",
        f"| top-1 pre-trained - from scratch (points) | {fmt(r['pretraining_gain_top1'], '+.2f')} | - |",
        "",
        "Times are training steps only (`train_time_s`); top-1 is the final epoch's, at keep ratio 1.0.",
        "Run folders (under --workdir): " + ", ".join(f"`{Path(x['folder']).name}`" for x in runs.values()) + ".",
        "",
    ]
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def device_slug(device: str | None) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'; 'cpu (x86_64, 2 threads)' -> 'cpu'."""
    if not device or device.startswith("cpu"):
        return "cpu"
    return _slug(device)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--data", metavar="PATH", help="CIFAR-10 folder, its .tar.gz or hf:NAME (default: the recipes' "
                    "hf:uoft-cs/cifar10; ignored with --cpu-smoke, which uses the built-in set)")
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "pretrain_finetune", help="where the four run folders go")
    ap.add_argument("--results-dir", type=Path, default=None,
                    help="where the .json/.md record goes (default: benchmarks/results; with --cpu-smoke: --workdir)")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny model, built-in data, CPU: checks the pipeline in ~1 min")
    ap.add_argument("--cpu-reduced", action="store_true",
                    help="smaller model on a CIFAR-10 subset, on the CPU (~10 min on 2 cores); labelled as such")
    ap.add_argument("--set-pretrain", action="append", default=[], metavar="KEY=VALUE", help="extra --set for pre-training")
    ap.add_argument("--set-finetune", action="append", default=[], metavar="KEY=VALUE",
                    help="extra --set for the three fine-tuning / from-scratch runs")
    ap.add_argument("--fresh", action="store_true", help="start every stage over")
    ap.add_argument("--no-scratch", action="store_true", help="skip the from-scratch reference run (saves ~a quarter of the time)")
    ap.add_argument("--commit", help="git commit to record when the checkout has no .git (e.g. a copied working tree)")
    args = ap.parse_args(argv)
    if args.cpu_smoke and args.cpu_reduced:
        ap.error("choose one of --cpu-smoke and --cpu-reduced")
    if args.cpu_smoke and args.data is not None:
        ap.error("--cpu-smoke uses the built-in data set; drop --data")
    if args.data is not None and not args.data.startswith("hf:") and not Path(args.data).expanduser().exists():
        ap.error(f"--data {args.data}: no such file or folder (a CIFAR-10 folder, its .tar.gz, or hf:NAME)")

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    workdir = args.workdir.resolve()
    args.stages = [s for s in STAGES if not (args.no_scratch and s == "scratch")]
    runs = plan(args, workdir)
    t0 = time.perf_counter()
    done = run_plan(runs, fresh=args.fresh, quiet=True)
    summaries = {name: done[(name, seed)] for name, seed in done}
    record = build_record(args, runs, summaries, time.perf_counter() - t0)

    results = args.results_dir or (workdir if args.cpu_smoke else RESULTS)
    tag = "cpu-smoke" if args.cpu_smoke else "cpu-reduced" if args.cpu_reduced else device_slug(record["device"])
    stem = f"pretrain_finetune_{tag}_{_dt.date.today().isoformat()}"
    write_record(results / f"{stem}.json", record, to_markdown(record))
    write_results_page(results)
    r = record["result"]
    print(
        f"fine-tuning time PSS / baseline {r['finetune_time_ratio_pss_over_baseline']:.2f}x (paper {PAPER['time_ratio']}x); "
        f"top-1 baseline {r['finetune_top1_baseline']:.2f}, PSS {r['finetune_top1_pss']:.2f} "
        f"({r['finetune_top1_delta_pss_minus_baseline']:+.2f}; paper {PAPER['top1_delta']:+.2f}); "
        + (f"from scratch {r['scratch_top1']:.2f} (pre-training {r['pretraining_gain_top1']:+.2f})" if r["scratch_top1"] is not None else "")
        + "\n"
        f"-> {results / stem}.json, .md"
    )
    return 0


if __name__ == "__main__":
    from pss.cli import guarded  # a ConfigError is one line, a signal exit code 130

    raise SystemExit(guarded("pretrain_finetune.py", main))
