"""`attnkit bench-kernels`: attnkit's kernels timed beside torch SDPA (each backend), FlexAttention,
flash-attn and the naive and skewing references, with every result checked against the float64 definition
before it is timed.

    cases.py      the ops, their inputs, float64 references and FLOP formula
    providers.py  the implementations compared, with availability and support per op
    measure.py    correctness check, timing, peak memory (CPU: a worker subprocess)
    runner.py     BenchConfig, the sweep, run_bench (the CLI job)
    report.py     rich tables, JSON, CSV, PNG plot
"""
from attnkit.bench.cases import MODES, OPS
from attnkit.bench.providers import PROVIDERS, Provider, register
from attnkit.bench.runner import BenchConfig, Record, run_bench, run_records

__all__ = ["BenchConfig", "Record", "run_bench", "run_records", "PROVIDERS", "Provider", "register", "OPS", "MODES"]
