"""The training loop: one fixed step order, independent of what is being learned.

Every optimizer step runs, in this order (see `Trainer.train_epoch`):

    rho = schedule(step)  ->  set on the model's samplers when it changes   same rho on every rank
    for each micro-batch:  forward under autocast -> task.loss -> backward
                           (DDP gradient sync skipped on all but the last micro-batch)
    Trainer.optimizer_step: unscale + clip gradients -> optimizer step -> lr_scheduler.step_update
                            -> EMA update
    StepLogger.add: the loss tensor + host-side numbers for the log

What is learned is the `Task`'s business (`loss(model, batch)` and `evaluate(model, loader)`):
classification and masked-image modelling (pss.tasks), on the same loop. What the run writes
(log lines, checkpoints) is pss.runwriter's: the Trainer holds a StepLogger and a Checkpointer.

Host syncs: the loop never calls `.item()` on the hot path. Losses stay on the device and are
synchronised every `log_interval` steps (`StepLogger.flush`: one `torch.stack(...).tolist()`,
all-reduced over ranks), when `train_log.jsonl` gets the buffered per-step lines, the progress bar
moves, and a non-finite loss stops the run. On CUDA the host runs ahead of the GPU, so
`step_time_s` is the host time between consecutive step ends: individual values jitter (the step
that syncs absorbs the queue), but they add up to the true time, and epoch times (synchronised at
each epoch end) are exact.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from pss.control import num_tokens, samplers, set_train_keep_ratio, use_keep_ratio
from pss.runwriter import Checkpointer, StepLogger
from pss.runtime import Amp, DistInfo, to_device, unwrap_model, wraps_ddp
from pss.schedule import Schedule
from pss.state import Progress, TrainState

log = logging.getLogger("pss.train")

__all__ = [
    "BaseTask",
    "LoopConfig",
    "Progress",
    "Task",
    "Trainer",
]


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

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Wrap / adapt the recipe's model (after --init weights are loaded); most tasks return it as is."""
        ...

    def on_train_end(self, model: nn.Module, **run: Any) -> dict[str, Any]:
        """Write the task's own outputs once training ends (`run`: folder, val_loader, amp, dist_info, step,
        config); the entries returned are added to summary.json."""
        ...


class BaseTask:
    """The optional hooks of a Task, doing nothing: subclass it and override what the task needs."""

    supports_resolution = False  # whether `resize` can train it at a lower side (pss.resolution)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model

    def resize(self, batch: Any, side: int) -> Any:
        """The batch at `side` x `side` pixels (a lower training resolution)."""
        raise NotImplementedError(f"{type(self).__name__} cannot train at a lower resolution; set resolution: null")

    def on_train_end(self, model: nn.Module, **run: Any) -> dict[str, Any]:
        return {}


@dataclass
class LoopConfig:
    """The loop's own settings (a view of TrainConfig, so the engine takes no recipe object)."""

    epochs: int
    steps_per_epoch: int
    accum_steps: int = 1
    clip_grad: float | None = None
    log_interval: int = 20
    checkpoint_interval_epochs: int = 1
    checkpoint_interval_steps: int | None = None
    eval_interval: int = 1
    eval_keep_ratio: float = 1.0
    select: str | None = None  # selection rule set with every keep ratio
    resolution: Any = None  # pss.resolution.ResolutionSchedule: the training side per epoch (None: img_size)
    img_size: int = 0  # the model's side and patch, for the resolution schedule
    patch_size: int = 1

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def side(self, epoch: int) -> int | None:
        """The training side of `epoch` in pixels, None at the model's own side (evaluation always is)."""
        if self.resolution is None:
            return None
        side = self.resolution.side(epoch * self.steps_per_epoch, self.steps_per_epoch, self.total_steps,
                                    self.img_size, self.patch_size)
        return None if side == self.img_size else side


# ---------------------------------------------------------------------------------------------
# the loop


