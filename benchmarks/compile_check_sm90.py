"""Compile every attention kernel for an H100 (sm_90) on a machine without a GPU.

The interpreter runs the kernels' semantics but not Triton's code generator, so type errors in loop-carried
values, layouts or shared-memory overflows only show up when compiling for a real target. Triton can compile
(through ptxas) without a GPU present. Not collected by pytest (slow: ~1 CPU-minute per kernel); run by hand:

    env -u TRITON_INTERPRET .venv/bin/python benchmarks/compile_check_sm90.py [all|attention|positions]
"""
import sys
import time

from attnkit.kernels.runtime import INTERPRET  # noqa: E402  (plain Python: triton is not imported yet)

if INTERPRET:
    sys.exit("unset TRITON_INTERPRET: the compiler, not the interpreter, is under test")

WHICH = sys.argv[1] if len(sys.argv) > 1 else "all"
if WHICH not in ("all", "attention", "positions"):
    sys.exit(f"usage: {sys.argv[0]} [all|attention|positions]")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402

from attnkit.kernels import attention as A  # noqa: E402
from attnkit.kernels import relative as Rel  # noqa: E402
from attnkit.kernels import rotary as Rot  # noqa: E402
from gpu_static_report import attn_signature as signature, pos_signature  # noqa: E402  (same folder)

ALL_MASKS = dict(HAS_LEFT=True, HAS_RIGHT=True, HAS_BIAS=True, HAS_MASK=True, HAS_KPM=True)
NO_MASKS = dict(HAS_LEFT=False, HAS_RIGHT=False, HAS_BIAS=False, HAS_MASK=False, HAS_KPM=False)
CAUSAL_KPM = dict(NO_MASKS, HAS_RIGHT=True, HAS_KPM=True)
MAIN = (A._attn_fwd, A._attn_bwd_dkdv, A._attn_bwd_dq)
JOBS = ([(k, ALL_MASKS, "fp16", 128, {}) for k in MAIN]
        + [(A._attn_bwd_dbias, ALL_MASKS, "fp16", 128, dict(ROWS_BCAST=r, COLS_BCAST=c))
           for r, c in ((False, False), (True, False), (True, True))]
        + [(k, NO_MASKS, "bf16", 64, {}) for k in MAIN]
        + [(k, CAUSAL_KPM, "fp32", 64, {}) for k in MAIN])


def compile_sm90(fn, sig, consts, num_warps=4, num_stages=3):
    src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=consts)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=num_warps,
                                                                               num_stages=num_stages))


for kernel, flags, dtype, head_dim, extra in (JOBS if WHICH in ("all", "attention") else ()):
    fn = kernel.fn  # the autotuner wraps the JITFunction
    consts = dict(HEAD_DIM=head_dim, HEAD_DIM_REAL=head_dim if head_dim != 128 else 80, UPCAST=False,
                  INPUT_PRECISION="ieee" if dtype == "fp32" else "tf32", BLOCK_M=64, BLOCK_N=64, **flags, **extra)
    # logit cap, packed documents and dropout once per kernel
    consts["HAS_SOFTCAP"] = consts["HAS_DOCS"] = consts["HAS_DROPOUT"] = dtype == "fp16"
    if "PART" in fn.arg_names:
        consts["PART"] = A.DKDV_BOTH.value  # the split dK / dV passes differ only in dead code
    start = time.time()
    compiled = compile_sm90(fn, signature(fn, dtype, consts), consts)
    print(f"ok {fn.__name__:16s} {dtype} D={head_dim} {flags} {extra} "
          f"shared={compiled.metadata.shared} B  {time.time() - start:.0f}s", flush=True)


