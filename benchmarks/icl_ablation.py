"""One arm of the in-context regression ablation (issue 25): train an ICL transformer, print its error curve.

The loop is the task's (same prompts, same loss = squared error / live dims, same curriculum, AdamW with
linear warmup and cosine decay to --min-lr × lr, lr/10 unless set) with every recipe knob as a flag, so arms differ in one thing:

    flock /work/heavy.lock .venv/bin/python benchmarks/icl_ablation.py --arm base --steps 3000
    flock /work/heavy.lock .venv/bin/python benchmarks/icl_ablation.py --arm own_y --y-token own --steps 3000

At the end it scores the model beside least squares on 512 fixed full-size prompts (d = 8, 17 points) and
prints one JSON line: the ratio to least squares for every 1 ≤ k < d (for --function sparse_linear also to
Lasso), the error at k = 2d, the last train loss and the mean of every 500 steps (also printed to stderr as it
goes: a seed stuck on a plateau shows there), the wall time, and Akyürek et al.'s agreement probe
(`attnkit.zoo.eval.icl`: the squared difference / d to one GD step, fitted ridge, least squares and 3-NN per k,
and the crossover k), whose table it prints first. `--out FILE` appends that line to FILE (the ablation table
in docs/zoo/icl.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from attnkit.engine.optim import lr_at, make_optimizer
from attnkit.fsio import append_line
from attnkit.nn.modes import mode
from attnkit.zoo.data.icl import (LOSS_WEIGHT_EPS, LOSS_WEIGHTS, Curriculum, exact_from, position_weights,
                                  sample_prompts)
from attnkit.zoo.eval.icl import (ALGORITHMS, agreement_by_k, agreement_crossover, agreement_rows,
                                  algorithm_predictions, baseline_predictions, error_by_k, fit_algorithms,
                                  model_predictions)
from attnkit.zoo.models.icl import ICLConfig, ICLTransformer

EVAL_PROMPTS, EVAL_SEED, FIT_PROMPTS, FIT_SEED = 512, 2026, 2048, 11
CURVE_EVERY = 500


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--points", type=int, default=17)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--mlp-ratio", type=int, default=4, help="MLP hidden width / model width")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--min-lr", type=float, default=0.1, help="end of the cosine decay, as a fraction of --lr")
    ap.add_argument("--optimizer", default="adamw", choices=("adamw", "muon"))
    ap.add_argument("--y-token", default="padded", choices=("padded", "own"))
    ap.add_argument("--d-start", type=int, default=2)
    ap.add_argument("--n-start", type=int, default=5)
    ap.add_argument("--interval", type=int, default=1000, help="curriculum steps per stage; 0: no curriculum")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loss-weight", default="uniform", choices=LOSS_WEIGHTS,
                    help="inverse_ls: weight the prediction after k points by 1 / (least squares' expected error "
                         "there + --weight-eps), (d - k)+ / d for linear functions: the loss then scores the ratio "
                         "the goal is stated in; inverse_optimal: the same with the error taken as 0 from "
                         "the point where the Bayes-optimal predictor is exact on (--sparsity + 1 for sparse_linear)")
    ap.add_argument("--weight-eps", type=float, default=LOSS_WEIGHT_EPS)
    ap.add_argument("--weight-from", type=int, default=0,
                    help="train with the uniform loss before this step and --loss-weight from it (on seed 2 the "
                         "weight from step 0 stalled where the uniform loss learned)")
    ap.add_argument("--function", default="linear", choices=("linear", "sparse_linear"))
    ap.add_argument("--sparsity", type=int, default=3, help="sparse_linear: non-zero weights per function")
    ap.add_argument("--out", default=None)
    ap.add_argument("--time-steps", type=int, default=0,
                    help="only time this many full-size steps (after 10 warm-up steps), print ms/step and stop")
    return ap.parse_args(argv)


def prompts(a: argparse.Namespace, batch: int, n: int, g: torch.Generator, d_active: int | None = None):
    return sample_prompts(a.function, batch, a.d, n, g, d_active=d_active, sparsity=a.sparsity)


def time_steps(model: torch.nn.Module, opt, a: argparse.Namespace, g: torch.Generator) -> float:
    """Milliseconds per full-size training step (d = a.d, all points), after 10 untimed warm-up steps."""
    def step() -> None:
        p = prompts(a, a.batch, a.points, g)
        loss = (model(p.xs, p.ys) - p.ys).pow(2).mean() / a.d
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for _ in range(10):
        step()
    start = time.perf_counter()
    for _ in range(a.time_steps):
        step()
    ms = 1000 * (time.perf_counter() - start) / a.time_steps
    print(f"{a.arm}: {a.layers} layers × {a.width} wide (MLP ×{a.mlp_ratio}), {a.heads} heads, batch {a.batch}: "
          f"{ms:.1f} ms/step", flush=True)
    return round(ms, 1)


def main(argv: list[str] | None = None) -> dict:
    a = parse(argv)
    torch.manual_seed(a.seed)
    model = ICLTransformer(ICLConfig(n_dims=a.d, n_points=a.points, n_layer=a.layers, n_head=a.heads,
                                     n_embd=a.width, mlp_ratio=a.mlp_ratio, y_token=a.y_token))
    opt = make_optimizer(model, a.lr, 0.0, (0.9, 0.99), torch.device("cpu"), optimizer=a.optimizer)
    curriculum = Curriculum(a.d_start, a.n_start, a.interval) if a.interval > 0 else None
    g = torch.Generator().manual_seed(a.seed + 1)
    if a.time_steps:
        return {"arm": a.arm, "ms_per_step": time_steps(model, opt, a, g)}
    start, loss = time.perf_counter(), float("nan")
    lr, window, curve = a.lr, [], []  # curve: the mean train loss of every CURVE_EVERY steps (a plateau shows)
    for step in range(a.steps):
        lr = lr_at(step, schedule="cosine", lr=a.lr, min_lr=a.min_lr * a.lr, warmup_steps=a.warmup,
                   max_steps=a.steps)  # the trainer's schedule
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        d_active, n = curriculum.at(step, a.d, a.points) if curriculum else (a.d, a.points)
        p = prompts(a, a.batch, n, g, d_active)
        pred = model(p.xs, p.ys)  # (B, n)
        weight = a.loss_weight if step >= a.weight_from else "uniform"
        w = position_weights(weight, d_active, n, a.weight_eps, exact_from(a.function, a.sparsity, d_active))  # (n,)
        loss_t = ((pred - p.ys).pow(2) * w).mean() / d_active
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss = loss_t.item()
        window.append(loss)
        if len(window) == CURVE_EVERY:
            curve.append(round(sum(window) / len(window), 4))
            window = []
            print(f"{a.arm}: step {step + 1}, live dims {d_active}, mean train loss {curve[-1]}", file=sys.stderr,
                  flush=True)
    wall = time.perf_counter() - start

    p = prompts(a, EVAL_PROMPTS, a.points, torch.Generator().manual_seed(EVAL_SEED))
    with mode(model, training=False):  # model_predictions runs in the model's mode
        pred = model_predictions(model, p, torch.device("cpu"))  # (B, n)
    tf = error_by_k(pred, p)
    fitted = fit_algorithms(prompts(a, FIT_PROMPTS, a.points, torch.Generator().manual_seed(FIT_SEED)))
    agree = agreement_by_k(pred, {m: algorithm_predictions(m, p, fitted) for m in ALGORITHMS}, a.d)
    headers, rows = agreement_rows(agree, a.d)
    for r in [headers, *rows]:
        print("| " + " | ".join(r) + " |")
    ls = error_by_k(baseline_predictions("least_squares", p), p)
    row = {"arm": a.arm, "args": vars(a), "wall_s": round(wall, 1),
           "params": sum(q.numel() for q in model.parameters()), "final_train_loss": round(loss, 4),
           f"train_loss_every_{CURVE_EVERY}": curve,
           "final_lr": lr,
           "ratio_below_d": [round(tf[k] / ls[k], 3) for k in range(1, a.d)],
           # with --points ≤ d (prompts that never reach the point where least squares is exact) neither exists
           "err_at_d": round(tf[a.d], 4) if a.points > a.d else None,
           "err_at_2d": round(tf[min(2 * a.d, a.points - 1)], 4) if a.points > a.d else None,
           "agreement_by_k": {m: [round(v, 4) for v in vals] for m, vals in agree.items()},
           "agreement_crossover_k": agreement_crossover(agree)}
    if a.function == "sparse_linear":  # issue 25's sparse goal: below least squares and within 1.5x of Lasso
        lasso = error_by_k(baseline_predictions("lasso", p), p)
        row["ratio_to_lasso_below_d"] = [round(tf[k] / lasso[k], 3) for k in range(1, a.d)]
    line = json.dumps(row)
    print(line, flush=True)
    if a.out:
        append_line(a.out, line)
    return row


if __name__ == "__main__":
    main()
