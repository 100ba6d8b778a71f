"""`pss` command line: parse arguments, build objects, call library functions.

Each sub-command lives in `pss.commands.<name>` and exposes `add_parser(subparsers)`, which
registers its arguments and sets `func` (a callable taking the parsed namespace, returning an exit
code). This module only dispatches and turns `PssError` into a one-line message. SIGTERM (what
schedulers and `kill` send) is handled like Ctrl-C: a clean "interrupted" and exit code 130, promptly
in every command (`guarded`, pss.interrupt).
"""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from collections.abc import Callable

from pss.errors import PssError

# Sub-command modules, in the order `pss --help` lists them.
COMMANDS = ["train", "pretrain", "schedule", "bench", "sweep", "viz", "report", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pss", description="Patch Sampling Schedule for ViT training.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"pss.commands.{name}").add_parser(sub)
    return parser


def _stopped(prog: str) -> str:
    """The line a stopped command prints: for `pss train` and `pss pretrain`, what to do next."""
    from pss import interrupt

    hint = interrupt.recovery_hint() if interrupt.recovery_hint else ""
    return f"{prog}: interrupted" + (f"; {hint}" if hint else "")


def guarded(prog: str | Callable[[], str], body: Callable[[], int | None]) -> int:
    """Run a command's `body` as every pss entry point does (benchmarks/*.py too): SIGINT / SIGTERM stop
    it promptly with exit code 130 (pss.interrupt); a PssError or a full disk is one line on stderr and
    exit code 2. `prog` names the command in those lines (a callable: once its arguments are parsed)."""
    from pss import interrupt

    name = prog if callable(prog) else lambda: prog
    interrupt.recovery_hint = None
    try:
        with interrupt.stop_on_signals(lambda: _stopped(name())):
            return int(body() or 0)
    except PssError as e:
        print(f"{name()}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(_stopped(name()), file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`pss schedule ... | head`): stop quietly, as Unix tools do; stdout
        # goes to /dev/null so that the interpreter's last flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Checkpoints say which folder and how much space (pss.checkpoint); any other write, this.
        where = f" writing {e.filename!r}" if e.filename else ""
        print(f"{name()}: error: {e.strerror}{where}; free some space and try again", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = "pss"

    def body() -> int:
        nonlocal command
        given = sys.argv[1:] if argv is None else argv
        if given and given[0] in COMMANDS:  # a flag refused while parsing (pss.bounds) names the command too
            command = f"pss {given[0]}"
        parser = build_parser()  # imports every command (torch, timm): a signal meanwhile stops it too
        args, unknown = parser.parse_known_args(argv)
        command = f"pss {args.command}"
        if unknown:
            # timm habits (`--weight-decay 0.05`) get the `--set` form that would do it, not a bare refusal
            hint = getattr(args, "unknown_hint", None)
            extra = f"\n  {hint(unknown)}" if hint else f"; see pss {args.command} --help"
            print(f"pss {args.command}: error: unrecognized arguments: {' '.join(unknown)}{extra}", file=sys.stderr)
            return 2
        return args.func(args)

    return guarded(lambda: command, body)
