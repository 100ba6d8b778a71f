"""Reading a finished (or stopped) training run from its folder alone: `train_log.jsonl`, `val_log.jsonl`,
`summary.json` and `config.yaml` (see pss.train's docstring), into a `ReportedRun`, for `pss report` and the
benchmarks. A torn last log line (a run killed while writing) is skipped, a resumed run's repeated steps
are read once, and a malformed file is named as such (DataError), not taken for a missing one.
"""
from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pss.config import load_yaml
from pss.errors import DataError

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


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSON-lines log; a torn last line (run killed while writing) is skipped. DataError when
    another line is not a JSON object: the log is malformed, which is not the same as missing."""
    if not path.is_file():
        return []
    lines = [(i, line.strip()) for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1)]
    lines = [(i, line) for i, line in lines if line]
    rows = []
    for n, (i, line) in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines) - 1 and rows:
                continue  # torn last line
            raise DataError(f"{str(path)!r} is malformed: line {i} is not JSON ({e.msg}); "
                            "restore the file from the run, or remove the line") from None
        if not isinstance(row, dict):
            raise DataError(f"{str(path)!r} is malformed: line {i} holds a {type(row).__name__}, "
                            "not a record; restore the file from the run, or remove the line")
        rows.append(row)
    return rows


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        obj = json.loads(path.read_text(errors="replace"))
    except json.JSONDecodeError as e:
        raise DataError(f"{str(path)!r} is malformed ({e.msg} at line {e.lineno}); restore it from the run, "
                        "or remove it to report from the logs alone") from None
    if not isinstance(obj, dict):
        raise DataError(f"{str(path)!r} is malformed: it holds a {type(obj).__name__}, not an object")
    return obj


def _dedupe_by_step(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the last record per step (a resumed run may repeat steps), in step order."""
    if not rows or "step" not in rows[0]:
        return rows
    by_step = {r["step"]: r for r in rows if "step" in r}
    return [by_step[s] for s in sorted(by_step)]


def load_run(path: str | Path, name: str | None = None) -> ReportedRun:
    """Read a run folder. Raises DataError when it holds neither a train log nor a summary."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"run folder {str(path)!r} does not exist")
    train_log = _dedupe_by_step(_read_jsonl(path / "train_log.jsonl"))
    val_log = _dedupe_by_step(_read_jsonl(path / "val_log.jsonl"))
    summary = _read_json(path / "summary.json")
    if not train_log and not val_log and not summary:
        raise DataError(
            f"{str(path)!r} is not a training run: no train_log.jsonl, val_log.jsonl or summary.json in it"
        )
    config_path = path / "config.yaml"
    config = load_yaml(config_path) if config_path.is_file() else {}
    return ReportedRun(name or path.resolve().name, path, config, summary, train_log, val_log)


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
