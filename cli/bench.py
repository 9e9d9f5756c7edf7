"""`attnkit bench-kernels`: side-by-side kernel benchmarks; the work lives in `attnkit.bench`."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

Opt = typer.Option


def bench_kernels(
    device: Annotated[str, Opt(help="auto, cpu or cuda.")] = "auto",
    op: Annotated[Optional[list[str]], Opt(help="Ops to run (repeatable); default: all.")] = None,
    provider: Annotated[Optional[list[str]], Opt(help="Providers to run (repeatable); default: all available.")] = None,
    dtype: Annotated[Optional[str], Opt(help="float32, float16 or bfloat16.")] = None,
    lengths: Annotated[Optional[str], Opt(help="Comma-separated sequence lengths.")] = None,
    head_dim: Annotated[Optional[int], Opt(help="Head dimension.")] = None,
    mode: Annotated[str, Opt(help="fwd, bwd or fwd+bwd.")] = "fwd",
    quick: Annotated[bool, Opt("--quick", help="A few small shapes (about a minute on 2 CPU cores).")] = False,
    json: Annotated[Optional[str], Opt("--json", help="Write records as JSON.")] = None,
    csv: Annotated[Optional[str], Opt("--csv", help="Write records as CSV.")] = None,
    plot: Annotated[Optional[str], Opt("--plot", help="Write a PNG of TFLOPS against length.")] = None,
) -> None:
    """Time attnkit's kernels beside torch SDPA, FlexAttention, flash-attn and the naive reference."""
    from attnkit.bench import BenchConfig, run_bench

    run_bench(BenchConfig(**locals()))
