"""The contract between the generic trainer/sampler and one model family.

A Task owns a model family's data, loss, metrics and sampler; `attnkit.engine.trainer` owns the loop (optimizer,
schedule, checkpoints, progress, metrics files) and `attnkit.engine.sample` owns loading a run. So adding a model
to the zoo means writing a model file (`attnkit/zoo/models/NAME.py`, pure nn.Module) and a task
(`attnkit/zoo/tasks/NAME.py`), and adding one line to `attnkit.zoo.tasks.TASKS`.

Lifecycle in `attnkit train`:
    cfg   = resolve_config(cfg)             # flags > TOML > saved run > flavor > defaults; options validated
    Task  = get_task(cfg.model).for_config(cfg)   # the concrete class (NPT's lookup experiment is its own)
    task  = Task(cfg)                       # task.opts = Task.Options(**cfg.options)
    shown = task.prepare(run_dir)           # load/generate data, fit tokenizer; write assets to run_dir
                                            # (a staging directory: write nothing outside it); an optional
                                            # Report about the data, rendered before the first step
    model = Task.build_model(task.model_config())
    loop: batch = task.get_batch("train", batch_size, generator); loss = task.loss(model, batch)
    every eval_interval: task.evaluate(model, "val", n) -> {"val_loss": ..., ...}
    end:  report = task.report(model, run_dir)          # a Report: final metrics, tables beside baselines, plots
Lifecycle in `attnkit sample`:
    Task = get_task(saved task).for_config(train_cfg)   # from RUN/config.json, read once
    task = Task.load(run_dir, train_cfg); model = Task.build_model(saved model config)
    report = task.sample(model, sample_cfg, echo)        # echo(text) streams generated text as it comes;
                                                         # task.sample_options(sample_cfg): its typed options

Tasks return results as data (attnkit.zoo.report.Report: metrics, tables, lines, files) and never print; the
engine renders them (attnkit.engine.render), writes summary.json, and owns the model's mode: `report` runs in
eval mode under no_grad, `sample` in eval mode under inference_mode. A report that trains something (BERT's
fine-tune) enables gradients and switches its own copy with `attnkit.nn.modes.mode`.

Optional hooks (defaults below; override only if needed):
    task.batch_tokens(batch) -> int          tokens in a batch, for tokens/s (default: numel of its first tensor)
    task.optimizer_options() -> dict         e.g. {"optimizer": "muon", ...} for attnkit.engine.optim (default: AdamW)
    task.on_step(step) -> None               called before each optimizer step (e.g. GPT's window warmup)
    Task.for_config(cfg) -> type[Task]       the class for a resolved config (default: the class itself)

Trainer notes (attnkit.engine.trainer): `loss` receives the model wrapped by DDP/torch.compile when those are on,
so call it as `model(...)`; `evaluate` gets the plain (under --fsdp: sharded) model on every rank, `report`
the plain model on rank 0. `get_batch` returns tensors with the batch first (ranks take slices of one
global batch). Fields neither user nor flavor set get attnkit.engine.resolve.TRAINER_DEFAULTS; block_size,
dropout, label_smoothing and data stay None unless the flavor sets them. A flavor is a `Flavor`: model kwargs,
trainer defaults, option defaults (`Flavor(model=..., options=dict(folds=2))`) and, for settings the user does not
choose (ICL's curriculum, NPT's masking objective), `fixed`: a small dataclass of the task's own.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
import torch.nn as nn

from attnkit.config import MODES, SampleConfig, TrainConfig
from attnkit.errors import UserError
from attnkit.zoo.report import Echo, Progress, Report
from attnkit.zoo.tasks.sample_options import NoSampleOptions


class RunCheckpoints(Protocol):
    """The run directory's step checkpoints, as the engine hands them to a task (the zoo never imports the engine)."""

    def steps(self) -> list[int]:
        """Steps of the kept step checkpoints, oldest first."""

    def load_average(self, model: nn.Module, steps: list[int]) -> None:
        """Load the element-wise mean of those steps' weights into model."""


_TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig)) - {"options", *MODES}


@dataclasses.dataclass(frozen=True)
class Flavor:
    """A size preset of a model: what `--flavor NAME` sets, below flags, the TOML file and a resumed run."""

    model: dict[str, Any]                                      # kwargs of the model's config (build_model)
    train: dict[str, Any] = dataclasses.field(default_factory=dict)    # TrainConfig field defaults
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # Task.Options field defaults
    fixed: Any = None  # the task's own settings the user does not choose (a dataclass of the task), or None

    def __post_init__(self):
        # A misspelt trainer field would be silently ignored; options are checked by the resolver (it knows Options).
        unknown = sorted(set(self.train) - _TRAIN_FIELDS)
        if unknown:
            raise TypeError(f"flavor train defaults name no TrainConfig field: {', '.join(unknown)}")

    def fixed_settings(self) -> dict[str, Any]:
        """`fixed` as flat name -> value pairs, nested dataclasses as dotted names (ICL's curriculum.interval),
        for `--list-options`; {} when the flavor fixes nothing."""
        return _flat(self.fixed) if self.fixed is not None else {}