class Trainer:
    """Runs epochs of `task` on `state.model`; owns nothing it did not get in its constructor.

    `state` (pss.state.TrainState) is what a checkpoint restores: the model the forward pass uses
    (possibly DDP- and/or compile-wrapped), optimizer, LR scheduler, GradScaler, EMA and progress.
    `logger` writes the per-step lines, `checkpointer` the checkpoints. Call `fit()`; it returns the
    final Progress.
    """

    def __init__(
        self,
        *,
        state: TrainState,
        task: Task,
        schedule: Schedule,
        train_loader: Any,
        val_loader: Iterable | None,
        loop: LoopConfig,
        amp: Amp,
        logger: StepLogger,
        checkpointer: Checkpointer,
        dist_info: DistInfo = DistInfo(),
        device: torch.device | str = "cpu",
    ) -> None:
        self.state, self.task, self.schedule = state, task, schedule
        self.train_loader, self.val_loader = train_loader, val_loader
        self.loop, self.amp, self.logger, self.checkpointer = loop, amp, logger, checkpointer
        self.dist = dist_info
        self.device = torch.device(device)
        self.model = state.model
        if state.scaler is None:
            state.scaler = torch.amp.GradScaler(amp.device_type, enabled=False)
        self.progress = state.progress
        self.progress.steps_per_epoch = loop.steps_per_epoch
        self.progress.total_steps = loop.total_steps
        if checkpointer is not None and checkpointer.saved_step is None and self.progress.step > 0:
            checkpointer.saved_step = self.progress.step  # a resumed run starts from a checkpoint

        bare = unwrap_model(self.model)
        self._samplers = samplers(bare)  # collected once: no module walk per step
        self._rho: float | None = None  # the training keep ratio last set on them
        self._tokens: int | None = None  # tokens per image through the blocks at that ratio
        self._side: int | None = None  # and side
        self.is_ddp = wraps_ddp(self.model)
        self._params = list(self.model.parameters())  # for clipping: collected once, not walked per step
        self._foreach = self.device.type in ("cpu", "cuda") or None  # multi-tensor norm and scaling

    # -- the step --------------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> None:
        loop, model, p = self.loop, self.model, self.progress
        spe, total = loop.steps_per_epoch, loop.total_steps
        start = p.step - epoch * spe  # > 0 when resuming in the middle of this epoch
        side = loop.side(epoch)  # a lower training resolution: one side per epoch (pss.resolution)
        model.train()
        self.train_loader.set_epoch(epoch)
        if hasattr(self.train_loader, "set_side"):
            self.train_loader.set_side(side)  # a loader that decodes at the side in its workers
        batches = self._batches(start)
        epoch_t0 = t_last = time.perf_counter()
        data_time_sum = 0.0
        for i in range(start, spe):
            step = p.step
            t0 = time.perf_counter()
            batch = to_device(next(batches), self.device)
            data_time = time.perf_counter() - t0
            if side is not None:  # compute on the device, not data wait; a no-op where the loader decoded at the side
                batch = self.task.resize(batch, side)

            # 1. Keep ratio (and side): pure functions of the step, so every rank (and a resumed run) agrees.
            rho = self.schedule(step, spe, total)
            tokens = self.set_keep_ratio(rho, side)

            # 2. Forward + backward over micro-batches.
            lr = max(g["lr"] for g in self.state.optimizer.param_groups)  # the rate this step uses
            loss, extra = self.forward_backward(batch)

            # 3. Clip, step, advance the LR schedule and the EMA.
            grad_norm = self.optimizer_step()
            if grad_norm is not None:
                extra["grad_norm"] = grad_norm

            # 4. Log (host numbers now, the loss tensor at the next sync).
            now = time.perf_counter()
            rec = {
                "epoch": epoch,
                "step": step,
                "loss": None,
                "lr": lr,
                "keep_ratio": rho,
                "num_tokens": tokens,
                "step_time_s": now - t_last,
                "data_time_s": data_time,
            }
            if loop.resolution is not None:
                rec["side"] = side or loop.img_size
            t_last = now
            data_time_sum += data_time
            p.count_step(rho, rec["step_time_s"], side)
            self.logger.add(rec, loss, extra)

            last_of_epoch = i == spe - 1
            if p.step % loop.log_interval == 0 or last_of_epoch:
                self.logger.flush()
            if loop.checkpoint_interval_steps and p.step % loop.checkpoint_interval_steps == 0 and not last_of_epoch:
                # Mid-epoch checkpoint (the epoch-end one follows evaluation, in fit()). Its time is
                # not training time: close the timed span before saving, reopen it after.
                self.logger.flush()
                p.train_time_s += time.perf_counter() - epoch_t0
                p.data_time_s += data_time_sum
                self.save_last()
                epoch_t0 = t_last = time.perf_counter()
                data_time_sum = 0.0
        self.logger.flush()  # also syncs the device, so the epoch time below is exact
        p.train_time_s += time.perf_counter() - epoch_t0
        p.data_time_s += data_time_sum

    def forward_backward(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward + backward over the batch's micro-batches; returns the mean loss and extra metrics
        (device tensors, detached). DDP all-reduces gradients in backward(); on all but the last
        micro-batch that would be wasted traffic, so `no_sync` defers it."""
        micro = _split(batch, self.loop.accum_steps)
        loss_sum: torch.Tensor | None = None
        extra: dict[str, torch.Tensor] = {}
        for m, mb in enumerate(micro):
            last = m == len(micro) - 1
            sync = contextlib.nullcontext() if (last or not self.is_ddp) else self.model.no_sync()
            with sync:
                with self.amp.autocast():
                    loss, metrics = self.task.loss(self.model, mb)
                self.state.scaler.scale(loss / len(micro)).backward()
            loss = loss.detach().float()
            loss_sum = loss if loss_sum is None else loss_sum + loss
            for k, v in metrics.items():
                extra[k] = extra.get(k, 0) + v.detach().float() / len(micro)
        return loss_sum / len(micro), extra

    def optimizer_step(self) -> torch.Tensor | None:
        """Unscale and clip the gradients (returns their norm when clipping), step the optimizer, then
        advance the step count, the per-step LR schedule and the EMA."""
        s, p = self.state, self.progress
        grad_norm = None
        if self.loop.clip_grad is not None:
            s.scaler.unscale_(s.optimizer)  # clip the true gradients, not the fp16-scaled ones
            grad_norm = torch.nn.utils.clip_grad_norm_(self._params, self.loop.clip_grad,
                                                       foreach=self._foreach).detach().float()
        s.scaler.step(s.optimizer)
        s.scaler.update()
        s.optimizer.zero_grad(set_to_none=True)
        p.step += 1
        if s.lr_scheduler is not None:
            s.lr_scheduler.step_update(num_updates=p.step)
        if s.ema is not None:
            s.ema.update(unwrap_model(self.model), step=p.step)
        return grad_norm

    @property
    def keep_ratio(self) -> float | None:
        """The training keep ratio last set on the model's samplers (None before the first step)."""
        return self._rho

    def set_keep_ratio(self, rho: float, side: int | None = None) -> int | None:
        """Set the training keep ratio on the cached samplers (train() mode only), only when it changes;
        returns the tokens per image through the blocks at that ratio (and side, None: the model's)."""
        if rho != self._rho:
            if self._samplers:
                set_train_keep_ratio(self._samplers, rho, select=self.loop.select)
            self._rho, self._tokens = rho, None
        if self._tokens is None or side != self._side:
            self._side, self._tokens = side, num_tokens(self.model, rho, side)
        return self._tokens

    def _batches(self, start: int) -> Iterator[Any]:
        """This epoch's batches from index `start` on, exactly as an uninterrupted run sees them."""
        it = iter(self.train_loader)
        if start:
            # Loaders order (and augment) by (seed, epoch): replaying the first `start` batches
            # reproduces the data stream; this costs reading them once, on resume only.
            log.info("resuming mid-epoch: skipping %d batches already trained on", start)
            for _ in range(start):
                next(it)
        # Restore the RNG streams only now, after the skipped batches consumed theirs, so dropout /
        # drop-path / mixup / random selection continue where the checkpoint left off.
        self.checkpointer.restore_rng()
        return it

    # -- evaluation and checkpoints --------------------------------------------------------------

    def evaluate(self, epoch: int) -> dict[str, float]:
        """Evaluate the model (and its EMA) at `loop.eval_keep_ratio`; log one val line."""
        t0 = time.perf_counter()
        metrics = self._eval_model(self.model)
        if self.state.ema is not None:
            metrics.update({f"ema_{k}": v for k, v in self._eval_model(self.state.ema.module).items()})
        record = {"epoch": epoch, "step": self.progress.step, **metrics, "keep_ratio": self.loop.eval_keep_ratio,
                  "elapsed_s": self.progress.wall_time_s + (time.perf_counter() - self._wall_t0),
                  "eval_time_s": time.perf_counter() - t0}
        self.logger.writer.log_val(record)
        return metrics

    def _eval_model(self, model: nn.Module) -> dict[str, float]:
        if self.val_loader is None:
            return {}
        if not self._samplers:
            return self.task.evaluate(model, self.val_loader, self.amp, self.dist)
        # An explicit ratio wins over the eval rule (eval() = every token), so eval.keep_ratio < 1 works;
        # the rule is the model's deterministic default for its training rule (never random).
        with use_keep_ratio(model, self.loop.eval_keep_ratio):
            return self.task.evaluate(model, self.val_loader, self.amp, self.dist)

    def save_last(self) -> None:
        """checkpoint-last.pt, after the buffered losses are checked (never save weights that a
        non-finite loss has already touched); the time spent so far goes into `wall_time_s`."""
        self.logger.flush()
        if self.dist.is_main:
            self.progress.wall_time_s += time.perf_counter() - self._wall_t0
            self._wall_t0 = time.perf_counter()
        self.checkpointer.save_last(self.state)

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
            self.logger.open_bar(epoch, loop.epochs, loop.steps_per_epoch, done=p.step - epoch * loop.steps_per_epoch)
            try:
                self.train_epoch(epoch)
            finally:
                self.logger.close_bar()
            last = epoch == loop.epochs - 1
            metrics: dict[str, float] = {}
            if (epoch + 1) % loop.eval_interval == 0 or last:
                metrics = self.evaluate(epoch)
                p.last_eval = metrics
                if self._is_better(metrics.get(self.task.metric)):
                    p.best_metric, p.best_epoch = metrics[self.task.metric], epoch
                    self.checkpointer.save_best(self.state, self.task.metric)
            if (epoch + 1) % loop.checkpoint_interval_epochs == 0 or last:
                self.save_last()
            self._log_epoch(epoch, metrics)
        if self.dist.enabled:
            dist.barrier()
        return p

    def _log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        p = self.progress
        self.logger.writer.log_epoch(epoch, p.step, metrics, p.train_time_s)
        shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if not k.startswith("ema_") or k == "ema_acc1")
        log.info(
            "epoch %d/%d  step %d  %s  train %.1f s (data wait %.0f%%)",
            epoch + 1, self.loop.epochs, p.step, shown or "(no eval)", p.train_time_s,
            100 * p.data_time_s / max(p.train_time_s, 1e-9),
        )


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
