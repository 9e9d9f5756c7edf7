"""The whole GPU check in one call: the benchmarks, then the CUDA kernel tests, then a one-screen summary.

Run through `benchmarks/gpu_check.sh OUT_DIR [--dry-run]` (which installs attnkit first). It uses the
machine's own torch and triton, needs no network, and writes at most 8 files into OUT_DIR:

    env.json               device, driver, torch / triton versions, date, each step's status, time and output
                           tail (the CUDA kernel tests: fp16 / bf16, up to L = 8k)
    attention.json / .md   bench-kernels causal + full, fwd and fwd+bwd, bf16, D = 64 and 128,
                           L = 1k … 16k at 16k tokens: attnkit-triton vs SDPA flash and SDPA cuDNN
    flex.json              the same shapes through FlexAttention (compiled): its own step, since compiling
                           it per shape is the slowest part and a timeout must not cost the rest
    decode.json            one decoding step (Lq = 1) against caches of 8k–64k keys: split-KV (the dispatcher's
                           path) vs the plain forward kernel vs SDPA flash
    relative.json          the relative-position kernel vs the Music Transformer skewing reference, L = 4k, 16k
    decode_configs.json    benchmarks/decode_config_probe.py: each forward config alone on decoding shapes
    summary.md             the table printed at the end: TFLOPS per provider and attnkit's speedups

Every step has its own time limit inside the 8-minute budget (the CUDA tests run in 12 xdist workers); a step
that fails or runs out of time is recorded (status and the tail of its output) and the next one still runs.
`--dry-run` goes through the same steps on CPU with tiny shapes, the kernels in Triton's interpreter, so CI can
prove the script works.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Seconds per step (on the GPU: 8 min in all; the install and the summary add under half a minute). Each
# benchmark writes its JSON after every problem, so a step cut short keeps what it measured. On an H200
# (2026-12-04) the five-length attention sweep ran past 140 s (autotuning every config at every length
# bucket): it times three lengths now.
# The CUDA tests go last: each compiles its own kernel variant (Triton 3.6 did not finish the 30 in 90 s), while
# every benchmark cell is itself checked against the float64 reference before it is timed.
# The CUDA tests compile in 12 pytest-xdist workers (the machine has 16 cores): on 2026-12-04 one worker finished 6
# tests in 230 s, 8 workers did not finish in 75 s, 12 ran all 30 in 88 s. The steps before them took 126 / 20 /
# 14 / 42 s (attention, relative, decode, decode-configs) that day; their limits leave room above that, and the
# probe's CUDA-graph and SDPA timings since. FlexAttention compiles every cell and never finished in 90 s: it keeps
# what 65 s measure.
BUDGET = {"attention": 140, "flex": 65, "relative": 30, "decode": 30, "decode-configs": 75, "tests": 140}
DRY_BUDGET = {"tests": 240, "attention": 240, "flex": 240, "relative": 240, "decode": 240, "decode-configs": 240}

ATTENTION = dict(op="causal,full", mode="fwd,fwd+bwd", dtype="bfloat16", head_dim="64,128",
                 lengths="1024,4096,16384", tokens="16384", hidden="2048",
                 provider="attnkit-triton,sdpa-flash,sdpa-cudnn", baseline="sdpa-flash")
FLEX = dict(ATTENTION, provider="flex", baseline="flex")
RELATIVE = dict(op="rel", mode="fwd,fwd+bwd", dtype="bfloat16", head_dim="64", lengths="4096,16384",
                tokens="16384", hidden="512", provider="attnkit-triton,skewing", baseline="skewing")
DECODE = dict(op="decode", mode="fwd", dtype="bfloat16", head_dim="128", lengths="8192,16384,32768,65536",
              tokens="65536", hidden="4096", provider="attnkit-triton,attnkit-triton-plain,sdpa-flash",
              baseline="attnkit-triton-plain")
# The dry run: same steps, shapes the interpreter finishes in seconds (sdpa-cudnn reports "unsupported" on CPU).
# FlexAttention stays out of the dry run: torch.compile on CPU costs ~20 s per shape, and it has no CPU backward.
DRY = dict(dtype="float32", head_dim="16", lengths="64,128", tokens="128", hidden="32",
           provider="attnkit-triton,sdpa-flash,sdpa-cudnn")
DRY_RELATIVE = dict(DRY, lengths="64", tokens="64", provider=RELATIVE["provider"])
# The dry run's flex step times SDPA instead: torch.compile of FlexAttention costs ~20 s per shape on CPU.
DRY_FLEX = dict(DRY, lengths="64", provider="sdpa", baseline="sdpa")
DRY_DECODE = dict(DRY, lengths="128", tokens="128", provider=DECODE["provider"], baseline=DECODE["baseline"])
TESTS_GPU = ["tests/kernels", "-q", "-x", "-k", "cuda", "-p", "no:cacheprovider", "-n", "12"]
TESTS_DRY = ["tests/kernels/test_attention.py", "-q", "-x", "-p", "no:cacheprovider", "-k",
             "test_fp32_matches_reference and plain_gqa_d40 and cpu"]


def bench_args(spec: dict, out: Path, name: str, device: str, markdown: bool = True) -> list[str]:
    args = [sys.executable, "-m", "attnkit.cli", "bench-kernels", "--device", device, "--no-memory"]
    for key, value in spec.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args + ["--json", str(out / f"{name}.json")] + (["--markdown", str(out / f"{name}.md")] if markdown else [])


def run_step(name: str, cmd: list[str], limit: float, env: dict, log: list) -> str:
    """Run one step with a time limit; returns its output. Its status goes into `log`."""
    start = time.time()
    print(f"[gpu_check] {name}: {' '.join(cmd[1:] if cmd[0] == sys.executable else cmd)}", flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        status, output = ("ok" if proc.returncode == 0 else f"exit {proc.returncode}"), proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        status = f"timeout after {limit:.0f} s"
        output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    log.append(dict(step=name, status=status, seconds=round(time.time() - start, 1), tail=output[-3000:]))
    print(f"[gpu_check] {name}: {status} ({time.time() - start:.0f} s)", flush=True)
    return output


def _cell(r: dict) -> str:
    if r["status"] == "ok" and r.get("tflops"):
        return f"{r['tflops']:.4g}"
    if r["status"] == "ok" and r.get("ms"):  # the interpreter (dry run): a time, not kernel speed
        return f"{r['ms']:.3g} ms"
    return r["status"]


def summarize(out: Path) -> str:
    """Markdown: per (op, mode, D, L) the TFLOPS of each provider and attnkit's speedup over each other one."""
    lines = []
    for title, names in (("attention", ("attention", "flex")), ("relative", ("relative",)), ("decode", ("decode",))):
        records = []
        for name in names:
            path = out / f"{name}.json"
            if path.exists():
                records += json.loads(path.read_text())
            else:
                lines.append(f"{name}: no results (see env.json)\n")
        if not records:
            continue
        providers = sorted({r["provider"] for r in records}, key=lambda p: (p != "attnkit-triton", p))
        others = [p for p in providers if p != "attnkit-triton"]
        by_key: dict = {}
        for r in records:
            by_key.setdefault((r["op"], r["mode"], r["D"], r["L"]), {})[r["provider"]] = r
        lines.append(f"**{title}** (TFLOPS; × = other ms / attnkit ms, > 1: attnkit faster)\n")
        header = providers + [f"× {p}" for p in others]
        lines.append("| op | mode | D | L | " + " | ".join(header) + " |")
        lines.append("|---" * (4 + len(providers) + len(others)) + "|")
        for (op, mode, D, L), by in sorted(by_key.items()):
            mine = by.get("attnkit-triton", {})
            ratios = []
            for p in others:
                theirs = by.get(p, {})
                ok = mine.get("status") == "ok" and theirs.get("status") == "ok" and mine.get("ms")
                ratios.append(f"{theirs['ms'] / mine['ms']:.2f}" if ok else "-")
            lines.append(f"| {op} | {mode} | {D} | {L} | " + " | ".join(_cell(by[p]) if p in by else "-"
                                                                          for p in providers)
                         + " | " + " | ".join(ratios) + " |")
        lines.append("")
    return "\n".join(lines + _probe_lines(out / "decode_configs.json"))


