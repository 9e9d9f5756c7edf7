"""One dataclass per CLI job. CLI flags map 1:1 onto these fields; library code reads only these.

`None` in a TrainConfig field means "the task's flavor decides" (see `Task.flavors`), so
`attnkit train --model music` gets sensible music defaults without the CLI knowing about music.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path


@dataclass
class TrainConfig:
    model: str = "gpt"                 # task name: gpt, bert, encdec, music, vit, image, npt
    flavor: str | None = None          # size preset of that model (None = its default); all have "debug"
    data: str | None = None            # dataset path or name; None = the model's embedded default
    tokenizer: str = "char"            # "char" or a sentencepiece .model file (text models)
    out: str = "runs/latest"           # run directory: checkpoints, metrics, plots, summary
    max_steps: int | None = None       # optimizer steps
    batch_size: int | None = None      # sequences (or images, rows) per optimizer step per process
    block_size: int | None = None      # context length
    lr: float | None = None            # peak learning rate
    min_lr: float | None = None        # floor of the cosine decay; None = lr / 10
    warmup_steps: int | None = None    # linear warmup steps
    weight_decay: float | None = None  # AdamW decay on matrices only; None = the flavor's, else 0.1
    grad_clip: float = 1.0             # max global grad norm; 0 disables
    grad_accum: int = 1                # micro-batches per optimizer step
    schedule: str | None = None        # cosine (linear warmup, cosine decay) | noam (inverse square root)
    beta2: float | None = None         # Adam beta2 (0.95 for GPT-style, 0.98 for the 2017 Transformer)
    label_smoothing: float | None = None
    keep_last: int | None = None       # also keep the last N step checkpoints (for checkpoint averaging)
    dropout: float | None = None
    seed: int = 1337
    device: str = "auto"               # auto | cpu | cuda
    dtype: str = "auto"                # auto | float32 | bfloat16 | float16 (autocast on CUDA)
    compile: bool = False              # torch.compile the model
    eval_interval: int | None = None   # steps between evals and checkpoints
    eval_batches: int | None = None    # batches per eval
    resume: bool = False               # continue from the run directory's checkpoint
    # Model-specific options (ignored by models that do not use them).
    position: str | None = None        # positional scheme, e.g. absolute | relative | both | rotary
    attention: str | None = None       # attention pattern, e.g. full | local1d | local2d
    target: str | None = None          # target column for tabular data
    folds: int | None = None           # cross-validation splits (tabular)
    probe: str | None = None           # NPT probe: corruption | lookup
    target_shift: float | None = None  # NPT lookup probe: shift added to the duplicated rows' targets
    column_types: str | None = None    # tabular: override detected column kinds, "a=categorical,b=numeric"

    @classmethod
    def from_toml(cls, path: str | Path, **overrides) -> "TrainConfig":
        """Read a [train] table (or a flat TOML file); keyword overrides that are not None win."""
        with open(path, "rb") as f:
            raw = tomllib.load(f)
        raw = raw.get("train", raw)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"config file {path}: unknown keys {unknown}")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**raw)


@dataclass
class SampleConfig:
    run: str = "runs/latest"           # run directory written by `attnkit train`
    prompt: str | None = None          # text to continue / fill / translate
    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int | None = 200
    top_p: float | None = None
    num_samples: int = 1
    seed: int = 1337
    device: str = "auto"
    beam: int = 1                      # beam size (encoder-decoder)
    label: int | None = None           # class to condition on (image)
    out: str | None = None             # where to write files (MIDI, PNG); default: the run directory
    attention_png: bool = False        # also write an attention heatmap
    stream: bool = True                # print tokens as they are generated
    extra: dict = field(default_factory=dict)
