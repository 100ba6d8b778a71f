"""Dataset archives (``data.path: cifar10-jpg.tar.gz``): extracted once into a cache, atomically,
with a lock file so that the ranks of one job extract once."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pss.errors import DataError

log = logging.getLogger("pss.data")

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")
DEFAULT_CACHE_DIR = "~/.cache/pss-data"
_MARKER_SUFFIX = ".pss-extracted.json"


def is_archive(path: str | os.PathLike) -> bool:
    """True for the tar archives `extract_archive` understands."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _archive_stem(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _dataset_root(folder: Path) -> Path:
    # Descend through single-folder levels (a/b/train, a/b/test) to the folder that holds the splits.
    while True:
        entries = [e for e in folder.iterdir() if not e.name.startswith("._")]  # skip macOS AppleDouble files
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
        else:
            return folder


def _top_folder(archive: Path) -> str | None:
    """First path component of the archive's first member (reads one header, not the whole archive)."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.next()
    except (tarfile.TarError, EOFError, OSError):
        return None
    top = member.name.lstrip("./").split("/")[0] if member is not None else ""
    return top or None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Ranks of one torchrun job call this together: one extracts, the others wait and reuse it.
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename below still keeps the cache consistent
        yield
        return
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def extract_archive(archive: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """Extract a tar archive once into ``cache_dir`` and return the dataset root (the folder with the splits).

    An archive wrapped in one top folder (``cifar10/train``, ``cifar10/test``) lands at
    ``cache_dir/cifar10``, exactly where ``tar -xzf ... -C cache_dir`` would put it, so a folder
    extracted by hand that way is found and reused; other archives land at ``cache_dir/<archive name>``.
    Idempotent: a marker ``cache_dir/.<archive name>.pss-extracted.json`` records the archive's size
    and mtime, and a later call returns at once (a changed archive is extracted again). Atomic: files
    go to a temporary folder in the cache that is renamed into place when complete, so an interrupted
    run never leaves a half-extracted set. Concurrent callers (torchrun ranks) wait on a lock file and
    extract once. ``cache_dir`` defaults to ``$PSS_DATA_CACHE`` or ``~/.cache/pss-data``.
    """
    src = Path(archive).expanduser().resolve()
    if not src.is_file():
        raise DataError(f"archive {src} does not exist: set data.path to an existing .tar.gz or to a folder")
    cache = Path(cache_dir or os.environ.get("PSS_DATA_CACHE") or DEFAULT_CACHE_DIR).expanduser()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data cache {cache} ({e}): set data.cache_dir to a writable folder") from e
    stat = src.stat()
    stamp = {"archive": str(src), "size": stat.st_size, "mtime": int(stat.st_mtime)}
    stem = _archive_stem(src)
    marker = cache / f".{stem}{_MARKER_SUFFIX}"

    def recorded() -> tuple[Path | None, bool]:
        """(folder this archive was extracted to, whether that extraction is current)."""
        try:
            old = json.loads(marker.read_text())
            target = cache / old["folder"]
        except (OSError, ValueError, KeyError, TypeError):
            return None, False
        current = old.get("size") == stamp["size"] and old.get("mtime") == stamp["mtime"] and target.is_dir()
        return target, current

    target, current = recorded()
    if current:
        return str(_dataset_root(target))
    with _file_lock(cache / f".{stem}.lock"):
        target, current = recorded()
        if current:  # another process finished while we waited for the lock
            return str(_dataset_root(target))
        top = _top_folder(src)
        if target is None and top and (cache / top).is_dir():
            log.info("using %s, already extracted (not by pss); delete it to extract %s again", cache / top, src)
            return str(_dataset_root(cache / top))
        tmp = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=cache))
        try:
            log.info("extracting %s to %s (once; later runs reuse it)", src, cache)
            t0 = time.perf_counter()
            try:
                with tarfile.open(src) as tar:
                    if hasattr(tarfile, "data_filter"):  # refuses absolute paths, '..', device files
                        tar.extractall(tmp, filter="data")
                    else:  # pragma: no cover - Python without extraction filters
                        tar.extractall(tmp)
            except (tarfile.TarError, EOFError, OSError) as e:
                raise DataError(f"cannot extract {src} ({e}): the archive looks damaged; download it again") from e
            entries = list(tmp.iterdir())
            single = len(entries) == 1 and entries[0].is_dir()
            source, name = (entries[0], entries[0].name) if single else (tmp, stem)
            dest = cache / name
            if dest.exists():
                if dest != target:  # not ours: never delete a user's folder
                    raise DataError(f"{dest} exists but was not extracted from {src} by pss: move it away, "
                                    "or set data.cache_dir to another folder")
                old = dest.with_name(f".{name}-old-{os.getpid()}")  # the changed archive's previous contents
                dest.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            source.rename(dest)
            marker.write_text(json.dumps({**stamp, "folder": name}))
            log.info("extracted in %.1f s", time.perf_counter() - t0)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return str(_dataset_root(dest))
