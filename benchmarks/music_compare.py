"""Absolute vs relative positions on Bach chorales (Music Transformer, Huang et al. 2018, Table 1's JSB rows).

Trains the `small` music flavor once per --position arm with the same budget (steps, batch, window, seed,
data order), through the same trainer as `attnkit train`, then reports the exact validation NLL per token:
at the training length, and with windows 2x and 4x longer (how each arm holds past what it was trained
on), plus a PNG of how much worse (or better) each token's NLL gets, by position, when it is read in a 4x window
instead of the training-length one.

    python benchmarks/music_compare.py                      # ~7 min on one busy CPU core
    python benchmarks/music_compare.py --steps 1000 --arms absolute,relative,both --device cuda

Writes OUT/report.md, OUT/results.json, OUT/nll_by_position.png and one run directory per arm (each can be
sampled: `attnkit sample --run OUT/relative`).

The paper's JSB numbers (0.417 baseline, 0.357 relative) use the JSB Chorales pickle, whose grid repeats a
held pitch at every step; ours has a HOLD token (attnkit.zoo.data.chorales), music21's 327 clean chorales and
a far smaller model and budget, so only the direction and rough size of the gap are comparable.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from attnkit.config import TrainConfig
from attnkit.zoo.data import chorales as ch
from attnkit.nn.modes import mode
from attnkit.zoo.eval.music import token_nll
from attnkit.engine.device import resolve_device
from attnkit.engine.trainer import run_training

PAPER = {"absolute": 0.417, "relative": 0.357}  # JSB Chorales validation NLL (second-hand, see ANCHORS.md)
MULTIPLES = (1, 2, 4)
BIN = 32  # tokens = 8 steps of a 16th = half a 4/4 bar


def extra_nll_by_position(model, val, L: int, device, bin_size: int) -> tuple[np.ndarray, float]:
    """Per bin of positions in a 4L window: mean NLL of those tokens with the 4L window minus with L windows.

    The same tokens on both sides, so what changes is only the context and the positions: 0 means the
    model reads a longer window as well as the one it trained on; > 0 past L means it breaks down there.
    """
    W = MULTIPLES[-1] * L
    long, short = token_nll(model, val, W, device), token_nll(model, val, L, device)
    total, count = np.zeros(W // bin_size), np.zeros(W // bin_size)
    past = []
    for lo, sh in zip(long, short):
        pos = np.arange(len(lo)) % W  # position of each target in its long window
        np.add.at(total, pos // bin_size, lo - sh)
        np.add.at(count, pos // bin_size, 1)
        past.append((lo - sh)[pos >= L])
    return total / np.maximum(count, 1), float(np.concatenate(past).mean())


def plot_by_position(curves: dict[str, np.ndarray], L: int, path: Path, bin_size: int) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    for arm, curve in curves.items():
        ax.plot((np.arange(len(curve)) + 0.5) * bin_size, curve, "-o", markersize=3, label=arm)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.axvline(L, color="grey", linestyle="--", label=f"training length ({L})")
    ax.set_xlabel(f"position in a {MULTIPLES[-1] * L}-token evaluation window (bins of {bin_size} tokens)")
    ax.set_ylabel(f"NLL with {MULTIPLES[-1] * L}-token windows\nminus NLL with {L}-token windows")
    ax.set_title("Bach chorales, validation: the same tokens read in a window longer than training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default="absolute,relative", help="comma-separated --position values")
    p.add_argument("--steps", type=int, default=400, help="optimizer steps per arm")
    p.add_argument("--flavor", default="small", help="music flavor of every arm (debug: the smoke test's)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the small flavor's")
    p.add_argument("--block-size", type=int, default=None, help="training window; default: the small flavor's")
    p.add_argument("--dropout", type=float, default=0.0, help="0 for short budgets (the flavor's 0.1 is for long runs)")
    p.add_argument("--data", default="chorales", help="chorales or chorales:N")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", default="runs/music_compare")
    p.add_argument("--overwrite", action="store_true", help="replace the arms' run directories of an earlier run")
    args = p.parse_args(argv)
    command = "python benchmarks/music_compare.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    console = Console()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]

    val = [ch.grid_to_tokens(c.grid) for c in ch.corpus_splits(ch.parse_data_spec(args.data), console=console)["val"]]
    device = resolve_device(args.device)
    results, curves = {}, {}
    for arm in arms:
        console.rule(f"[bold]{arm}[/] positions")
        cfg = TrainConfig(model="music", flavor=args.flavor, max_steps=args.steps, eval_interval=args.steps,
                          batch_size=args.batch_size, block_size=args.block_size, data=args.data, dropout=args.dropout,
                          device=args.device, seed=args.seed, out=str(out / arm), overwrite=args.overwrite,
                          options={"position": arm})
        t0 = time.perf_counter()
        run = run_training(cfg, console=console)
        wall = time.perf_counter() - t0
        train_cfg = json.loads((out / arm / "config.json").read_text())["train"]
        L = train_cfg["block_size"]
        by_length = {int(k): v for k, v in run.summary["val_nll_by_length"].items()}
        with mode(run.model, training=False):  # token_nll runs in the model's mode
            curves[arm], past = extra_nll_by_position(run.model, val, L, device, BIN)
        results[arm] = {"val_nll": by_length[L], "val_nll_by_length": by_length, "params": run.summary["params"],
                        "steps": run.summary["steps"], "batch_size": train_cfg["batch_size"], "block_size": L,
                        "train_tokens": run.summary["steps"] * train_cfg["batch_size"] * L,
                        "wall_s": round(wall, 1), "tokens_per_s": run.summary.get("tokens_per_s"),
                        "extra_nll_past_train_length": past}

    L = results[arms[0]]["block_size"]
    png = plot_by_position(curves, L, out / "nll_by_position.png", BIN)
    n_tokens = sum(len(s) - 1 for s in val)
    table = Table(title=f"validation NLL per token (nats), {n_tokens} tokens in {len(val)} held-out chorales")
    table.add_column("arm")
    for m in MULTIPLES:
        table.add_column(f"@{m * L}" + ("=train" if m == 1 else f" {m}x"), justify="right")
    table.add_column(f"Δ>{L}", justify="right")
    table.add_column("params", justify="right")
    table.add_column("time", justify="right")
    table.add_column("paper", justify="right")
    for arm, r in results.items():
        table.add_row(arm, *(f"{r['val_nll_by_length'][m * L]:.4f}" for m in MULTIPLES),
                      f"{r['extra_nll_past_train_length']:+.4f}", f"{r['params']:,}",
                      f"{r['wall_s']:.0f} s", f"{PAPER[arm]:.3f}" if arm in PAPER else "-")
    console.print(table)

    lines = ["# Music Transformer: absolute vs relative positions on Bach chorales", "",
             f"Command: `{command}`", "",
             f"Same budget for every arm: {args.steps} steps × batch {results[arms[0]]['batch_size']} × "
             f"{L} tokens ({results[arms[0]]['train_tokens']:,} training tokens), flavor {args.flavor}, dropout {args.dropout}, "
             f"seed {args.seed}, "
             f"device {device.type}. Validation: {len(val)} held-out chorales, {n_tokens} tokens, exact NLL "
             "(each token predicted once, from the tokens before it in consecutive windows).", "",
             "| positions | " + " | ".join(f"NLL @ {m * L} tokens" + (" (train length)" if m == 1 else f" ({m}x)")
                                            for m in MULTIPLES) + f" | Δ NLL past position {L} | params "
             "| train wall time | paper (JSB) |",
             "|---|" + "---:|" * (len(MULTIPLES) + 4)]
    for arm, r in results.items():
        lines.append(f"| {arm} | " + " | ".join(f"{r['val_nll_by_length'][m * L]:.4f}" for m in MULTIPLES)
                     + f" | {r['extra_nll_past_train_length']:+.4f} | {r['params']:,} | {r['wall_s']:.0f} s "
                     f"| {PAPER.get(arm, '-')} |")
    if "absolute" in results and "relative" in results:
        a, rel = results["absolute"]["val_nll"], results["relative"]["val_nll"]
        lines += ["", f"Relative minus absolute at the training length: {rel - a:+.4f} nats/token "
                      f"({100 * (rel - a) / a:+.1f}%); the paper's JSB gap is {PAPER['relative'] - PAPER['absolute']:+.3f} "
                      f"({100 * (PAPER['relative'] - PAPER['absolute']) / PAPER['absolute']:+.1f}%)."]
    lines += ["", f"Δ NLL past position {L}: for the tokens at positions ≥ {L} of a {MULTIPLES[-1] * L}-token window, "
                  f"their mean NLL there minus their NLL when read in {L}-token windows (same tokens; > 0 means the "
                  "model gets worse past its training length, < 0 that the extra context helps).",
              "", "Tokenisation differs from the paper's JSB Chorales pickle (we use a HOLD token for a continuing "
                  "note and music21's own chorales), and the models and budget are far smaller, so compare the "
                  "direction and rough size of the gap, not the absolute values.", "",
              f"![NLL by position]({png.name})", ""]
    (out / "report.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps({"command": command, "results": results}, indent=2, default=str))
    console.print(f"report: {out / 'report.md'}  plot: {png}")
    return results


if __name__ == "__main__":
    main()
