"""What an H100 would run, read without one: registers, spills, shared memory and MMA kinds of every kernel.

Each Triton kernel is compiled for sm_90a on this CPU-only machine (Triton needs no GPU to compile), its PTX is
assembled again with Triton's own bundled `ptxas -v` (the newest one it ships: `ptxas-blackwell` on Triton 3.9),
and the report lists, per (kernel, config, head dim, dtype, mask kind):

    registers     per thread (255 is the cap; past it the compiler spills)
    spill_bytes   bytes of spill stores: registers written to local memory inside the kernel (0 is the goal)
    shared_bytes  dynamic shared memory Triton allocates (the pipeline's stages live there)
    wgmma         warpgroup MMA instructions in the PTX (Hopper's tensor-core path)
    mma_sync      warp-level mma.sync instructions (Ampere's path; a dot lowered to it is a slow dot on H100)
    kept          the config is in the autotune list the launcher uses at this head dim

Configs come from the kernels' own candidate tables (`FWD_SHAPES`, ... in kernels/attention.py, the
position kernels' `POS_SHAPES`), so the report always describes the code as it is. Mask kinds: none, causal,
window (both bounds), bias (a learnable bias tile per program), kpm (key padding). The relative / T5 / ALiBi
kernels have no window, bias or attn_mask; they get causal and kpm.

    env -u TRITON_INTERPRET .venv/bin/python benchmarks/gpu_static_report.py --json static.json \
        --markdown static.md                                     # everything: ~700 compiles, hours on 2 cores
    ... gpu_static_report.py --kernel fwd,dkdv --head-dim 128 --dtype bf16 --mask causal   # a slice
    ... gpu_static_report.py --kept-only                         # only what the launchers can pick
    ... gpu_static_report.py --kernel dbias --config 64x64x4x2 --head-dim 64 --dtype bf16   # one config
Exit status 1 when a kept config spills or lowers a dot to mma.sync (so CI can run a slice of it as a test).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

from attnkit.kernels.runtime import INTERPRET  # noqa: E402  (plain Python: triton is not imported yet)

if INTERPRET:
    sys.exit("unset TRITON_INTERPRET: the compiler, not the interpreter, is under test")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402

from attnkit.kernels import attention as A  # noqa: E402
from attnkit.kernels import relative as Rel  # noqa: E402
from attnkit.kernels import rotary as Rot  # noqa: E402

DTYPES = ("fp16", "bf16")
ATTN_MASKS = ("none", "causal", "window", "bias", "kpm")
POS_MASKS = ("causal", "kpm")
MASK_FLAGS = {
    "none": dict(HAS_LEFT=False, HAS_RIGHT=False, HAS_BIAS=False, HAS_MASK=False, HAS_KPM=False),
    "causal": dict(HAS_LEFT=False, HAS_RIGHT=True, HAS_BIAS=False, HAS_MASK=False, HAS_KPM=False),
    "window": dict(HAS_LEFT=True, HAS_RIGHT=True, HAS_BIAS=False, HAS_MASK=False, HAS_KPM=False),
    "bias": dict(HAS_LEFT=False, HAS_RIGHT=False, HAS_BIAS=True, HAS_MASK=False, HAS_KPM=False),
    "kpm": dict(HAS_LEFT=False, HAS_RIGHT=False, HAS_BIAS=False, HAS_MASK=False, HAS_KPM=True),
}
KEYS = ("kernel", "block_m", "block_n", "num_warps", "num_stages", "head_dim", "dtype", "mask", "registers",
        "spill_bytes", "shared_bytes", "wgmma", "mma_sync", "kept")


@dataclass(frozen=True)
class Job:
    kernel: str        # report name: fwd, dkdv, dq, dbias, rel_fwd, ..., rotary
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int
    head_dim: int
    dtype: str
    mask: str
    kept: bool


# ---- signatures: every pointer gets the dtype the launcher passes ------------------------------------------

ATTN_TENSORS = ("Q", "K", "V", "O", "Out", "DO", "DQ", "DK", "DV", "Bias")
ATTN_POINTERS = {"LSE": "*fp32", "Delta": "*fp32", "DBias": "*fp32", "Mask": "*u8", "KPM": "*u8", "Occ": "*i8",
                 "Doc": "*i32", "DocRange": "*i32"}


# Tuple arguments of the attention kernels (`_Meta.launch_args`): element types, and which elements a launch on
# contiguous, 16-aligned inputs specializes (a stride of 1 becomes the constant 1; the rest divisible by 16).
ATTN_TUPLES = {
    "extras": lambda dt: ("*" + dt, "*u8", "*u8", "*i8", "*i32", "*i32"),  # bias, mask, padding, occupancy, docs
    "stride_q": lambda dt: ("i32",) * 3, "stride_k": lambda dt: ("i32",) * 3, "stride_v": lambda dt: ("i32",) * 3,
    "stride_bias": lambda dt: ("i32",) * 4, "stride_mask": lambda dt: ("i32",) * 4,
    "stride_occ": lambda dt: ("i32",) * 4,
    "sizes": lambda dt: ("i32",) * 4,  # H, GROUPS, Lq, Lk
    "window": lambda dt: ("i32", "i32"), "dropout": lambda dt: ("i32", "fp32"), "bias_loops": lambda dt: ("i32",) * 3,
}
TUPLE_UNIT = {("stride_bias", 3), ("stride_mask", 3), ("stride_occ", 3)}  # a contiguous bias / mask / table row
TUPLE_DIVISIBLE = {"extras": range(6), "stride_q": range(3), "stride_k": range(3), "stride_v": range(3),
                   "stride_bias": range(3), "stride_mask": range(3), "stride_occ": range(3), "sizes": (2, 3)}


def attn_signature(fn, dtype, consts):
    sig = {}
    for name in fn.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name in ATTN_TUPLES:
            sig[name] = ATTN_TUPLES[name](dtype)
        elif name in ATTN_TENSORS:
            sig[name] = "*" + dtype
        elif name in ATTN_POINTERS:
            sig[name] = ATTN_POINTERS[name]
        elif name in ("qk_scale", "sm_scale", "softcap2", "drop_p"):
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    return sig


def pos_signature(fn, dtype, pos_dtype, consts):
    sig = {}
    for name in fn.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name in ("Q", "K", "V", "Out", "DO", "DQ", "DK", "DV"):
            sig[name] = "*" + dtype
        elif name == "Pos":
            sig[name] = "*" + pos_dtype
        elif name == "Thr":
            sig[name] = "*i32"
        elif name == "KPM":
            sig[name] = "*i8"
        elif name in ("LSE", "Delta", "DPos", "DBand"):
            sig[name] = "*fp32"
        elif name == "scale":
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    return sig


# dkdv computes both gradients in one pass (D < SPLIT_DKDV_HEAD_DIM); dk and dv are the split passes above it.
ATTN_KERNELS = {"fwd": (A._attn_fwd, A.FWD_SHAPES), "dkdv": (A._attn_bwd_dkdv, A.DKDV_SHAPES),
                "dk": (A._attn_bwd_dkdv, A.DKDV_SHAPES), "dv": (A._attn_bwd_dkdv, A.DKDV_SHAPES),
                "dq": (A._attn_bwd_dq, A.DQ_SHAPES), "dbias": (A._attn_bwd_dbias, A.DBIAS_SHAPES)}
# name → (kernel, POS_KIND, pos dtype: None = q's dtype (embeddings), extra constexprs)
POS_KERNELS = {
    "rel_fwd": (Rel._pos_attn_fwd, Rel.POS_RELATIVE, None, {}),
    "rel_dkdv": (Rel._pos_attn_bwd_dkdv, Rel.POS_RELATIVE, None, {}),
    "rel_dk": (Rel._pos_attn_bwd_dkdv, Rel.POS_RELATIVE, None, dict(PART=A.DK_ONLY.value)),
    "rel_dv": (Rel._pos_attn_bwd_dkdv, Rel.POS_RELATIVE, None, dict(PART=A.DV_ONLY.value)),
    "rel_dq": (Rel._pos_attn_bwd_dq, Rel.POS_RELATIVE, None, dict(NB_PAD=1)),
    "rel_drel": (Rel._rel_attn_bwd_drel, Rel.POS_RELATIVE, None, {}),
    "t5_fwd": (Rel._pos_attn_fwd, Rel.POS_T5, "fp32", {}),
    "t5_dkdv": (Rel._pos_attn_bwd_dkdv, Rel.POS_T5, "fp32", {}),
    "t5_dq": (Rel._pos_attn_bwd_dq, Rel.POS_T5, "fp32", dict(NB_PAD=32)),
    "alibi_fwd": (Rel._pos_attn_fwd, Rel.POS_ALIBI, "fp32", {}),
    "alibi_dkdv": (Rel._pos_attn_bwd_dkdv, Rel.POS_ALIBI, "fp32", {}),
    "alibi_dq": (Rel._pos_attn_bwd_dq, Rel.POS_ALIBI, "fp32", dict(NB_PAD=1)),
}
ALL_KERNELS = tuple(ATTN_KERNELS) + tuple(POS_KERNELS) + ("rotary",)


# What the launcher's call specializes (Triton's JIT does this from the actual arguments): a stride equal to 1
# becomes the constant 1, and pointers / ints divisible by 16 carry tt.divisibility = 16. Without these the
# compiler cannot prove rows are contiguous, loads go element by element, the pipeliner cannot use async
# copies, and the register counts describe code that never runs. Here: contiguous (B, H, L, D) tensors,
# a contiguous bias / mask / padding row, and lengths that are multiples of 16 (the benchmark shapes).
UNIT_STRIDES = {"stride_bn", "stride_mn", "stride_tn"}  # the kernels' own head-dim strides are 1 by contract
DIVISIBLE = ("stride_", "N_CTX_", "LQ_BUCKET", "LK_BUCKET", "HEAD_DIM_REAL")


def _specialize(fn, sig, consts):
    """The (signature, constexprs, attrs) of a launch on contiguous, 16-aligned inputs."""
    sig, consts = dict(sig), dict(consts)
    attrs = {}
    for i, name in enumerate(fn.arg_names):
        if sig[name] == "constexpr":
            continue
        if isinstance(sig[name], tuple):  # a tuple argument: each element is specialized on its own
            elems = list(sig[name])
            for j in range(len(elems)):
                if (name, j) in TUPLE_UNIT:
                    elems[j], consts[(i, j)] = "constexpr", 1
                elif j in TUPLE_DIVISIBLE.get(name, ()):
                    attrs[(i, j)] = [["tt.divisibility", 16]]
            sig[name] = tuple(elems)
        elif name in UNIT_STRIDES:
            sig[name], consts[name] = "constexpr", 1
        elif sig[name].startswith("*") or name.startswith(DIVISIBLE):
            attrs[(i,)] = [["tt.divisibility", 16]]
    return sig, consts, attrs


def _unwrap(kernel):
    from triton.runtime.jit import JITFunction
    while not isinstance(kernel, JITFunction):  # an autotuner wraps the JITFunction
        kernel = kernel.fn
    return kernel


def _build(job: Job):
    """(jit function, signature, constexprs) for one job."""
    if job.kernel in ATTN_KERNELS:
        fn = _unwrap(ATTN_KERNELS[job.kernel][0])
        consts = dict(HEAD_DIM=job.head_dim, HEAD_DIM_REAL=job.head_dim, UPCAST=False, INPUT_PRECISION="tf32",
                      BLOCK_M=job.block_m, BLOCK_N=job.block_n, HAS_SOFTCAP=False, HAS_DOCS=False, HAS_DROPOUT=False,
                      **MASK_FLAGS[job.mask])
        if job.kernel == "dbias":
            consts.update(ROWS_BCAST=False, COLS_BCAST=False)
        part = {"dkdv": A.DKDV_BOTH, "dk": A.DK_ONLY, "dv": A.DV_ONLY}.get(job.kernel)
        if part is not None:
            consts["PART"] = part.value
        consts = {k: v for k, v in consts.items() if k in fn.arg_names}
        return fn, attn_signature(fn, job.dtype, consts), consts
    if job.kernel in POS_KERNELS:
        kernel, kind, pos_dtype, extra = POS_KERNELS[job.kernel]
        fn = _unwrap(kernel)
        causal = job.mask == "causal"
        t5 = kind == Rel.POS_T5
        _, dq_chunks, band_split = Rel._split(kind, job.head_dim)
        consts = dict(POS_KIND=kind, CAUSAL=causal, BIDIRECTIONAL=t5 and not causal, HAS_KPM=job.mask == "kpm",
                      NBX=16 if t5 else 2, MAX_EXACT=8 if t5 else 1, BLOCK=job.block_m, HEAD_DIM=job.head_dim,
                      UPCAST=False, INPUT_PRECISION="tf32", PART=A.DKDV_BOTH.value, DQ_CHUNKS=dq_chunks,
                      BAND_SPLIT=band_split)
        consts.update(extra)
        consts = {k: v for k, v in consts.items() if k in fn.arg_names}
        return fn, pos_signature(fn, job.dtype, pos_dtype or job.dtype, consts), consts
    fn = Rot._rotary_kernel
    consts = dict(HALF=job.head_dim // 2, HALF_PAD=job.head_dim // 2, PASS_PAD=0, INTERLEAVED=job.mask == "interleaved",
                  INVERSE=False, BLOCK_L=job.block_m)
    sig = {n: ("constexpr" if n in consts else f"*{job.dtype}" if n in ("X", "Out") else "*fp32" if n in ("Cos", "Sin")
               else "i32") for n in fn.arg_names}
    return fn, sig, consts


def _ptxas() -> str:
    from triton.backends.nvidia.compiler import get_ptxas
    return get_ptxas(90).path  # the newest bundled ptxas that knows sm_90a


def _ptxas_report(ptx: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        out = subprocess.run([_ptxas(), "-v", "--gpu-name", "sm_90a", src, "-o", os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True, check=True)
    log = out.stdout + out.stderr
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores", log)
    return dict(registers=int(regs.group(1)) if regs else -1, spill_bytes=int(spills.group(1)) if spills else 0)


def compile_job(job: Job) -> dict:
    """Compile one job for sm_90a and read its resources; a compile error becomes a row with registers = -1."""
    fn, sig, consts = _build(job)
    sig, consts, attrs = _specialize(fn, sig, consts)
    start = time.time()
    row = asdict(job)
    try:
        src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs)
        compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                                  options=dict(num_warps=job.num_warps, num_stages=job.num_stages))
        ptx = compiled.asm["ptx"]
        row.update(_ptxas_report(ptx), shared_bytes=int(compiled.metadata.shared),
                   wgmma=len(re.findall(r"wgmma\.mma_async", ptx)), mma_sync=len(re.findall(r"\bmma\.sync", ptx)))
    except Exception as e:  # out of shared memory, unsupported layout...: recorded, never hidden
        row.update(registers=-1, spill_bytes=-1, shared_bytes=-1, wgmma=0, mma_sync=0,
                   error=f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
    row["seconds"] = round(time.time() - start, 1)
    return row


# ---- which jobs ----------------------------------------------------------------------------------------------

def jobs(kernels, head_dims, dtypes, masks, kept_only=False, configs=()) -> list[Job]:
    """configs: "BMxBNxWxS" strings (e.g. "64x64x4x4"): only those (BLOCK_M, BLOCK_N, warps, stages); () = all."""
    out = []
    for name in kernels:
        if name in ATTN_KERNELS:
            shapes = ATTN_KERNELS[name][1]
            kinds = ("bias",) if name == "dbias" else ATTN_MASKS
            dims = [d for d in head_dims if d != 256 or name == "fwd"]
            if name in ("dk", "dv"):
                dims = [d for d in dims if d >= A.SPLIT_DKDV_HEAD_DIM]
        elif name in POS_KERNELS:
            shapes, kinds = Rel.POS_SHAPES[POS_KERNELS[name][1]], POS_MASKS
            dims = [d for d in head_dims if d <= 128]
            if name.startswith("t5"):
                kinds = ("none", "kpm")  # T5 is bidirectional in encoders
        else:
            shapes, kinds, dims = {(16, 16, 4, 3): (32, 64, 128)}, ("half", "interleaved"), [d for d in head_dims
                                                                                            if d <= 128]
        for shape, kept_dims in shapes.items():
            if configs and "x".join(map(str, shape)) not in configs:
                continue
            for d in dims:
                kept = d in kept_dims and _launched(name, d)
                if kept_only and not kept:
                    continue
                for dt in dtypes:
                    for m in kinds:
                        if masks and m not in masks and name != "rotary":
                            continue
                        out.append(Job(name, *shape, head_dim=d, dtype=dt, mask=m, kept=kept))
    return out


def _launched(kernel: str, head_dim: int) -> bool:
    """Whether the launcher runs this kernel variant at this head dim (dK/dV: joint below the split, else split)."""
    if kernel == "dkdv":
        return head_dim < A.SPLIT_DKDV_HEAD_DIM
    if kernel in ("dk", "dv"):
        return head_dim >= A.SPLIT_DKDV_HEAD_DIM
    if kernel == "rel_dkdv":
        return len(Rel._split(Rel.POS_RELATIVE, head_dim)[0]) == 1
    if kernel in ("rel_dk", "rel_dv"):
        return len(Rel._split(Rel.POS_RELATIVE, head_dim)[0]) == 2
    return True


def failures(rows) -> list[str]:
    """Kept rows that break the bar: a spill, a compile error, or a dot that is not a wgmma."""
    bad = []
    for r in rows:
        if not r["kept"] or r["kernel"] == "rotary":
            continue
        if r["registers"] < 0 or r["spill_bytes"] > 0 or r["mma_sync"] > 0 or r["wgmma"] == 0:
            bad.append(f"{r['kernel']} {r['block_m']}x{r['block_n']} w{r['num_warps']} s{r['num_stages']} "
                       f"D={r['head_dim']} {r['dtype']} {r['mask']}: spill {r['spill_bytes']} B, "
                       f"wgmma {r['wgmma']}, mma.sync {r['mma_sync']} {r.get('error', '')}")
    return bad


def markdown(rows) -> str:
    lines = ["| kernel | D | BLOCK_M×N, warps, stages | kept | dtype | masks | registers | spill B (max) | "
             "shared KB | wgmma | mma.sync |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in rows:
        key = (r["kernel"], r["head_dim"], r["block_m"], r["block_n"], r["num_warps"], r["num_stages"], r["dtype"])
        groups.setdefault(key, []).append(r)
    for (kern, d, bm, bn, w, s, dt), rs in groups.items():
        ok = [r for r in rs if r["registers"] >= 0]
        if not ok:
            lines.append(f"| {kern} | {d} | {bm}×{bn}, {w}, {s} | {'yes' if rs[0]['kept'] else 'no'} | {dt} | "
                         f"{','.join(r['mask'] for r in rs)} | compile error | | | | |")
            continue
        regs = sorted({r["registers"] for r in ok})
        lines.append(
            f"| {kern} | {d} | {bm}×{bn}, {w}, {s} | {'**yes**' if rs[0]['kept'] else 'no'} | {dt} | "
            f"{','.join(r['mask'] for r in rs)} | {regs[0]}–{regs[-1]} | {max(r['spill_bytes'] for r in ok)} | "
            f"{max(r['shared_bytes'] for r in ok) / 1024:.0f} | {min(r['wgmma'] for r in ok)}–"
            f"{max(r['wgmma'] for r in ok)} | {max(r['mma_sync'] for r in ok)} |")
    return "\n".join(lines) + "\n"


def _table(rows):
    from rich.table import Table
    t = Table(title=f"sm_90a, triton {triton.__version__}, {os.path.basename(_ptxas())}")
    for k in ("kernel", "config", "D", "dtype", "mask", "regs", "spill B", "smem KB", "wgmma", "mma.sync", "kept"):
        t.add_column(k, justify="right" if k not in ("kernel", "dtype", "mask") else "left")
    for r in rows:
        spill = r["spill_bytes"]
        style = "red" if r["kept"] and (spill != 0 or r["mma_sync"]) else ("dim" if not r["kept"] else "")
        t.add_row(r["kernel"], f"{r['block_m']}×{r['block_n']} w{r['num_warps']} s{r['num_stages']}",
                  str(r["head_dim"]), r["dtype"], r["mask"], str(r["registers"]),
                  "error" if spill < 0 else str(spill), f"{r['shared_bytes'] / 1024:.0f}", str(r["wgmma"]),
                  str(r["mma_sync"]), "yes" if r["kept"] else "", style=style)
    return t


def _csv(s, cast=str):
    return [cast(x) for x in s.split(",") if x] if s else []


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kernel", default=",".join(ALL_KERNELS), help=f"comma list of {', '.join(ALL_KERNELS)}")
    p.add_argument("--head-dim", default="64,128,256")
    p.add_argument("--dtype", default=",".join(DTYPES), help=f"comma list of {', '.join(DTYPES)}")
    p.add_argument("--mask", default="", help="comma list of mask kinds (default: all of each kernel's)")
    p.add_argument("--kept-only", action="store_true", help="only the configs the launchers can pick")
    p.add_argument("--config", default="", help='comma list of "BMxBNxWxS" shapes, e.g. 64x64x4x4 (default: all)')
    p.add_argument("-j", "--jobs", type=int, default=2, help="compile processes")
    p.add_argument("--json", help="write the rows as JSON here")
    p.add_argument("--markdown", help="write the markdown summary here")
    p.add_argument("--log", help="append each row as a JSON line here as soon as it is compiled")
    a = p.parse_args(argv)
    unknown = set(_csv(a.kernel)) - set(ALL_KERNELS)
    if unknown:
        p.error(f"unknown kernel {sorted(unknown)}; choose from {', '.join(ALL_KERNELS)}")
    unknown = set(_csv(a.dtype)) - set(DTYPES)
    if unknown:
        p.error(f"unknown dtype {sorted(unknown)}; choose from {', '.join(DTYPES)}")
    todo = jobs(_csv(a.kernel), _csv(a.head_dim, int), _csv(a.dtype), _csv(a.mask), a.kept_only, _csv(a.config))
    from rich.console import Console
    from rich.progress import Progress
    console = Console(stderr=True)
    rows = []
    with Progress(console=console) as bar, ProcessPoolExecutor(max(1, a.jobs)) as pool:
        task = bar.add_task(f"compiling {len(todo)} kernels for sm_90a", total=len(todo))
        for row in pool.map(compile_job, todo):
            rows.append(row)
            bar.advance(task)
            if a.log:
                with open(a.log, "a") as f:
                    f.write(json.dumps(row) + "\n")
    Console().print(_table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump([{k: r[k] for k in KEYS} | ({"error": r["error"]} if "error" in r else {}) for r in rows],
                      f, indent=1)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(markdown(rows))
    bad = failures(rows)
    for line in bad:
        print("KEPT CONFIG FAILS:", line, file=sys.stderr)
    print(f"{len(rows)} compiled, {sum(r['kept'] for r in rows)} kept, {len(bad)} kept failing the bar "
          f"(triton {triton.__version__})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
