"""`KeepRatioCallback`: a patch sampling schedule in a Lightning run (in a clone of pss: pip install -e ".[lightning]").

    model = pss.attach(timm.create_model("deit_small_patch16_224"))     # inside your LightningModule
    # the recommended recipe: a fixed 0.4 at random over 1.5x the epochs (45 for a 30-epoch full-token run)
    trainer = L.Trainer(max_epochs=45, callbacks=[KeepRatioCallback(0.4, select="random")])

Before every training batch the callback sets the training keep ratio of every PatchSampler in the
LightningModule from the trainer's global step (optimizer steps, so gradient accumulation is
counted right), and logs it as `pss/keep_ratio` (progress bar and logger, e.g. TensorBoard). Since
the keep ratio is a function of the step, resuming from a Lightning checkpoint continues the
schedule exactly; the callback's state (the step, the schedule) is saved in the checkpoint too.
Validation runs in eval() mode, hence at every token (pss.control's eval rule).
"""
from __future__ import annotations

import math
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError('pss.integrations.lightning needs Lightning: pip install lightning '
                      '(in a clone of pss: pip install -e ".[lightning]")') from e

from pss.schedule import Schedule
from pss.scheduler import KeepRatioScheduler

__all__ = ["KeepRatioCallback"]


class KeepRatioCallback(pl.Callback):
    """Drive the LightningModule's keep ratio from `schedule` (a Schedule, spec string or mapping).

    Args:
        schedule: e.g. 0.4 (fixed: the recommended recipe, with select="random"), or the paper's
            "cyclic:low=0.2,high=1.0" (`pss.CyclicSchedule(low=0.2)`, with select="magnitude").
        select: selection rule to set as well (None: the model's).
        log: log `pss/keep_ratio` at every step.
    """

    def __init__(self, schedule: Schedule | str | float | dict[str, Any], select: str | None = None, log: bool = True) -> None:
        super().__init__()
        self.schedule = schedule
        self.select = select
        self.log = log
        self.scheduler: KeepRatioScheduler | None = None
        self._loaded: dict[str, Any] | None = None

    @staticmethod
    def _run_length(trainer: pl.Trainer) -> tuple[int, float]:
        """(optimizer steps per epoch, epochs) of the fit."""
        batches = trainer.num_training_batches
        if not isinstance(batches, int) or batches < 1:
            raise ValueError("KeepRatioCallback needs a sized training dataloader (steps per epoch)")
        spe = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
        if trainer.max_steps and trainer.max_steps > 0:
            epochs = trainer.max_steps / spe
            if trainer.max_epochs is not None and trainer.max_epochs > 0:
                epochs = min(epochs, trainer.max_epochs)
        elif trainer.max_epochs is not None and trainer.max_epochs > 0:
            epochs = trainer.max_epochs
        else:
            raise ValueError("KeepRatioCallback needs Trainer(max_epochs=...) or max_steps to lay out the schedule")
        return spe, epochs

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        spe, epochs = self._run_length(trainer)
        self.scheduler = KeepRatioScheduler(pl_module, self.schedule, spe, epochs, select=self.select)
        if self._loaded is not None:
            self.scheduler.load_state_dict(self._loaded)  # warns if the schedule changed
        self.scheduler.step(trainer.global_step)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        rho = self.scheduler.step(trainer.global_step)  # host math and attribute writes only
        if self.log:
            pl_module.log("pss/keep_ratio", rho, on_step=True, on_epoch=False, prog_bar=True, logger=True)

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict() if self.scheduler is not None else (self._loaded or {})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = dict(state_dict) if state_dict else None
