"""`attnkit train`: flags map 1:1 onto `attnkit.config.TrainConfig`; the loop lives in `attnkit.engine.trainer`.

Model options are `--opt name=value` (repeatable) rather than one flag per option: each model declares
its own (`Task.Options`), so a new model brings options without a new flag here. `--list-options` shows them.
"""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from attnkit.zoo.tasks import TASKS  # the registry only: tasks import lazily

from attnkit.config import TrainConfig
from attnkit.errors import UserError

Opt = typer.Option


def parse_opts(pairs: list[str]) -> dict[str, str]:
    """["position=rotary", ...] -> {"position": "rotary"}; values are typed later against the model's Options
    (`attnkit sample --opt` against its SampleOptions)."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--opt takes name=value, got {pair!r} (see --list-options)")
        out[name.strip()] = value
    return out


def train(
    model: Annotated[Optional[str], Opt(help=f"Model family: {', '.join(TASKS)} (default gpt).")] = None,
    flavor: Annotated[Optional[str], Opt(help="Size preset of the model; every model has 'debug'.")] = None,
    opt: Annotated[Optional[list[str]], Opt("--opt", help="A model option, name=value (repeatable); see --list-options.")] = None,
    list_options: Annotated[bool, Opt("--list-options", help="Print the model's options and its flavors (what each sets and fixes), and exit.")] = False,
    data: Annotated[Optional[str], Opt(help="Dataset path or name; default: the model's embedded data.")] = None,
    tokenizer: Annotated[Optional[str], Opt(help="'char' or a sentencepiece .model file (text models).")] = None,
    out: Annotated[Optional[str], Opt(help="Run directory (default runs/MODEL; runs/latest links to the newest).")] = None,
    resume: Annotated[bool, Opt("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[bool, Opt("--overwrite", help="Replace the run in --out (refused otherwise).")] = False,
    max_steps: Annotated[Optional[int], Opt(help="Optimizer steps.")] = None,
    batch_size: Annotated[Optional[int], Opt(help="Examples per step per process.")] = None,
    block_size: Annotated[Optional[int], Opt(help="Context length.")] = None,
    lr: Annotated[Optional[float], Opt(help="Peak learning rate.")] = None,
    min_lr: Annotated[Optional[float], Opt(help="Floor of the cosine decay (default lr/10).")] = None,
    warmup_steps: Annotated[Optional[int], Opt(help="Linear warmup steps.")] = None,
    weight_decay: Annotated[Optional[float], Opt(help="AdamW weight decay on matrices.")] = None,
    grad_clip: Annotated[Optional[float], Opt(help="Max gradient norm; 0 disables.")] = None,
    grad_accum: Annotated[Optional[int], Opt(help="Micro-batches per optimizer step.")] = None,
    schedule: Annotated[Optional[str], Opt(help="cosine, noam (inverse square root), constant or trapezoid (warmup, flat, linear cooldown).")] = None,
    beta2: Annotated[Optional[float], Opt(help="Adam beta2.")] = None,
    label_smoothing: Annotated[Optional[float], Opt(help="Label smoothing of the cross-entropy.")] = None,
    keep_last: Annotated[Optional[int], Opt(help="Also keep the last N step checkpoints.")] = None,
    ema_decay: Annotated[Optional[float], Opt(help="Keep a moving average of the weights with this decay (e.g. 0.999; 0 = off); evaluation and the saved model use it.")] = None,
    dropout: Annotated[Optional[float], Opt(help="Dropout probability.")] = None,
    seed: Annotated[Optional[int], Opt(help="Random seed.")] = None,
    device: Annotated[Optional[str], Opt(help="auto, cpu or cuda.")] = None,
    dtype: Annotated[Optional[str], Opt(help="auto, float32, bfloat16 or float16.")] = None,
    compile: Annotated[Optional[bool], Opt("--compile/--no-compile", help="torch.compile the model.")] = None,
    fsdp: Annotated[Optional[bool], Opt("--fsdp/--no-fsdp", help="Under torchrun: shard with FSDP2 instead of DDP.")] = None,
    eval_interval: Annotated[Optional[int], Opt(help="Steps between evals and checkpoints.")] = None,
    eval_batches: Annotated[Optional[int], Opt(help="Batches per eval.")] = None,
    config: Annotated[Optional[str], Opt(help="TOML file: a \\[train] table and an \\[options] table; flags override it.")] = None,
) -> None:
    """Train a model and write checkpoints, metrics.jsonl, loss.png and summary.json to the run directory."""
    flags = {k: v for k, v in locals().items() if k not in ("config", "opt", "list_options")}  # before imports
    if list_options:
        print_options(model or "gpt")
        return
    from attnkit.engine.trainer import run_training

    run_training(TrainConfig(**flags, options=parse_opts(opt or [])), config_file=config)


def options_table(options_cls: type, title: str, empty: str):
    """A Rich table of an options dataclass's fields (name, type, default, help); `empty` captions one without."""
    from rich.markup import escape
    from rich.table import Table

    from attnkit.engine.resolve import option_rows

    rows = option_rows(options_cls)
    table = Table(title=escape(title))
    for col in ("name", "type", "default", "help"):
        table.add_column(col)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    if not rows:
        table.caption = empty
    return table


def print_options(model: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from attnkit.zoo.tasks import get_task

    task_cls = get_task(model)
    console = Console()
    console.print(options_table(task_cls.Options, f"{model} options: --opt NAME=VALUE, or [options] in --config",
                                f"{model} has no options of its own"))
    flavors = Table(title=escape(f"{model} flavors: --flavor NAME (default {task_cls.default_flavor})"))
    # One line per part, so a long setting wraps between words on a narrow terminal instead of being cut.
    # "fixed": what the flavor pins that no flag or option changes (NPT's masking objective, ICL's curriculum).
    for col in ("flavor", "sets", "settings"):
        flavors.add_column(col)
    for flavor, preset in task_cls.flavors.items():
        parts = {"model": _settings(preset.model), "training": _settings(preset.train),
                 "options": _settings(preset.options), "fixed": _settings(preset.fixed_settings())}
        rows = [(part, text) for part, text in parts.items() if text] or [("model", "")]
        for i, (part, text) in enumerate(rows):
            flavors.add_row(flavor if i == 0 else "", part, escape(text), end_section=i == len(rows) - 1)
    console.print(flavors)


def _settings(values: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())

