"""Correctness check, timing and peak memory of one provider on one problem.

Correctness first: `check` runs the provider (forward, and for bwd modes the gradients of q, k, v and the
learnable extras) and compares with the op's float64 definition. Only a provider that passes is timed.
    error = max |x − x_ref| / max |x_ref| per tensor (max over tensors); pass if ≤ TOLERANCE[dtype]
    (×2 for gradients). A zero or NaN output fails.
Timing: `triton.testing.do_bench` (median) on CUDA, `torch.utils.benchmark` blocked_autorange (median)
on CPU, after warm-up calls (which also compile FlexAttention).
Peak memory (peak_mem_mb): the case's input tensors plus the most extra memory held during one forward
(fwd) or forward + backward (bwd, fwd+bwd). CUDA: torch.cuda.max_memory_allocated. CPU: the RSS
high-water mark of a worker subprocess (`python -m attnkit.bench.measure`) with glibc's mmap threshold
fixed so freed tensors leave the RSS.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from attnkit.bench.cases import Case, build_case, reference, upcast
from attnkit.bench.providers import PROVIDERS, Provider

TOLERANCE = {torch.float32: 5e-3, torch.float16: 1e-2, torch.bfloat16: 3e-2}
CHECK_BUDGET = 2 ** 26  # B·H·L² above this: check at B = 1, H ≤ 2 (same L, D, dtype) to bound the float64 work


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:160]}" if text else type(e).__name__


def classify_failure(e: BaseException) -> tuple[str, str]:
    """(status, reason) for an exception raised by a provider."""
    msg = str(e)
    if isinstance(e, torch.cuda.OutOfMemoryError) or "can't allocate memory" in msg or "out of memory" in msg:
        return "oom", first_line(e)
    if "No viable backend" in msg or "No available kernel" in msg:
        return "unsupported", "torch has no kernel of this SDPA backend for these inputs on this device"
    return "error", first_line(e)


def _rel_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    ref = ref.double()
    scale = ref.abs().max().item()
    err = (x.double() - ref).abs().max().item()
    if err != err:  # NaN
        return float("inf")
    return err / max(scale, 1e-12)


def _dout(case: Case, like: torch.Tensor) -> torch.Tensor:
    """The output gradient: the same numbers for every provider and the reference (seeded, drawn in float32)."""
    g = torch.Generator(device=like.device).manual_seed(1234)
    return torch.randn(like.shape, generator=g, device=like.device, dtype=torch.float32).to(like.dtype)


def check_shape(B: int, H: int, L: int) -> tuple[int, int]:
    return (B, H) if B * H * L * L <= CHECK_BUDGET else (1, min(H, 2))


@dataclass
class Check:
    ok: bool
    max_err: float
    where: str  # which tensor had the largest error


def _reference_once(case: Case, mode: str) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The float64 output (and gradients, for bwd modes) of the op's definition; computed once per case."""
    with_grad = mode != "fwd"
    if with_grad not in case.ref_cache:
        case64 = upcast(case).requires_grad_(with_grad)
        with torch.set_grad_enabled(with_grad):
            out = reference(case64)
        grads = torch.autograd.grad(out, case64.grad_inputs(), _dout(case64, out)) if with_grad else ()
        case.ref_cache[with_grad] = (out.detach(), tuple(g.detach() for g in grads))
    return case.ref_cache[with_grad]


def check(provider: Provider, case: Case, mode: str) -> Check:
    """Run the provider on `case` and compare with the float64 reference (gradients too in bwd modes)."""
    with_grad = mode != "fwd"
    case.requires_grad_(with_grad)
    forward = provider.setup(case)
    with torch.set_grad_enabled(with_grad), warnings.catch_warnings():
        # A forced SDPA backend that cannot run warns before it raises; the raise is the record's reason.
        warnings.simplefilter("ignore", UserWarning)
        out = forward()
    out_ref, grads_ref = _reference_once(case, mode)
    errors = {"out": _rel_error(out.detach(), out_ref)}
    if with_grad:
        names = ["dq", "dk", "dv"] + [f"d{n}" for n in case.learnable]
        grads = torch.autograd.grad(out, case.grad_inputs(), _dout(case, out), allow_unused=True)
        for name, g, gr in zip(names, grads, grads_ref):
            # A missing gradient is a wrong gradient (unless the reference's is zero too).
            errors[name] = _rel_error(torch.zeros_like(gr) if g is None else g, gr)
    case.requires_grad_(False)
    tol = TOLERANCE[case.dtype]
    # Gradients get twice the output's tolerance; rank the tensors by error / their tolerance.
    where = max(errors, key=lambda n: errors[n] / (tol if n == "out" else 2 * tol))
    ok = all(err <= (tol if n == "out" else 2 * tol) for n, err in errors.items())
    return Check(ok, errors[where], where)


