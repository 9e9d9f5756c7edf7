"""`attnkit average`: average a run's last step checkpoints; the work lives in `attnkit.engine.checkpoint`."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

Opt = typer.Option


def average(
    run: Annotated[str, Opt(help="Run directory trained with --keep-last N (default: the newest run).")] = "runs/latest",
    last: Annotated[int, Opt(help="How many of the newest step checkpoints to average.")] = 5,
    out: Annotated[Optional[str], Opt(help="Output weights file (default: RUN/model.safetensors, which sample loads).")] = None,
) -> None:
    """Average the weights of the last N step checkpoints (Vaswani et al. 2017) for sampling/evaluation."""
    from attnkit.engine.checkpoint import run_average

    run_average(run=run, last=last, out=out)
