"""Registry of model families: name -> "module:Class". Imported lazily so one task's deps don't slow others."""
from __future__ import annotations

import importlib

from attnkit.errors import UserError
from attnkit.tasks.base import Task

TASKS: dict[str, str] = {
    "gpt": "attnkit.tasks.gpt:GPTTask",
    "bert": "attnkit.tasks.bert:BERTTask",
    "encdec": "attnkit.tasks.encdec:EncDecTask",
    "music": "attnkit.tasks.music:MusicTask",
    "vit": "attnkit.tasks.vit:ViTTask",
    "image": "attnkit.tasks.image:ImageTask",
    "npt": "attnkit.tasks.npt:NPTTask",
    "dt": "attnkit.tasks.dt:DTTask",
    "asr": "attnkit.tasks.asr:ASRTask",
    "icl": "attnkit.tasks.icl:ICLTask",
}


def get_task(name: str) -> type[Task]:
    if name not in TASKS:
        raise UserError(f"unknown model {name!r}; choose from {', '.join(TASKS)}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["TASKS", "Task", "UserError", "get_task"]
