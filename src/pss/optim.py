"""Optimisation state: timm's optimizer, per-step LR schedule, GradScaler and EMA around a model, and
restoring them on resume.

    state = build_optimisation(cfg, model, amp, steps_per_epoch)     # a TrainState at step 0
    rng = restore(ckpt, state, cfg, steps_per_epoch, dist_info)     # resume: every state, at its step

The optimizer comes from `timm.optim.create_optimizer_v2` (weight-decay groups, layer-wise decay; its fused
or multi-tensor path where torch has one), the schedule from `timm.scheduler.create_scheduler_v2` (stepped
every optimizer update), the EMA is `pss.ema.Ema` (timm's `ModelEmaV3`, without per-step walks). A resumed run whose `optim.lr` differs from the checkpoint's continues its schedule scaled
to the new peak (`set_peak_lr`).
"""
from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from pss.checkpoint import restore_training_state
from pss.errors import CheckpointError, ConfigError
from pss.runtime import Amp, DistInfo
from pss.state import Progress, TrainState

log = logging.getLogger("pss.train")

__all__ = ["build_optimisation", "check_optimizer", "fast_optimizer", "restore", "set_peak_lr"]


def check_optimizer(name: str) -> None:
    """An optimizer name timm does not know fails here, before any data is read."""
    from timm.optim import list_optimizers

    if name not in list_optimizers():
        raise ConfigError(f"unknown optim.opt {name!r}; e.g. adamw, sgd, lamb (timm.optim.list_optimizers())")


def build_optimisation(cfg: Any, model: nn.Module, amp: Amp, steps_per_epoch: int) -> TrainState:
    """timm's optimizer factory (weight-decay groups, layer decay), a per-step LR schedule, the fp16
    GradScaler and the EMA, around the bare model, at step 0 (`cfg`: a TrainConfig)."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    from pss.ema import Ema

    o, ls = cfg.optim, cfg.lr_sched
    opt_kwargs: dict[str, Any] = {}
    if o.betas is not None:
        opt_kwargs["betas"] = tuple(o.betas)
    if o.eps is not None:
        opt_kwargs["eps"] = o.eps
    optimizer = create_optimizer_v2(
        model, opt=o.opt, lr=cfg.peak_lr(), weight_decay=o.weight_decay, momentum=o.momentum,
        layer_decay=o.layer_decay, **opt_kwargs, **fast_optimizer(o.opt, next(model.parameters()).device),
    )
    lr_scheduler = None
    if ls.name != "none":
        lr_scheduler, _ = create_scheduler_v2(
            optimizer, sched=ls.name, num_epochs=cfg.epochs - ls.cooldown_epochs,
            warmup_epochs=ls.warmup_epochs, warmup_lr=ls.warmup_lr, min_lr=ls.min_lr,
            cooldown_epochs=ls.cooldown_epochs, decay_rate=ls.decay_rate,
            **({"decay_epochs": ls.decay_epochs} if ls.decay_epochs is not None else {}),
            step_on_epochs=False, updates_per_epoch=steps_per_epoch,
        )
    return TrainState(
        model=model, optimizer=optimizer, progress=Progress(), lr_scheduler=lr_scheduler,
        scaler=torch.amp.GradScaler(amp.device_type, enabled=amp.dtype == torch.float16),
        ema=Ema(model, decay=cfg.ema.decay, use_warmup=cfg.ema.warmup) if cfg.ema.enabled else None,
    )


def fast_optimizer(opt: str, device: torch.device) -> dict[str, Any]:
    """The optimizer's one-kernel path where torch has it (`fused`: Adam, AdamW, SGD, Adagrad, on CPU and
    CUDA), else its multi-tensor path (`foreach`) where the class offers one: the optimizer step is the
    largest part of a step's cost that does not shrink with the tokens."""
    import inspect

    from timm.optim import get_optimizer_class

    try:
        cls = get_optimizer_class(opt.lower().split("_")[-1], bind_defaults=False)
    except (ValueError, KeyError):
        return {}  # timm reports the unknown name when it builds the optimizer
    params = inspect.signature(cls).parameters
    if device.type in ("cpu", "cuda") and "fused" in params and cls.__module__.startswith("torch.optim"):
        return {"fused": True}
    return {"foreach": True} if "foreach" in params and device.type in ("cpu", "cuda") else {}


