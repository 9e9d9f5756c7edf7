"""One dataclass per CLI job. CLI flags map 1:1 onto these fields; library code reads only these.

A foundation module (it imports only attnkit.errors): the zoo's tasks read these configs and the engine
resolves and saves them, so it sits below both.

`TrainConfig` holds what the trainer itself uses; a model's own options (music's `position`, NPT's `folds`)
live in `TrainConfig.options`, declared by the task as `Task.Options`. A field left `None` is decided by
`attnkit.engine.resolve.resolve_config` (flags > --config TOML > saved config on --resume > flavor > TRAINER_DEFAULTS),
the one place defaults are decided; every field is set once it has been resolved.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from attnkit.errors import UserError


@dataclass
class TrainConfig:
    model: str | None = None           # task name: gpt, bert, encdec, music, vit, image, npt
    flavor: str | None = None          # size preset of that model (None = its default); all have "debug"
    data: str | None = None            # dataset path or name; None = the model's embedded default
    tokenizer: str | None = None       # "char" or a sentencepiece .model file (text models)
    out: str | None = None             # run directory; None = runs/MODEL
    max_steps: int | None = None       # optimizer steps
    batch_size: int | None = None      # sequences (or images, rows) per optimizer step per process
    block_size: int | None = None      # context length
    lr: float | None = None            # peak learning rate
    min_lr: float | None = None        # floor of the cosine decay; None = lr / 10
    warmup_steps: int | None = None    # linear warmup steps
    weight_decay: float | None = None  # AdamW decay on matrices only
    grad_clip: float | None = None     # max global grad norm; 0 disables
    grad_accum: int | None = None      # micro-batches per optimizer step
    schedule: str | None = None        # cosine (linear warmup, cosine decay) | noam | constant | trapezoid
    beta2: float | None = None         # Adam beta2 (0.95 for GPT-style, 0.98 for the 2017 Transformer)
    label_smoothing: float | None = None
    keep_last: int | None = None       # also keep the last N step checkpoints (for checkpoint averaging)
    ema_decay: float | None = None     # moving average of the weights, e.g. 0.999; 0 = off. When on, it is
                                       # what evaluation, the final report and RUN/model.safetensors use
    dropout: float | None = None
    seed: int | None = None
    device: str | None = None          # auto | cpu | cuda
    dtype: str | None = None           # auto | float32 | bfloat16 | float16 (autocast on CUDA)
    compile: bool | None = None        # torch.compile the model
    fsdp: bool | None = None           # shard parameters with FSDP2 under torchrun (else DDP)
    eval_interval: int | None = None   # steps between evals and checkpoints
    eval_batches: int | None = None    # batches per eval
    options: dict = field(default_factory=dict)  # the model's own options (Task.Options fields)
    # What to do with an existing run directory; never saved, never inherited from a saved run.
    resume: bool = False               # continue from the run directory's checkpoint
    overwrite: bool = False            # replace the run directory's run


# Fields that say what to do with the run directory rather than how to train.
MODES = ("resume", "overwrite")


@dataclass
class SampleConfig:
    """What every model's `sample` reads; a model's own settings (--prompt, --beam, ...) are `options`, its
    `Task.SampleOptions` fields."""
    run: str = "runs/latest"           # run directory written by `attnkit train` (runs/latest: the newest)
    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int | None = 200
    num_samples: int = 1
    seed: int = 1337
    device: str = "auto"
    out: str | None = None             # where to write files (MIDI, PNG); default: the run directory
    stream: bool = True                # print tokens as they are generated
    options: dict = field(default_factory=dict)  # the model's sample options: --opt name=value, or their flags


# `attnkit sample` flags that set the model's sample option of the same name (`--opt name=value` sets any).
MODEL_SAMPLE_FLAGS = ("prompt", "beam", "label", "top_p", "target_return", "audio", "say", "voice", "attention_png")


# ---- typed values ----------------------------------------------------------------------------
_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a table",
               list: "a list"}
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def field_types(cls: type) -> dict[str, tuple[type, bool]]:
    """name -> (base type, accepts None) for the fields of dataclass `cls` (annotations may be strings)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        args = typing.get_args(t)
        optional = type(None) in args
        if typing.get_origin(t) in (typing.Union, types.UnionType):
            t = next(a for a in args if a is not type(None))
        out[f.name] = (typing.get_origin(t) or t, optional)
    return out


def coerce(value: Any, kind: type, optional: bool, where: str) -> Any:
    """`value` as `kind`, or a UserError naming `where`. Strings (from `--opt name=value`) are parsed."""
    if value is None and optional:
        return None
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        if optional and text.lower() in ("none", ""):
            return None
        if kind is list:  # `--opt audio=a.wav`: a list of one
            return [value]
        try:
            if kind is bool:
                if text.lower() not in _TRUE | _FALSE:
                    raise ValueError
                return text.lower() in _TRUE
            if kind in (int, float):
                return kind(text)
        except ValueError:
            pass
    elif kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    elif isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise UserError(f"{where} must be {_TYPE_WORDS.get(kind, kind.__name__)}, got {value!r}")