# ---- relative-position kernels (learned relative embeddings, T5 buckets, ALiBi) and rotary -------------
POS_COMMON = dict(HAS_KPM=True, BLOCK=Rel.BLOCK, HEAD_DIM=64, UPCAST=False)
REL = dict(POS_COMMON, POS_KIND=Rel.POS_RELATIVE, CAUSAL=True, BIDIRECTIONAL=False, NBX=2, MAX_EXACT=1)
T5 = dict(POS_COMMON, POS_KIND=Rel.POS_T5, CAUSAL=False, BIDIRECTIONAL=True, NBX=16, MAX_EXACT=8)
ALIBI = dict(POS_COMMON, POS_KIND=Rel.POS_ALIBI, CAUSAL=True, BIDIRECTIONAL=False, NBX=2, MAX_EXACT=1)
DREL = {k: REL[k] for k in ("CAUSAL", "HAS_KPM", "BLOCK", "HEAD_DIM", "UPCAST")}
# The learned-relative backward joint (as at D ≤ 64) and split (as from Rel.SPLIT_HEAD_DIM up: Rel._split).
POS_JOBS = ([(Rel._pos_attn_fwd, REL, "fp16", "fp16", {})]
            + [(Rel._pos_attn_bwd_dkdv, REL, "fp16", "fp16", dict(PART=p.value)) for p in (A.DKDV_BOTH, A.DV_ONLY)]
            + [(Rel._pos_attn_bwd_dq, REL, "fp16", "fp16", dict(NB_PAD=1, DQ_CHUNKS=c)) for c in (1, 4)]
            + [(Rel._rel_attn_bwd_drel, DREL, "bf16", "bf16", dict(BAND_SPLIT=s)) for s in (1, 2)]
            + [(Rel._pos_attn_fwd, T5, "bf16", "fp32", {}),
               (Rel._pos_attn_bwd_dq, T5, "bf16", "fp32", dict(NB_PAD=32, DQ_CHUNKS=1))]
            + [(Rel._pos_attn_fwd, ALIBI, "fp16", "fp32", {})])

for kernel, flags, dtype, pos_dtype, extra in (POS_JOBS if WHICH in ("all", "positions") else ()):
    fn = kernel if hasattr(kernel, "arg_names") else kernel.fn  # unwrap an autotuner
    consts = dict(flags, INPUT_PRECISION="tf32", **extra)
    start = time.time()
    # the launcher's own (num_warps, num_stages) for this kind and head dim: compile what runs
    warps, stages = Rel._launch_shape(flags.get("POS_KIND", Rel.POS_RELATIVE), flags["HEAD_DIM"])
    compiled = compile_sm90(fn, pos_signature(fn, dtype, pos_dtype, consts), consts, warps, stages)
    print(f"ok {fn.__name__:20s} {dtype} POS_KIND={flags.get('POS_KIND', 'rel')} "
          f"shared={compiled.metadata.shared} B  {time.time() - start:.0f}s", flush=True)

rot = Rot._rotary_kernel
for interleaved in ((False, True) if WHICH in ("all", "positions") else ()):
    consts = dict(HALF=32, HALF_PAD=32, PASS_PAD=0, INTERLEAVED=interleaved, INVERSE=False, BLOCK_L=16)
    sig = {n: ("constexpr" if n in consts else "*bf16" if n in ("X", "Out") else "*fp32" if n in ("Cos", "Sin")
               else "i32") for n in rot.arg_names}
    start = time.time()
    compile_sm90(rot, sig, consts)
    print(f"ok _rotary_kernel bf16 interleaved={interleaved}  {time.time() - start:.0f}s", flush=True)

combine = A._split_kv_combine  # split-KV decoding's merge
for head_dim, has_tail in (((128, True), (64, False)) if WHICH in ("all", "attention") else ()):
    consts = dict(HEAD_DIM=head_dim, HEAD_DIM_REAL=head_dim, HAS_TAIL=has_tail)
    sig = {n: ("constexpr" if n in consts else "i32" if n in ("ROWS", "S") else "*fp32" if n.startswith("LSE")
               else "*bf16") for n in combine.arg_names}
    start = time.time()
    compile_sm90(combine, sig, consts, num_warps=2 if head_dim > 64 else 1)
    print(f"ok _split_kv_combine bf16 D={head_dim} tail={has_tail}  {time.time() - start:.0f}s", flush=True)
