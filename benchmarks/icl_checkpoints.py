"""How an in-context regression run's error by k moves over training: each kept step checkpoint scored on the
run's own test prompts, against least squares and (sparse class) Lasso in the same call.

    python benchmarks/icl_checkpoints.py --run RUN [--from DIR] [--every N] [--ks 5,6,7] [--json F] [--plot P]

Checkpoints are the `step_*.safetensors` files in DIR (default RUN/checkpoints; train with `--keep-last N` to
keep more than the last), every N-th step if asked. Each one is scored exactly as `attnkit sample --run RUN`
scores the run's own weights (`ICLTask.curves`: the 1,280 test prompts, every baseline), about 25 s of one
core each. Prints the transformer's ratio to least squares and to Lasso at every k below d, one row per
checkpoint; `--json` appends one line per checkpoint (steps already in the file are not scored again, so a long
run can be scored as it goes), `--plot` draws the ratios of every scored step at `--ks` against step.
The docs' 100k-step sparse run (docs/zoo/icl.md, "Fourth attempt") was scored with

    python benchmarks/icl_checkpoints.py --run runs/icl_sparse_100k --from runs/icl100k_snaps --every 5000 \\
        --json benchmarks/results/icl_sparse_100k.jsonl --plot docs/icl_sparse_100k.png
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
from pathlib import Path

import torch

from attnkit.engine.checkpoint import load_weights
from attnkit.engine.sample import load_run
from attnkit.fsio import append_line
from attnkit.zoo.plots import save_figure

STEP = re.compile(r"step_(\d+)\.safetensors$")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="the run directory (its config.json builds the model)")
    ap.add_argument("--from", dest="source", default=None, help="folder of step_*.safetensors (RUN/checkpoints)")
    ap.add_argument("--every", type=int, default=1, help="only steps that are a multiple of this")
    ap.add_argument("--ks", default="5,6,7", help="the k values the plot follows")
    ap.add_argument("--json", default=None, help="append one JSON line per checkpoint here")
    ap.add_argument("--plot", default=None, help="write the ratios against step here (PNG)")
    return ap.parse_args(argv)


def checkpoints(folder: Path, every: int) -> list[tuple[int, Path]]:
    """(step, path) of every step checkpoint in `folder` whose step is a multiple of `every`, in step order."""
    found = [(int(m.group(1)), p) for p in folder.glob("step_*.safetensors") if (m := STEP.search(p.name))]
    return sorted((s, p) for s, p in found if s % every == 0)


def ratios(errors: dict[str, list[float]], baseline: str, d: int) -> list[float]:
    """The transformer's error over `baseline`'s at k = 1 … d-1."""
    return [errors["transformer"][k] / errors[baseline][k] for k in range(1, d)]


def plot(rows: list[dict], ks: list[int], path: str) -> None:
    """One panel per baseline: the transformer's ratio to it at each k in `ks` against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [b for b in ("least_squares", "lasso") if f"over_{b}" in rows[0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), dpi=110, squeeze=False)
    steps = [r["step"] for r in rows]
    for ax, baseline in zip(axes[0], panels):
        for k in ks:
            ax.plot(steps, [r[f"over_{baseline}"][k - 1] for r in rows], marker="o", ms=3, label=f"k = {k}")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_ylim(bottom=min(ax.get_ylim()[0], 0.95))
        if baseline == "lasso":
            ax.axhline(1.5, color="red", lw=0.8, ls="--", label="goal: 1.5× Lasso")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"transformer / {baseline.replace('_', ' ')}")
        ax.legend(fontsize=8)
    fig.suptitle(f"error over each baseline against step ({rows[0]['run']})", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> list[dict]:
    a = parse(argv)
    run = load_run(a.run)
    found = checkpoints(Path(a.source) if a.source else Path(a.run) / "checkpoints", a.every)
    if not found:
        raise SystemExit(f"no step checkpoints{f' at multiples of {a.every}' if a.every > 1 else ''} in "
                         f"{a.source or Path(a.run) / 'checkpoints'}")
    name, d, today = run.run_dir.name, run.task.d, datetime.date.today().isoformat()
    # a long run is scored as it goes: steps already in --json are kept, not scored again
    scored = {r["step"]: r for r in map(json.loads, Path(a.json).read_text().splitlines())
              if r["run"] == name} if a.json and Path(a.json).exists() else {}
    baselines = ["least_squares"] + (["lasso"] if run.task.opts.function == "sparse_linear" else [])
    todo = [(step, path) for step, path in found if step not in scored]
    already = f" ({len(scored)} already in {a.json})" if a.json else ""
    print(f"{name}: {len(todo)} checkpoints to score{already}; transformer / baseline at k = 1 … {d - 1}")
    for step, path in todo:
        load_weights(run.model, path)
        with torch.inference_mode():
            errors = run.task.curves(run.model, run.device)
        row = {"run": name, "step": step, "seed": run.config.seed, "checkpoint": path.name,
               "error_by_k": errors, **{f"over_{b}": ratios(errors, b, d) for b in baselines}, "date": today}
        scored[step] = row
        cells = "  ".join(f"{b}: " + " ".join(f"{x:.2f}" for x in row[f"over_{b}"]) for b in baselines)
        print(f"  step {step:>7,}  {cells}  error at k = d {errors['transformer'][d]:.4f}")
        if a.json:
            append_line(a.json, json.dumps(row))
    rows = [scored[step] for step in sorted(scored)]
    if a.plot:
        plot(rows, [int(k) for k in a.ks.split(",")], a.plot)
        print(f"plot: {a.plot}")
    return rows


if __name__ == "__main__":
    main()
