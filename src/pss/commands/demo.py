"""`pss demo`: train a small ViT with and without PSS on the built-in set, plus the baseline given PSS's
training time, then compare them.

    pss demo                                   # CPU, no data, no network: a few minutes
    pss demo --data ~/data/cifar10 --set data.val_split=test --output runs/demo-c10

Writes <output>/{baseline,pss,baseline_equal_time}/ (run folders), sweep/, report/, patches.png and
schedules.png, and prints the comparison table (time, best and final top-1 against both baselines),
which run won, and where the pictures are.
"""
from __future__ import annotations

import argparse

from pss.analysis.sweep import parse_keep_ratios
from pss.demo import DEMO_KEEP_RATIOS, format_demo, run_demo


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train a baseline, a PSS ViT and an equal-time baseline on the built-in set and compare them "
        "(minutes on a CPU)",
        description="Train the demo recipe three times - the baseline (keep ratio 1.0), PSS (the recipe's schedule, "
        "selection and budget), and the baseline trained for PSS's cost (the equal-time baseline) - then run the "
        "keep-ratio sweep and the report, and print the comparison and which run won. "
        "Re-running the same command continues: finished runs in --output are kept, a run cut short resumes "
        "from its last checkpoint (--fresh starts every run over).",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", default=None, metavar="PATH", help="dataset folder, archive or hf:NAME (default: the built-in set)")
    p.add_argument("--output", "-o", default="runs/demo", metavar="DIR", help="output folder (default runs/demo)")
    p.add_argument("--config", default="demo", metavar="FILE", help="recipe for all runs (default: configs/demo.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key for all runs, e.g. --set epochs=3 (repeatable)")
    p.add_argument("--keep", default=",".join(f"{r:g}" for r in DEMO_KEEP_RATIOS),
                   help="keep ratios for the sweep and the patch picture (default 1,0.8,0.6,0.4,0.2)")
    p.add_argument("--fresh", action="store_true", help="start every run over instead of keeping finished ones")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = run_demo(args.output, data=args.data, overrides=args.overrides, recipe=args.config,
                      keep_ratios=tuple(parse_keep_ratios(args.keep)), quiet=args.quiet, fresh=args.fresh)
    print(format_demo(result))
    return 0
