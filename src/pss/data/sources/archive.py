"""A tar archive of an ImageNet-style folder (``data.path: cifar10-jpg.tar.gz``): extracted once into the
cache (`pss.data.archives.extract_archive`), then read as the folder it holds."""
from __future__ import annotations

from pathlib import Path

from pss.data.archives import extract_archive, is_archive
from pss.data.sources.folder import FolderSource

__all__ = ["ArchiveSource"]


class ArchiveSource(FolderSource):
    """An existing file with a tar archive's name (.tar.gz, .tgz, .tar, .tar.bz2, .tar.xz)."""

    kind = "archive"

    @staticmethod
    def claims(path: str | None) -> bool:
        return path is not None and is_archive(path) and Path(path).expanduser().is_file()

    def root(self) -> Path:
        return Path(extract_archive(Path(self.cfg.path).expanduser(), self.cfg.cache_dir))
