"""What can be learned: the task registry. Each `task:` value of a recipe names the config class that
validates its recipe and the builder of the engine's Task (pss.engine.Task), as "module:attribute",
imported on first use.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pss.errors import ConfigError

__all__ = ["TASKS", "config_class", "task_builder", "tasks_of"]

# Imported on first use, so that loading a config imports neither timm nor the task's module.
TASKS: dict[str, tuple[str, str]] = {
    "classification": ("pss.settings:TrainConfig", "pss.train:classification_task"),
    "simmim": ("pss.pretrain:PretrainConfig", "pss.pretrain:simmim_task"),
}


def _resolve(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def tasks_of(cls: type) -> tuple[str, ...]:
    """The `task:` values whose recipes `cls` validates (TrainConfig: classification)."""
    return tuple(t for t, (c, _) in TASKS.items() if c == f"{cls.__module__}:{cls.__qualname__}")


def config_class(task: Any) -> type:
    """The config class of a recipe's `task:` (TrainConfig for classification and unknown values,
    which TrainConfig then refuses with the list of valid tasks)."""
    entry = TASKS.get(task) if isinstance(task, str) else None
    return _resolve((entry or TASKS["classification"])[0])


def task_builder(task: str) -> Callable[[Any, list[str]], Any]:
    """The function that builds the engine's Task for a validated config: `builder(cfg, class_names)`."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return _resolve(TASKS[task][1])
