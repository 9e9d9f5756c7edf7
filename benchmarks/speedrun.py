"""GPT speedrun on the CPU: nanoGPT's own train.py against our modern recipe (`--flavor speedrun`), our
re-implementation of nanoGPT's recipe (`--flavor demo`) and the modern one minus each of its techniques, trained
back to back in this one script.

The `nanogpt` arm runs karpathy/nanoGPT's train.py, vendored unmodified in attnkit/results/vendor/nanogpt/, with
its README's CPU command (config/train_shakespeare_char.py, 4 layers × 4 heads × 128, block 64, batch 12, 2000
iterations, eval every 250 on 20 batches), on our embedded corpus and our GPT task's own train/val split,
written as its char-level train.bin/val.bin/meta.pkl (like its data/shakespeare_char/prepare.py) in a temp dir.
Its train.py has no seed knob (torch.manual_seed(1337)): every pass runs the same curve; only its time varies.
How each arm is run, timed and re-scored is attnkit.results.speedrun, which `attnkit reproduce --model gpt` runs
too; this script adds the ablations, several passes and the tables.

Every arm is a fresh process (torch.compile caches and thread pools start cold, compile time is paid inside
the arm), timed the same way: seconds since the process started, read when it prints an eval line. Two
measures of time to the baseline's (`--baseline`, default nanogpt) final val loss:

    common          every arm's checkpoints re-evaluated afterwards on the same text: the whole val split cut
                    into consecutive 64-token windows (nanoGPT's block), each token predicted from the tokens
                    before it in its window. Target: the baseline's final model's loss; an arm's time: its
                    first checkpoint (one per eval row) at or below it. The headline.
    printed         each arm's own eval as it printed it (nanoGPT: 20 random batches of 12 × 64; ours: the
                    flavor's fixed eval batches at its block size, 128 for speedrun). Target: the baseline's
                    final printed val loss.
    speedup         baseline wall (its final eval) / an arm's time to the target (read at eval rows, so an upper
                    bound on the time by at most one eval interval: the speedup is a lower bound)

Ablations run the speedrun flavor's steps with one technique switched off (`--opt`); `+compile` adds
torch.compile. Timings are wall clock: compare arms only within one run of this script. `--seeds 0,1,2` makes
one pass over every arm per seed, each pass compared with its own baseline. Every arm runs with
OMP_NUM_THREADS=--threads, one at a time unless --jobs says otherwise (default 1; with more, arms share the
machine and those that finish early free it for the rest). `--lock FILE` holds an flock on FILE while each arm
trains (a machine shared with other jobs: each arm runs alone, others may run between arms).

    python benchmarks/speedrun.py --arms nanogpt,speedrun,demo --seeds 0,1,2   # the claim
    python benchmarks/speedrun.py                        # nanoGPT, demo, speedrun, every ablation
    python benchmarks/speedrun.py --scale 0.1            # a ten-times shorter smoke run of the same arms
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from attnkit.errors import UserError
from attnkit.results.speedrun import (COMMON_BLOCK, NANOGPT_EVAL_INTERVAL, NANOGPT_STEPS, gpt_split, speedup,
                                      time_to, train_nanogpt, train_ours)

# name -> extra `attnkit train` arguments on top of the speedrun flavor: that technique switched off.
ABLATIONS: dict[str, list[str]] = {
    "-muon": ["--opt", "optimizer=adamw"],
    "-rotary": ["--opt", "position=learned"],
    "-qk_norm": ["--opt", "qk_norm=false"],
    "-untied_zero_init": ["--opt", "tie_head=true", "--opt", "zero_init=false"],
    "-softcap": ["--opt", "softcap=0"],
    "-value_embeds": ["--opt", "value_embeds=0"],
    "-unet": ["--opt", "unet=false"],
}
# Not ablations: torch.compile on top (its compile time counts in wall_s), ReLU² (the flavor has GELU), the window.
# The sliding window is off in the flavor (at 128 tokens it saves no work on the CPU): `+window` tries it.
EXTRAS: dict[str, list[str]] = {"+compile": ["--compile"], "+relu2": ["--opt", "activation=relu2"],
                                "+window": ["--opt", "window=64", "--opt", "window_warmup=true"]}
ARMS: dict[str, list[str]] = {"nanogpt": [], "demo": ["--flavor", "demo"], "speedrun": ["--flavor", "speedrun"],
                              **{k: ["--flavor", "speedrun", *v] for k, v in {**ABLATIONS, **EXTRAS}.items()}}

@contextmanager
def holding(lock: Path | None):
    """An exclusive flock on `lock` for the block (no lock: nothing)."""
    if lock is None:
        yield
        return
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def scaled_ours(args: list[str], scale: float) -> list[str]:
    """An `attnkit train` arm's arguments with its flavor's steps (and eval interval) times scale."""
    if scale == 1.0:
        return args
    steps = max(int(_flavor_steps(args[args.index("--flavor") + 1]) * scale), 2)
    return [*args, "--max-steps", str(steps), "--eval-interval", str(max(steps // 8, 1))]


def scaled_nanogpt(scale: float) -> list[str]:
    """nanoGPT's extra arguments for its iterations (and eval interval) times scale."""
    steps = max(int(NANOGPT_STEPS * scale), 2)
    interval = NANOGPT_EVAL_INTERVAL if scale == 1.0 else max(steps // 8, 1)
    return [f"--max_iters={steps}", f"--lr_decay_iters={steps}", f"--eval_interval={interval}"]


def _flavor_steps(flavor: str) -> int:
    from attnkit.zoo.tasks.gpt import GPTTask

    return GPTTask.flavors[flavor].train["max_steps"]


def summarise(runs: dict[str, list[list[dict]]], baseline: str) -> list[dict]:
    """One row per arm; each pass is compared with its own baseline."""
    out = []
    for arm, passes in runs.items():
        per_pass = []
        for i, rows in enumerate(passes):
            base = runs[baseline][i][-1]
            common = {k: time_to(rows, base[k], k) for k in ("common_loss", "val_loss")}
            per_pass.append(dict(final=rows[-1]["val_loss"], common=rows[-1]["common_loss"], wall=rows[-1]["wall_s"],
                                 to_target=common["common_loss"], to_printed=common["val_loss"],
                                 speedup=speedup(runs[baseline][i], rows, "common_loss"),
                                 speedup_printed=speedup(runs[baseline][i], rows, "val_loss")))
        speedups = [p["speedup"] or 0.0 for p in per_pass]  # a pass that never reached the target counts as 0×
        stats = dict(median=statistics.median(speedups), mean=statistics.mean(speedups),
                     std=statistics.stdev(speedups) if len(speedups) > 1 else 0.0,
                     reached=sum(p["speedup"] is not None for p in per_pass))
        out.append({"arm": arm, "steps": passes[0][-1]["step"], "passes": per_pass, "speedup": stats})
    return out


COLUMNS = ("arm", "steps", "wall s", "final val (own eval)", "final val (common)", "s to target (common)",
           "speedup (common)", "s to target (printed)", "speedup (printed)", "median (mean ± std) speedup, common")


def cells(s: dict, sep: str) -> list[str]:
    """An arm's row: each pass's value, joined by sep ("never" where a pass never reached the target)."""
    def show(key, fmt):
        return sep.join("never" if p[key] is None else fmt.format(p[key]) for p in s["passes"])

    stats = s["speedup"]
    return [s["arm"], str(s["steps"]), show("wall", "{:.0f}"), show("final", "{:.3f}"), show("common", "{:.3f}"),
            show("to_target", "{:.0f}"), show("speedup", "{:.2f}×"), show("to_printed", "{:.0f}"),
            show("speedup_printed", "{:.2f}×"),
            f"{stats['median']:.2f}× ({stats['mean']:.2f} ± {stats['std']:.2f})"
            + ("" if stats["reached"] == len(s["passes"]) else f", {stats['reached']}/{len(s['passes'])} reached")]


def print_table(console: Console, summary: list[dict], baseline: str) -> None:
    table = Table(title=f"GPT on the CPU: time to {baseline}'s final val loss (same machine, same run; "
                        f"one value per pass)")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "arm" else "right")
    for s in summary:
        table.add_row(*cells(s, " / "))
    console.print(table)


