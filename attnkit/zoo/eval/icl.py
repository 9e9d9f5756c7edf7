"""In-context regression: the error-versus-k curve of the transformer beside classical estimators.

Every method answers the same prompts (`attnkit.zoo.data.icl.Prompts`): prediction i guesses f(query_i) from
the i pairs before it, and the error at k in-context examples is the squared error divided by d, averaged
over prompts (Garg et al.'s normalisation: predicting 0 scores 1 for f(x) = w·x, w, x ~ N(0, I_d)).
Baselines (Garg et al. §3): min-norm least squares (the Bayes-optimal estimator for noiseless linear
functions), ridge, 3-nearest-neighbours, averaging (ŵ = mean of y_i·x_i), and Lasso for sparse functions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from attnkit.zoo.data.icl import Prompts
from attnkit.zoo.plots import save_figure

RIDGE_ALPHA = 0.1
LASSO_ALPHA = 0.01
BASELINES = ("least_squares", "ridge", "knn3", "averaging")
FLOOR = 1e-4  # least squares is exact (≈ 1e-14) from k = d on; the log plot draws such errors at this floor


def _per_k(fit: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], p: Prompts) -> torch.Tensor:
    """(B, n) predictions of `fit(xs (B, k, d), ys (B, k), query (B, d)) -> (B,)` for k = 0..n-1 (k = 0: 0)."""
    B, n, _ = p.xs.shape
    preds = [torch.zeros(B)]
    for k in range(1, n):
        preds.append(fit(p.xs[:, :k], p.ys[:, :k], p.query_xs[:, k]))
    return torch.stack(preds, 1)  # (B, n)


def least_squares(xs, ys, q):
    w = torch.linalg.pinv(xs.double()) @ ys.double()[..., None]  # (B, d, 1): the min-norm solution
    return (q.double()[:, None] @ w)[:, 0, 0].float()


def ridge(xs, ys, q, alpha: float = RIDGE_ALPHA):
    xs, ys = xs.double(), ys.double()
    d = xs.shape[-1]
    gram = xs.transpose(1, 2) @ xs + alpha * torch.eye(d, dtype=xs.dtype)  # (B, d, d)
    w = torch.linalg.solve(gram, xs.transpose(1, 2) @ ys[..., None])  # (B, d, 1)
    return (q.double()[:, None] @ w)[:, 0, 0].float()


def knn3(xs, ys, q):
    dist = (xs - q[:, None]).pow(2).sum(-1)  # (B, k)
    nearest = dist.topk(min(3, xs.shape[1]), largest=False).indices  # (B, ≤3)
    return ys.gather(1, nearest).mean(1)


def averaging(xs, ys, q):
    w = (ys[..., None] * xs).mean(1)  # (B, d)
    return (w * q).sum(-1)


def lasso(xs, ys, q, alpha: float = LASSO_ALPHA):
    from sklearn.linear_model import Lasso

    out = np.zeros(len(xs), dtype=np.float32)
    for b in range(len(xs)):
        fit = Lasso(alpha=alpha, fit_intercept=False, max_iter=10_000).fit(xs[b].numpy(), ys[b].numpy())
        out[b] = fit.predict(q[b][None].numpy())[0]
    return torch.from_numpy(out)


METHODS = {"least_squares": least_squares, "ridge": ridge, "knn3": knn3, "averaging": averaging, "lasso": lasso}


def baseline_predictions(name: str, p: Prompts) -> torch.Tensor:
    return _per_k(METHODS[name], p)


@torch.no_grad()
def model_predictions(model: nn.Module, p: Prompts, device: torch.device, batch: int = 512) -> torch.Tensor:
    """(B, n) transformer predictions; one forward per k when the queries are not the next points."""
    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, len(p.xs), batch):
        xs, ys = p.xs[i:i + batch].to(device), p.ys[i:i + batch].to(device)
        if p.queries is None:
            outs.append(model(xs, ys).float().cpu())
            continue
        qs, cols = p.queries[i:i + batch].to(device), []
        for k in range(xs.shape[1]):
            swapped = torch.cat((xs[:, :k], qs[:, k:k + 1]), 1)  # (b, k+1, d): k pairs, then the query
            cols.append(model(swapped, ys[:, :k + 1])[:, k].float().cpu())
        outs.append(torch.stack(cols, 1))
    model.train(was_training)
    return torch.cat(outs)


def error_by_k(pred: torch.Tensor, p: Prompts) -> list[float]:
    """Squared error / d at each k = 0..n-1, averaged over prompts."""
    return ((pred - p.targets) ** 2).mean(0).div(p.xs.shape[-1]).tolist()


def evaluate_all(model: nn.Module, p: Prompts, device: torch.device, baselines=BASELINES) -> dict[str, list[float]]:
    """{method: error/d per k} for the transformer and each baseline on the same prompts."""
    out = {"transformer": error_by_k(model_predictions(model, p, device), p)}
    for name in baselines:
        out[name] = error_by_k(baseline_predictions(name, p), p)
    return out


def plot_error_by_k(errors: dict[str, list[float]], d: int, path: str | Path, title: str) -> str:
    """Log-scale error/d against k for every method, with k = d marked; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    styles = {"transformer": dict(color="black", lw=2.2, marker="o", ms=3)}
    for name, errs in errors.items():
        ax.plot(range(len(errs)), np.maximum(errs, FLOOR), label=name.replace("_", " "),
                **styles.get(name, dict(lw=1.3, ls="--")))
    ax.axvline(d, color="grey", lw=0.8, ls=":")
    ax.text(d, ax.get_ylim()[1], " k = d", va="top", fontsize=8, color="grey")
    ax.set_yscale("log")
    ax.set_xlabel("in-context examples k")
    ax.set_ylabel(f"squared error / d (below {FLOOR:g} drawn at {FLOOR:g})")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return str(save_figure(fig, path))
