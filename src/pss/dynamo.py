"""`pss.compile_friendly`: let torch.compile keep one graph per sequence length a schedule needs.

The keep ratio decides the sequence length, so torch.compile (dynamo) guards on it: every distinct
training keep ratio is one graph, and evaluation (every token, or each explicit `pss.use_keep_ratio`)
one more each. Past `torch._dynamo.config.recompile_limit` (8 by default) dynamo stops compiling
that function and silently runs it eagerly. The schedules round rho to a grid (0.2: five values),
so the number is small and known in advance (the recommended fixed keep ratio needs one graph; a
cyclic schedule, as here, one per grid value):

    keep = pss.KeepRatioScheduler(model, "cyclic:low=0.2,high=1.0", steps_per_epoch, epochs)
    pss.compile_friendly(keep)           # or pss.compile_friendly(schedule, steps_per_epoch=..., epochs=...)
    model = torch.compile(model)

Dynamo's limit is a process-wide setting; this only ever raises it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pss.errors import ConfigError
from pss.resolution import ResolutionSchedule, joint_counts
from pss.schedule import Schedule, from_dict
from pss.scheduler import KeepRatioScheduler

__all__ = ["check_compile_options", "compile_friendly", "graphs_needed", "raise_recompile_limit"]

# Extra graphs beyond one per sequence length: the same length run with and without gradients
# (e.g. a train-mode forward under torch.no_grad) is a second graph.
_SLACK = 2


def graphs_needed(
    schedule: KeepRatioScheduler | Schedule | str | float | dict[str, Any],
    *,
    steps_per_epoch: int | None = None,
    epochs: float | None = None,
    eval_keep_ratios: Iterable[float] = (1.0,),
    resolution: ResolutionSchedule | None = None,
    geometry: tuple[int, int] | None = None,
) -> int:
    """Graphs one compiled model needs: distinct training (side, keep ratio) pairs + evaluation ratios +
    slack. With a `resolution` schedule (and the model's (img_size, patch_size) `geometry`), each side a
    keep ratio trains at is one more sequence shape (`pss.resolution.joint_counts` lists them)."""
    if resolution is not None and geometry is not None and steps_per_epoch is not None and epochs is not None:
        total = max(1, math.floor(epochs * steps_per_epoch + 0.5))
        pairs = joint_counts(from_dict(schedule), resolution, steps_per_epoch, total, *geometry)
        train = [(side, r) for side, counts in pairs.items() for r in counts]
    elif isinstance(schedule, KeepRatioScheduler):
        train = schedule.keep_ratios()
    else:
        sched = from_dict(schedule)
        if steps_per_epoch is not None and epochs is not None:
            total = max(1, math.floor(epochs * steps_per_epoch + 0.5))
            train = list(sched.counts(steps_per_epoch, total))
        else:  # without the run length: every grid point (or a generous bound with no grid)
            grid = sched.grid
            train = [0.0] * (round(1 / grid) if grid else 20)
    return len(train) + len(set(eval_keep_ratios)) + _SLACK


def compile_friendly(
    schedule: KeepRatioScheduler | Schedule | str | float | dict[str, Any],
    *,
    steps_per_epoch: int | None = None,
    epochs: float | None = None,
    eval_keep_ratios: Iterable[float] = (1.0,),
    resolution: ResolutionSchedule | None = None,
    geometry: tuple[int, int] | None = None,
) -> int:
    """Raise dynamo's recompile limit to what `schedule` (and `resolution`) need (never lower it); returns the limit."""
    need = graphs_needed(schedule, steps_per_epoch=steps_per_epoch, epochs=epochs, eval_keep_ratios=eval_keep_ratios,
                         resolution=resolution, geometry=geometry)
    return raise_recompile_limit(need)


def raise_recompile_limit(need: int) -> int:
    """Make dynamo's recompile limit at least `need` (never lower it); returns the limit now set."""
    import torch._dynamo

    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"  # torch < 2.6
    limit = max(getattr(cfg, name), need)
    setattr(cfg, name, limit)
    if hasattr(cfg, "accumulated_recompile_limit"):
        cfg.accumulated_recompile_limit = max(cfg.accumulated_recompile_limit, limit)
    return limit


def check_compile_options(options: dict[str, Any] | None) -> None:
    """Refuse a torch.compile mode or backend torch does not know, before any data is read (torch
    itself would only say so when the model is compiled, after the set-up)."""
    if not options:
        return
    mode, backend = options.get("mode"), options.get("backend", "inductor")
    if mode is not None:
        from torch._inductor import list_mode_options

        modes = ["default", *list_mode_options()]
        if mode not in modes:
            raise ConfigError(f"unknown compile mode {mode!r}; choose one of {', '.join(dict.fromkeys(modes))}")
    if isinstance(backend, str):
        from torch._dynamo import list_backends

        backends = list_backends(exclude_tags=())
        if backend not in backends:
            raise ConfigError(f"unknown compile backend {backend!r}; choose one of {', '.join(backends)}")
