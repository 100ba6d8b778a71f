"""Data sources: one module per kind of ``data.path``, each a `Source` with `check()` and `datasets()`, and
`source_for`, which picks the kind.

    source = source_for(cfg.data)              # from data.path
    report = source.check(batch_size=64)       # quick, before any long work; DataError names problem and fix
    train, val = source.datasets(report, train_transform, eval_transform)

Kinds (asked in this order): `builtin` (``path: null``, the glyph set), `hf` (``hf:NAME``, a save_to_disk
folder, parquet files), `archive` (a .tar.gz of a folder, extracted once into the cache), `folder` (any
other path: ``<path>/<split>/<class>/*.jpg``). `pss.data.check_data` and `pss.data.build_datasets` go
through the source; what they share (the evaluation split's rule, the batch against the data, the scan
for unreadable images) lives once, in `pss.data.sources.base`.

A new kind is one new module holding a `Source` subclass and one `register(...)` line below (a kind
registered later is asked first, so it may claim paths an older kind would take).
"""
from __future__ import annotations

from pss.config import DataConfig
from pss.data.sources import base
from pss.data.sources.archive import ArchiveSource
from pss.data.sources.base import EVAL_SPLITS, Found, Source, register
from pss.data.sources.builtin import BuiltinSource
from pss.data.sources.folder import FolderSource
from pss.data.sources.hf import HFSource
from pss.errors import DataError

__all__ = ["EVAL_SPLITS", "Found", "Source", "register", "source_for"]

register(FolderSource)  # any path the others do not claim: asked last
register(ArchiveSource)
register(HFSource)
register(BuiltinSource)


def source_for(cfg: DataConfig) -> Source:
    """The source of ``cfg.path``: the newest registered kind that claims it."""
    for kind in base.KINDS:
        if kind.claims(cfg.path):
            return kind(cfg)
    raise DataError(f"no data source reads data.path {cfg.path!r} (kinds: {', '.join(k.kind for k in base.KINDS)}): "
                    "point data.path at a folder, an archive or a Hugging Face dataset, or at null")