def _probe_lines(path: Path) -> list[str]:
    """decode_config_probe.py's rows: per forward config and decoding shape, split-KV and plain ms (or the crash)."""
    if not path.exists():
        return ["decode_configs: no results (see env.json)"]
    def cell(r: dict, p: str) -> str:
        c = r.get(p, {})
        if c.get("status") != "ok":
            return c.get("status", r.get("status", "-"))
        return f"{c['ms']:.3g} / {c.get('graph_ms', float('nan')):.3g} ms"
    lines = ["**decode configs** (one forward config per process, D = 128, Lq = 1; eager / CUDA-graph ms)\n",
             "| config (BM, BN, warps, stages) | B | Hq | L | split | plain | sdpa-flash |",
             "|---|---|---|---|---|---|---|"]
    for r in json.loads(path.read_text()):
        lines.append(f"| {tuple(r['config'])} | {r.get('B', '-')} | {r.get('H', '-')} | {r.get('L', '-')} | "
                     f"{cell(r, 'split')} | {cell(r, 'plain')} | {cell(r, 'sdpa')} |")
    return lines


def environment() -> dict:
    import torch
    import triton
    info = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                python=platform.python_version(), torch=torch.__version__, triton=triton.__version__,
                cuda=torch.version.cuda, device="cpu")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device=props.name, sms=props.multi_processor_count, memory_gb=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}")
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="attnkit's one-call GPU check")
    p.add_argument("out_dir")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, kernels in Triton's interpreter")
    a = p.parse_args(argv)
    out = Path(a.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if a.dry_run:
        env.update(TRITON_INTERPRET="1", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
        budget, device = DRY_BUDGET, "cpu"
        attention, flex, relative = dict(ATTENTION, **DRY), dict(FLEX, **DRY_FLEX), dict(RELATIVE, **DRY_RELATIVE)
        decode = dict(DECODE, **DRY_DECODE)
    else:
        # "0", not unset: tests/conftest.py defaults an unset TRITON_INTERPRET to 1, which skipped every CUDA
        # test on the H200 (2026-12-04)
        env["TRITON_INTERPRET"] = "0"
        budget, device = BUDGET, "cuda"
        attention, flex, relative, decode = ATTENTION, FLEX, RELATIVE, DECODE
    log: list = []
    started = time.time()
    run_step("attention", bench_args(attention, out, "attention", device), budget["attention"], env, log)
    run_step("flex", bench_args(flex, out, "flex", device, markdown=False), budget["flex"], env, log)
    run_step("relative", bench_args(relative, out, "relative", device, markdown=False), budget["relative"], env, log)
    run_step("decode", bench_args(decode, out, "decode", device, markdown=False), budget["decode"], env, log)
    # Each forward config alone on decoding shapes: which one crashed autotuning at D = 128 on 2026-12-04
    probe = [sys.executable, str(ROOT / "benchmarks" / "decode_config_probe.py"), str(out / "decode_configs.json")]
    run_step("decode-configs", probe + (["--dry-run"] if a.dry_run else []), budget["decode-configs"], env, log)
    # One config per kernel in the tests (ATTNKIT_AUTOTUNE=0): they check values, and autotuning every mask
    # combination the tests use would spend the budget compiling.
    run_step("tests", [sys.executable, "-m", "pytest", *(TESTS_DRY if a.dry_run else TESTS_GPU)], budget["tests"],
             dict(env, ATTNKIT_AUTOTUNE="0"), log)
    summary = summarize(out)
    (out / "summary.md").write_text(summary)
    info = environment() | dict(dry_run=a.dry_run, steps=log, total_seconds=round(time.time() - started, 1))
    (out / "env.json").write_text(json.dumps(info, indent=1))
    print()
    print(f"{info['device']} · torch {info['torch']} · triton {info['triton']} · {info['date']}")
    for step in log:
        print(f"  {step['step']:10s} {step['status']:20s} {step['seconds']:7.1f} s")
    print(summary)
    return 0 if all(s["status"] == "ok" for s in log) else 1


if __name__ == "__main__":
    sys.exit(main())
