"""`attnkit bench-kernels`: the sweep. For every (op, mode, dtype, head dim, length) it builds one problem,
then for every provider: available? supports the op and mode? correct? — and only then times it.

Shapes follow FlashAttention's published benchmark: hidden = H·D fixed (2048 on CUDA), B·L = `tokens`
fixed (16k on CUDA), so every length does the same number of token-rows and the figures can be set beside
the FlashAttention-2/3 charts (see BENCHMARKS.md).
"""
from __future__ import annotations

import gc
import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

from attnkit.bench import measure
from attnkit.bench.cases import DTYPES, MODES, OPS, POSITION_OPS, build_case, flops
from attnkit.bench.providers import PROVIDERS
from attnkit.errors import UserError

# Defaults per device: (lengths, head dims, dtype, hidden, tokens).
DEFAULTS = {
    "cuda": dict(lengths=[512, 1024, 2048, 4096, 8192, 16384], head_dims=[64, 128], dtypes=["float16"],
                 hidden=2048, tokens=16384),
    "cpu": dict(lengths=[256, 512, 1024], head_dims=[64], dtypes=["float32"], hidden=512, tokens=4096),
}
QUICK = {
    "cuda": dict(lengths=[512, 1024], head_dims=[64], dtypes=["float16"], hidden=2048, tokens=16384),
    "cpu": dict(lengths=[128, 256], head_dims=[64], dtypes=["float32"], hidden=128, tokens=256),
}
# Triton's interpreter runs a kernel as numpy, block by block: about a second per call at this many B·H·L²·D;
# beyond it minutes, and interpreter timings say nothing about kernel speed anyway.
INTERPRETER_CAP = 2 ** 22  # B·H·L²·D: e.g. B=2, H=2, L=128, D=64 (the --quick CPU shape)
# Providers whose CPU cost is mostly torch.compile (tens of seconds per op): left out of --quick on CPU
# unless asked for by name.
SLOW_TO_START_ON_CPU = ("flex",)


def _split(value, cast=str) -> Optional[list]:
    """'a,b' or ['a', 'b'] or ['a,b'] -> [cast(a), cast(b)]; None stays None."""
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if part:
                try:
                    out.append(cast(part))
                except ValueError:
                    raise UserError(f"cannot read {part!r} as {cast.__name__}") from None
    return out or None


@dataclass
class BenchConfig:
    device: str = "auto"                 # auto | cpu | cuda
    op: Optional[list[str]] = None       # ops to run; None = all (see attnkit.bench.cases.OPS)
    provider: Optional[list[str]] = None  # providers to run; None = all registered
    dtype: Optional[str] = None          # comma list of float32, float16, bfloat16; None = device default
    lengths: Optional[str] = None        # comma list of sequence lengths; None = device default
    head_dim: Optional[str] = None       # comma list of head dims; None = device default
    mode: str = "fwd"                    # comma list of fwd, bwd, fwd+bwd
    hidden: Optional[int] = None         # H = hidden // D; None = 2048 on CUDA, 512 on CPU
    tokens: Optional[int] = None         # B = tokens // L; None = 16384 on CUDA, 4096 on CPU
    baseline: str = "sdpa"               # ratio = baseline ms / provider ms (>1: faster than the baseline)
    memory: Optional[bool] = None        # measure peak memory; None = yes, except --quick on CPU
    metric: str = "tflops"               # plot y axis: tflops | ms
    min_time: Optional[float] = None     # CPU: seconds of timing per measurement (None: 0.05 quick, 0.5 full)
    quick: bool = False                  # a few small shapes (about a minute on 2 CPU cores)
    json: Optional[str] = None           # write records as JSON
    csv: Optional[str] = None            # write records as CSV
    plot: Optional[str] = None           # write a PNG: metric against L, one line per provider
    markdown: Optional[str] = None       # write the tables as GitHub markdown


