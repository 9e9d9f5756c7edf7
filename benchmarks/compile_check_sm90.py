"""Compile every attention kernel for an H100 (sm_90) on a machine without a GPU.

The interpreter runs the kernels' semantics but not Triton's code generator, so type errors in loop-carried
values, layouts or shared-memory overflows only show up when compiling for a real target. Triton can compile
(through ptxas) without a GPU present. Not collected by pytest (slow: ~1 CPU-minute per kernel); run by hand:

    env -u TRITON_INTERPRET .venv/bin/python benchmarks/compile_check_sm90.py
"""
import os
import sys
import time

if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("unset TRITON_INTERPRET: the compiler, not the interpreter, is under test")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402

from attnkit.kernels import attention as A  # noqa: E402

POINTER_TYPES = {"LSE": "*fp32", "Delta": "*fp32", "DBias": "*fp32", "Mask": "*u8", "KPM": "*u8", "Occ": "*i8"}
TENSORS = ("Q", "K", "V", "O", "Out", "DO", "DQ", "DK", "DV", "Bias")


def signature(fn, dtype, constexprs):
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in TENSORS:
            sig[name] = "*" + dtype
        elif name in POINTER_TYPES:
            sig[name] = POINTER_TYPES[name]
        elif name in ("qk_scale", "sm_scale"):
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    return sig


ALL_MASKS = dict(HAS_LEFT=True, HAS_RIGHT=True, HAS_BIAS=True, HAS_MASK=True, HAS_KPM=True)
NO_MASKS = dict(HAS_LEFT=False, HAS_RIGHT=False, HAS_BIAS=False, HAS_MASK=False, HAS_KPM=False)
CAUSAL_KPM = dict(NO_MASKS, HAS_RIGHT=True, HAS_KPM=True)
MAIN = (A._attn_fwd, A._attn_bwd_dkdv, A._attn_bwd_dq)
JOBS = ([(k, ALL_MASKS, "fp16", 128, {}) for k in MAIN]
        + [(A._attn_bwd_dbias, ALL_MASKS, "fp16", 128, dict(ROWS_BCAST=r, COLS_BCAST=c))
           for r, c in ((False, False), (True, False), (True, True))]
        + [(k, NO_MASKS, "bf16", 64, {}) for k in MAIN]
        + [(k, CAUSAL_KPM, "fp32", 64, {}) for k in MAIN])

for kernel, flags, dtype, head_dim, extra in JOBS:
    fn = kernel.fn  # the autotuner wraps the JITFunction
    consts = dict(HEAD_DIM=head_dim, HEAD_DIM_REAL=head_dim if head_dim != 128 else 80, UPCAST=False,
                  INPUT_PRECISION="ieee" if dtype == "fp32" else "tf32", OCC=A.OCC_BLOCK, BLOCK_M=64, BLOCK_N=64,
                  **flags, **extra)
    start = time.time()
    src = triton.compiler.ASTSource(fn=fn, signature=signature(fn, dtype, consts), constexprs=consts)
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=4, num_stages=3))
    print(f"ok {fn.__name__:16s} {dtype} D={head_dim} {flags} {extra} "
          f"shared={compiled.metadata.shared} B  {time.time() - start:.0f}s", flush=True)
