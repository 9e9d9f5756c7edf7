"""How bench-kernels results look: rich tables (one per op/mode/dtype/head dim), JSON, CSV and a PNG."""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import fields

from rich.console import Console
from rich.table import Table

from attnkit.fsio import atomic_write

# The keys every JSON/CSV record has (issue 5's schema); records carry a few more (see runner.Record).
JSON_KEYS = ("provider", "op", "mode", "dtype", "B", "H", "L", "D", "ms", "tflops", "peak_mem_mb", "ratio", "status")
STATUS_STYLE = {"wrong": "bold red", "error": "red", "oom": "yellow", "skipped": "dim", "unsupported": "dim"}


def _group_key(r):
    return (r.op, r.mode, r.dtype, r.D)


def _throughput(tflops: float) -> str:
    return f"{tflops:.3g} TFLOPS" if tflops >= 0.1 else f"{tflops * 1e3:.3g} GFLOPS"


def _cell(r) -> str:
    if r.status == "ok":
        if r.interpreted:  # a correctness run, not kernel speed: no throughput, no ratio
            return f"{r.ms:.3g} ms\n[dim]interpreted[/]"
        text = f"{r.ms:.3g} ms\n{_throughput(r.tflops)}"
        if r.ratio is not None:
            text += f"  {r.ratio:.2f}×"
        if r.peak_mem_mb is not None:
            text += f"\n{r.peak_mem_mb:.4g} MB"
        return text
    style = STATUS_STYLE.get(r.status, "")
    extra = f" ({r.max_err:.1e})" if r.status == "wrong" and r.max_err is not None else ""
    return f"[{style}]{r.status}{extra}[/]" if style else r.status


def _notes(recs) -> list[str]:
    """Why some providers have no numbers, one line per distinct reason."""
    from attnkit.bench.providers import PROVIDERS
    by_reason = defaultdict(dict)  # (status, reason) -> provider -> lengths
    for r in recs:
        if r.status == "ok" and not r.reason:
            continue
        provider = PROVIDERS.get(r.provider)
        if r.status == "unsupported" and provider is not None and r.op not in provider.ops:
            key = ("not implemented for this op", "")
        else:
            key = (r.status, r.reason)
        by_reason[key].setdefault(r.provider, []).append(r.L)
    all_lengths = sorted({r.L for r in recs})
    lines = []
    for (status, reason), who in by_reason.items():
        names = [name if sorted(Ls) == all_lengths else f"{name} (L={', '.join(map(str, sorted(Ls)))})"
                 for name, Ls in who.items()]
        lines.append(f"{status}: {', '.join(names)}" + (f" — {reason}" if reason else ""))
    if any(r.interpreted and r.status == "ok" for r in recs):
        lines.append("interpreted: Triton's CPU interpreter; a correctness run, its time is not kernel speed")
    return lines


def print_tables(records, plan, console: Console) -> None:
    groups = defaultdict(list)
    for r in records:
        groups[_group_key(r)].append(r)
    device = plan.device.type
    for (op, mode, dtype, D), recs in groups.items():
        lengths = sorted({r.L for r in recs})
        by_len = {r.L: r for r in recs}
        table = Table(title=f"{op} · {mode} · {dtype} · D={D} · H={recs[0].H} · B·L={plan.tokens} tokens · {device}",
                      caption=f"ratio = {recs[0].baseline} ms / provider ms (>1 is faster); "
                              "FLOP formula in BENCHMARKS.md",
                      show_lines=True)
        table.add_column("provider")
        for L in lengths:
            table.add_column(f"L={L} (B={by_len[L].B})", justify="right")
        rows = defaultdict(dict)
        for r in recs:
            if r.status not in ("unavailable", "unsupported"):
                rows[r.provider][r.L] = r
        for name, cells in rows.items():
            table.add_row(name, *[_cell(cells[L]) if L in cells else "" for L in lengths])
        console.print(table)
        for line in _notes(recs):
            console.print(f"  [dim]{line}[/]", highlight=False)
        console.print()


def write_json(records, path: str) -> None:
    """Whole or not at all (written again after every problem while a sweep runs)."""
    atomic_write(path, json.dumps([r.to_dict() for r in records], indent=1))


def write_csv(records, path: str) -> None:
    if not records:
        open(path, "w").close()
        return
    names = [f.name for f in fields(records[0])]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for r in records:
            writer.writerow(r.to_dict())


