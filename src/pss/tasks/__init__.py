"""What can be learned: one module per `task:` of a recipe, chosen from `TASKS`.

Each task module has `check(cfg)`, its checks that need the model registry (run when a run is set up,
before any data is read), and `build(cfg, class_names)`, the engine's Task (pss.engine.Task) for a
checked config. The config class of each task is `pss.settings.TASK_CONFIGS`'s.

    classification   cross-entropy on labels (pss.tasks.classification)
    simmim           SimMIM masked-image modelling pre-training (pss.tasks.simmim)
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from pss.errors import ConfigError
from pss.tasks import classification, simmim

__all__ = ["TASKS", "TaskKind", "task_kind"]


class TaskKind(NamedTuple):
    """One `task:` value: its checks before any data is read, and the builder of its engine Task."""

    check: Callable[[Any], None]
    build: Callable[[Any, list[str]], Any]


TASKS: dict[str, TaskKind] = {
    "classification": TaskKind(classification.check, classification.build),
    "simmim": TaskKind(simmim.check, simmim.build),
}


def task_kind(task: str) -> TaskKind:
    """The entry of a recipe's `task:` (an unknown one is refused with the known ones)."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return TASKS[task]
