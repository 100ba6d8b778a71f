"""A run folder: its files (`RunDir`, the one owner of their names, which reads them too). What a run writes
while it runs (log lines, checkpoints) is pss.runwriter's.

    RunDir         the folder's file names, and its whole-folder operations: is it a run, is it finished (of
                   given study settings), may a fresh run start in it, which file holds the model; and what
                   it says: train and val logs, summary, config, a study's settings
    read_jsonl     the one reader of a JSON-lines log: a torn last line (a run killed while writing) is
                   skipped, any other line that is not a JSON object is refused (DataError) as corruption

What each file holds: docs/run-folder.md.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from pss.config import load_yaml
from pss.checkpoint import atomic_write, load_checkpoint, safetensors_metadata
from pss.errors import CheckpointError, ConfigError, DataError
from pss.outputs import LOCK_NAME

__all__ = ["RunDir", "read_jsonl", "recovery_hint", "stored_class_names"]


class RunDir:
    """A run folder's file names (docs/run-folder.md), the operations on the folder as a whole, and the reading
    of what it holds. No other module spells a run-folder file's name (tests/unit/test_structure.py)."""

    CONFIG = "config.yaml"
    TRAIN_LOG = "train_log.jsonl"
    VAL_LOG = "val_log.jsonl"
    SUMMARY = "summary.json"
    LAST = "checkpoint-last.pt"
    BEST = "checkpoint-best.pt"
    WEIGHTS = "model.safetensors"
    CSV = "summary.csv"
    TENSORBOARD = "tensorboard"
    ENCODER = "encoder.safetensors"  # pss pretrain: the encoder for fine-tuning (pss train --init)
    RECONSTRUCTIONS = "reconstructions.png"  # pss pretrain: SimMIM's reconstructions of validation images
    STUDY = "e2e_run.json"  # pss.study: the settings a study planned the run with
    LOCK = LOCK_NAME
    # What a run writes; a fresh run refuses to start in a folder holding any of them.
    OUTPUTS = (LAST, BEST, WEIGHTS, TRAIN_LOG, VAL_LOG, SUMMARY, CONFIG, CSV)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def encoder(self) -> Path:
        return self.path / self.ENCODER

    @property
    def train_log(self) -> Path:
        return self.path / self.TRAIN_LOG

    @property
    def val_log(self) -> Path:
        return self.path / self.VAL_LOG

    @property
    def study(self) -> Path:
        return self.path / self.STUDY

    def is_finished(self, settings: dict[str, Any] | None = None) -> bool:
        """The run wrote its summary (it trained every epoch); with `settings`, also a study planned it with
        exactly these (`read_study_settings`): a finished run of other settings is not this one."""
        return self.summary.is_file() and (settings is None or self.read_study_settings() == settings)

    # -- reading what the folder holds ----------------------------------------------------------------

    def read_train_log(self) -> list[dict[str, Any]]:
        """train_log.jsonl: one record per optimizer step, in step order ([] when there is none; `read_jsonl`'s
        policy for a torn or corrupt line). A step logged twice (a run resumed before its log was cut back)
        is read once, as last written."""
        return _one_per_step(read_jsonl(self.train_log))

    def read_val_log(self) -> list[dict[str, Any]]:
        """val_log.jsonl: one record per evaluation, in step order (as `read_train_log`)."""
        return _one_per_step(read_jsonl(self.val_log))

    def read_summary(self) -> dict[str, Any]:
        """summary.json ({} when the run has not finished); DataError when it is not a JSON object."""
        return _read_json_object(self.summary, "or remove it to report from the logs alone")

    def read_config(self) -> dict[str, Any]:
        """config.yaml, the resolved recipe the run trained with ({} when there is none)."""
        return load_yaml(self.config) if self.config.is_file() else {}

    def read_study_settings(self) -> dict[str, Any] | None:
        """The settings a study planned this run with (`pss.study`), None when no study wrote any."""
        return _read_json_object(self.study, "or start the run over with --fresh") if self.study.is_file() else None

    def write_study_settings(self, settings: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(settings, indent=1) + "\n").encode()
        atomic_write(self.study, lambda f: f.write(data))

    def check_fresh(self, resume: bool, overwrite: bool) -> None:
        """A fresh run must not write into another run's folder (unless told to replace it); a resumed one
        continues logs that read (`read_jsonl`: a corrupt line refused now, before anything is written)."""
        if resume:
            self.read_train_log(), self.read_val_log()
        existing = [n for n in self.OUTPUTS if (self.path / n).exists()]
        if existing and not (resume or overwrite):
            if not self.last.is_file():
                raise ConfigError(f"output folder {str(self.path)!r} holds a run ({', '.join(existing)}); "
                                  f"{recovery_hint(self.path)}, or choose another --output")
            raise ConfigError(
                f"output folder {str(self.path)!r} already holds a run ({', '.join(existing)}): pass --resume to "
                "continue it, --overwrite to replace it, or choose another --output"
            )
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"output {str(self.path)!r} is a file, not a folder; choose another --output")

    def clear(self) -> None:
        """--overwrite: remove the old run's files (only once every check has passed)."""
        for n in self.OUTPUTS:
            with contextlib.suppress(FileNotFoundError):
                (self.path / n).unlink()

    def model_file(self) -> Path:
        """The file holding the trained model: model.safetensors, else the best, else the last checkpoint."""
        for name in (self.WEIGHTS, self.BEST, self.LAST):
            if (self.path / name).is_file():
                return self.path / name
        raise CheckpointError(f"no model.safetensors / checkpoint-*.pt in {str(self.path)!r}; "
                              "is it a pss train output folder?")


