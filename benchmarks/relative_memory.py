"""CPU time and peak memory of relative-position attention, forward + backward: attnkit's torch path
(`attnkit.relative_attention(backend="auto")`, chunked, never more than 256 × L logits per head) against the
Music Transformer's skewing procedure (`relative_attention_skewed`, which builds several B×H×L×L tensors).

Each (provider, L) runs in its own subprocess, so its peak resident set size (ru_maxrss) is its own; the table
shows the peak RSS and the peak above the process's RSS just before the first call (torch and the inputs
already loaded), median wall time over --repeats runs after one warm-up, and the ratios.

    python benchmarks/relative_memory.py                       # L = 1024, 2048, 4096; B=1, H=8, D=64, causal, R = L
    python benchmarks/relative_memory.py --lengths 1024 --repeats 2
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

PROVIDERS = ("attnkit", "skewing")


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def worker(provider: str, L: int, batch: int, heads: int, dim: int, repeats: int, threads: int) -> dict:
    """Runs in the child: forward + backward `repeats + 1` times, reports median time and peak RSS."""
    import torch

    import attnkit
    from attnkit.kernels.reference import relative_attention_skewed

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    q, k, v = (torch.randn(batch, heads, L, dim, requires_grad=True) for _ in range(3))
    rel = (torch.randn(heads, L, dim) * 0.1).requires_grad_()
    fn = ((lambda: attnkit.relative_attention(q, k, v, rel, causal=True, backend="auto")) if provider == "attnkit"
          else (lambda: relative_attention_skewed(q, k, v, rel, causal=True)))
    base_rss = _rss_mib()
    times = []
    for i in range(repeats + 1):
        for t in (q, k, v, rel):
            t.grad = None
        t0 = time.perf_counter()
        fn().sum().backward()
        if i > 0:  # the first run is a warm-up
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux → MiB
    return dict(provider=provider, L=L, time_s=statistics.median(times), peak_mib=peak, base_mib=base_rss)


def run_child(provider: str, L: int, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", provider, "--lengths", str(L), "--batch", str(args.batch),
           "--heads", str(args.heads), "--dim", str(args.dim), "--repeats", str(args.repeats),
           "--threads", str(args.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    env.pop("TRITON_INTERPRET", None)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return dict(provider=provider, L=L, error=(out.stderr.strip().splitlines() or ["killed"])[-1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up; the median is shown")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each child")
    parser.add_argument("--worker", choices=PROVIDERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.lengths[0], args.batch, args.heads, args.dim, args.repeats,
                                args.threads)))
        return []

    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"relative attention fwd+bwd on CPU: B={args.batch}, H={args.heads}, D={args.dim}, causal, "
                        f"R = L, {args.threads} thread(s), median of {args.repeats}")
    for col in ("L", "skewing time", "attnkit time", "time ratio", "skewing peak RSS (above base)",
                "attnkit peak RSS (above base)", "memory ratio (total / above base)"):
        table.add_column(col, justify="right")
    records = []
    with console.status("running") as status:
        for L in args.lengths:
            res = {}
            for provider in PROVIDERS:
                status.update(f"L = {L}: {provider}")
                res[provider] = run_child(provider, L, args)
                records.append(res[provider])
            s, a = res["skewing"], res["attnkit"]
            if "error" in s or "error" in a:
                table.add_row(str(L), s.get("error", f"{s.get('time_s', 0):.2f} s"),
                              a.get("error", f"{a.get('time_s', 0):.2f} s"), "-", "-", "-", "-")
                continue
            s_inc, a_inc = s["peak_mib"] - s["base_mib"], a["peak_mib"] - a["base_mib"]
            table.add_row(str(L), f"{s['time_s']:.2f} s", f"{a['time_s']:.2f} s",
                          f"{a['time_s'] / s['time_s']:.2f}×",
                          f"{s['peak_mib']:.0f} MiB ({s_inc:.0f})", f"{a['peak_mib']:.0f} MiB ({a_inc:.0f})",
                          f"{s['peak_mib'] / a['peak_mib']:.1f}× / {s_inc / max(a_inc, 1):.1f}× less")
    console.print(table)
    console.print("time ratio = attnkit / skewing (lower is better); memory ratio = skewing / attnkit (higher is "
                  "better). Target at L = 4096: memory ratio ≥ 2×, time ratio ≤ 1.2×.")
    return records


if __name__ == "__main__":
    main()
