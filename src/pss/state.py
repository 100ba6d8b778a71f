"""Training state: what a checkpoint-last.pt restores, and where the run stands.

    TrainState   the model (as the forward pass uses it), optimizer, LR scheduler, GradScaler, EMA, progress
    Progress     step, timings, best metric and the per-keep-ratio step counters: plain numbers only, so it
                 goes into every checkpoint as a dict (`to_dict` / `from_dict`)

Built by `pss.optim.build_optimisation`, advanced by `pss.engine.Trainer`, saved by
`pss.runwriter.Checkpointer`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["Progress", "TrainState"]


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
    # Per keep ratio (as text, e.g. "0.6"; "0.6@16" for steps at a 16 px side, pss.resolution): steps run and
    # their summed step times. What a budget's realised cost is computed from; checkpoints written before
    # these existed restore them as empty.
    steps_at: dict[str, int] = field(default_factory=dict)
    time_at: dict[str, float] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        """The epoch the next step belongs to."""
        return self.step // self.steps_per_epoch

    def count_step(self, rho: float, step_time_s: float, side: int | None = None) -> None:
        """One more step at keep ratio `rho` (and a training side below the model's: `side` px; None at
        the model's side). Host numbers: no device sync."""
        key = f"{rho:.6g}" if side is None else f"{rho:.6g}@{side}"
        self.keep_ratio_sum += rho
        self.steps_at[key] = self.steps_at.get(key, 0) + 1
        self.time_at[key] = self.time_at.get(key, 0.0) + step_time_s

    def realised_cost(self, cost: Callable[..., float]) -> float | None:
        """Mean cost per step over the steps counted (`cost`: a pss.budget cost model, c(1.0) = 1; steps at a
        smaller side cost `cost(rho, side)`)."""
        n = sum(self.steps_at.values())

        def one(key: str) -> float:
            rho, _, side = key.partition("@")
            return cost(float(rho), int(side)) if side else cost(float(rho))

        return math.fsum(k * one(r) for r, k in self.steps_at.items()) / n if n else None

    def realised_time_ratio(self) -> float | None:
        """Step time relative to this run's own full-token steps: sum over keep ratios of steps x mean step
        time, over all steps x the mean step time at rho = 1.0 (None without full-token steps). Meaningful
        where step times are synchronous (CPU)."""
        full = self.steps_at.get("1")
        if not full:
            return None
        n = sum(self.steps_at.values())
        return math.fsum(self.time_at.values()) / (n * self.time_at["1"] / full)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Progress:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class TrainState:
    """Everything a checkpoint-last.pt restores: the model (as the forward pass uses it, possibly
    DDP- and/or compile-wrapped; checkpoints store the bare model), its optimisation state, progress."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    progress: Progress
    lr_scheduler: Any = None  # a timm scheduler (stepped per update)
    scaler: torch.amp.GradScaler | None = None
    ema: Any = None  # timm ModelEmaV3 (its `.module` is saved)

    @property
    def ema_module(self) -> nn.Module | None:
        return self.ema.module if self.ema is not None else None