def _md_cell(r) -> str:
    if r.status == "ok":
        if r.interpreted:
            return f"{r.ms:.3g} ms (interpreted)"
        text = f"{r.ms:.3g} ms · {_throughput(r.tflops)}"
        text += f" · {r.ratio:.2f}×" if r.ratio is not None else ""
        text += f" · {r.peak_mem_mb:.4g} MB" if r.peak_mem_mb is not None else ""
        return text
    return f"**wrong** ({r.max_err:.1e})" if r.status == "wrong" and r.max_err is not None else r.status


def write_markdown(records, path: str, tokens: int) -> None:
    """The tables as GitHub markdown (for BENCHMARKS.md or a report): one per (op, mode, dtype, D)."""
    groups = defaultdict(list)
    for r in records:
        groups[_group_key(r)].append(r)
    out = []
    for (op, mode, dtype, D), recs in groups.items():
        lengths = sorted({r.L for r in recs})
        batch = {r.L: r.B for r in recs}
        out.append(f"**{op} · {mode} · {dtype} · D={D} · H={recs[0].H} · B·L={tokens}** "
                   f"(cell: median ms · throughput · {recs[0].baseline} ms / ms · peak MB)\n")
        out.append("| provider | " + " | ".join(f"L={L} (B={batch[L]})" for L in lengths) + " |")
        out.append("|---" * (len(lengths) + 1) + "|")
        rows = defaultdict(dict)
        for r in recs:
            if r.status not in ("unavailable", "unsupported"):
                rows[r.provider][r.L] = r
        for name, cells in rows.items():
            out.append(f"| {name} | " + " | ".join(_md_cell(cells[L]) if L in cells else "" for L in lengths) + " |")
        out.append("")
        out.extend(f"- {line}" for line in _notes(recs))
        out.append("")
    with open(path, "w") as f:
        f.write("\n".join(out))


def write_plot(records, path: str, metric: str, device) -> None:
    """One panel per (op, mode, dtype, D): `metric` against L (log2 axis), one line per provider, each
    provider one colour in every panel. Interpreted Triton runs appear only on ms plots (dashed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnkit.bench.providers import PROVIDERS

    names = list(PROVIDERS) + sorted({r.provider for r in records} - set(PROVIDERS))
    palette = list(plt.get_cmap("tab10").colors) + ["black", "gold", "navy", "lime"]
    colour = {n: palette[i % len(palette)] for i, n in enumerate(names)}
    groups = defaultdict(list)
    for r in records:
        if r.status == "ok" and not (metric == "tflops" and r.interpreted):
            groups[_group_key(r)].append(r)
    n = max(1, len(groups))
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    legend_in = 0.25 + 0.2 * ((len(names) + 5) // 6)  # room under the panels for the shared legend
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.4 * rows + legend_in), squeeze=False)
    handles = {}
    for ax, ((op, mode, dtype, D), recs) in zip(axes.flat, groups.items()):
        lines = defaultdict(list)
        for r in recs:
            lines[r.provider].append((r.L, r.tflops if metric == "tflops" else r.ms, r.interpreted))
        for name, pts in sorted(lines.items(), key=lambda kv: names.index(kv[0])):
            pts.sort()
            interp = pts[0][2]
            text = f"{name} (interpreted)" if interp else name
            (h,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=colour[name],
                           linestyle="--" if interp else "-", label=text)
            handles.setdefault(text, h)
        Ls = sorted({r.L for r in recs})
        ax.set_xscale("log", base=2)
        ax.set_xticks(Ls, [str(L) for L in Ls])
        ax.minorticks_off()
        if metric == "ms":
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(f"{op} · {mode} · {dtype} · D={D}", fontsize=10)
        ax.set_xlabel("sequence length L")
        ax.set_ylabel("TFLOPS" if metric == "tflops" else "median ms (log)")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    if not groups:
        axes.flat[0].text(0.5, 0.5, "no provider produced a timing", ha="center", va="center")
    note = " · interpreted Triton runs left out (not kernel speed)" if metric == "tflops" and any(
        r.interpreted for r in records) else ""
    fig.suptitle(f"attnkit bench-kernels on {device.type}: {'TFLOPS' if metric == 'tflops' else 'median ms'}"
                 f" against L{note}", fontsize=11)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(6, max(1, len(handles))),
               fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, legend_in / (3.4 * rows + legend_in), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
