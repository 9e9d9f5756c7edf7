"""`attnkit bench-kernels`: side-by-side kernel benchmarks; the work lives in `attnkit.bench`."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

Opt = typer.Option


def bench_kernels(
    device: Annotated[str, Opt(help="auto, cpu or cuda.")] = "auto",
    op: Annotated[Optional[list[str]], Opt(help="Ops (repeatable or comma list): causal, full, window, padding, "
                                                "bias, rel, t5, alibi. Default: all.")] = None,
    provider: Annotated[Optional[list[str]], Opt(help="Providers (repeatable or comma list): attnkit-triton, "
                                                      "attnkit-torch, sdpa, sdpa-math, sdpa-flash, sdpa-efficient, "
                                                      "sdpa-cudnn, flex, flash-attn, naive, skewing, bias+sdpa. "
                                                      "Default: all.")] = None,
    dtype: Annotated[Optional[str], Opt(help="Comma list of float32, float16, bfloat16 "
                                             "(default float16 on CUDA, float32 on CPU).")] = None,
    lengths: Annotated[Optional[str], Opt(help="Comma-separated sequence lengths.")] = None,
    head_dim: Annotated[Optional[str], Opt(help="Comma-separated head dims (default 64,128 on CUDA, 64 on CPU).")] = None,
    mode: Annotated[str, Opt(help="Comma list of fwd, bwd, fwd+bwd.")] = "fwd",
    hidden: Annotated[Optional[int], Opt(help="H = hidden / D (default 2048 on CUDA, 512 on CPU).")] = None,
    tokens: Annotated[Optional[int], Opt(help="B = tokens / L (default 16384 on CUDA, 4096 on CPU).")] = None,
    baseline: Annotated[str, Opt(help="Provider the ratio column divides by (rel/t5/alibi: bias+sdpa).")] = "sdpa",
    memory: Annotated[Optional[bool], Opt("--memory/--no-memory",
                                          help="Peak memory (default: on, except --quick on CPU).")] = None,
    metric: Annotated[str, Opt(help="Plot y axis: tflops or ms.")] = "tflops",
    min_time: Annotated[Optional[float], Opt(help="CPU: seconds of timing per measurement.")] = None,
    quick: Annotated[bool, Opt("--quick", help="A few small shapes (about a minute on 2 CPU cores).")] = False,
    json: Annotated[Optional[str], Opt("--json", help="Write records as JSON.")] = None,
    csv: Annotated[Optional[str], Opt("--csv", help="Write records as CSV.")] = None,
    plot: Annotated[Optional[str], Opt("--plot", help="Write a PNG of the metric against length.")] = None,
    markdown: Annotated[Optional[str], Opt("--markdown", help="Write the tables as GitHub markdown.")] = None,
) -> None:
    """Time attnkit's kernels beside torch SDPA, FlexAttention, flash-attn and the naive reference."""
    flags = dict(locals())  # every flag is a BenchConfig field of the same name
    from attnkit.bench import BenchConfig, run_bench

    run_bench(BenchConfig(**flags))
