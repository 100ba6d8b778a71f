"""Experiment tracking for `pss train`: summary.csv, TensorBoard, Weights & Biases, progress lines.

The engine writes through a `RunWriter`; `TrackingWriter` is one that also hands every batch of
per-step records, every evaluation and every epoch's summary row to a list of `Tracker`s. Records
arrive already on the host (the engine syncs once every `log_interval` steps), so trackers add no
device sync to the training step.

    logging: {csv: true, tensorboard: true, wandb: false}      # in a recipe, or --set logging.tensorboard=true

  * csv: `summary.csv` in the run folder, one row per epoch as timm's train.py writes it (epoch,
    train_loss, eval_loss, eval_top1, eval_top5, lr) plus step, keep_ratio, train_time_s;
  * tensorboard: event files under `<output>/tensorboard` (torch.utils.tensorboard; needs the
    `tensorboard` package; in a clone of pss: pip install -e ".[tensorboard]"): train/loss, train/lr, train/keep_ratio,
    train/num_tokens per step, val/* per evaluation;
  * wandb: the same scalars to Weights & Biases (in a clone of pss: pip install -e ".[wandb]"); `logging.wandb_mode:
    offline` needs no network (sync later with `wandb sync`);
  * progress lines: when stderr is not a terminal (SLURM, nohup, CI), one log line per
    `log_interval` steps instead of the progress bar.

Your own tracker: subclass `Tracker` and pass it to `pss.train.train(cfg, trackers=[...])`.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import sys
from pathlib import Path
from typing import Any

from pss.checkpoint import atomic_write
from pss.config import LoggingConfig
from pss.runfolder import RunDir, read_jsonl
from pss.runwriter import RunWriter
from pss.errors import ConfigError

log = logging.getLogger("pss.train")

__all__ = ["CsvSummary", "LoggingConfig", "ProgressLines", "TensorBoardTracker", "Tracker", "TrackingWriter",
           "WandbTracker", "build_trackers"]

class Tracker:
    """Receives what the run logs. Every method is optional (the base does nothing)."""

    def log_train(self, records: list[dict[str, Any]]) -> None:
        """Per-step records (epoch, step, loss, lr, keep_ratio, num_tokens, step_time_s, ...)."""

    def log_val(self, record: dict[str, Any]) -> None:
        """One evaluation (epoch, step = steps done, acc1, acc5, loss, keep_ratio, ...)."""

    def log_epoch(self, row: dict[str, Any]) -> None:
        """One row per finished epoch (summary.csv's columns)."""

    def truncate(self, step: int) -> None:
        """Resuming at `step`: forget what was logged past it."""

    def close(self) -> None:
        """The run ended (or failed)."""


class TrackingWriter(RunWriter):
    """RunWriter that also feeds `trackers` and builds the per-epoch summary row."""

    def __init__(self, folder: str | Path, enabled: bool = True, trackers: list[Tracker] | None = None) -> None:
        super().__init__(folder, enabled)
        self.trackers = list(trackers or []) if enabled else []
        self._epoch_records: list[dict[str, Any]] = []
        self._last_val: dict[str, Any] | None = None

    def truncate(self, step: int) -> None:
        super().truncate(step)
        if not self.enabled:
            return
        # the resumed epoch's earlier steps, for its summary row
        if self.train_log.exists():
            recs = read_jsonl(self.train_log)
            epoch = recs[-1]["epoch"] if recs and recs[-1]["step"] == step - 1 else None
            self._epoch_records = [r for r in recs if r["epoch"] == epoch] if epoch is not None else []
        for t in self.trackers:
            t.truncate(step)

    def log_train(self, records: list[dict[str, Any]]) -> None:
        super().log_train(records)
        if not self.enabled:
            return
        self._epoch_records.extend(records)
        for t in self.trackers:
            t.log_train(records)

    def log_val(self, record: dict[str, Any]) -> None:
        super().log_val(record)
        if not self.enabled:
            return
        self._last_val = record
        for t in self.trackers:
            t.log_val(record)

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, float], train_time_s: float) -> None:
        if not self.enabled:
            return
        recs = [r for r in self._epoch_records if r.get("epoch") == epoch]
        losses = [r["loss"] for r in recs if r.get("loss") is not None and math.isfinite(r["loss"])]
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "train_loss": sum(losses) / len(losses) if losses else None,
            "lr": recs[-1]["lr"] if recs else None,
            "keep_ratio": sum(r["keep_ratio"] for r in recs) / len(recs) if recs else None,
        }
        for k, v in metrics.items():  # timm's names: eval_loss, eval_top1, eval_top5
            row["eval_" + k.replace("acc1", "top1").replace("acc5", "top5")] = v
        row["train_time_s"] = train_time_s
        self._epoch_records = []
        for t in self.trackers:
            t.log_epoch(row)

    def close(self) -> None:
        for t in self.trackers:
            try:
                t.close()
            except Exception as e:  # noqa: BLE001  (a tracker failing to close must not hide the run's result)
                log.warning("closing %s failed: %s", type(t).__name__, e)


# ---------------------------------------------------------------------------------------------


