"""Reading a finished (or stopped) training run from its folder alone: `train_log.jsonl`, `val_log.jsonl`,
`summary.json` and `config.yaml`, read by `pss.runfolder.RunDir`, into a `ReportedRun`, for `pss report` and the
benchmarks. A torn last log line (a run killed while writing) is skipped, a resumed run's repeated steps
are read once, and a malformed file is named as such (DataError), not taken for a missing one.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pss.errors import DataError
from pss.runfolder import RunDir

__all__ = ["ReportedRun", "load_run", "load_runs"]


@dataclass
class ReportedRun:
    """The logs of one training run, as read from its folder."""

    name: str
    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    train_log: list[dict[str, Any]] = field(default_factory=list)
    val_log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def train_time_s(self) -> float | None:
        """Wall-clock training time: from summary.json, else the last evaluation's elapsed time."""
        if self.summary.get("train_time_s") is not None:
            return float(self.summary["train_time_s"])
        if self.val_log and self.val_log[-1].get("elapsed_s") is not None:
            return float(self.val_log[-1]["elapsed_s"])
        if self.train_log:
            return sum(float(r.get("step_time_s", 0.0)) + float(r.get("data_time_s", 0.0)) for r in self.train_log)
        return None

    @property
    def best_acc1(self) -> float | None:
        if self.summary.get("best_acc1") is not None:
            return float(self.summary["best_acc1"])
        accs = [float(r["acc1"]) for r in self.val_log if r.get("acc1") is not None]
        return max(accs) if accs else None

    @property
    def final_acc1(self) -> float | None:
        if self.summary.get("final_acc1") is not None:
            return float(self.summary["final_acc1"])
        accs = [float(r["acc1"]) for r in self.val_log if r.get("acc1") is not None]
        return accs[-1] if accs else None

    @property
    def mean_keep_ratio(self) -> float | None:
        if self.summary.get("mean_keep_ratio") is not None:
            return float(self.summary["mean_keep_ratio"])
        rhos = [float(r["keep_ratio"]) for r in self.train_log if r.get("keep_ratio") is not None]
        return statistics.fmean(rhos) if rhos else None

    @property
    def images_per_s(self) -> float | None:
        v = self.summary.get("images_per_s")
        return float(v) if v is not None else None

    @property
    def epochs_done(self) -> int:
        """Epochs its logs reach (the last evaluation's, else the last logged step's)."""
        rows = self.val_log or self.train_log
        return max((int(r["epoch"]) + 1 for r in rows if isinstance(r.get("epoch"), int)), default=0)

    @property
    def finished(self) -> bool:
        """The run trained every epoch: it wrote summary.json, or its logs reach config.yaml's epochs (a run
        stopped early leaves only logs that stop short)."""
        planned = self.config.get("epochs")
        return bool(self.summary) or (isinstance(planned, int) and self.epochs_done >= planned)

    def progress(self) -> str:
        """How far a run got, e.g. "2 of 6 epochs" (its logs against config.yaml's epochs)."""
        planned = self.config.get("epochs")
        return f"{self.epochs_done} of {planned if planned is not None else '?'} epochs"


def load_run(path: str | Path, name: str | None = None) -> ReportedRun:
    """Read a run folder (`pss.runfolder.RunDir`). Raises DataError when it holds neither a log nor a summary."""
    folder = RunDir(path)
    if not folder.path.is_dir():
        raise DataError(f"run folder {str(path)!r} does not exist")
    train_log, val_log, summary = folder.read_train_log(), folder.read_val_log(), folder.read_summary()
    if not train_log and not val_log and not summary:
        raise DataError(f"{str(path)!r} is not a training run: no {RunDir.TRAIN_LOG}, {RunDir.VAL_LOG} or "
                        f"{RunDir.SUMMARY} in it")
    return ReportedRun(name or folder.path.resolve().name, folder.path, folder.read_config(), summary, train_log, val_log)


def load_runs(paths: list[str | Path], names: list[str] | None = None) -> list[ReportedRun]:
    """Read several run folders; names default to the folder names (made unique)."""
    if names is not None and len(names) != len(paths):
        raise DataError(f"got {len(names)} names for {len(paths)} runs")
    runs = [load_run(p, names[i] if names else None) for i, p in enumerate(paths)]
    seen: dict[str, int] = defaultdict(int)
    for r in runs:
        seen[r.name] += 1
        if seen[r.name] > 1:
            r.name = f"{r.name} ({seen[r.name]})"
    return runs
