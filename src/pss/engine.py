"""The training loop: one fixed step order, independent of what is being learned.

Every optimizer step runs, in this order (see `Trainer.train_epoch`):

    rho = schedule(step)  ->  set_keep_ratio(model, rho)          same rho on every rank
    for each micro-batch:  forward under autocast -> task.loss -> backward
                           (DDP gradient sync skipped on all but the last micro-batch)
    unscale + clip gradients  ->  optimizer step  ->  lr_scheduler.step_update  ->  EMA update
    buffer the loss tensor + host-side numbers for the log

What is learned is the `Task`'s business (`loss(model, batch)` and `evaluate(model, loader)`):
classification here, masked-image modelling later, on the same loop, logging, checkpointing and DDP.

Host syncs: the loop never calls `.item()` on the hot path. Losses stay on the device and are
synchronised every `log_interval` steps (one `torch.stack(...).tolist()`, all-reduced over ranks),
when `train_log.jsonl` gets the buffered per-step lines, the progress bar moves, and a non-finite
loss stops the run. On CUDA the host runs ahead of the GPU, so `step_time_s` is the host time
between consecutive step ends: individual values jitter (the step that syncs absorbs the queue),
but they add up to the true time, and epoch times (synchronised at each epoch end) are exact.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from pss.checkpoint import (
    atomic_write,
    export_safetensors,
    get_rng_state,
    set_rng_state,
    training_checkpoint,
    atomic_save,
)
from pss.control import keep_ratio, num_tokens, samplers, set_train_keep_ratio
from pss.errors import PssError
from pss.runtime import Amp, DistInfo, topk_correct, unwrap_model, wraps_ddp
from pss.schedule import Schedule

log = logging.getLogger("pss.train")

__all__ = [
    "ClassificationTask",
    "LoopConfig",
    "NonFiniteLossError",
    "Progress",
    "RunWriter",
    "Task",
    "Trainer",
]


class NonFiniteLossError(PssError):
    """The loss became NaN or infinite; the run stops, keeping the last good checkpoint."""


# ---------------------------------------------------------------------------------------------
# small pieces the loop is made of


class Task(Protocol):
    """What is being learned. The loop only calls these; it knows nothing about labels or pixels."""

    metric: str  # key of `evaluate`'s result that selects the best checkpoint, e.g. "acc1"
    higher_is_better: bool

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar loss (a device tensor, not synced) and optional extra per-step metrics (tensors)."""
        ...

    def evaluate(self, model: nn.Module, loader: Iterable, amp: Amp, dist_info: DistInfo) -> dict[str, float]:
        """Metrics over the whole (sharded) validation set, reduced over ranks."""
        ...

    # Optional, called by `pss.train.train` when a task defines them (see pss.pretrain.MIMTask):
    #   prepare_model(model) -> model: wrap / adapt the recipe's model (after --init weights are loaded)
    #   on_train_end(model, *, folder, val_loader, amp, dist_info, step, config) -> dict: write the
    #       task's own outputs; the dict's entries are added to summary.json