class CsvSummary(Tracker):
    """`summary.csv`: one row per epoch; rewritten whole (atomically), so resume and new columns are safe."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / RunDir.CSV
        self.rows: list[dict[str, Any]] = []
        if self.path.exists():
            with self.path.open(newline="") as f:
                self.rows = list(csv.DictReader(f))

    def truncate(self, step: int) -> None:
        self.rows = [r for r in self.rows if int(float(r.get("step") or 0)) <= step]
        self._write()

    def log_epoch(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._write()

    def _write(self) -> None:
        columns: list[str] = []
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            w.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})
        data = buf.getvalue().encode()
        atomic_write(self.path, lambda f: f.write(data))


_TRAIN_SCALARS = ("loss", "lr", "keep_ratio", "num_tokens", "grad_norm", "step_time_s", "data_time_s")


def _scalars(record: dict[str, Any], keys) -> dict[str, float]:
    return {k: float(record[k]) for k in keys if isinstance(record.get(k), (int, float)) and record.get(k) is not None}


class TensorBoardTracker(Tracker):
    """Scalars to `<folder>/tensorboard` through torch.utils.tensorboard."""

    def __init__(self, folder: Path, resume_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ConfigError(
                "logging.tensorboard: true needs the tensorboard package: pip install tensorboard (in a clone of pss: "
                "pip install -e \".[tensorboard]\"), or set logging.tensorboard: false"
            ) from e
        # purge_step: a resumed run drops the events logged after its checkpoint
        # fresh run (also --overwrite): earlier events in the folder are discarded too
        self.writer = SummaryWriter(str(Path(folder) / RunDir.TENSORBOARD), purge_step=resume_step or 0)

    def log_train(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            for k, v in _scalars(r, _TRAIN_SCALARS).items():
                self.writer.add_scalar(f"train/{k}", v, r["step"])

    def log_val(self, record: dict[str, Any]) -> None:
        skip = {"epoch", "step", "elapsed_s", "eval_time_s"}
        for k, v in _scalars(record, [k for k in record if k not in skip]).items():
            self.writer.add_scalar(f"val/{k}", v, record["step"])
        self.writer.flush()

    def log_epoch(self, row: dict[str, Any]) -> None:
        for k in ("train_loss", "keep_ratio"):
            if row.get(k) is not None:
                self.writer.add_scalar(f"epoch/{k}", row[k], row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker(Tracker):
    """Scalars to Weights & Biases; the run id is kept in the run folder so `--resume` continues it."""

    def __init__(self, folder: Path, config: dict[str, Any], project: str, mode: str | None, name: str | None = None) -> None:
        try:
            import wandb
        except ImportError as e:
            raise ConfigError(
                "logging.wandb: true needs the wandb package: pip install wandb (in a clone of pss: "
                "pip install -e \".[wandb]\"), or set logging.wandb: false"
            ) from e
        self.wandb = wandb
        id_file = Path(folder) / "wandb_run_id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else None
        self.run = wandb.init(project=project, dir=str(folder), config=config, mode=mode, name=name,
                              id=run_id, resume="allow")
        if run_id is None and getattr(self.run, "id", None):
            id_file.write_text(str(self.run.id) + "\n")

    def log_train(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            self.run.log({f"train/{k}": v for k, v in _scalars(r, _TRAIN_SCALARS).items()}, step=r["step"])

    def log_val(self, record: dict[str, Any]) -> None:
        skip = {"epoch", "step"}
        self.run.log({f"val/{k}": v for k, v in _scalars(record, [k for k in record if k not in skip]).items()},
                     step=record["step"])

    def close(self) -> None:
        self.run.finish()


class ProgressLines(Tracker):
    """A log line per flush (every `log_interval` steps) when there is no progress bar to update."""

    def __init__(self, epochs: int, steps_per_epoch: int, batch_size: int) -> None:
        self.epochs, self.spe, self.batch_size = epochs, steps_per_epoch, batch_size

    def log_train(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        r = records[-1]
        secs = sum(x.get("step_time_s") or 0.0 for x in records)
        ips = len(records) * self.batch_size / secs if secs > 0 else 0.0
        log.info(
            "epoch %d/%d  step %d/%d  loss %.4f  lr %.3g  keep_ratio %.2f  %.0f img/s",
            r["epoch"] + 1, self.epochs, r["step"] - r["epoch"] * self.spe + 1, self.spe,
            r["loss"], r["lr"], r["keep_ratio"], ips,
        )


def build_trackers(cfg: LoggingConfig, folder: Path, *, config: dict[str, Any], resume_step: int | None,
                   epochs: int, steps_per_epoch: int, batch_size: int, quiet: bool, run_name: str | None = None) -> list[Tracker]:
    """The trackers a run's `logging` section asks for (call on the main process only)."""
    out: list[Tracker] = []
    if cfg.csv:
        out.append(CsvSummary(folder))
    if cfg.tensorboard:
        out.append(TensorBoardTracker(folder, resume_step))
    if cfg.wandb:
        out.append(WandbTracker(folder, config, cfg.wandb_project, cfg.wandb_mode, run_name))
    if not quiet and not sys.stderr.isatty():
        out.append(ProgressLines(epochs, steps_per_epoch, batch_size))
    return out
