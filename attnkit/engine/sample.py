"""`attnkit sample`: load a run directory and let its task do what the model does (continue, fill, draw).

    RUN/config.json → TrainConfig + model kwargs → Task.load(run_dir) → Task.build_model → weights → task.sample
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from attnkit.engine.checkpoint import WEIGHTS, load_weights
from attnkit.config import SampleConfig, TrainConfig
from attnkit.engine.device import resolve_device
from attnkit.errors import UserError
from attnkit.engine.resolve import resolve_config, split_saved
from attnkit.engine.rundir import CONFIG, LATEST, read_saved_config, real_run_dir
from attnkit.zoo.tasks import get_task


def load_run(run: str | Path, device: str | torch.device = "cpu"):
    """(task, model in eval mode, TrainConfig) of a finished or checkpointed run directory."""
    run_dir = real_run_dir(run)
    config_path = run_dir / CONFIG
    if not run_dir.is_dir():
        if Path(run).name == LATEST:
            raise UserError(f"run directory not found: {run} (no run trained yet; train one with `attnkit train`, "
                            f"or pass --run)")
        raise UserError(f"run directory not found: {run} (train one with `attnkit train --out {run}`)")
    if not config_path.is_file():
        raise UserError(f"{run} is not a run directory: no config.json (train one with `attnkit train`)")
    saved = read_saved_config(run_dir)
    task_cls = get_task(saved["task"])
    fields, options = split_saved(saved, task_cls)
    train_cfg = TrainConfig(**fields, options=options)
    if train_cfg.flavor is None:  # a run saved before flavors were recorded: the task's default one
        train_cfg = resolve_config(dataclasses.replace(train_cfg, model=task_cls.name))
    task = task_cls.load(run_dir, train_cfg)
    model = task_cls.build_model(saved["model"])
    if not (run_dir / WEIGHTS).is_file():
        raise UserError(f"{run} has no {WEIGHTS} yet (training has not reached its first checkpoint)")
    load_weights(model, run_dir / WEIGHTS)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    return task, model.to(device).eval(), train_cfg


def run_sampling(cfg: SampleConfig, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    if cfg.max_new_tokens < 0:
        raise UserError(f"--max-new-tokens must not be negative, got {cfg.max_new_tokens}")
    if cfg.num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {cfg.num_samples}")
    if cfg.top_p is not None and not 0 < cfg.top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1], got {cfg.top_p}")
    if cfg.beam < 1:
        raise UserError(f"--beam must be at least 1, got {cfg.beam}")
    if cfg.temperature < 0:
        raise UserError(f"--temperature must not be negative, got {cfg.temperature}")
    task, model, _ = load_run(cfg.run, cfg.device)
    torch.manual_seed(cfg.seed)
    with torch.inference_mode():
        return task.sample(model, cfg, console)