def markdown(summary: list[dict]) -> str:
    """The table as Markdown, for docs/zoo/gpt.md and BENCHMARKS.md."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(s, " / ")) + " |" for s in summary]
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, list[list[dict]]], baseline: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for arm, passes in runs.items():
        rows = [r for r in passes[0] if r.get("common_loss") is not None]
        style = dict(lw=2.5, color="k") if arm == baseline else dict(lw=2.5, color="C3") if arm == "speedrun" \
            else dict(lw=1, alpha=0.7)
        ax.plot([r["wall_s"] for r in rows], [r["common_loss"] for r in rows], "-o", ms=3, label=arm, **style)
    target = runs[baseline][0][-1]["common_loss"]
    ax.axhline(target, color="k", ls=":", lw=1, label=f"{baseline} final {target:.3f}")
    ax.set(xlabel="wall seconds since the process started", ylabel=f"val loss (whole split, {COMMON_BLOCK}-token windows)",
           title="GPT on the CPU: val loss vs wall time (first pass)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma list from: {', '.join(ARMS)}")
    p.add_argument("--custom", action="append", default=[], metavar="NAME=ARGS",
                   help="an extra arm: the speedrun flavor plus these `attnkit train` arguments, e.g. "
                        "'b32=--batch-size 32 --max-steps 150' (repeatable)")
    p.add_argument("--baseline", default="nanogpt", choices=("nanogpt", "demo"),
                   help="the arm whose final val loss is the target (always run)")
    p.add_argument("--seeds", default="1337", help="comma list: one pass over every arm per seed, interleaved "
                                                  "(a repeated seed re-measures the noise)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every arm's steps (smoke runs)")
    p.add_argument("--threads", type=int, default=1,
                   help="OMP_NUM_THREADS of every arm (on a busy shared machine two threads spin and run far slower)")
    p.add_argument("--jobs", type=int, default=1,
                   help="arms trained at once (each a process of --threads threads); with more than one, every "
                        "arm shares the machine with the others, so set it no higher than the free cores")
    p.add_argument("--lock", type=Path, help="hold an exclusive flock on this file while each arm trains")
    p.add_argument("--out", default="benchmarks/results/speedrun", help="PNG, JSON and logs go here")
    args = p.parse_args(argv)
    arms_args = dict(ARMS)
    for spec in args.custom:
        name, sep, extra = spec.partition("=")
        if not sep or not name or name in ARMS:
            p.error(f"--custom takes NAME=ARGS with a new NAME, got {spec!r}")
        arms_args[name] = ["--flavor", "speedrun", *extra.split()]
    arms = [a for a in args.arms.split(",") if a] + [s.partition("=")[0] for s in args.custom]
    unknown = [a for a in arms if a not in arms_args]
    if unknown:
        p.error(f"unknown arm {unknown[0]!r}; choose from {', '.join(ARMS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.baseline not in arms:
        arms.insert(0, args.baseline)  # the targets come from it
    # piped output (a log) gets a wide table rather than one squeezed into 80 columns
    console, out = Console(width=None if sys.stdout.isatty() else 200), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[list[dict]]] = {a: [None] * len(seeds) for a in arms}
    jobs = [(i, arm) for i in range(len(seeds)) for arm in arms]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool, \
            console.status(f"training {len(jobs)} arm(s), {args.jobs} at a time") as status:
        tokenizer, data = gpt_split(Path(tmp) / "split")

        def train(i: int, arm: str) -> list[dict]:
            where, log = Path(tmp) / f"{arm}-{i}", out / f"{arm}-{i}.log"
            with holding(args.lock):
                if arm == "nanogpt":
                    return train_nanogpt(where, args.threads, log, tokenizer, data, scaled_nanogpt(args.scale))
                return train_ours(scaled_ours(arms_args[arm], args.scale), where, seeds[i], args.threads, log,
                                  data["val"])

        futures = {pool.submit(train, i, arm): (i, arm) for i, arm in jobs}
        for done, future in enumerate(as_completed(futures), 1):
            i, arm = futures[future]
            rows = runs[arm][i] = future.result()
            status.update(f"trained {done}/{len(jobs)} arms, {args.jobs} at a time")
            console.print(f"{arm:>18} (seed {seeds[i]}): step {rows[-1]['step']}, val {rows[-1]['val_loss']:.4f} "
                          f"(common {rows[-1]['common_loss']:.4f}), {rows[-1]['wall_s']:.0f} s")
    summary = summarise(runs, args.baseline)
    print_table(console, summary, args.baseline)
    plot(runs, args.baseline, out / "speedrun.png")
    (out / "speedrun.md").write_text(markdown(summary))
    (out / "speedrun.json").write_text(json.dumps({"argv": sys.argv, "seeds": seeds, "baseline": args.baseline,
                                                   "arms": {a: arms_args[a] for a in arms}, "cpus": os.cpu_count(),
                                                   "load_avg": os.getloadavg(), "summary": summary,
                                                   "runs": runs}, indent=1))
    console.print(f"wrote {out / 'speedrun.png'}, {out / 'speedrun.md'} and {out / 'speedrun.json'}")
    return summary


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        sys.exit(f"error: {e}")
