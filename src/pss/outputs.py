"""Output paths: writability checks before any work, and the lock that gives a run folder one owner.

    check_output_folder("runs/x")            # OutputError (one line) if it cannot be written
    check_output_file("out/x.png", "p.png")  # the same for a file's folder, made before the work
    with hold_run_folder("runs/x"):          # OutputError naming the holder if another run has it
        ...                                  # the run's whole life

The lock is an advisory `fcntl.flock` on `<folder>/.pss.lock`, held through an open file
descriptor: the kernel drops it when the process exits for any reason (SIGKILL and crashes
included), so a lock is never stale, and no pid file has to be cleaned up. The file also says who
holds it (pid, host, start time, command), for the message the second process prints. It is never
deleted (deleting a lock file races with a process that has just opened it).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pss.errors import OutputError

__all__ = ["LOCK_NAME", "check_output_file", "check_output_folder", "hold_run_folder"]

LOCK_NAME = ".pss.lock"


def _reason(e: OSError, path: Path) -> str:
    """What an OSError from creating `path` means, in words."""
    if e.errno == errno.ENOTDIR or (e.errno == errno.EEXIST and not path.is_dir()):
        blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
        return f"{str(blocker)!r} is a file, not a folder" if blocker else "a part of the path is not a folder"
    if e.errno == errno.EROFS:
        return "the file system is read-only"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.ENOENT:
        return "no folder can be created there"
    return e.strerror or str(e)


def check_output_folder(path: str | Path, flag: str = "--output", create: bool = False) -> Path:
    """Raise OutputError (one line) unless `path` is, or can become, a writable folder.

    With `create`, the folder is made; without, nothing is left behind (the check writes and removes
    a temporary file or folder in the nearest existing parent).
    """
    path = Path(path).expanduser()
    fix = f"choose another {flag}"
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {str(path)!r} is a file, not a folder: {fix}")
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            with tempfile.TemporaryFile(dir=path):
                pass
        else:
            parent = next(p for p in path.parents if p.exists())
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(parent))
            os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".pss-check-"))
    except OSError as e:
        raise OutputError(f"cannot write to {flag} {str(path)!r}: {_reason(e, path)}; {fix}") from None
    return path


def check_output_file(path: str | Path, default_name: str, flag: str = "--output") -> Path:
    """The file an `--output FILE.png` option means: `default_name` inside it when it is a folder
    (existing, or written with a trailing slash), `default_name`'s suffix added when it has none. Its
    folder is made (with its parents) and checked like `check_output_folder`'s, before the command's
    work; a folder in its place is refused."""
    text = str(path)
    path = Path(path).expanduser()
    if path.is_dir() or text.endswith(("/", os.sep)):
        path = path / default_name
    elif not path.suffix:
        path = path.with_suffix(Path(default_name).suffix)
    check_output_folder(path.parent, flag, create=True)
    if path.is_dir():
        raise OutputError(f"{flag} {str(path)!r} is a folder, not a file: choose another {flag}")
    return path


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')} (since {info.get('since')}: {info.get('command')})"


def _open_lock(lock: Path, flag: str) -> int:
    """A descriptor on the lock file, created if absent. A symbolic link or anything but a regular file in
    its place is refused, not followed: writing the holder's details there would overwrite the file it
    points to (O_NOFOLLOW; O_NONBLOCK so that a named pipe cannot block the open)."""
    folder = lock.parent
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(lock, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP or lock.is_symlink():
            raise OutputError(f"{str(lock)!r} is a symbolic link, not the lock file pss writes: remove it, or "
                              f"choose another {flag}") from None
        if lock.exists():  # a folder (EISDIR) or another thing that cannot be opened for writing
            raise OutputError(f"{str(lock)!r} is not a regular file, not the lock file pss writes: remove it, or "
                              f"choose another {flag}") from None
        raise OutputError(f"cannot write to {flag} {str(folder)!r}: {_reason(e, folder)}; choose another {flag}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputError(f"{str(lock)!r} is not a regular file, not the lock file pss writes: remove it, or "
                          f"choose another {flag}")
    return fd


@contextlib.contextmanager
def hold_run_folder(folder: str | Path, flag: str = "--output") -> Iterator[Path]:
    """Make `folder` (checking it can be written) and hold its exclusive lock for the block.

    OutputError, before anything in the folder is touched, if another process holds it. A folder this
    call made is removed again if the block leaves nothing in it but the lock (a run that failed its checks).
    """
    made = not Path(folder).expanduser().exists()
    folder = check_output_folder(folder, flag, create=True)
    lock = folder / LOCK_NAME
    fd = _open_lock(lock, flag)
    try:
        try:
            import fcntl  # POSIX; elsewhere the folder is not locked
        except ImportError:
            fcntl = None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                f"run folder {str(folder)!r} is in use by {_holder(fd)}: wait for that run to end (or stop it), "
                f"or choose another {flag}"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield folder
    finally:
        if made and [p.name for p in folder.iterdir()] == [LOCK_NAME]:
            with contextlib.suppress(OSError):
                lock.unlink()
                folder.rmdir()
        os.close(fd)  # releases the lock
