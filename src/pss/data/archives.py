"""Dataset archives (``data.path: cifar10-jpg.tar.gz``): extracted once into a cache, atomically,
with a lock file so that the ranks of one job extract once."""
from __future__ import annotations

import contextlib
import errno
import hashlib
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
_FILTER_ERROR = getattr(tarfile, "FilterError", ())  # an unsafe member (Python with extraction filters)


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


def _cache_key(src: Path) -> str:
    """`<archive name>-<8 hex digits of its absolute path>`: two archives never share a cache folder,
    even with the same name or the same top folder inside."""
    return f"{_archive_stem(src)}-{hashlib.sha256(str(src).encode()).hexdigest()[:8]}"


def extract_archive(archive: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """Extract a tar archive once into ``cache_dir`` and return the dataset root (the folder with the splits).

    The cache serves only what pss extracted from this archive: each archive has its own folder
    ``cache_dir/<archive name>-<hash of its path>``, and a marker beside it records the archive's path,
    size and mtime; a later call returns at once when they match, and extracts again when the archive
    changed. A folder pss cannot prove it extracted from this archive (one extracted by hand, or from
    another archive with the same top folder) is never used. Atomic: files go to a temporary folder in
    the cache that is renamed into place when complete, so an interrupted run never leaves a
    half-extracted set. Concurrent callers (torchrun ranks) wait on a lock file and extract once.
    ``cache_dir`` defaults to ``$PSS_DATA_CACHE`` or ``~/.cache/pss-data``.
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
    key = _cache_key(src)
    dest, marker = cache / key, cache / f".{key}{_MARKER_SUFFIX}"

    def current() -> bool:
        try:
            old = json.loads(marker.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(old, dict) and {k: old.get(k) for k in stamp} == stamp and dest.is_dir()

    if current():
        return str(_dataset_root(dest))
    with _file_lock(cache / f".{key}.lock"):
        if current():  # another process finished while we waited for the lock
            return str(_dataset_root(dest))
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()  # from here until the new marker, the folder is not a finished extraction
        _extract_into(src, dest, cache, key)
        marker.write_text(json.dumps(stamp))
    return str(_dataset_root(dest))


def _size(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


def _extract_into(src: Path, dest: Path, cache: Path, key: str) -> None:
    """Extract `src` into a temporary folder of the cache, then rename it over `dest` (replacing the old
    contents): an interrupted extraction leaves no half-extracted set. Unsafe members are refused."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
    try:
        log.info("extracting %s to %s (once; later runs reuse it)", src, dest)
        t0 = time.perf_counter()
        try:
            with tarfile.open(src) as tar:
                if hasattr(tarfile, "data_filter"):  # refuses absolute paths, '..', device files
                    tar.extractall(tmp, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    tar.extractall(tmp)
        except _FILTER_ERROR as e:
            raise DataError(f"refusing to extract {src}: {e} (a member would land outside the cache or is not "
                            "a plain file or folder); use an archive of plain files and folders") from None
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):  # the cache, not the archive
                why = "no space left" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or "cannot write")
                raise DataError(f"cannot extract {src} into the cache folder {cache}: {why} ({_size(src)} archive; "
                                "its images need about that or more); free space there or set data.cache_dir to "
                                "another disk") from None
            raise DataError(f"cannot extract {src} ({e}): the archive is damaged or incomplete; "
                            "download it again") from None
        except (tarfile.TarError, EOFError) as e:
            raise DataError(f"cannot extract {src} ({e}): the archive is damaged or incomplete; "
                            "download it again") from None
        if dest.exists():  # this archive's previous contents (it changed), or a half-replaced copy
            old = dest.with_name(f".{key}-old-{os.getpid()}")
            dest.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(dest)
        log.info("extracted in %.1f s", time.perf_counter() - t0)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
