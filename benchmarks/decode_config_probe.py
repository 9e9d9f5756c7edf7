"""Run each forward config alone on decoding shapes, one process per config: which crashes, which is fastest.

On an H200 under Triton 3.6 (2026-12-04) autotuning `attention_decode_split` at D = 128 (Lq = 1, Hq = 8 and 32,
16k and 64k keys) hit an illegal memory access. This probe named the culprit, (64, 32, 4, 3), which
benchmarks/decode_race_repro.py then narrowed to a race (kernels/attention.py's FWD_SHAPES has its 2-stage twin
at D = 128 since); it stays a step of gpu_check.sh, timing every candidate on the decoding shapes:

    python benchmarks/decode_config_probe.py OUT.json            # on the GPU machine, about a minute
    python benchmarks/decode_config_probe.py OUT.json --dry-run  # CPU, tiny shapes, Triton's interpreter

It also tries query tiles of 16 and 32 rows (not in the kernel's table): with Lq = 1 a 128-row tile computes
127 padding rows. On 2026-12-04 they did not make the eager call faster (0.38–0.81 ms against 0.36–0.62 ms for
the table's configs, whatever the length or batch): a floor like that looks like Python and launch overhead (the
split path is a dozen small torch ops around one kernel), which eager timing counts whenever it exceeds the GPU
work. graph_ms (below) separates the two on the next lease.

Each child pins `_attn_fwd.configs` to one candidate and runs every shape through the split path and the plain
forward at Lq = 1, and SDPA-flash beside them, against a float32 reference: one JSON line per shape with status
ok / crash (the error's first line), max error, ms (do_bench on the eager call) and graph_ms (the same call replayed
from a CUDA graph: GPU time without Python and launch overhead). A crash poisons the CUDA context, so that child
stops there and the next config starts.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

D = 128  # the head dim whose autotuning crashed
SHAPES = [(1, 32, 65536), (1, 8, 65536), (1, 32, 16384), (8, 32, 8192)]  # (B, Hq, keys), Lq = 1
DRY_SHAPES = [(1, 2, 300)]
EXTRA = [(16, 64, 4, 3), (16, 128, 4, 3), (32, 64, 4, 3)]  # small query tiles, candidates for decoding only


def candidates() -> list[tuple]:
    import attnkit.kernels.attention as kernel
    return [s for s, dims in kernel.FWD_SHAPES.items() if D in dims] + EXTRA


def sdpa(q, k, v):
    """The baseline: torch's flash backend on a GPU (the math one on CPU), in the same process."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backend = SDPBackend.FLASH_ATTENTION if q.is_cuda else SDPBackend.MATH
    with sdpa_kernel(backend):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def _graph_ms(call) -> float:
    """GPU time alone: `call` captured in a CUDA graph (after warm-up calls, so autotuning is done) and replayed.
    do_bench on the eager call also counts the Python and launch overhead the GPU waits for."""
    import torch
    import triton
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    return triton.testing.do_bench(graph.replay, warmup=5, rep=20)


def child(config_index: int, dry: bool) -> None:
    import torch
    import triton

    import attnkit.kernels.attention as kernel

    config = candidates()[config_index]
    bm, bn, w, st = config
    kernel.FWD_SHAPES.setdefault(config, (D,))  # an EXTRA tile: let the pruner keep it
    kernel._attn_fwd.configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=st)]
    device, dtype = ("cpu", torch.float32) if dry else ("cuda", torch.bfloat16)
    g = torch.Generator(device=device).manual_seed(0)
    for B, H, L in DRY_SHAPES if dry else SHAPES:
        row = dict(B=B, H=H, L=L, D=D, config=list(config))
        q, k, v = (torch.randn(B, H, n, D, device=device, generator=g).to(dtype) for n in (1, L, L))
        want = torch.softmax(q.float() @ k.float().transpose(-1, -2) / D ** 0.5, -1) @ v.float()
        paths = (("split", lambda: kernel.attention_decode_split(q, k, v, chunk=64 if dry else None)[0]),
                 ("plain", lambda: kernel.attention_fwd(q, k, v)[0]),
                 ("sdpa", lambda: sdpa(q, k, v)))
        for path, call in paths:
            try:
                err = (call().float() - want).abs().max().item()
                ms, graph_ms = (float("nan"),) * 2 if dry else (triton.testing.do_bench(call, warmup=5, rep=20),
                                                                _graph_ms(call))
                row[path] = dict(status="ok", max_err=float(f"{err:.3g}"), ms=round(ms, 4),
                                 graph_ms=round(graph_ms, 4))
            except Exception as e:  # noqa: BLE001 -- reported; the context is gone, so stop here
                row[path] = dict(status="crash", error=(str(e).splitlines() or [type(e).__name__])[0][:200])
                print(json.dumps(row), flush=True)
                return
        print(json.dumps(row), flush=True)


def main() -> int:
    dry = "--dry-run" in sys.argv
    if sys.argv[1:2] == ["--child"]:
        child(int(sys.argv[2]), dry)
        return 0
    out, rows = Path(sys.argv[1]), []
    configs = candidates()
    # The dry run proves the control flow and a small query tile's values: the first listed config and EXTRA's first
    for ci, config in [(0, configs[0]), (len(configs) - len(EXTRA), EXTRA[0])] if dry else enumerate(configs):
        cmd = [sys.executable, __file__, "--child", str(ci)] + (["--dry-run"] if dry else [])
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=90,
                               env={**os.environ, "TRITON_INTERPRET": "1" if dry else "0"})
            found = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
            if r.returncode:
                found.append(dict(config=list(config), status="died", tail=r.stderr[-300:]))
        except subprocess.TimeoutExpired:
            found = [dict(config=list(config), status="timeout after 90 s")]
        for row in found:
            print(json.dumps(row), flush=True)
        rows += found
        out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
