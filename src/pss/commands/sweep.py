"""`pss sweep CKPT [CKPT ...] --output DIR`: dynamic inference, accuracy and speed per keep ratio.

    pss sweep runs/baseline/checkpoint-best.pt runs/pss/checkpoint-best.pt --output runs/sweep

Writes sweep.json (per checkpoint and keep ratio: acc1, acc5, loss, images/s, GFLOPs/image, tokens)
and sweep.png (top-1 against keep ratio, one line per checkpoint, throughput annotated).
"""
from __future__ import annotations

import argparse

from pss.analysis.evaldata import CLASS_MODES
from pss.analysis.sweep import DEFAULT_KEEP_RATIOS, REDUCE_MODES, parse_keep_ratios, sweep_checkpoints, write_sweep
from pss.bounds import bounded, check_count
from pss.errors import ConfigError
from pss.outputs import check_output_folder
from pss.runtime import PRECISIONS
from pss.select import SELECT_RULES, describe_inference_defaults


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="evaluate checkpoints at several keep ratios (dynamic inference)",
        description="Evaluate each checkpoint at each keep ratio on its validation set: top-1/top-5, loss, "
        "model-only throughput (after warm-up, device-synchronised), GFLOPs per image and tokens. Models "
        "trained without PSS work too (the baseline line).",
    )
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoints written by pss train")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="dataset folder, archive or hf:NAME (default: the one each checkpoint was trained on)")
    p.add_argument("--classes", choices=CLASS_MODES, default="exact",
                   help="data whose classes differ from the checkpoint's: exact (default) refuses it; by-name maps "
                   "each data class to the checkpoint's class of that name (a subset is fine); as-is takes the "
                   "data's label indices unchanged")
    p.add_argument("--keep", default=",".join(f"{r:g}" for r in DEFAULT_KEEP_RATIOS),
                   help="comma-separated keep ratios (default 1,0.9,...,0.1)")
    p.add_argument("--select", default=None, metavar="RULE",
                   help=f"token selection rule: {', '.join(SELECT_RULES)}, or all (every rule, one line each); default: "
                   f"each model's deterministic default for the rule it was trained with ({describe_inference_defaults()}; "
                   "docs/dial.md)")
    p.add_argument("--reduce", choices=REDUCE_MODES, default="drop",
                   help="drop: keep ratios (the PSS dial); merge: token merging (ToMe) at every patch, r tokens per "
                   "block; both: each model with both; resize: the model at lower input sides (one per keep ratio, "
                   "sqrt(rho) of the side: the same share of patches); all: drop, merge and resize (default drop: the best rule "
                   "at 2x and 3x the images/s for full and PSS models in the token study's dial, docs/budgets.md)")
    p.add_argument("--merge-r", default=None, metavar="R,R,...",
                   help="merge rates for --reduce merge/both (tokens merged per block; default: 0 and six rates up to "
                   "the largest the model allows)")
    p.add_argument("--batch-size", **bounded(check_count), default=64, help="evaluation and throughput batch size (default 64)")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--amp", "--precision", dest="precision", choices=PRECISIONS, default="auto",
                   help="autocast dtype; auto = bf16 on CUDA GPUs that support it, else fp16 on CUDA; fp32 on CPU "
                   "(--precision: the old spelling)")
    p.add_argument("--names", default=None, help="comma-separated display names, one per checkpoint")
    p.add_argument("--max-images", **bounded(check_count), default=None,
                   help="evaluate on N validation images only, evenly spread over the set")
    p.add_argument("--warmup", **bounded(check_count, low=0), default=3, help="throughput: warm-up batches per keep ratio (default 3)")
    p.add_argument("--iters", **bounded(check_count), default=10, help="throughput: timed batches per keep ratio (default 10)")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="folder for sweep.json and sweep.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar (on stderr: batches timed and evaluated)")
    p.set_defaults(func=run)


def parse_merge_rates(text: str | None) -> list[int] | None:
    """"0,4,8" -> [0, 4, 8]; None -> None (the model's default rates)."""
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--merge-r takes comma-separated integers like 0,4,8, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    if args.select is not None and args.select != "all" and args.select not in SELECT_RULES:
        raise ConfigError(f"unknown selection rule {args.select!r} for this version of pss; choose one of "
                          f"{', '.join(SELECT_RULES)}, all, or leave --select out (each model's default)")
    check_output_folder(args.output, create=True)
    result = sweep_checkpoints(
        args.checkpoints, data=args.data, keep_ratios=parse_keep_ratios(args.keep), select=args.select,
        batch_size=args.batch_size, device=args.device, precision=args.precision, names=names,
        warmup=args.warmup, iters=args.iters, max_images=args.max_images, classes=args.classes,
        reduce=args.reduce, merge_r=parse_merge_rates(args.merge_r), progress=not args.quiet,
    )
    paths = write_sweep(result, args.output)
    for entry in result["checkpoints"]:
        if entry["reduce"] == "merge":
            how = "token merging (ToMe)"
        elif entry["reduce"] == "resize":
            how = "lower input resolution"
        else:
            default = f" (the default for models trained with {entry['trained_select'] or 'every token'})"
            how = f"{entry['select']} selection" + (default if entry["select"] == entry["default_select"] else "")
        print(f"{entry['name']}: {how}")
        for r in entry["results"]:
            dial = (f"r {r['merge_r']:<3d}" if "merge_r" in r else f"{r['side']:>3d} px" if "side" in r
                    else f"rho {r['keep_ratio']:<4g}")
            print(f"  {dial} top-1 {r['acc1']:6.2f}%  top-5 {r['acc5']:6.2f}%  "
                  f"{r['images_per_s']:9.1f} img/s  {r['gflops_per_image']:.4f} GFLOPs  {r['tokens']} tokens")
    print(f"results: {paths['json']}\npicture: {paths['png']}")
    return 0