def make_step(provider: Provider, case: Case, mode: str) -> Callable[[], object]:
    """The callable that is timed. fwd: forward without autograd. bwd: gradients through a graph built once
    (retain_graph). fwd+bwd: forward then gradients."""
    forward = provider.setup(case)
    if mode == "fwd":
        case.requires_grad_(False)

        def step():
            with torch.no_grad():
                return forward()
        return step
    case.requires_grad_(True)
    inputs = case.grad_inputs()
    if mode == "bwd":
        out = forward()
        dout = _dout(case, out)
        return lambda: torch.autograd.grad(out, inputs, dout, retain_graph=True, allow_unused=True)

    dout = None

    def step():
        nonlocal dout
        out = forward()
        dout = _dout(case, out) if dout is None else dout
        return torch.autograd.grad(out, inputs, dout, allow_unused=True)
    return step


def median_ms(step: Callable[[], object], device: torch.device, min_run_time: float) -> float:
    if device.type == "cuda":
        from triton.testing import do_bench
        return float(do_bench(step, warmup=25, rep=100, return_mode="median"))
    from torch.utils import benchmark
    timer = benchmark.Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def single_call_ms(step: Callable[[], object]) -> float:
    """Wall time of one call (for Triton's interpreter, where one call takes seconds)."""
    from torch.utils import benchmark
    return benchmark.Timer(stmt="step()", globals={"step": step}).timeit(1).median * 1e3


def input_bytes(case: Case) -> int:
    tensors = [case.q, case.k, case.v] + [t for t in case.extras.values() if isinstance(t, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


def cuda_peak_mb(provider: Provider, case: Case, mode: str) -> float:
    """Inputs + the most extra memory allocated during one forward (fwd) or forward + backward."""
    step = make_step(provider, case, "fwd" if mode == "fwd" else "fwd+bwd")
    step()  # warm-up (compilation, workspace caches)
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before + input_bytes(case)) / 2 ** 20


# --------------------------------------------------------------------------------------------
# CPU peak memory: a worker subprocess reads its own RSS high-water mark
# --------------------------------------------------------------------------------------------

def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _cpu_peak_mb_here(spec: dict) -> float:
    """In the worker: inputs + (RSS high-water mark during one step − RSS just before it)."""
    from attnkit.bench.cases import DTYPES
    provider = PROVIDERS[spec["provider"]]
    case = build_case(spec["op"], spec["B"], spec["H"], spec["L"], spec["D"], DTYPES[spec["dtype"]], "cpu")
    step = make_step(provider, case, "fwd" if spec["mode"] == "fwd" else "fwd+bwd")
    step()  # warm-up: compilation and one-time buffers are not the op's memory
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = _status_kb("VmRSS")
    step()
    peak = _status_kb("VmHWM")
    return ((peak - before) * 1024 + input_bytes(case)) / 2 ** 20


def _worker_main(specs: list[dict]) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    for spec in specs:
        try:
            result = {"peak_mem_mb": _cpu_peak_mb_here(spec)}
        except Exception as e:  # noqa: BLE001 - reported per spec, the worker goes on
            result = {"error": first_line(e)}
        print(json.dumps(result), flush=True)


def cpu_peak_mb(specs: list[dict]) -> Iterator[dict]:
    """Measure each spec (provider, op, mode, dtype, B, H, L, D) in one worker process; yields one
    {"peak_mem_mb": MB} or {"error": reason} per spec, in order, as they finish."""
    if not os.path.exists("/proc/self/clear_refs"):
        for _ in specs:
            yield {"error": "CPU peak memory needs Linux /proc (clear_refs, VmHWM)"}
        return
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")  # big frees go back to the OS: RSS tracks live memory
    proc = subprocess.Popen([sys.executable, "-m", "attnkit.bench.measure", json.dumps(specs)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    n = 0
    for line in proc.stdout:
        line = line.strip()
        if line.startswith("{"):
            n += 1
            yield json.loads(line)
    err = proc.stderr.read().strip()
    proc.wait()
    for _ in range(n, len(specs)):
        yield {"error": f"memory worker exited ({proc.returncode}): {err.splitlines()[-1] if err else ''}"}


if __name__ == "__main__":
    _worker_main(json.loads(sys.argv[1]))