class ClassificationTask:
    """Cross-entropy on labels, with timm's Mixup / CutMix and label smoothing (the DeiT recipe)."""

    metric = "acc1"
    higher_is_better = True

    def __init__(self, num_classes: int, mixup: Any = None, label_smoothing: float = 0.0) -> None:
        from timm.data import Mixup
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

        self.num_classes = num_classes
        self.mixup_fn = None
        if mixup is not None and mixup.enabled:
            # Mixup turns labels into (smoothed) soft targets, hence the soft-target loss.
            self.mixup_fn = Mixup(
                mixup_alpha=mixup.mixup_alpha,
                cutmix_alpha=mixup.cutmix_alpha,
                prob=mixup.prob,
                switch_prob=mixup.switch_prob,
                mode=mixup.mode,
                label_smoothing=label_smoothing,
                num_classes=num_classes,
            )
            self.criterion: nn.Module = SoftTargetCrossEntropy()
        elif label_smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(smoothing=label_smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, targets = batch
        if self.mixup_fn is not None:
            images, targets = self.mixup_fn(images, targets)
        return self.criterion(model(images), targets), {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable, amp: Amp, dist_info: DistInfo) -> dict[str, float]:
        model.eval()
        device = next(unwrap_model(model).parameters()).device
        # Running sums stay on the device: one host sync after the loop, not one per batch.
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # correct@1, correct@5, loss sum, count
        for images, targets in loader:
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            with amp.autocast():
                logits = model(images)
            c1, c5 = topk_correct(logits, targets, (1, 5))
            sums += torch.stack([
                c1, c5,
                F.cross_entropy(logits.float(), targets, reduction="sum"),
                torch.tensor(targets.numel(), device=device),
            ]).double()
        if dist_info.enabled:
            dist.all_reduce(sums)  # shards differ in size by at most one image: reduce sums, not means
        c1, c5, loss_sum, n = sums.tolist()
        n = max(n, 1.0)
        return {"acc1": 100.0 * c1 / n, "acc5": 100.0 * c5 / n, "loss": loss_sum / n}


@dataclass
class LoopConfig:
    """The loop's own settings (a view of TrainConfig, so the engine takes no recipe object)."""

    epochs: int
    steps_per_epoch: int
    accum_steps: int = 1
    global_batch_size: int = 1
    clip_grad: float | None = None
    log_interval: int = 20
    checkpoint_interval_epochs: int = 1
    checkpoint_interval_steps: int | None = None
    eval_interval: int = 1
    eval_keep_ratio: float = 1.0
    select: str | None = None  # selection method set with every keep ratio
    quiet: bool = False

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclass
class Progress:
    """Where the run stands; saved in every checkpoint (plain numbers only)."""

    step: int = 0  # optimizer steps completed
    steps_per_epoch: int = 0
    total_steps: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    last_eval: dict[str, float] = field(default_factory=dict)
    train_time_s: float = 0.0  # time in training epochs (excludes evaluation and checkpointing)
    data_time_s: float = 0.0  # part of train_time_s spent waiting for the next batch
    wall_time_s: float = 0.0  # everything, evaluation and checkpoints included
    keep_ratio_sum: float = 0.0  # sum of rho over completed steps
    resumed: int = 0  # how many times the run was resumed

    @property
    def epoch(self) -> int:
        """The epoch the next step belongs to."""
        return self.step // self.steps_per_epoch

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Progress:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# ---------------------------------------------------------------------------------------------
# run folder


class RunWriter:
    """Appends to the run folder's logs (rank 0 only; on other ranks every method is a no-op).

    `train_log.jsonl`: one line per optimizer step; `val_log.jsonl`: one line per evaluation.
    On resume `truncate(step)` drops lines past the checkpoint's step, so the logs of a resumed
    run continue without gaps or duplicates.
    """

    def __init__(self, folder: str | Path, enabled: bool = True) -> None:
        self.folder = Path(folder)
        self.enabled = enabled
        self.train_log = self.folder / "train_log.jsonl"
        self.val_log = self.folder / "val_log.jsonl"

    def truncate(self, step: int) -> None:
        """Keep train lines with step < `step` (steps done) and val lines with step <= `step`."""
        if not self.enabled:
            return
        for path, keep in ((self.train_log, lambda s: s < step), (self.val_log, lambda s: s <= step)):
            if not path.exists():
                continue
            lines = []
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if keep(rec.get("step", -1)):
                    lines.append(line)
            data = "".join(x + "\n" for x in lines).encode()
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


# ---------------------------------------------------------------------------------------------
# the loop


@dataclass
class _Pending:
    """One step's log line, its loss still on the device."""

    record: dict[str, Any]
    loss: torch.Tensor
    extra: dict[str, torch.Tensor]


class Trainer:
    """Runs epochs of `task` on `model`; owns nothing it did not get in its constructor.

    `model` is what the forward pass uses (possibly DDP- and/or compile-wrapped). Checkpoints
    store the bare model (`unwrap_model`). Call `fit()`; it returns the final Progress.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        task: Task,
        optimizer: torch.optim.Optimizer,
        lr_scheduler: Any,
        schedule: Schedule,
        train_loader: Any,
        val_loader: Iterable | None,
        loop: LoopConfig,
        amp: Amp,
        writer: RunWriter,
        dist_info: DistInfo = DistInfo(),
        scaler: torch.amp.GradScaler | None = None,
        ema: Any = None,
        progress: Progress | None = None,
        config: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        resume_rng: list[dict[str, Any]] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.model, self.task, self.optimizer, self.lr_scheduler = model, task, optimizer, lr_scheduler
        self.schedule, self.train_loader, self.val_loader = schedule, train_loader, val_loader
        self.loop, self.amp, self.writer, self.dist = loop, amp, writer, dist_info
        self.scaler = scaler or torch.amp.GradScaler(amp.device_type, enabled=False)
        self.ema = ema
        self.progress = progress or Progress()
        self.progress.steps_per_epoch = loop.steps_per_epoch
        self.progress.total_steps = loop.total_steps
        self.config = config or {}
        self.class_names = class_names
        self.resume_rng = resume_rng
        self.device = torch.device(device)
        self.folder = writer.folder

        bare = unwrap_model(model)
        self._samplers = samplers(bare)  # collected once: no module walk per step
        self.has_samplers = bool(self._samplers)
        self.is_ddp = wraps_ddp(model)
        self._pending: list[_Pending] = []
        self._bar = None
        self._last_flush_t = time.perf_counter()
        self._last_flush_step = self.progress.step
        # Step of the newest checkpoint-last.pt (None: none yet); a resumed run starts from one.
        self._saved_step: int | None = self.progress.step if self.progress.step > 0 else None

    # -- the step --------------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> None:
        loop, model, p = self.loop, self.model, self.progress
        spe, total = loop.steps_per_epoch, loop.total_steps
        start = p.step - epoch * spe  # > 0 when resuming in the middle of this epoch
        model.train()
        self.train_loader.set_epoch(epoch)
        batches = self._batches(start)
        epoch_t0 = t_last = time.perf_counter()
        data_time_sum = 0.0
        for i in range(start, spe):
            step = p.step
            t0 = time.perf_counter()
            batch = _to_device(next(batches), self.device)
            data_time = time.perf_counter() - t0

            # 1. Keep ratio: a pure function of the step, so every rank (and a resumed run) agrees.
            rho = self.schedule(step, spe, total)
            if self.has_samplers:
                set_train_keep_ratio(self._samplers, rho, method=loop.select)  # train() mode only

            # 2. Forward + backward over micro-batches. DDP all-reduces gradients in backward(); on
            #    all but the last micro-batch that would be wasted traffic, so `no_sync` defers it.
            lr = max(g["lr"] for g in self.optimizer.param_groups)  # the rate this step uses
            micro = _split(batch, loop.accum_steps)
            loss_sum: torch.Tensor | None = None
            extra: dict[str, torch.Tensor] = {}
            for m, mb in enumerate(micro):
                last = m == len(micro) - 1
                sync = contextlib.nullcontext() if (last or not self.is_ddp) else model.no_sync()
                with sync:
                    with self.amp.autocast():
                        loss, metrics = self.task.loss(model, mb)
                    self.scaler.scale(loss / len(micro)).backward()
                loss = loss.detach().float()
                loss_sum = loss if loss_sum is None else loss_sum + loss
                for k, v in metrics.items():
                    extra[k] = extra.get(k, 0) + v.detach().float() / len(micro)

            # 3. Clip (on unscaled gradients), step, then advance the LR schedule and the EMA.
            if loop.clip_grad is not None:
                self.scaler.unscale_(self.optimizer)
                extra["grad_norm"] = torch.nn.utils.clip_grad_norm_(model.parameters(), loop.clip_grad).detach().float()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            p.step += 1
            if self.lr_scheduler is not None:
                self.lr_scheduler.step_update(num_updates=p.step)
            if self.ema is not None:
                self.ema.update(unwrap_model(model), step=p.step)

            # 4. Log (host numbers now, the loss tensor at the next sync).
            now = time.perf_counter()
            rec = {
                "epoch": epoch,
                "step": step,
                "loss": None,
                "lr": lr,
                "keep_ratio": rho,
                "num_tokens": self._num_tokens(rho),
                "step_time_s": now - t_last,
                "data_time_s": data_time,
            }
            t_last = now
            data_time_sum += data_time
            p.keep_ratio_sum += rho
            self._pending.append(_Pending(rec, loss_sum / len(micro), extra))

            last_of_epoch = i == spe - 1
            if p.step % loop.log_interval == 0 or last_of_epoch:
                self.flush_logs()
            if loop.checkpoint_interval_steps and p.step % loop.checkpoint_interval_steps == 0 and not last_of_epoch:
                # Mid-epoch checkpoint (the epoch-end one follows evaluation, in fit()). Its time is
                # not training time: close the timed span before saving, reopen it after.
                self.flush_logs()
                p.train_time_s += time.perf_counter() - epoch_t0
                p.data_time_s += data_time_sum
                epoch_t0 = t_last = self.save_last()
                data_time_sum = 0.0
        self.flush_logs()  # also syncs the device, so the epoch time below is exact
        p.train_time_s += time.perf_counter() - epoch_t0
        p.data_time_s += data_time_sum

    def _batches(self, start: int) -> Iterator[Any]:
        """This epoch's batches from index `start` on, exactly as an uninterrupted run sees them."""
        it = iter(self.train_loader)
        if start:
            # Loaders order (and augment) by (seed, epoch): replaying the first `start` batches
            # reproduces the data stream; this costs reading them once, on resume only.
            log.info("resuming mid-epoch: skipping %d batches already trained on", start)
            for _ in range(start):
                next(it)
        if self.resume_rng is not None:
            # Restore the RNG streams only now, after the skipped batches consumed theirs, so
            # dropout / drop-path / mixup / random selection continue where the checkpoint left off.
            set_rng_state(self.resume_rng[self.dist.rank])
            self.resume_rng = None
        return it

    def _num_tokens(self, rho: float) -> int | None:
        return num_tokens(self.model, rho)

    # -- logging ---------------------------------------------------------------------------------

    def flush_logs(self) -> None:
        """One host sync: write buffered step lines, update the bar, stop on a non-finite loss."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        keys = sorted({k for x in pending for k in x.extra})
        # (steps, 1 + extras) in one tensor: one all-reduce and one device->host copy.
        rows = torch.stack([torch.stack([x.loss] + [x.extra.get(k, x.loss.new_tensor(float("nan"))) for k in keys]) for x in pending])
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
                f"loss is {bad['loss']} at step {bad['step']} (epoch {bad['epoch']}, keep ratio {bad['keep_ratio']}, "
                f"lr {bad['lr']:.3g}); stopping: {self._last_good()}"
            )

    def _last_good(self) -> str:
        """Where the run can go on from after a non-finite loss or weights, and how."""
        fix = "lower optim.lr / base_lr, set optim.clip_grad, or use amp: bf16 instead of fp16"
        if self._saved_step is None:
            return f"no checkpoint was saved yet; {fix}, then restart"
        return (f"{self.folder / 'checkpoint-last.pt'} holds step {self._saved_step}, the last finite one; {fix}, "
                "then continue it with --resume (e.g. --resume --set optim.lr=...)")

    def check_finite(self) -> None:
        """Refuse to save weights, EMA weights or optimizer state holding NaN / inf (one host sync per
        device, at save time only: the update that diverges can follow a finite loss)."""
        tensors = list(unwrap_model(self.model).state_dict().values())
        if self.ema is not None:
            tensors += list(unwrap_model(self.ema.module).state_dict().values())
        tensors += [t for st in self.optimizer.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
        flags: dict[torch.device, list[torch.Tensor]] = {}
        for t in tensors:
            if t.is_floating_point() or t.is_complex():
                flags.setdefault(t.device, []).append(~torch.isfinite(t).all())
        bad = sum(int(torch.stack(f).sum()) for f in flags.values())
        if bad:
            raise NonFiniteLossError(
                f"{bad} of {len(tensors)} weight / optimizer tensors are NaN or inf after step {self.progress.step}; "
                f"not saved: {self._last_good()}"
            )

    def _update_bar(self, records: list[dict[str, Any]]) -> None:
        if self._bar is None:
            return
        now = time.perf_counter()
        steps = len(records)
        ips = steps * self.loop.global_batch_size / max(now - self._last_flush_t, 1e-9)
        self._last_flush_t = now
        r = records[-1]
        self._bar.set_postfix_str(f"loss {r['loss']:.4f} lr {r['lr']:.2e} rho {r['keep_ratio']:.2f} {ips:,.0f} img/s", refresh=False)
        self._bar.update(steps)

    def _open_bar(self, epoch: int) -> None:
        if not self.dist.is_main or self.loop.quiet or not sys.stderr.isatty():
            return
        from tqdm.auto import tqdm

        done = self.progress.step - epoch * self.loop.steps_per_epoch
        self._bar = tqdm(
            total=self.loop.steps_per_epoch, initial=done, desc=f"epoch {epoch + 1}/{self.loop.epochs}",
            unit="step", dynamic_ncols=True, leave=False,
        )
        self._last_flush_t = time.perf_counter()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- evaluation and checkpoints --------------------------------------------------------------

    def evaluate(self, epoch: int) -> dict[str, float]:
        """Evaluate the model (and its EMA) at `loop.eval_keep_ratio`; log one val line."""
        t0 = time.perf_counter()
        metrics = self._eval_model(self.model)
        if self.ema is not None:
            metrics.update({f"ema_{k}": v for k, v in self._eval_model(self.ema.module).items()})
        record = {"epoch": epoch, "step": self.progress.step, **metrics, "keep_ratio": self.loop.eval_keep_ratio,
                  "elapsed_s": self.progress.wall_time_s + (time.perf_counter() - self._wall_t0),
                  "eval_time_s": time.perf_counter() - t0}
        self.writer.log_val(record)
        return metrics

    def _eval_model(self, model: nn.Module) -> dict[str, float]:
        if self.val_loader is None:
            return {}
        if not self.has_samplers:
            return self.task.evaluate(model, self.val_loader, self.amp, self.dist)
        # An explicit ratio wins over the eval rule (eval() = every token), so eval.keep_ratio < 1 works.
        with keep_ratio(model, self.loop.eval_keep_ratio, method=self.loop.select):
            return self.task.evaluate(model, self.val_loader, self.amp, self.dist)

    def _gather_rng(self) -> list[dict[str, Any]]:
        """Every rank's RNG state (each rank draws its own dropout / mixup / random selection)."""
        state = get_rng_state()
        if not self.dist.enabled:
            return [state]
        out: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(out, state)
        return out

    def save_last(self) -> float:
        """Write checkpoint-last.pt (all ranks take part in gathering RNG states); returns a timestamp."""
        self.flush_logs()  # never save weights that a non-finite loss has already touched
        self.check_finite()  # nor weights that the last update made non-finite (its loss was finite)
        rng = self._gather_rng()
        if self.dist.is_main:
            self.progress.wall_time_s += time.perf_counter() - self._wall_t0
            self._wall_t0 = time.perf_counter()
            ckpt = training_checkpoint(
                model=self.model, optimizer=self.optimizer, lr_scheduler=self.lr_scheduler,
                scaler=self.scaler, ema=self.ema.module if self.ema is not None else None, rng=rng,
                progress=self.progress.to_dict(), config=self.config, class_names=self.class_names,
            )
            atomic_save(ckpt, self.folder / "checkpoint-last.pt")
        self._saved_step = self.progress.step
        return time.perf_counter()

    def save_best(self) -> None:
        self.check_finite()  # every rank: the weights are the same, so all stop together
        if not self.dist.is_main:
            return
        ckpt = training_checkpoint(
            model=self.model, ema=self.ema.module if self.ema is not None else None,
            progress=self.progress.to_dict(), config=self.config, class_names=self.class_names,
        )
        atomic_save(ckpt, self.folder / "checkpoint-best.pt")
        export_safetensors(
            ckpt["model"], self.folder / "model.safetensors",
            metadata={"pss_config": self.config, "class_names": self.class_names, "step": self.progress.step,
                      f"best_{self.task.metric}": self.progress.best_metric},
        )

    def _is_better(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        best = self.progress.best_metric
        if best is None:
            return True
        return value > best if self.task.higher_is_better else value < best

    # -- the run ---------------------------------------------------------------------------------

    def fit(self) -> Progress:
        loop, p = self.loop, self.progress
        self._wall_t0 = time.perf_counter()
        if p.step >= loop.total_steps:
            log.info("nothing to do: the run already completed %d steps", p.step)
            return p
        for epoch in range(p.epoch, loop.epochs):
            self._open_bar(epoch)
            try:
                self.train_epoch(epoch)
            finally:
                self._close_bar()
            last = epoch == loop.epochs - 1
            metrics: dict[str, float] = {}
            if (epoch + 1) % loop.eval_interval == 0 or last:
                metrics = self.evaluate(epoch)
                p.last_eval = metrics
                if self._is_better(metrics.get(self.task.metric)):
                    p.best_metric, p.best_epoch = metrics[self.task.metric], epoch
                    self.save_best()
            if (epoch + 1) % loop.checkpoint_interval_epochs == 0 or last:
                self.save_last()
            self._log_epoch(epoch, metrics)
        if self.dist.enabled:
            dist.barrier()
        return p

    def _log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        p = self.progress
        self.writer.log_epoch(epoch, p.step, metrics, p.train_time_s)
        shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if not k.startswith("ema_") or k == "ema_acc1")
        log.info(
            "epoch %d/%d  step %d  %s  train %.1f s (data wait %.0f%%)",
            epoch + 1, self.loop.epochs, p.step, shown or "(no eval)", p.train_time_s,
            100 * p.data_time_s / max(p.train_time_s, 1e-9),
        )


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _split(batch: Any, n: int) -> list[Any]:
    """Split a batch (tensor / tuple / dict of tensors) into `n` equal micro-batches along dim 0."""
    if n == 1:
        return [batch]
    if isinstance(batch, torch.Tensor):
        return list(batch.chunk(n))
    if isinstance(batch, (list, tuple)):
        parts = [_split(b, n) for b in batch]
        return [type(batch)(p[i] for p in parts) for i in range(n)]
    if isinstance(batch, dict):
        parts = {k: _split(v, n) for k, v in batch.items()}
        return [{k: v[i] for k, v in parts.items()} for i in range(n)]
    raise TypeError(f"cannot split a batch of type {type(batch).__name__} into micro-batches")
