"""Registry of model families: name -> "module:Class". Imported lazily so one task's deps don't slow others."""
from __future__ import annotations

import importlib

from attnkit.config import TrainConfig
from attnkit.errors import UserError
from attnkit.zoo.tasks.base import Task

TASKS: dict[str, str] = {
    "gpt": "attnkit.zoo.tasks.gpt:GPTTask",
    "bert": "attnkit.zoo.tasks.bert:BERTTask",
    "encdec": "attnkit.zoo.tasks.encdec:EncDecTask",
    "music": "attnkit.zoo.tasks.music:MusicTask",
    "vit": "attnkit.zoo.tasks.vit:ViTTask",
    "image": "attnkit.zoo.tasks.image:ImageTask",
    "npt": "attnkit.zoo.tasks.npt:NPTTask",
    "dt": "attnkit.zoo.tasks.dt:DTTask",
    "asr": "attnkit.zoo.tasks.asr:ASRTask",
    "icl": "attnkit.zoo.tasks.icl:ICLTask",
}


def get_task(name: str) -> type[Task]:
    if name not in TASKS:
        raise UserError(f"unknown model {name!r}; choose from {', '.join(TASKS)}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def task_for(cfg: TrainConfig) -> type[Task]:
    """The class that runs a resolved config: the model's task, or the one its `Task.for_config` picks."""
    return get_task(cfg.model).for_config(cfg)


__all__ = ["TASKS", "get_task", "task_for"]