@dataclass
class Record:
    """One (provider, problem) result; `status` says whether the numbers exist and why not."""
    provider: str
    op: str
    mode: str
    dtype: str
    B: int
    H: int
    L: int
    D: int
    ms: Optional[float] = None
    tflops: Optional[float] = None
    peak_mem_mb: Optional[float] = None
    ratio: Optional[float] = None
    status: str = "ok"  # ok | wrong | unsupported | unavailable | skipped | error | oom
    reason: str = ""
    max_err: Optional[float] = None   # relative error of the worst tensor vs the float64 reference
    checked_at: str = ""              # "B=.., H=.." where correctness was checked (the timed shape if equal)
    baseline: str = ""
    interpreted: bool = False         # Triton interpreter on CPU: not kernel speed
    device: str = ""

    def to_dict(self) -> dict:
        """JSON-safe: a non-finite number (a NaN output's error) becomes None; `reason` keeps the text."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but torch sees no CUDA GPU (use --device cpu)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


@dataclass
class Plan:
    device: torch.device
    ops: list[str]
    providers: list[str]
    explicit_providers: bool
    modes: list[str]
    dtypes: list[str]
    head_dims: list[int]
    lengths: list[int]
    hidden: int
    tokens: int
    memory: bool
    min_time: float
    shapes: list[tuple[int, int, int, int]] = field(default_factory=list)  # (B, H, L, D)


def _choose(given, allowed, what: str) -> list:
    for g in given:
        if g not in allowed:
            raise UserError(f"unknown {what} {g!r}; choose from {', '.join(map(str, allowed))}")
    return list(dict.fromkeys(given))


def plan(cfg: BenchConfig) -> Plan:
    """Validate the config and fill the device's defaults."""
    device = resolve_device(cfg.device)
    d = (QUICK if cfg.quick else DEFAULTS)[device.type]
    ops = _choose(_split(cfg.op) or list(OPS), OPS, "op")
    providers = _choose(_split(cfg.provider) or list(PROVIDERS), list(PROVIDERS), "provider")
    modes = _choose(_split(cfg.mode) or ["fwd"], MODES, "mode")
    dtypes = _choose(_split(cfg.dtype) or d["dtypes"], list(DTYPES), "dtype")
    if cfg.baseline not in PROVIDERS:
        raise UserError(f"unknown baseline provider {cfg.baseline!r}; choose from {', '.join(PROVIDERS)}")
    if cfg.metric not in ("tflops", "ms"):
        raise UserError(f"unknown metric {cfg.metric!r}; choose tflops or ms")
    lengths = _split(cfg.lengths, int) or d["lengths"]
    head_dims = _split(cfg.head_dim, int) or d["head_dims"]
    hidden = cfg.hidden or d["hidden"]
    tokens = cfg.tokens or d["tokens"]
    for name, values in (("length", lengths), ("head dim", head_dims), ("hidden", [hidden]), ("tokens", [tokens])):
        if any(x < 1 for x in values):
            raise UserError(f"{name} must be positive, got {values}")
    memory = cfg.memory if cfg.memory is not None else not (cfg.quick and device.type == "cpu")
    min_time = cfg.min_time if cfg.min_time is not None else (0.05 if cfg.quick else 0.5)
    p = Plan(device, ops, providers, cfg.provider is not None, modes, dtypes, head_dims, lengths, hidden, tokens,
             memory, min_time)
    p.shapes = [(max(1, tokens // L), max(1, hidden // D), L, D) for D in head_dims for L in lengths]
    return p


def baseline_for(op: str, baseline: str) -> str:
    """SDPA takes no position bias: for rel/t5/alibi the SDPA way is the materialised bias."""
    if baseline in ("sdpa", "sdpa-math", "sdpa-flash", "sdpa-efficient", "sdpa-cudnn") and op in POSITION_OPS:
        return "bias+sdpa"
    return baseline


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_one(rec: Record, name: str, case, check_case, mode: str, p: Plan) -> None:
    """Check, then time (and on CUDA, peak memory) one provider on one problem; fills `rec` in place."""
    provider = PROVIDERS[name]
    try:
        result = measure.check(provider, check_case, mode)
    except Exception as e:  # noqa: BLE001 - a provider's failure is a result, not a crash
        rec.status, rec.reason = measure.classify_failure(e)
        return
    rec.max_err = result.max_err
    if not result.ok:
        rec.status = "wrong"
        rec.reason = f"{result.where} differs from the float64 reference by {result.max_err:.2e} (relative)"
        return
    try:
        step = measure.make_step(provider, case, mode)
        if rec.interpreted:  # seconds per call: one timed call after the check's run, for the record only
            rec.ms = measure.single_call_ms(step)
        else:
            step()
            step()  # warm-up: compilation, autotuning, caches
            rec.ms = measure.median_ms(step, p.device, p.min_time)
        del step
        _free(p.device)
        rec.tflops = flops(rec.op, mode, rec.B, rec.H, rec.L, rec.D) / (rec.ms * 1e-3) / 1e12
    except Exception as e:  # noqa: BLE001
        rec.status, rec.reason = measure.classify_failure(e)
        rec.ms = rec.tflops = None
        case.requires_grad_(False)
        return
    if p.memory and p.device.type == "cuda":
        try:
            rec.peak_mem_mb = measure.cuda_peak_mb(provider, case, mode)
        except Exception as e:  # noqa: BLE001 - the time stands; say why the memory is missing
            rec.reason = f"peak memory not measured: {measure.first_line(e)}"
        _free(p.device)
    case.requires_grad_(False)


def run_records(cfg: BenchConfig, progress=None, sink=None) -> list[Record]:
    """Run the sweep and return every record (ok or not).

    progress(advance_by, description, extra_total=0), optional, is told of every cell as it finishes.
    sink(records), optional, gets the records so far (ratios filled) after each problem: a sweep cut short by a
    time limit keeps what it measured.
    """
    p = plan(cfg)
    unavailable = {n: PROVIDERS[n].available(p.device) for n in p.providers}
    records: list[Record] = []
    for op, mode, dtype_name, (B, H, L, D) in itertools.product(p.ops, p.modes, p.dtypes, p.shapes):
        dtype = DTYPES[dtype_name]
        base = dict(op=op, mode=mode, dtype=dtype_name, B=B, H=H, L=L, D=D, device=p.device.type)
        case = check_case = build_failure = None
        Bc, Hc = measure.check_shape(B, H, L)
        for name in p.providers:
            provider = PROVIDERS[name]
            rec = Record(provider=name, **base, interpreted=provider.interpreted(p.device))
            records.append(rec)
            if progress:
                progress(0, f"{op} {mode} {dtype_name} L={L} D={D}: {name}")
            if unavailable[name]:
                rec.status, rec.reason = "unavailable", unavailable[name]
            elif why := provider.unsupported(op, mode, p.device, dtype):
                rec.status, rec.reason = "unsupported", why
            elif (p.device.type == "cpu" and cfg.quick and name in SLOW_TO_START_ON_CPU
                  and not p.explicit_providers):
                rec.status, rec.reason = "skipped", "torch.compile takes ~5-25 s per op on CPU: not in --quick " \
                                                    "unless asked for (--provider flex)"
            elif rec.interpreted and B * H * L * L * D > INTERPRETER_CAP:
                rec.status, rec.reason = "skipped", "too big for Triton's interpreter (B·H·L²·D > 2^22); time it on CUDA"
            else:
                if case is None and build_failure is None:
                    try:
                        case = build_case(op, B, H, L, D, dtype, p.device)
                        check_case = case if (Bc, Hc) == (B, H) else build_case(op, Bc, Hc, L, D, dtype, p.device)
                    except Exception as e:  # noqa: BLE001 - e.g. the (1, H, L, L) bias does not fit
                        build_failure = measure.classify_failure(e)
                if build_failure is not None:
                    rec.status, rec.reason = build_failure[0], f"inputs do not fit: {build_failure[1]}"
                else:
                    rec.checked_at = f"B={Bc}, H={Hc}"
                    measure_one(rec, name, case, check_case, mode, p)
            if progress:
                progress(1, None)
        del case, check_case
        _free(p.device)
        if sink:
            _fill_ratios(records, cfg.baseline)
            sink(records)
    _fill_ratios(records, cfg.baseline)
    if p.memory and p.device.type == "cpu":
        _cpu_memory(records, progress)
    return records


def _fill_ratios(records: list[Record], baseline: str) -> None:
    key = lambda r: (r.op, r.mode, r.dtype, r.B, r.H, r.L, r.D)  # noqa: E731
    base_ms = {}
    for r in records:
        if r.provider == baseline_for(r.op, baseline) and r.status == "ok":
            base_ms[key(r)] = r.ms
    for r in records:
        r.baseline = baseline_for(r.op, baseline)
        if r.interpreted:  # interpreter time is not kernel speed: no throughput, no ratio
            r.tflops = None
        elif r.status == "ok" and key(r) in base_ms:
            r.ratio = base_ms[key(r)] / r.ms


def _cpu_memory(records: list[Record], progress=None) -> None:
    todo = [r for r in records if r.status == "ok"]
    specs = [dict(provider=r.provider, op=r.op, mode=r.mode, dtype=r.dtype, B=r.B, H=r.H, L=r.L, D=r.D) for r in todo]
    if progress:
        progress(0, f"peak memory: {len(specs)} measurements in a worker process", len(specs))
    for rec, result in zip(todo, measure.cpu_peak_mb(specs)):
        rec.peak_mem_mb = result.get("peak_mem_mb")
        if "error" in result and not rec.reason:
            rec.reason = f"peak memory not measured: {result['error']}"
        if progress:
            progress(1, None)


def count_cells(p: Plan) -> int:
    """Cells in the sweep (one per provider and problem), for the progress bar."""
    return len(p.ops) * len(p.modes) * len(p.dtypes) * len(p.shapes) * len(p.providers)


def run_bench(cfg: BenchConfig) -> list[Record]:
    """The CLI job: run with a progress bar, print the tables, write --json / --csv / --plot."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from attnkit.bench import report

    console = Console(stderr=False)
    p = plan(cfg)  # validate before any work
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("bench-kernels", total=count_cells(p))

        def progress(advance, description, extra_total=0):
            if extra_total:  # the memory phase adds its measurements to the bar
                bar.update(task, total=bar.tasks[0].total + extra_total)
            if description:
                bar.update(task, description=description)
            if advance:
                bar.advance(task, advance)

        records = run_records(cfg, progress, sink=(lambda so_far: report.write_json(so_far, cfg.json))
                              if cfg.json else None)
    report.print_tables(records, p, console)
    if cfg.json:
        report.write_json(records, cfg.json)
        console.print(f"wrote {len(records)} records to {cfg.json}")
    if cfg.csv:
        report.write_csv(records, cfg.csv)
        console.print(f"wrote {cfg.csv}")
    if cfg.markdown:
        report.write_markdown(records, cfg.markdown, p.tokens)
        console.print(f"wrote {cfg.markdown}")
    if cfg.plot:
        report.write_plot(records, cfg.plot, cfg.metric, p.device)
        console.print(f"wrote {cfg.plot}")
    return records
