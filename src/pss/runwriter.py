"""What a run writes while it runs, into its folder (file names: `pss.runfolder.RunDir`).

    RunWriter      appends train_log.jsonl / val_log.jsonl lines (rank 0), truncates them on resume
    StepLogger     buffers per-step lines with their loss still on the device; `flush()` is the one
                   host sync (every `log_interval` steps): lines written, progress bar moved, a
                   non-finite loss stops the run
    Checkpointer   checkpoint-last.pt (full state, every rank's RNG), checkpoint-best.pt and
                   model.safetensors; refuses to save non-finite weights; remembers the last good step

The engine (`pss.engine.Trainer`) holds a StepLogger and a Checkpointer; it never opens a file itself.
What each file holds: docs/run-folder.md.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from pss.checkpoint import atomic_save, atomic_write, export_safetensors, run_checkpoint_bytes, training_checkpoint
from pss.errors import PssError
from pss.rng import get_rng_state, set_rng_state
from pss.runfolder import RunDir, read_jsonl
from pss.runtime import DistInfo, unwrap_model
from pss.state import TrainState

__all__ = ["Checkpointer", "NonFiniteLossError", "RunWriter", "StepLogger"]


class NonFiniteLossError(PssError):
    """The loss became NaN or infinite; the run stops, keeping the last good checkpoint."""


# ---------------------------------------------------------------------------------------------
# log lines


class RunWriter:
    """Appends to the run folder's logs (rank 0 only; on other ranks every method is a no-op).

    `train_log.jsonl`: one line per optimizer step; `val_log.jsonl`: one line per evaluation.
    On resume `truncate(step)` drops lines past the checkpoint's step, so the logs of a resumed
    run continue without gaps or duplicates.
    """

    def __init__(self, folder: str | Path, enabled: bool = True) -> None:
        self.folder = Path(folder)
        self.enabled = enabled
        self.train_log = self.folder / RunDir.TRAIN_LOG
        self.val_log = self.folder / RunDir.VAL_LOG

    def truncate(self, step: int) -> None:
        """Keep train lines with step < `step` (steps done) and val lines with step <= `step` (`read_jsonl`'s
        policy: a torn last line dropped, a corrupt line elsewhere refused with DataError)."""
        if not self.enabled:
            return
        for path, keep in ((self.train_log, lambda s: s < step), (self.val_log, lambda s: s <= step)):
            if not path.exists():
                continue
            # a torn last line (the kill that stopped the run) is dropped; corruption elsewhere is refused
            kept = [r for r in read_jsonl(path) if isinstance(r.get("step"), int) and keep(r["step"])]
            data = "".join(json.dumps(r) + "\n" for r in kept).encode()
            atomic_write(path, lambda f: f.write(data))

    def _append(self, path: Path, records: list[dict[str, Any]]) -> None:
        if self.enabled and records:
            with path.open("a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in records))

    def log_train(self, records: list[dict[str, Any]]) -> None:
        self._append(self.train_log, records)

    def log_val(self, record: dict[str, Any]) -> None:
        self._append(self.val_log, [record])

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, float], train_time_s: float) -> None:
        """An epoch ended (with `metrics` if it was evaluated); pss.tracking.TrackingWriter uses it."""

    def close(self) -> None:
        """The run ended; flush and close whatever the writer holds open."""

    def write_json(self, name: str, obj: dict[str, Any]) -> None:
        if self.enabled:
            data = (json.dumps(obj, indent=2) + "\n").encode()
            atomic_write(self.folder / name, lambda f: f.write(data))


@dataclass
class _Pending:
    """One step's log line, its loss still on the device."""

    record: dict[str, Any]
    loss: torch.Tensor
    extra: dict[str, torch.Tensor]


