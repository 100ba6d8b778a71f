"""`pss.KeepRatioScheduler`: a keep-ratio schedule driving a model in your own training loop.

    model = pss.attach(timm.create_model("deit_small_patch16_224"))
    # the recommended recipe: a fixed 0.4 at random over 1.5x the epochs of a full-token run (its budget
    # of 0.6 spent as tokens for epochs); the paper's: "cyclic:low=0.2,high=1.0" with select="magnitude"
    keep = pss.KeepRatioScheduler(model, 0.4, steps_per_epoch=len(loader), epochs=epochs, select="random")
    for x, y in loader:                      # every epoch
        loss = criterion(model(x), y)        # train() mode: keep.keep_ratio of the patches
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        keep.step()                          # next to lr_scheduler.step(): rho of the next step

It follows PyTorch's LR-scheduler convention: the constructor sets the keep ratio of step 0, each
`step()` moves to the next optimizer step. It sets the *training* keep ratio only: in `eval()`
mode the model runs every token (see `pss.control`), so validation and "best" checkpoints measure
the full model. The schedule is a pure function of the step, so `state_dict()` is the step count
(plus the schedule, for a check) and resuming is exact.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from torch import nn

from pss.control import samplers, set_train_keep_ratio
from pss.errors import ConfigError
from pss.schedule import Schedule, from_dict

log = logging.getLogger(__name__)

__all__ = ["KeepRatioScheduler"]


class KeepRatioScheduler:
    """Sets `model`'s training keep ratio at every optimizer step from `schedule`.

    Args:
        model: a PSS model (ours, or a timm ViT after `pss.attach`); DDP / compiled / accelerate-
            prepared wrappers work too, attach before wrapping.
        schedule: a `pss.Schedule`, a number or spec ("0.4", fixed: the recommended recipe, with
            select="random"; "cyclic:low=0.2,high=1.0", the paper's), or a recipe mapping.
        steps_per_epoch: optimizer steps per epoch (`len(loader) // accum_steps`).
        epochs: length of the run in epochs (may be fractional).
        select: selection rule to set as well (magnitude, random, l2, grid); None keeps the model's.
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: Schedule | str | float | dict[str, Any],
        steps_per_epoch: int,
        epochs: float,
        *,
        select: str | None = None,
    ) -> None:
        self.schedule = from_dict(schedule)
        if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or not 0 < epochs < math.inf:
            raise ConfigError(f"epochs must be a finite number > 0, got {epochs!r}")
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = max(1, math.floor(epochs * steps_per_epoch + 0.5)) if isinstance(steps_per_epoch, int) else 0
        self.schedule.check_run(steps_per_epoch, self.total_steps)
        self.select = select
        # Collected once: step() touches a few attributes, never walks the module tree.
        self._samplers = samplers(model)
        if not self._samplers:
            raise TypeError(
                f"{type(model).__name__} has no PatchSampler: call pss.attach(model) (before DDP / torch.compile / "
                "accelerator.prepare) or build it with pss"
            )
        self.last_step = 0
        self.keep_ratio = 1.0
        self._apply()

    def keep_ratio_at(self, step: int) -> float:
        """Keep ratio of optimizer step `step`; steps past the run's end keep the last step's value."""
        return self.schedule(min(max(step, 0), self.total_steps - 1), self.steps_per_epoch, self.total_steps)

    def _apply(self) -> None:
        self.keep_ratio = self.keep_ratio_at(self.last_step)
        set_train_keep_ratio(self._samplers, self.keep_ratio, self.select)

    def step(self, step: int | None = None) -> float:
        """Move to the next optimizer step (or to `step`, 0-based, e.g. a trainer's global step);
        returns the keep ratio now set."""
        self.last_step = self.last_step + 1 if step is None else int(step)
        self._apply()
        return self.keep_ratio

    def keep_ratios(self) -> list[float]:
        """The distinct keep ratios of the run, ascending (each one a sequence length to compile)."""
        return list(self.schedule.counts(self.steps_per_epoch, self.total_steps))

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.last_step, "schedule": self.schedule.to_dict(),
                "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        step = state.get("step") if isinstance(state, dict) else None
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ConfigError(f"not a KeepRatioScheduler state_dict (its 'step' must be a step number >= 0): {state!r:.200}")
        mine = self.state_dict()
        changed = [k for k in ("schedule", "steps_per_epoch", "total_steps") if k in state and state[k] != mine[k]]
        if changed:
            log.warning("KeepRatioScheduler: resuming with a different %s than the checkpoint's; "
                        "the keep ratio follows the new settings from step %d", ", ".join(changed), state["step"])
        self.last_step = int(state["step"])
        self._apply()

    def __repr__(self) -> str:
        return (f"KeepRatioScheduler(schedule={self.schedule}, step={self.last_step}/{self.total_steps}, "
                f"keep_ratio={self.keep_ratio})")
