"""`attnkit train`: flags map 1:1 onto `attnkit.config.TrainConfig`; the loop lives in `attnkit.train`."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from attnkit.config import TrainConfig

Opt = typer.Option


def train(
    model: Annotated[str, Opt(help="Model family: gpt, bert, encdec, music, vit, image, npt.")] = "gpt",
    flavor: Annotated[Optional[str], Opt(help="Size preset of the model; every model has 'debug'.")] = None,
    data: Annotated[Optional[str], Opt(help="Dataset path or name; default: the model's embedded data.")] = None,
    tokenizer: Annotated[str, Opt(help="'char' or a sentencepiece .model file (text models).")] = "char",
    out: Annotated[Optional[str], Opt(help="Run directory (checkpoints, metrics, plots).")] = None,
    max_steps: Annotated[Optional[int], Opt(help="Optimizer steps.")] = None,
    batch_size: Annotated[Optional[int], Opt(help="Examples per step per process.")] = None,
    block_size: Annotated[Optional[int], Opt(help="Context length.")] = None,
    lr: Annotated[Optional[float], Opt(help="Peak learning rate.")] = None,
    min_lr: Annotated[Optional[float], Opt(help="Floor of the cosine decay (default lr/10).")] = None,
    warmup_steps: Annotated[Optional[int], Opt(help="Linear warmup steps.")] = None,
    weight_decay: Annotated[Optional[float], Opt(help="AdamW weight decay on matrices.")] = None,
    grad_clip: Annotated[Optional[float], Opt(help="Max gradient norm; 0 disables.")] = None,
    grad_accum: Annotated[Optional[int], Opt(help="Micro-batches per optimizer step.")] = None,
    schedule: Annotated[Optional[str], Opt(help="cosine or noam (inverse square root).")] = None,
    beta2: Annotated[Optional[float], Opt(help="Adam beta2.")] = None,
    label_smoothing: Annotated[Optional[float], Opt(help="Label smoothing of the cross-entropy.")] = None,
    keep_last: Annotated[Optional[int], Opt(help="Also keep the last N step checkpoints.")] = None,
    dropout: Annotated[Optional[float], Opt(help="Dropout probability.")] = None,
    seed: Annotated[Optional[int], Opt(help="Random seed.")] = None,
    device: Annotated[Optional[str], Opt(help="auto, cpu or cuda.")] = None,
    dtype: Annotated[Optional[str], Opt(help="auto, float32, bfloat16 or float16.")] = None,
    compile: Annotated[Optional[bool], Opt("--compile/--no-compile", help="torch.compile the model.")] = None,
    eval_interval: Annotated[Optional[int], Opt(help="Steps between evals and checkpoints.")] = None,
    eval_batches: Annotated[Optional[int], Opt(help="Batches per eval.")] = None,
    resume: Annotated[Optional[bool], Opt("--resume/--no-resume", help="Continue from the run's checkpoint.")] = None,
    position: Annotated[Optional[str], Opt(help="Positional scheme (model-specific).")] = None,
    attention: Annotated[Optional[str], Opt(help="Attention pattern (model-specific).")] = None,
    target: Annotated[Optional[str], Opt(help="Target column (tabular data).")] = None,
    folds: Annotated[Optional[int], Opt(help="Cross-validation splits (tabular data).")] = None,
    probe: Annotated[Optional[str], Opt(help="NPT probe: corruption or lookup.")] = None,
    target_shift: Annotated[Optional[float], Opt(help="NPT lookup probe: shift of duplicated targets.")] = None,
    column_types: Annotated[Optional[str], Opt(help="Tabular: override detected column kinds, 'a=categorical,b=numeric'.")] = None,
    config: Annotated[Optional[str], Opt(help="TOML file of these options; flags override it.")] = None,
) -> None:
    """Train a model and write checkpoints, metrics.jsonl, loss.png and summary.json to the run directory."""
    flags = {k: v for k, v in locals().items() if k != "config" and v is not None}  # before any import
    from attnkit.train import run_training

    cfg = TrainConfig.from_toml(config, **flags) if config else TrainConfig(**flags)
    if cfg.out == TrainConfig.out:
        cfg.out = f"runs/{cfg.model}"
    run_training(cfg)
