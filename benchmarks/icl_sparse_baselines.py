"""What is reachable on the sparse class (issue 25 item 3)? Least squares, Lasso and the Bayes-optimal predictor
on the same prompts, no training (about 90 s of one core, nearly all of it Lasso's 5 × 20,480 fits):

    flock /work/heavy.lock env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/icl_sparse_baselines.py

The prompts are the ones `attnkit train --model icl --opt function=sparse_linear` reports on (1,280 test
prompts, seed 2022, d = 8, 17 points, 3 non-zero weights), so the columns sit beside the transformer's there.
For every k = 1 … n-1 it prints the error / d of
- least squares (min-norm);
- Lasso at each α of --alphas, and at the best α for each k (chosen on these very prompts, so an upper bound
  on what tuning α can gain: the question is whether the task's fixed α = 0.01 is a fair baseline below
  k = d, where the issue's goal is; from k = d on every α is near 0 and the smallest wins);
- the sparse prior's exact posterior mean (`attnkit.zoo.eval.icl.sparse_posterior_mean`): no predictor can
  do better on average, so its gap to least squares is the most a transformer can be below least squares.
`ls − bayes` is the paired difference with its standard error over the prompts. `--out FILE` appends the
numbers to FILE as one JSON line.
"""
from __future__ import annotations

import argparse
import json
import time
from functools import partial

import torch

from attnkit.fsio import append_line
from attnkit.zoo.data.icl import sample_prompts
from attnkit.zoo.eval.icl import LASSO_ALPHA, error_by_k, lasso, least_squares, predict_per_k, sparse_posterior_mean

TEST_PROMPTS, TEST_SEED = 1280, 2022  # attnkit.zoo.tasks.icl's test set


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--points", type=int, default=17)
    ap.add_argument("--sparsity", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=TEST_PROMPTS)
    ap.add_argument("--seed", type=int, default=TEST_SEED)
    ap.add_argument("--alphas", default="0.001,0.003,0.01,0.03,0.1", help="Lasso's α values, comma-separated")
    ap.add_argument("--out", default=None)
    return ap.parse_args(argv)


def paired_gap(a: torch.Tensor, b: torch.Tensor, targets: torch.Tensor, d: int) -> tuple[list[float], list[float]]:
    """Per k: the mean of (a's squared error − b's) / d over prompts, and its standard error."""
    diff = ((a - targets) ** 2 - (b - targets) ** 2) / d  # (B, n)
    return diff.mean(0).tolist(), (diff.std(0) / len(diff) ** 0.5).tolist()


def main(argv: list[str] | None = None) -> dict:
    a = parse(argv)
    alphas = [float(x) for x in a.alphas.split(",")]
    if LASSO_ALPHA not in alphas:
        alphas.append(LASSO_ALPHA)
    p = sample_prompts("sparse_linear", a.prompts, a.d, a.points, torch.Generator().manual_seed(a.seed),
                       sparsity=a.sparsity)
    start = time.perf_counter()
    ls_pred = predict_per_k(least_squares, p)  # (B, n)
    bayes_pred = predict_per_k(partial(sparse_posterior_mean, sparsity=a.sparsity), p)  # (B, n)
    ls, bayes = error_by_k(ls_pred, p), error_by_k(bayes_pred, p)
    lassos = {alpha: error_by_k(predict_per_k(partial(lasso, alpha=alpha), p), p) for alpha in alphas}
    gap, gap_se = paired_gap(ls_pred, bayes_pred, p.targets, a.d)
    wall = time.perf_counter() - start

    ks = range(1, a.points)
    best = {k: min(alphas, key=lambda alpha: lassos[alpha][k]) for k in ks}
    fixed = lassos[LASSO_ALPHA]
    headers = ["k", "least squares", *(f"Lasso α={alpha:g}" for alpha in alphas), "Lasso, best α per k",
               f"α={LASSO_ALPHA:g} / best", "Bayes-optimal", "Bayes / LS", "ls − bayes ± se"]
    rows = [[str(k) + (" (= d)" if k == a.d else ""), f"{ls[k]:.4f}", *(f"{lassos[alpha][k]:.4f}" for alpha in alphas),
             f"{lassos[best[k]][k]:.4f} ({best[k]:g})", f"{fixed[k] / lassos[best[k]][k]:.2f}", f"{bayes[k]:.4f}",
             f"{bayes[k] / ls[k]:.4f}" if ls[k] > 1e-3 else "-", f"{gap[k]:.4f} ± {gap_se[k]:.4f}"]
            for k in ks]
    print(f"sparse linear, d = {a.d}, {a.sparsity} non-zero, {a.prompts} prompts (seed {a.seed}): squared error / d")
    for r in [headers, ["---"] * len(headers), *rows]:
        print("| " + " | ".join(r) + " |")
    row = {"args": vars(a), "wall_s": round(wall, 1), "least_squares": ls, "bayes_optimal": bayes,
           "lasso": {str(alpha): errs for alpha, errs in lassos.items()}, "ls_minus_bayes": gap,
           "ls_minus_bayes_se": gap_se, "best_alpha_by_k": {k: best[k] for k in ks},
           "max_gain_of_tuning_alpha_below_d": max(1 - lassos[best[k]][k] / fixed[k] for k in range(1, a.d))}
    if a.out:
        append_line(a.out, json.dumps(row))
    return row


if __name__ == "__main__":
    main()
