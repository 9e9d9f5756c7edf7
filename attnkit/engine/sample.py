"""`attnkit sample`: load a run directory and let its task do what the model does (continue, fill, draw).

    RUN/config.json (read once) → TrainConfig + model kwargs → Task.for_config → .load(run_dir) → .build_model
    → weights → task.sample

The same from Python (`attnkit.load_run`):
    run = attnkit.load_run("runs/demo")            # a Run: .model (eval mode), .task, .config, .tokenizer
    run.generate("The ", max_new_tokens=50)        # text models: the text `attnkit sample` prints, same seed
    run.predict(images)                            # classifiers: class probabilities (N, n_class)
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from rich.console import Console

from attnkit.engine.checkpoint import WEIGHTS, load_weights
from attnkit.config import MODEL_SAMPLE_FLAGS, SampleConfig, TrainConfig, field_types
from attnkit.engine.device import resolve_device
from attnkit.engine.render import ProgressBars, render
from attnkit.errors import UserError
from attnkit.engine.resolve import flag_name, resolve_config, split_saved, typed_options
from attnkit.engine.rundir import CONFIG, LATEST, read_saved_config, real_run_dir
from attnkit.zoo.report import Echo
from attnkit.zoo.tasks import get_task
from attnkit.zoo.tasks.base import Task


@dataclasses.dataclass
class Run:
    """A trained run, loaded: its task (data assets, tokenizer), its model in eval mode, its TrainConfig."""

    task: Task
    model: nn.Module
    config: TrainConfig
    run_dir: Path

    @property
    def tokenizer(self):
        """The run's tokenizer (text models), or None."""
        return getattr(self.task, "tokenizer", None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8, top_k: int | None = 200,
                 top_p: float | None = None, seed: int = 1337) -> str:
        """The prompt and its continuation, as `attnkit sample --prompt PROMPT --seed SEED` prints it."""
        tok = self.tokenizer
        if tok is None or not hasattr(self.model, "generate"):
            raise UserError(f"a {self.config.model} run does not continue text; use `attnkit sample --run "
                            f"{self.run_dir}`" + (" or run.predict" if self.config.model == "vit" else ""))
        ids = tok.encode(prompt)
        if not ids:
            raise UserError("the prompt is empty after tokenization; give it some text")
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)  # on CPU, as `attnkit sample` seeds it
        x = torch.tensor([ids], dtype=torch.long, device=self.device)  # (1, T)
        with torch.inference_mode():
            out = self.model.generate(x, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                      generator=generator)  # (1, T + max_new_tokens)
        return tok.decode(out[0].tolist())

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities for a batch of inputs (classifiers: vit takes uint8 images (N, S, S))."""
        with torch.inference_mode():
            return self.task.predict(self.model, inputs)


def read_run_config(run: str | Path) -> tuple[Path, dict[str, Any]]:
    """(run directory with links resolved, its config.json), or a UserError saying what is missing."""
    run_dir = real_run_dir(run)
    if not run_dir.is_dir():
        if Path(run).name == LATEST:
            raise UserError(f"run directory not found: {run} (no run trained yet; train one with `attnkit train`, "
                            f"or pass --run)")
        raise UserError(f"run directory not found: {run} (train one with `attnkit train --out {run}`)")
    if not (run_dir / CONFIG).is_file():
        raise UserError(f"{run} is not a run directory: no config.json (train one with `attnkit train`)")
    return run_dir, read_saved_config(run_dir)


def saved_task(saved: dict[str, Any]) -> tuple[type[Task], TrainConfig]:
    """(task class, TrainConfig) of a run's config.json, as read by read_run_config; the class is the one
    `Task.for_config` picks for the saved config (NPT's lookup experiment)."""
    task_cls = get_task(saved["task"])
    fields, options = split_saved(saved, task_cls)
    train_cfg = TrainConfig(**fields, options=options)
    if train_cfg.flavor is None:  # a run saved before flavors were recorded: the task's default one
        train_cfg = resolve_config(dataclasses.replace(train_cfg, model=task_cls.name))
    return task_cls.for_config(train_cfg), train_cfg


def run_task(run: str | Path) -> type[Task]:
    """The task class of a run directory's model, read from its config.json (nothing loaded)."""
    return saved_task(read_run_config(run)[1])[0]


def load_run(run: str | Path, device: str | torch.device = "cpu") -> Run:
    """A finished or checkpointed run directory, loaded: task, model in eval mode on `device`, TrainConfig."""
    return _load(run, *read_run_config(run), device)


def _load(run: str | Path, run_dir: Path, saved: dict[str, Any], device: str | torch.device) -> Run:
    """load_run on a config.json already read (`attnkit sample` reads it once); `run` as the user named it."""
    task_cls, train_cfg = saved_task(saved)
    task = task_cls.load(run_dir, train_cfg)
    model = task_cls.build_model(saved["model"])
    if not (run_dir / WEIGHTS).is_file():
        raise UserError(f"{run} has no {WEIGHTS} yet (training has not reached its first checkpoint)")
    load_weights(model, run_dir / WEIGHTS)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    return Run(task=task, model=model.to(device).eval(), config=train_cfg, run_dir=run_dir)


def resolve_sample_options(options: dict[str, Any], task_cls: type[Task]) -> dict[str, Any]:
    """`options` (from --opt and the model-specific flags) as the run's model's complete sample options.

    A model-specific flag the model does not read is an error naming the settings it does, an unknown
    `--opt` name one naming its sample options; values are typed and checked (Task.SampleOptions)."""
    types = field_types(task_cls.SampleOptions)
    unused = [f for f in MODEL_SAMPLE_FLAGS if f in options and f not in types]
    if unused:
        takes = ", ".join(flag_name(f) if f in MODEL_SAMPLE_FLAGS else f"--opt {f}=VALUE" for f in types)
        raise UserError(f"{flag_name(unused[0])} does not apply to a {task_cls.name} run; its model-specific "
                        f"sample settings: {takes or 'none of its own'}")
    typed = typed_options(options, types, "--opt {}", task_cls, kind="sample option")
    return dataclasses.asdict(task_cls.SampleOptions(**typed))


def run_sampling(cfg: SampleConfig, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    if cfg.max_new_tokens < 0:
        raise UserError(f"--max-new-tokens must not be negative, got {cfg.max_new_tokens}")
    if cfg.num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {cfg.num_samples}")
    if cfg.temperature < 0:
        raise UserError(f"--temperature must not be negative, got {cfg.temperature}")
    run_dir, saved = read_run_config(cfg.run)  # once: the options are checked before the run loads
    cfg = dataclasses.replace(cfg, options=resolve_sample_options(cfg.options, saved_task(saved)[0]))
    run = _load(cfg.run, run_dir, saved, cfg.device)
    torch.manual_seed(cfg.seed)
    with torch.inference_mode():
        with ProgressBars(console) as run.task.progress:
            report = run.task.sample(run.model, cfg, _echo_to(console))
    render(report, console)
    return report.metrics


def _echo_to(console: Console) -> Echo:
    def echo(text: str) -> None:  # streamed text goes out as is, flushed, without Rich markup or wrapping
        console.file.write(text)
        console.file.flush()
    return echo