def _flat(settings: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_flat(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = value
    return out


@dataclasses.dataclass
class NoOptions:
    """A model with no options of its own."""


class Task:
    name: ClassVar[str] = ""
    # The model's own options (e.g. music's `position`), a dataclass whose fields have defaults and
    # `metadata={"help": ...}`. The task reads them as `self.opts`; `TrainConfig` holds only trainer fields.
    Options: ClassVar[type] = NoOptions
    # flavor name -> Flavor. Must include "debug".
    flavors: ClassVar[dict[str, Flavor]] = {}
    default_flavor: ClassVar[str] = "small"
    # What `sample` takes beyond SampleConfig's generic fields (attnkit.zoo.tasks.sample_options): `attnkit
    # sample --opt name=value` or the flag of that name; the engine refuses the others rather than ignore them.
    SampleOptions: ClassVar[type] = NoSampleOptions
    # Set by the engine, which knows the run directory: on --resume, the run being resumed and the step it
    # continues from (before `prepare`, whose run_dir is a fresh staging directory); the run's step
    # checkpoints (before `report`).
    resume_dir: Path | None = None
    resume_step: int = 0
    checkpoints: RunCheckpoints | None = None
    # Set by the engine around prepare/report/sample: progress(what, done, total) draws a bar. None: no bars.
    progress: Progress | None = None

    def __init__(self, cfg: TrainConfig, opts=None):
        self.cfg = cfg
        self.opts = opts if opts is not None else self.Options(**cfg.options)

    # ---- configuration -------------------------------------------------------------------
    @property
    def flavor(self) -> Flavor:
        """The run's flavor. A loaded run whose flavor no longer exists (or was saved before flavors were
        recorded) gets the default one; `attnkit train` refuses an unknown flavor before a task exists."""
        return self.flavors.get(self.cfg.flavor, self.flavors[self.default_flavor])

    @classmethod
    def for_config(cls, cfg: TrainConfig) -> type["Task"]:
        """The class that runs this resolved config. One model name may cover experiments different enough to
        be classes of their own (NPT's lookup experiment): the engine asks here, so `--model` names, saved run
        configs and `attnkit.load_run` keep one name per model."""
        return cls

    @classmethod
    def default_flavor_for(cls, options: dict[str, Any], data: str | None) -> str:
        """The flavor when the user names none; a task may pick one that fits the options (NPT's lookup)."""
        return cls.default_flavor

    def model_config(self) -> dict[str, Any]:
        """JSON-able kwargs for build_model: the flavor's model kwargs, with `--dropout` overriding the flavor's.

        Tasks extend this (`dict(super().model_config(), vocab_size=...)`) with data-derived sizes.
        """
        cfg = dict(self.flavor.model)
        if self.cfg.dropout is not None:
            cfg["dropout"] = self.cfg.dropout
        return cfg

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    # ---- training ------------------------------------------------------------------------
    def prepare(self, run_dir: Path) -> Report | None:
        """Load or generate the data; write whatever sampling needs (tokenizer, vocab) into run_dir.

        May return a Report about the data (DT's offline-dataset table): the engine renders it once the run
        directory is in place, before the first step, and adds its metrics to summary.json. run_dir is a
        staging directory, so paths a Report names belong under cfg.out, where the files will be."""
        raise NotImplementedError

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A batch on CPU; the trainer moves tensors to the device. Deterministic given the generator (and
        `data_state`, for a task whose batches carry something over, such as GPT's packed documents)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def shown_settings(self) -> dict[str, str]:
        """Settings as the run really uses them, shown in place of the config's values on the trainer's
        `config:` line (BERT's default tokenizer "char" means a sentencepiece model trained on the corpus)."""
        return {}

    def optimizer_options(self) -> dict[str, Any]:
        """Keyword arguments for `attnkit.engine.optim.make_optimizer` (e.g. {"optimizer": "muon"}); default AdamW."""
        return {}

    def on_step(self, step: int) -> None:
        """Called before each optimizer step, for schedules of the task's own (GPT's window warmup)."""

    def data_state(self) -> dict[str, Any]:
        """What the training batches carry over from one to the next, beyond the generator, as {attribute: its
        state_dict()} (GPT's packer: its pool of drawn documents): saved in each checkpoint, restored on --resume
        by `load_data_state`."""
        return {}

    def load_data_state(self, state: dict[str, Any]) -> None:
        """Restore `data_state()` (after `prepare`, before a resumed run's first batch)."""
        for name, saved in state.items():
            getattr(self, name).load_state_dict(saved)

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """Tokens (or pixels, rows...) in a batch, for the tokens/s the trainer reports."""
        return next(iter(batch.values())).numel()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, batches: int, device: torch.device) -> dict[str, float]:
        """Mean loss over `batches` fixed batches of `split`; returns {f"{split}_loss": ...}."""
        g = torch.Generator().manual_seed(1234)
        losses = []
        for _ in range(batches):
            batch = {k: v.to(device) for k, v in self.get_batch(split, self.cfg.batch_size, g).items()}
            losses.append(self.loss(model, batch).item())
        return {f"{split}_loss": sum(losses) / max(len(losses), 1)}

    def report(self, model: nn.Module, run_dir: Path) -> Report:
        """Final results after training (e.g. accuracy beside baselines); its metrics go into summary.json."""
        return Report()

    # ---- sampling ------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: Path, cfg: TrainConfig) -> "Task":
        """A task ready to sample, reading the assets `prepare` wrote; must not re-read training data."""
        return cls(cfg)

    def predict(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Classifiers: class probabilities for a batch of inputs (`attnkit.load_run(...).predict`)."""
        raise UserError(f"the {self.name} model does not classify; `attnkit sample` shows what it does")

    def sample_options(self, cfg: SampleConfig) -> Any:
        """cfg.options as this model's SampleOptions (`attnkit sample` has checked and typed them)."""
        return self.SampleOptions(**cfg.options)

    def sample(self, model: nn.Module, cfg: SampleConfig, echo: Echo) -> Report:
        """Do what the model naturally does (continue text, fill a mask, translate, draw), as a Report."""
        raise NotImplementedError