def restore(ckpt: dict[str, Any], state: TrainState, cfg: Any, steps_per_epoch: int,
            dist_info: DistInfo) -> list[dict[str, Any]] | None:
    """Resume: every state into `state` (its progress replaced by the checkpoint's), the LR schedule at the
    checkpoint's step and peaking at `cfg`'s rate; returns every rank's RNG states, which the loop restores
    where the epoch resumes (None: reseed instead)."""
    saved = ckpt.get("progress", {})
    if saved.get("steps_per_epoch") != steps_per_epoch:
        raise CheckpointError(
            f"cannot resume: the checkpoint has {saved.get('steps_per_epoch')} steps per epoch, this set-up "
            f"{steps_per_epoch}; keep batch_size and the data as they were"
        )
    # The LR schedule is the config's: the checkpoint's is continued when they agree, and rebuilt for the
    # new settings when epochs, the learning rate or lr_sched changed (a finished cosine would stay at its floor).
    fresh = state.lr_scheduler.state_dict() if state.lr_scheduler is not None else None
    rebuilt = fresh is not None and ckpt.get("lr_scheduler") not in (None, fresh)
    restore_training_state(
        ckpt, model=state.model, optimizer=state.optimizer, lr_scheduler=None if rebuilt else state.lr_scheduler,
        scaler=state.scaler, ema=state.ema_module,
    )
    set_peak_lr(cfg.peak_lr(), state.optimizer, None if rebuilt else state.lr_scheduler)
    state.progress = Progress.from_dict(saved)
    state.progress.resumed += 1
    if state.lr_scheduler is not None:
        state.lr_scheduler.step_update(num_updates=state.progress.step)
    if rebuilt:
        log.warning("the LR schedule differs from the checkpoint's (epochs, optim or lr_sched changed): rebuilt for "
                    "%d epochs at peak %.3g; step %d continues at lr %.3g", cfg.epochs, cfg.peak_lr(),
                    state.progress.step, state.optimizer.param_groups[0]["lr"])
    rng = ckpt.get("rng") or []
    if len(rng) == dist_info.world_size:
        return rng
    log.warning("checkpoint has RNG states for %d processes, this job has %d: reseeding instead",
                len(rng), dist_info.world_size)
    return None


def set_peak_lr(peak: float, optimizer: torch.optim.Optimizer, lr_scheduler: Any) -> None:
    """Scale a restored LR schedule (timm scheduler's base values and warm-up slopes, the optimizer's
    initial / current rates) so that it peaks at `peak`; the optimizer and scheduler states would
    otherwise keep the checkpoint's rate whatever the config says."""
    groups = optimizer.param_groups
    base = getattr(lr_scheduler, "base_values", None) or [g.get("initial_lr", g["lr"]) for g in groups]
    old = max(base)
    if old <= 0 or math.isclose(old, peak, rel_tol=1e-9):
        return
    ratio = peak / old
    log.info("resuming with peak learning rate %.3g instead of the checkpoint's %.3g", peak, old)
    for g in groups:
        g["lr"] *= ratio  # the scheduler (if any) sets it again at the next step_update
        if "initial_lr" in g:
            g["initial_lr"] *= ratio
    if getattr(lr_scheduler, "base_values", None):
        s = lr_scheduler
        s.base_values = [v * ratio for v in s.base_values]
        if getattr(s, "warmup_t", 0) and hasattr(s, "warmup_steps"):  # timm: the warm-up slope per group
            s.warmup_steps = [(v - s.warmup_lr_init) / s.warmup_t for v in s.base_values]