class StepLogger:
    """Per-step log lines, written in batches: the loop's only host sync (see pss.engine).

    `add()` keeps the line with its loss (and extra metrics) as device tensors; `flush()` stacks them
    into one tensor (one all-reduce, one device->host copy), writes the lines through `writer`, moves
    the progress bar (rank 0, a terminal, not `quiet`) and raises NonFiniteLossError on a NaN / inf
    loss, naming where the run can go on from (`last_good`, the Checkpointer's message).
    """

    def __init__(self, writer: RunWriter, *, dist_info: DistInfo = DistInfo(), global_batch_size: int = 1,
                 quiet: bool = False, last_good: Any = None) -> None:
        self.writer, self.dist = writer, dist_info
        self.global_batch_size, self.quiet = global_batch_size, quiet
        self.last_good = last_good or (lambda: "no checkpoint was saved yet")
        self._pending: list[_Pending] = []
        self._bar = None
        self._last_flush_t = time.perf_counter()

    def add(self, record: dict[str, Any], loss: torch.Tensor, extra: dict[str, torch.Tensor]) -> None:
        self._pending.append(_Pending(record, loss, extra))

    def flush(self) -> None:
        """One host sync: write buffered step lines, update the bar, stop on a non-finite loss."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        keys = sorted({k for x in pending for k in x.extra})
        # (steps, 1 + extras) in one tensor: one all-reduce and one device->host copy.
        nan = pending[0].loss.new_tensor(float("nan"))
        rows = torch.stack([torch.stack([x.loss] + [x.extra.get(k, nan) for k in keys]) for x in pending])
        if self.dist.enabled:
            dist.all_reduce(rows)
            rows /= self.dist.world_size
        values = rows.tolist()
        bad = None
        records = []
        for x, row in zip(pending, values):
            rec = x.record
            rec["loss"] = row[0]
            for k, v in zip(keys, row[1:]):
                rec[k] = v
            records.append(rec)
            if bad is None and not math.isfinite(row[0]):
                bad = rec
        self.writer.log_train(records)
        self._update_bar(records)
        if bad is not None:
            raise NonFiniteLossError(
                f"loss is {bad['loss']} at step {bad['step']} (epoch {bad['epoch'] + 1}, keep ratio {bad['keep_ratio']}, "
                f"lr {bad['lr']:.3g}); stopping: {self.last_good()}"
            )

    # -- the progress bar (tqdm, rank 0 on a terminal) -------------------------------------------

    def open_bar(self, epoch: int, epochs: int, steps_per_epoch: int, done: int) -> None:
        if not self.dist.is_main or self.quiet or not sys.stderr.isatty():
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=steps_per_epoch, initial=done, desc=f"epoch {epoch + 1}/{epochs}",
            unit="step", dynamic_ncols=True, leave=False,
        )
        self._last_flush_t = time.perf_counter()

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _update_bar(self, records: list[dict[str, Any]]) -> None:
        if self._bar is None:
            return
        now = time.perf_counter()
        steps = len(records)
        ips = steps * self.global_batch_size / max(now - self._last_flush_t, 1e-9)
        self._last_flush_t = now
        r = records[-1]
        self._bar.set_postfix_str(f"loss {r['loss']:.4f} lr {r['lr']:.2e} rho {r['keep_ratio']:.2f} {ips:,.0f} img/s", refresh=False)
        self._bar.update(steps)


# ---------------------------------------------------------------------------------------------
# checkpoints


class Checkpointer:
    """Writes the run's checkpoints; holds what they carry besides the training state.

    `config` (the resolved recipe) and `class_names` go into every checkpoint, so a checkpoint alone
    rebuilds its model (`pss.models.hub.load_model`). `resume_rng` (every rank's RNG states from the
    checkpoint resumed from) is restored once by `restore_rng()`, when the loop has replayed the batches
    already trained on.
    """

    def __init__(self, folder: str | Path, *, config: dict[str, Any] | None = None,
                 class_names: list[str] | None = None, dist_info: DistInfo = DistInfo(),
                 resume_rng: list[dict[str, Any]] | None = None, saved_step: int | None = None,
                 resumed_from: str | Path | None = None) -> None:
        self.folder = Path(folder)
        self.config = config or {}
        self.class_names = class_names
        self.dist = dist_info
        self.resume_rng = resume_rng
        self.saved_step = saved_step  # step of the newest checkpoint-last.pt (None: none yet)
        # the file holding `saved_step`: the checkpoint resumed from (another folder's, with --resume CKPT
        # --output NEW) until this run saves its own checkpoint-last.pt
        self.saved_path = Path(resumed_from) if resumed_from is not None else self.folder / RunDir.LAST

    def restore_rng(self) -> None:
        """Continue this rank's RNG streams from the resumed checkpoint (once; later calls do nothing)."""
        if self.resume_rng is not None:
            set_rng_state(self.resume_rng[self.dist.rank])
            self.resume_rng = None

    def last_good(self) -> str:
        """Where the run can go on from after a non-finite loss or weights, and how."""
        fix = "lower optim.lr / base_lr, set optim.clip_grad, or use amp: bf16 instead of fp16"
        if self.saved_step is None:
            return f"no checkpoint was saved yet; {fix}, then restart"
        if self.saved_path == self.folder / RunDir.LAST:
            how = "--resume (e.g. --resume --set optim.lr=...)"
        else:  # this run's folder holds no checkpoint yet: name the file the run came from
            how = f"--resume {self.saved_path} --output {self.folder} --set optim.lr=..."
        return f"{self.saved_path} holds step {self.saved_step}, the last finite one; {fix}, then continue it with {how}"

    def check_finite(self, state: TrainState) -> None:
        """Refuse to save weights, EMA weights or optimizer state holding NaN / inf (one host sync per
        device, at save time only: the update that diverges can follow a finite loss)."""
        tensors = list(unwrap_model(state.model).state_dict().values())
        if state.ema is not None:
            tensors += list(unwrap_model(state.ema.module).state_dict().values())
        tensors += [t for st in state.optimizer.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
        flags: dict[torch.device, list[torch.Tensor]] = {}
        for t in tensors:
            if t.is_floating_point() or t.is_complex():
                flags.setdefault(t.device, []).append(~torch.isfinite(t).all())
        bad = sum(int(torch.stack(f).sum()) for f in flags.values())
        if bad:
            raise NonFiniteLossError(
                f"{bad} of {len(tensors)} weight / optimizer tensors are NaN or inf after step {state.progress.step}; "
                f"not saved: {self.last_good()}"
            )

    def _gather_rng(self) -> list[dict[str, Any]]:
        """Every rank's RNG state (each rank draws its own dropout / mixup / random selection)."""
        rng = get_rng_state()
        if not self.dist.enabled:
            return [rng]
        out: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(out, rng)
        return out

    def save_last(self, state: TrainState) -> None:
        """Write checkpoint-last.pt (every rank takes part: RNG states are gathered)."""
        self.check_finite(state)  # never save weights that the last update made non-finite
        rng = self._gather_rng()
        if self.dist.is_main:
            ckpt = training_checkpoint(
                model=state.model, optimizer=state.optimizer, lr_scheduler=state.lr_scheduler,
                scaler=state.scaler, ema=state.ema_module, rng=rng,
                progress=state.progress.to_dict(), config=self.config, class_names=self.class_names,
            )
            atomic_save(ckpt, self.folder / RunDir.LAST, total=run_checkpoint_bytes(ckpt))
        self.saved_step, self.saved_path = state.progress.step, self.folder / RunDir.LAST

    def save_best(self, state: TrainState, metric: str) -> None:
        """Write checkpoint-best.pt (model + EMA weights) and model.safetensors (weights, config in metadata)."""
        self.check_finite(state)  # every rank: the weights are the same, so all stop together
        if not self.dist.is_main:
            return
        p = state.progress
        ckpt = training_checkpoint(
            model=state.model, ema=state.ema_module, progress=p.to_dict(), config=self.config,
            class_names=self.class_names,
        )
        atomic_save(ckpt, self.folder / RunDir.BEST)
        export_safetensors(
            ckpt["model"], self.folder / RunDir.WEIGHTS,
            metadata={"pss_config": self.config, "class_names": self.class_names, "step": p.step,
                      f"best_{metric}": p.best_metric},
        )
