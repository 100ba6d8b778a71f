"""`Ema`: timm's ModelEmaV3 with its tensor lists collected once.

timm's V3 keeps the moving average with one multi-tensor (foreach) lerp, but walks both models'
`state_dict()` at every update to find the tensors: a module walk per training step. The tensors are
updated in place (optimizer steps, `load_state_dict` on resume), so `Ema` collects the lists on the
first update and reuses them; decay, warm-up, stochastic rounding and what checkpoints save are timm's.
"""
from __future__ import annotations

from timm.utils import ModelEmaV3
from torch import nn

__all__ = ["Ema"]


class Ema(ModelEmaV3):
    def apply_update_(self, model: nn.Module, decay: float) -> None:
        if not self.foreach:
            return super().apply_update_(model, decay)
        lists = self.__dict__.get("_lists")
        if lists is None or lists[0] is not model:
            pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))
            floats = [(e, m) for e, m in pairs if e.is_floating_point()]
            lists = (model, [e for e, _ in floats], [m for _, m in floats],
                     [(e, m) for e, m in pairs if not e.is_floating_point()])
            self.__dict__["_lists"] = lists  # not a module attribute: kept out of state_dict and .to()
        _, ema_values, model_values, others = lists
        for e, m in others:
            e.copy_(m)
        self._foreach_lerp_(ema_values, model_values, weight=1.0 - decay)
