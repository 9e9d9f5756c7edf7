"""Which variants of the D = 128 split-KV decode crash on a GPU: one fresh process per case, run side by side.

On an H200 under Triton 3.6 (2026-12-04) decode_config_probe.py found the forward config (64, 32, 4, 3) raising an
illegal memory access in `attention_decode_split` at 64k keys. `--cases isolate` varied one thing at a time
(heads, a contiguous q, the plain forward, 16k keys, 2 stages, fp16 / fp32) and re-ran the first case under
compute-sanitizer; `--cases fixed` checks the kernel's table as it is now (autotuned, and ATTNKIT_AUTOTUNE=0 in
float32 with a bias, which needs a config that fits in shared memory):

    python benchmarks/decode_race_repro.py --cases isolate   # on the GPU machine, about 40 s
    python benchmarks/decode_race_repro.py --cases fixed

Each case prints one JSON line: ok with its max error against a float64 reference (and the config that ran), or
the error's first line. A case overrides `_attn_fwd.configs` with its config, or autotunes (None), or sets
ATTNKIT_AUTOTUNE=0 ("one")."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

D = 128
CASES = {  # name → (config, Hq, keys, mode, dtype); B = 1, Lq = 1
    "isolate": {
        "crash_h8": ((64, 32, 4, 3), 8, 65536, "split", "bf16"),
        "crash_h8_again": ((64, 32, 4, 3), 8, 65536, "split", "bf16"),
        "crash_h32": ((64, 32, 4, 3), 32, 65536, "split", "bf16"),
        "contiguous_q": ((64, 32, 4, 3), 8, 65536, "split_contiguous_q", "bf16"),
        "plain_forward": ((64, 32, 4, 3), 8, 65536, "plain", "bf16"),
        "keys_16k": ((64, 32, 4, 3), 8, 16384, "split", "bf16"),
        "two_stages": ((64, 32, 4, 2), 8, 65536, "split", "bf16"),
        "fp16": ((64, 32, 4, 3), 8, 65536, "split", "fp16"),
        "fp32": ((64, 32, 4, 3), 8, 65536, "split", "fp32"),
        "first_config_fp32_bias": ((128, 64, 8, 3), 2, 77, "bias_kpm", "fp32"),
        "b64_fp32_bias": ((64, 64, 4, 4), 2, 77, "bias_kpm", "fp32"),
        "b32_fp32_bias": ((64, 32, 4, 3), 2, 77, "bias_kpm", "fp32"),
    },
    "fixed": {
        "autotuned_h8": (None, 8, 65536, "split", "bf16"),
        "autotuned_h32": (None, 32, 65536, "split", "bf16"),
        "autotuned_h8_fp16": (None, 8, 65536, "split", "fp16"),
        "two_stages_h32": ((64, 32, 4, 2), 32, 65536, "split", "bf16"),
        "two_stages_h8": ((64, 32, 4, 2), 8, 65536, "split", "bf16"),
        "one_config_fp32_bias": ("one", 2, 77, "bias_kpm", "fp32"),
    },
}


def child(cases: str, name: str) -> dict:
    import torch
    import triton

    import attnkit.kernels.attention as kernel

    config, H, L, mode, dt = CASES[cases][name]
    if config == "one":
        os.environ["ATTNKIT_AUTOTUNE"] = "0"
    elif config:
        bm, bn, w, st = config
        kernel._attn_fwd.configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=st)]
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16, fp32=torch.float32)[dt]
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(1, H, n, D, device="cuda", generator=g).to(dtype) for n in (1, L, L))
    scores = q.double() @ k.double().transpose(-1, -2) / D ** 0.5
    if mode == "split":
        out = kernel.attention_decode_split(q, k, v)[0]
    elif mode == "split_contiguous_q":  # the split path's one launch, with q copied instead of broadcast
        S = L // kernel.SPLIT_KV_CHUNK
        q_split = q.reshape(1, H, 1, D).expand(S, H, 1, D).contiguous()
        kv = [t.reshape(H, S, L // S, D).transpose(0, 1) for t in (k, v)]
        kernel.attention_fwd(q_split, *kv)
        torch.cuda.synchronize()
        out = None  # crash or not is the result
    elif mode == "plain":
        out = kernel.attention_fwd(q, k, v)[0]
    else:  # the CUDA test that ran out of shared memory: float32, a bias and a key padding mask
        kpm = torch.rand(1, L, device="cuda", generator=g) > 0.3
        bias = torch.randn(1, H, 1, L, device="cuda", generator=g)
        out = kernel.attention_fwd(q, k, v, causal=True, key_padding_mask=kpm, bias=bias)[0]
        scores = torch.where(kpm[:, None, None], scores + bias.double(), float("-inf"))
    want = torch.softmax(scores, -1) @ v.double()
    err = None if out is None else (out.double() - want).abs().max().item()
    ran = getattr(kernel._attn_fwd, "best_config", None)
    return dict(status="ok", max_err=err and float(f"{err:.3g}"), config=str(ran) if ran else None)


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        cases, name = sys.argv[2], sys.argv[3]
        try:
            row = child(cases, name)
        except Exception as e:  # noqa: BLE001 -- the result this script reports
            row = dict(status="error", error=(str(e).splitlines() or [type(e).__name__])[0][:240])
        print(json.dumps(dict(case=name, **row)), flush=True)
        return 0
    cases = sys.argv[sys.argv.index("--cases") + 1] if "--cases" in sys.argv else "fixed"
    env = {**os.environ, "TRITON_INTERPRET": "0", "CUDA_LAUNCH_BLOCKING": "1"}
    procs = {name: subprocess.Popen([sys.executable, __file__, "--child", cases, name], env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for name in CASES[cases]}
    for name, p in procs.items():
        out = p.communicate(timeout=300)[0]
        rows = [ln for ln in out.splitlines() if ln.startswith("{")]
        print(rows[-1] if rows else json.dumps(dict(case=name, status="died", tail=out[-300:])), flush=True)
    sanitizer = shutil.which("compute-sanitizer") or "/usr/local/cuda/bin/compute-sanitizer"
    if cases == "isolate" and os.path.exists(sanitizer):  # serialized launches: does the first crash remain?
        first = next(iter(CASES[cases]))
        r = subprocess.run([sanitizer, "--print-limit", "3", sys.executable, __file__, "--child", cases, first],
                           capture_output=True, text=True, env=env, timeout=300)
        print((r.stdout + r.stderr)[-2000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
