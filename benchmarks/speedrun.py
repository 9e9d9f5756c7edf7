"""GPT speedrun on the CPU: nanoGPT's recipe (`--flavor demo`) against the modern one (`--flavor speedrun`)
and the modern one minus each of its techniques, trained back to back in this one script.

Every arm is a fresh `attnkit train` process (so torch.compile caches and thread pools start cold for
each, and compile time is paid inside the arm), on the embedded corpus, writing metrics.jsonl with `wall_s`
(seconds since its run started, compile included) beside `val_loss` on every eval row. From those rows:

    to demo final   wall seconds until the arm's val loss first reaches the demo's final val loss
                    (read at eval rows, so it is an upper bound by at most one eval interval)
    val @ demo wall the best val loss the arm has reached by the demo's total wall time
    speedup         demo wall / "to demo final"

Ablations run the speedrun flavor's steps with one technique switched off (`--opt`), so each gets about
the same wall budget; `+compile` adds torch.compile to the speedrun flavor. Timings are wall clock: on a shared machine, compare arms only within
one run of this script (`--rounds 2` interleaves a second pass of every arm to expose the noise). Every arm
runs with OMP_NUM_THREADS=--threads, one arm at a time unless --jobs says otherwise (default 1: on a busy machine, two OpenMP threads spin-wait and a step
took over 10× longer than on one). With --jobs > 1 the arms share the machine, and those that finish early free
it for the rest, which favours the longest arm (the demo): the speedups it reports are then low.

    python benchmarks/speedrun.py                       # demo, speedrun, every ablation
    python benchmarks/speedrun.py --arms demo,speedrun  # just the two flavors
    python benchmarks/speedrun.py --scale 0.1           # a ten-times shorter smoke run of the same arms
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from rich.console import Console
from rich.table import Table

# name -> extra `attnkit train` arguments on top of the speedrun flavor: that technique switched off.
ABLATIONS: dict[str, list[str]] = {
    "-muon": ["--opt", "optimizer=adamw"],
    "-rotary": ["--opt", "position=learned"],
    "-qk_norm": ["--opt", "qk_norm=false"],
    "-relu2": ["--opt", "activation=gelu"],
    "-untied_zero_init": ["--opt", "tie_head=true", "--opt", "zero_init=false"],
    "-softcap": ["--opt", "softcap=0"],
    "-value_embeds": ["--opt", "value_embeds=0"],
    "-unet": ["--opt", "unet=false"],
}
# Not ablations: torch.compile on top (its compile time counts in wall_s), and the window.
# The sliding window is off in the flavor (at 128 tokens it saves no work on the CPU): `+window` tries it.
EXTRAS: dict[str, list[str]] = {"+compile": ["--compile"],
                                "+window": ["--opt", "window=64", "--opt", "window_warmup=true"]}
ARMS: dict[str, list[str]] = {"demo": ["--flavor", "demo"], "speedrun": ["--flavor", "speedrun"],
                              **{k: ["--flavor", "speedrun", *v] for k, v in {**ABLATIONS, **EXTRAS}.items()}}


def train(arm: str, out: Path, scale: float, seed: int, threads: int, log: Path) -> list[dict]:
    """Run one arm in its own process; its metrics.jsonl rows."""
    args = [sys.executable, "-m", "attnkit.cli", "train", "--model", "gpt", *ARMS[arm], "--out", str(out),
            "--overwrite", "--seed", str(seed), "--device", "cpu"]
    if scale != 1.0:
        steps = _flavor_steps(ARMS[arm][1])
        args += ["--max-steps", str(max(int(steps * scale), 2)),
                 "--eval-interval", str(max(int(steps * scale) // 8, 1))]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the CPU path is torch
    env["OMP_NUM_THREADS"] = str(threads)
    with log.open("w") as f:
        subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, env=env, check=True)
    return [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]


def _flavor_steps(flavor: str) -> int:
    from attnkit.zoo.tasks.gpt import GPTTask

    return GPTTask.flavors[flavor].train["max_steps"]


def time_to(rows: list[dict], target: float) -> float | None:
    """wall_s of the first eval row at or below target (None if never)."""
    return next((r["wall_s"] for r in rows if r["val_loss"] <= target), None)


def best_by(rows: list[dict], wall: float) -> float:
    return min(r["val_loss"] for r in rows if r["wall_s"] <= wall or r is rows[0])


def summarise(runs: dict[str, list[list[dict]]]) -> list[dict]:
    """One row per arm (first round's demo sets the targets; each round is compared with its own demo)."""
    out = []
    for arm, rounds in runs.items():
        per_round = []
        for i, rows in enumerate(rounds):
            demo = runs["demo"][i]
            target, demo_wall = demo[-1]["val_loss"], demo[-1]["wall_s"]
            t = time_to(rows, target)
            per_round.append(dict(final=rows[-1]["val_loss"], wall=rows[-1]["wall_s"], to_target=t,
                                  at_demo_wall=best_by(rows, demo_wall),
                                  speedup=demo_wall / t if t else None))
        out.append({"arm": arm, "steps": rounds[0][-1]["step"], "rounds": per_round})
    return out


def print_table(console: Console, summary: list[dict]) -> None:
    table = Table(title="GPT speedrun on the CPU: val loss against wall time (same machine, same run)")
    for col in ("arm", "steps", "wall s", "final val", "to demo final (s)", "speedup", "val @ demo wall"):
        table.add_column(col, justify="left" if col == "arm" else "right")

    def show(values, fmt):
        vals = [v for v in values if v is not None]
        if not vals:
            return "never"
        text = "/".join(fmt.format(v) for v in vals)
        return text if len(vals) == len(values) else text + " (never in some)"

    for s in summary:
        r = s["rounds"]
        table.add_row(s["arm"], str(s["steps"]), show([x["wall"] for x in r], "{:.0f}"),
                      show([x["final"] for x in r], "{:.3f}"), show([x["to_target"] for x in r], "{:.0f}"),
                      show([x["speedup"] for x in r], "{:.2f}×"), show([x["at_demo_wall"] for x in r], "{:.3f}"))
    console.print(table)


def markdown(summary: list[dict]) -> str:
    """The table as Markdown (first round), for README.md and BENCHMARKS.md."""
    def f(v, fmt):
        return "never" if v is None else fmt.format(v)

    lines = ["| arm | steps | wall s | final val | s to demo's final val | speedup | val @ demo's wall |",
             "|---|---|---|---|---|---|---|"]
    for s in summary:
        r = s["rounds"][0]
        lines.append(f"| {s['arm']} | {s['steps']} | {r['wall']:.0f} | {r['final']:.3f} | {f(r['to_target'], '{:.0f}')} "
                     f"| {f(r['speedup'], '{:.2f}×')} | {r['at_demo_wall']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, list[list[dict]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for arm, rounds in runs.items():
        rows = rounds[0]
        style = dict(lw=2.5, color="k") if arm == "demo" else dict(lw=2.5, color="C3") if arm == "speedrun" \
            else dict(lw=1, alpha=0.7)
        ax.plot([r["wall_s"] for r in rows], [r["val_loss"] for r in rows], "-o", ms=2, label=arm, **style)
    demo = runs["demo"][0][-1]["val_loss"]
    ax.axhline(demo, color="k", ls=":", lw=1, label=f"demo final {demo:.3f}")
    ax.set(xlabel="wall seconds (compile included)", ylabel="val loss", title="GPT on the CPU: val loss vs wall time",
           ylim=(min(r["val_loss"] for rs in runs.values() for r in rs[0]) - 0.05, 2.6))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma list from: {', '.join(ARMS)}")
    p.add_argument("--rounds", type=int, default=1, help="passes over all arms, interleaved (noise check)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every arm's steps (smoke runs)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=1,
                   help="OMP_NUM_THREADS of every arm (on a busy shared machine two threads spin and run far slower)")
    p.add_argument("--jobs", type=int, default=1,
                   help="arms trained at once (each a process of --threads threads); with more than one, every "
                        "arm shares the machine with the others, so set it no higher than the free cores")
    p.add_argument("--out", default="benchmarks/results/speedrun", help="PNG, JSON and logs go here")
    args = p.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arm {unknown[0]!r}; choose from {', '.join(ARMS)}")
    if "demo" not in arms:
        arms.insert(0, "demo")  # the targets come from it
    console, out = Console(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[list[dict]]] = {a: [None] * args.rounds for a in arms}
    jobs = [(rnd, arm) for rnd in range(args.rounds) for arm in arms]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool, \
            console.status(f"training {len(jobs)} arm(s), {args.jobs} at a time") as status:
        futures = {pool.submit(train, arm, Path(tmp) / f"{arm}-{rnd}", args.scale, args.seed, args.threads,
                               out / f"{arm}-{rnd}.log"): (rnd, arm) for rnd, arm in jobs}
        for done, future in enumerate(as_completed(futures), 1):
            rnd, arm = futures[future]
            rows = runs[arm][rnd] = future.result()
            status.update(f"trained {done}/{len(jobs)} arms, {args.jobs} at a time")
            console.print(f"{arm:>18} (round {rnd + 1}): step {rows[-1]['step']}, val {rows[-1]['val_loss']:.4f}, "
                          f"{rows[-1]['wall_s']:.0f} s")
    summary = summarise(runs)
    print_table(console, summary)
    plot(runs, out / "speedrun.png")
    (out / "speedrun.md").write_text(markdown(summary))
    (out / "speedrun.json").write_text(json.dumps({"argv": sys.argv, "cpus": os.cpu_count(),
                                                   "load_avg": os.getloadavg(), "summary": summary,
                                                   "runs": runs}, indent=1))
    console.print(f"wrote {out / 'speedrun.png'}, {out / 'speedrun.md'} and {out / 'speedrun.json'}")
    return summary


if __name__ == "__main__":
    main()
