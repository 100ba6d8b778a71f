"""`pss` command line: parse arguments, build objects, call library functions.

Each sub-command lives in `pss.commands.<name>` and exposes `add_parser(subparsers)`, which
registers its arguments and sets `func` (a callable taking the parsed namespace, returning an exit
code). This module only dispatches and turns `PssError` into a one-line message. SIGTERM (what
schedulers and `kill` send) is handled like Ctrl-C: a clean "interrupted" and exit code 130.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator

from pss.errors import PssError

# Sub-command modules, in the order `pss --help` lists them.
COMMANDS = ["train", "pretrain", "schedule", "bench", "sweep", "viz", "report", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pss", description="Patch Sampling Schedule for ViT training.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"pss.commands.{name}").add_parser(sub)
    return parser


# Sub-commands that write a run folder and can continue it.
RESUMABLE = ("train", "pretrain")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        with _sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except PssError as e:
        print(f"pss {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = "; continue from the last checkpoint with --resume" if args.command in RESUMABLE else ""
        print(f"pss {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Checkpoints say which folder and how much space (pss.checkpoint); any other write, this.
        where = f" writing {e.filename!r}" if e.filename else ""
        print(f"pss {args.command}: error: {e.strerror}{where}; free some space and try again", file=sys.stderr)
        return 2
