"""`pss report RUN_DIR [RUN_DIR ...] --output DIR`: compare training runs from their logs.

    pss report runs/baseline runs/pss --output runs/report

Writes report.md, report.json, accuracy_vs_time.png, epoch_step_time.png and train_loss.png.
The first run is the reference for the relative columns.
"""
from __future__ import annotations

import argparse

from pss.analysis.report import write_report


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="compare training runs: table and plots from their logs",
        description="Compare training runs from their logs: a Markdown/JSON table (time, speed-up, "
        "top-1) and plots of accuracy vs wall-clock time, step time per keep ratio, and training loss. "
        "The first run is the reference.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="training output folders (first = reference)")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="folder for the report files")
    p.add_argument("--names", default=None, help="comma-separated display names, one per run (default: folder names)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    result = write_report(args.runs, args.output, names)
    print(result["table_markdown"], end="")
    print(f"report: {result['paths']['markdown']}")
    for path in result["figures"].values():
        print(f"figure: {path}")
    return 0
