"""SIGINT and SIGTERM in every command: a prompt, clean stop with exit code 130.

    with stop_on_signals(lambda: "pss bench: interrupted"):
        ...                                   # KeyboardInterrupt in the main thread on either signal

The main thread turns either signal into KeyboardInterrupt, so `finally` blocks run and the command
prints one line. Python runs signal handlers between bytecodes only: a main thread inside one long
C++ call (the backward pass of a large model, a compile) would not stop until it returns. A watchdog
thread, woken by the signal itself (`signal.set_wakeup_fd`), then ends the process after `GRACE_S`
with the same line and exit code. A block that holds signals (`holding_signals`: a checkpoint write)
is waited for. Outputs are written atomically or after the work, so a stop leaves nothing half-written.
"""
from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["GRACE_S", "holding_signals", "stop_on_signals"]

GRACE_S = 2.0  # how long the main thread gets to stop by itself
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_held = 0  # blocks that hold signals now (the watchdog waits for them to end)
# What a stopped run should do next (set by `pss train` / `pss pretrain` for the run folder), for the
# "interrupted" line.
recovery_hint: Callable[[], str] | None = None


@contextlib.contextmanager
def holding_signals() -> Iterator[None]:
    """Mark a block that must finish before the process may end (the watchdog waits for it)."""
    global _held
    _held += 1
    try:
        yield
    finally:
        _held -= 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _forked_child() -> None:
    # A forked child (a DataLoader worker) must not wake its parent's watchdog with its own signals.
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked_child)


def _watch(fd: int, done: threading.Event, message: Callable[[], str]) -> None:
    try:
        while not done.is_set():
            if not select.select([fd], [], [], 0.1)[0]:
                continue
            if not any(b in _SIGNALS for b in os.read(fd, 64)):
                continue
            deadline = time.monotonic() + GRACE_S
            while not done.wait(0.05):
                if _held:  # the main thread gets its grace again once the held block is done
                    deadline = time.monotonic() + GRACE_S
                elif time.monotonic() >= deadline:
                    sys.stderr.write(message() + "\n")
                    sys.stderr.flush()
                    os._exit(130)
    finally:
        os.close(fd)


@contextlib.contextmanager
def stop_on_signals(message: Callable[[], str]) -> Iterator[None]:
    """For the block: SIGINT / SIGTERM raise KeyboardInterrupt in the main thread; if it has not stopped
    GRACE_S later (stuck in a C++ call), `message()` goes to stderr and the process exits with 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    r, w = os.pipe()
    os.set_blocking(w, False)
    previous = {sig: signal.signal(sig, _interrupt) for sig in _SIGNALS}
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    done = threading.Event()
    threading.Thread(target=_watch, args=(r, done, message), name="pss-stop-on-signals", daemon=True).start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(old_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(w)
