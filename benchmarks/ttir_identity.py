"""Is a kernel refactor free? Compare the Triton IR of every static-report job at a base revision and now.

Each job of `benchmarks/gpu_static_report.py` (same selection flags) is lowered to TTIR for sm_90a, after Triton's
own TTIR passes (inlining, canonicalization, CSE), once with the base revision's kernels/ and once with the working
tree's. Locations are dropped, SSA values renamed in order of appearance and constants compared as a set, because
helper and variable names change with a refactor. Identical TTIR, with the same target and options, lowers to
the same PTX: the same registers, spills, shared memory and MMA instructions. So where every job is identical the
refactor cannot have changed what `gpu_static_report.py` reports, for all rows at once, in seconds per job instead
of a full compile.

    env -u TRITON_INTERPRET python benchmarks/ttir_identity.py --base main --kernel fwd,dq --head-dim 64,128
    # → 160 jobs: 160 identical, 0 differ   (exit 1 if any differ, naming them)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor

KERNELS_DIR = "kernels"  # the source folder installed as attnkit.kernels


def _ttir(job) -> tuple[str, str]:
    """(row name, TTIR text) of one job, compiled exactly as gpu_static_report.compile_job specializes it."""
    import gpu_static_report as R
    import triton
    from triton._C.libtriton import ir
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend

    fn, sig, consts = R._build(job)
    sig, consts, attrs = R._specialize(fn, sig, consts)
    src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs)
    target = GPUTarget("cuda", 90, 32)
    backend = make_backend(target)
    options = backend.parse_options(dict(num_warps=job.num_warps, num_stages=job.num_stages, **src.parse_options()))
    context = ir.context()
    ir.load_dialects(context)
    backend.load_dialects(context)
    module = src.make_ir(target, options, backend.get_codegen_implementation(options), backend.get_module_map(),
                         context)
    stages = {}
    backend.add_stages(stages, options, src.language)
    name = (f"{job.kernel} {job.block_m}x{job.block_n}x{job.num_warps}x{job.num_stages} D{job.head_dim} "
            f"{job.dtype} {job.mask}")
    return name, str(stages["ttir"](module, {}))


def normalize(text: str) -> tuple[list[str], list[str]]:
    """(sorted constants, ops with locations dropped and values renamed %v0, %v1, ... in order of appearance)."""
    text = "\n".join(line for line in text.splitlines() if not line.startswith("#loc"))
    text = re.sub(r"\s*loc\((?:[^()]|\([^()]*\))*\)", "", text)
    const = re.compile(r"^\s*(%[\w.$-]+) = arith\.constant (.*)$")
    consts = {m.group(1): m.group(2) for m in map(const.match, text.splitlines()) if m}
    ids: dict[str, str] = {}

    def rename(m):
        if m.group(0) in consts:
            return f"%C<{consts[m.group(0)]}>"
        return ids.setdefault(m.group(0), f"%v{len(ids)}")

    ops = [re.sub(r"%[\w.$-]+", rename, line) for line in text.splitlines() if not const.match(line)]
    return sorted(consts.values()), ops


def dump(args) -> int:
    """Child process: TTIR of every selected job, with attnkit.kernels read from args.kernels_dir if given."""
    import attnkit.kernels
    if args.kernels_dir:
        attnkit.kernels.__path__.insert(0, args.kernels_dir)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gpu_static_report as R
    csv = lambda s, cast=str: [cast(x) for x in s.split(",")] if s else None  # noqa: E731
    jobs = R.jobs(csv(args.kernel), csv(args.head_dim, int), csv(args.dtype) or list(R.DTYPES), csv(args.mask),
                  kept_only=not args.all_configs)
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = dict(pool.map(_ttir, jobs))
    with open(args.dump, "w") as f:
        json.dump(rows, f)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="main", help="git revision to compare the working tree against")
    p.add_argument("--kernel", default="fwd,dkdv,dk,dv,dq,dbias", help="as gpu_static_report.py --kernel")
    p.add_argument("--head-dim", default="64,128")
    p.add_argument("--dtype", default="")
    p.add_argument("--mask", default="")
    p.add_argument("--all-configs", action="store_true", help="every candidate config, not only the kept ones")
    p.add_argument("-j", "--jobs", type=int, default=2)
    p.add_argument("--dump", help=argparse.SUPPRESS)
    p.add_argument("--kernels-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("unset TRITON_INTERPRET: the compiler, not the interpreter, is under test")
    if args.dump:
        return dump(args)
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", root, "archive", args.base, KERNELS_DIR], capture_output=True)
        if archive.returncode:
            sys.exit(f"git archive {args.base} {KERNELS_DIR}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        sides = {}
        for side, kernels_dir in (("base", os.path.join(tmp, KERNELS_DIR)), ("tree", "")):
            out = os.path.join(tmp, f"{side}.json")
            cmd = [sys.executable, os.path.abspath(__file__), "--dump", out, "--kernels-dir", kernels_dir,
                   "--kernel", args.kernel, "--head-dim", args.head_dim, "--dtype", args.dtype, "--mask", args.mask,
                   "-j", str(args.jobs)] + (["--all-configs"] if args.all_configs else [])
            subprocess.run(cmd, check=True)
            with open(out) as f:
                sides[side] = json.load(f)
    differ = [name for name in sides["base"] if normalize(sides["base"][name]) != normalize(sides["tree"][name])]
    print(f"{len(sides['base'])} jobs: {len(sides['base']) - len(differ)} identical, {len(differ)} differ")
    for name in differ:
        print(f"  differs: {name}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
