"""`pss` command line: parse arguments, build objects, call library functions.

Each sub-command lives in `pss.commands.<name>` and exposes `add_parser(subparsers)`, which
registers its arguments and sets `func` (a callable taking the parsed namespace, returning an exit
code). This module only dispatches and turns `PssError` into a one-line message.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pss.errors import PssError

# Sub-command modules, in the order `pss --help` lists them.
COMMANDS = ["train", "pretrain", "schedule", "bench", "sweep", "viz", "report", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pss", description="Patch Sampling Schedule for ViT training.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"pss.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # timm habits (`--weight-decay 0.05`) get the `--set` form that would do it, not a bare refusal
        hint = getattr(args, "unknown_hint", None)
        extra = f"\n  {hint(unknown)}" if hint else f"; see pss {args.command} --help"
        print(f"pss {args.command}: error: unrecognized arguments: {' '.join(unknown)}{extra}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except PssError as e:
        print(f"pss {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pss {args.command}: interrupted", file=sys.stderr)
        return 130