def recovery_hint(folder: str | Path, fresh: str = "") -> str:
    """What to do with the run folder `folder` after its run stopped, the one advice every message gives:
    --resume from its last checkpoint; --overwrite when it stopped before writing one (its logs and
    config alone cannot be continued); `fresh` when it holds no run (nothing, or only the lock file)."""
    run = RunDir(folder)
    if run.last.is_file():
        return "continue from the last checkpoint with --resume"
    if any((run / n).exists() for n in RunDir.OUTPUTS):
        return "it stopped before writing a checkpoint: start it again with --overwrite"
    return fresh


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines log as records, in file order ([] when the file does not exist).

    One policy for a line cut short by a kill, for every reader (reports, benchmarks, a resume): the last
    line, when it is the start of a record (``{``) that does not parse, is a write the kill cut short and
    is skipped; any other line that is not a JSON object is corruption and is refused (DataError naming the
    file and line), never dropped silently. Blank lines are ignored.
    """
    if not path.is_file():
        return []
    lines = [(i, line.strip()) for i, line in enumerate(path.read_bytes().decode(errors="replace").splitlines(), 1)]
    lines = [(i, line) for i, line in lines if line]
    rows = []
    for n, (i, line) in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines) - 1 and line.startswith("{"):
                continue  # torn last line
            raise DataError(f"{str(path)!r} is malformed: line {i} is not JSON ({e.msg}); "
                            "restore the file from the run, or remove the line") from None
        if not isinstance(row, dict):
            raise DataError(f"{str(path)!r} is malformed: line {i} holds a {type(row).__name__}, "
                            "not a record; restore the file from the run, or remove the line")
        rows.append(row)
    return rows


def _one_per_step(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last record per step, in step order (records without a step kept as they are)."""
    if not rows or "step" not in rows[0]:
        return rows
    by_step = {r["step"]: r for r in rows if "step" in r}
    return [by_step[s] for s in sorted(by_step)]


def _read_json_object(path: Path, fix: str) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        obj = json.loads(path.read_bytes().decode(errors="replace"))
    except json.JSONDecodeError as e:
        raise DataError(f"{str(path)!r} is malformed ({e.msg} at line {e.lineno}); restore it from the run, "
                        f"{fix}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{str(path)!r} is malformed: it holds a {type(obj).__name__}, not an object")
    return obj


def stored_class_names(path: str | Path) -> list[str] | None:
    """The class names a checkpoint (or run folder, or model.safetensors) recorded, None if none."""
    path = Path(path).expanduser()
    path = RunDir(path).model_file() if path.is_dir() else path
    stored = safetensors_metadata(path) if path.suffix == ".safetensors" else load_checkpoint(path)
    names = stored.get("class_names")
    return [str(n) for n in names] if isinstance(names, list) and names else None
