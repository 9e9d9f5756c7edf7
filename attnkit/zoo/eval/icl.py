"""In-context regression: the error-versus-k curve of the transformer beside classical estimators.

Every method answers the same prompts (`attnkit.zoo.data.icl.Prompts`): prediction i guesses f(query_i) from
the i pairs before it, and the error at k in-context examples is the squared error divided by d, averaged
over prompts (Garg et al.'s normalisation: predicting 0 scores 1 for f(x) = w·x, w, x ~ N(0, I_d)).
Baselines (Garg et al. §3): min-norm least squares (the Bayes-optimal estimator for noiseless linear
functions), ridge, 3-nearest-neighbours, averaging (ŵ = mean of y_i·x_i), and for sparse functions Lasso and
the sparse prior's exact posterior mean (`sparse_posterior_mean`, the Bayes-optimal predictor there).

Which algorithm does the transformer run? (Akyürek et al. 2022.) `agreement_by_k` scores how closely its
predictions follow each candidate's on the same prompts: the squared difference / d per k, 0 when they agree
exactly. The candidates' free parameters are fitted on separate training-distribution prompts
(`fit_algorithms`): one step of gradient descent from w = 0 (ŵ = η·Σ y_i x_i, η per k in closed form) and
ridge (α from a grid, pooled over k), beside least squares and 3-NN.
"""
from __future__ import annotations

from functools import partial
from itertools import combinations
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


def predict_per_k(fit: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], p: Prompts) -> torch.Tensor:
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


NOISELESS_VAR = 1e-16  # σ² standing in for noise = 0 (its answers agree with 1e-20 to 1e-7; 1e-12 is off by 1e-3)


def sparse_posterior_mean(xs, ys, q, sparsity: int = 3, noise: float = 0.0):
    """E[w·q | the k pairs] under the prior of the sparse class: w has `sparsity` non-zero coordinates, on a
    support S drawn uniformly from the C(d, s) subsets, with N(0, 1) values; y = w·x + N(0, noise²).

    The posterior is a mixture over supports. Given S, w_S's posterior mean is ridge on S's columns,
    m_S = (X_Sᵀ X_S + σ² I)⁻¹ X_Sᵀ y, and S's weight is its marginal likelihood N(y; 0, X_S X_Sᵀ + σ² I), which
    (Woodbury, dropping factors shared by every support) is
        log p(y | S) = -½ (‖y − X_S m_S‖² / σ² + ‖m_S‖²) − ½ Σ log(sv_S² + σ²),
    sv_S the singular values of X_S. Noiseless (σ² → 0): below k = s every support fits y, weighted by
    ‖min-norm solution‖² and the design's volume; from k = s + 1 on only the true support fits, so the
    prediction is exact."""
    xs, ys, q = xs.double(), ys.double(), q.double()
    d = xs.shape[-1]
    supports = torch.tensor(list(combinations(range(d), min(sparsity, d))))  # (S, s)
    x_s = xs[:, :, supports].transpose(1, 2)  # (B, S, k, s)
    var = noise ** 2 if noise > 0 else NOISELESS_VAR
    u, sv, vh = torch.linalg.svd(x_s, full_matrices=False)  # (B, S, k, r), (B, S, r), (B, S, r, s)
    uty = (u.transpose(-1, -2) @ ys[:, None, :, None])[..., 0]  # (B, S, r)
    m = (vh.transpose(-1, -2) @ (sv / (sv ** 2 + var) * uty)[..., None])[..., 0]  # (B, S, s)
    residual = ys[:, None] - (x_s @ m[..., None])[..., 0]  # (B, S, k)
    log_lik = -0.5 * (residual.pow(2).sum(-1) / var + m.pow(2).sum(-1)) - 0.5 * torch.log(sv ** 2 + var).sum(-1)
    per_support = (q[:, supports] * m).sum(-1)  # (B, S): q_S · m_S
    return (log_lik.softmax(-1) * per_support).sum(-1).float()


METHODS = {"least_squares": least_squares, "ridge": ridge, "knn3": knn3, "averaging": averaging, "lasso": lasso}


def baselines_for(function: str, sparsity: int = 3) -> dict[str, Callable]:
    """{name: fit} of a function class's baselines: BASELINES, and for sparse_linear also Lasso and the
    Bayes-optimal predictor for `sparsity` non-zero weights."""
    out = {name: METHODS[name] for name in BASELINES}
    if function == "sparse_linear":
        out |= {"lasso": lasso, "bayes_optimal": partial(sparse_posterior_mean, sparsity=sparsity)}
    return out


def baseline_predictions(name: str, p: Prompts) -> torch.Tensor:
    return predict_per_k(METHODS[name], p)


# ---- the agreement probe (Akyürek et al. 2022) ------------------------------------------------------------
ALGORITHMS = ("gd_one_step", "ridge_fitted", "least_squares", "knn3")
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 3.0)


def gd_one_step(xs, ys, q, eta: float = 1.0):
    """One gradient step on ½Σ(w·x_i − y_i)² from w = 0: ŵ = η·Σ y_i x_i."""
    w = eta * (ys[..., None] * xs).sum(1)  # (B, d)
    return (w * q).sum(-1)


def fit_gd_steps(p: Prompts) -> list[float]:
    """η per k minimising the squared error of one GD step on prompts p: η_k = E[s·y] / E[s²], s = q·Σ y_i x_i
    (k = 0: no step)."""
    etas = [0.0]
    for k in range(1, p.xs.shape[1]):
        s = gd_one_step(p.xs[:, :k].double(), p.ys[:, :k].double(), p.query_xs[:, k].double())  # (B,)
        etas.append(float((s * p.targets[:, k].double()).sum() / s.pow(2).sum().clamp_min(1e-12)))
    return etas


def fit_ridge_alpha(p: Prompts, grid=RIDGE_GRID) -> float:
    """The α of `grid` with the lowest error on prompts p, summed over k ≥ 1."""
    def total(alpha):
        return sum(error_by_k(predict_per_k(lambda x, y, q: ridge(x, y, q, alpha), p), p)[1:])
    return min(grid, key=total)


def fit_algorithms(p: Prompts) -> dict[str, object]:
    """The candidates' fitted parameters: {"gd_etas": [η_k], "ridge_alpha": α}, from training prompts p."""
    return {"gd_etas": fit_gd_steps(p), "ridge_alpha": fit_ridge_alpha(p)}


def algorithm_predictions(name: str, p: Prompts, fitted: dict[str, object]) -> torch.Tensor:
    """(B, n) predictions of one candidate algorithm (ALGORITHMS) with its fitted parameters."""
    if name == "gd_one_step":
        etas = fitted["gd_etas"]
        B, n, _ = p.xs.shape
        cols = [torch.zeros(B)] + [gd_one_step(p.xs[:, :k], p.ys[:, :k], p.query_xs[:, k], etas[k])
                                   for k in range(1, n)]
        return torch.stack(cols, 1)  # (B, n)
    if name == "ridge_fitted":
        return predict_per_k(lambda x, y, q: ridge(x, y, q, fitted["ridge_alpha"]), p)
    return baseline_predictions(name, p)


def agreement_by_k(pred: torch.Tensor, others: dict[str, torch.Tensor], d: int) -> dict[str, list[float]]:
    """{name: mean squared difference / d between pred (B, n) and others[name] (B, n), per k}."""
    return {name: ((pred - o) ** 2).mean(0).div(d).tolist() for name, o in others.items()}


def agreement_crossover(agreement: dict[str, list[float]]) -> int | None:
    """The first k ≥ 1 from which the transformer agrees more with least squares than with one GD step."""
    ls, gd = agreement["least_squares"], agreement["gd_one_step"]
    for k in range(1, len(ls)):
        if all(ls[j] < gd[j] for j in range(k, len(ls))):
            return k
    return None


def agreement_rows(agreement: dict[str, list[float]], d: int) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the agreement table: one row per k, one column per algorithm, the closest marked *."""
    names = list(agreement)
    rows = []
    for k in range(len(agreement[names[0]])):
        vals = [agreement[m][k] for m in names]
        best = min(range(len(vals)), key=vals.__getitem__)
        rows.append([str(k) + (" (= d)" if k == d else "")] +
                    [f"{v:.4f}" + ("*" if i == best and k else "") for i, v in enumerate(vals)])
    return ["k", *(m.replace("_", " ") for m in names)], rows


def error_rows(errors: dict[str, list[float]], d: int) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the error-versus-k table: one column per method, then transformer / least squares
    (where least squares is above 0.001)."""
    rows = []
    for k in range(len(errors["transformer"])):
        tf, ls = errors["transformer"][k], errors["least_squares"][k]
        rows.append([str(k) + (" (= d)" if k == d else ""), *(f"{errors[name][k]:.4f}" for name in errors),
                     f"{tf / ls:.2f}" if ls > 1e-3 else "-"])
    return ["k", *(name.replace("_", " ") for name in errors), "ratio"], rows


PROBE_NOTES = {"scaled_query": "every x ×2", "one_orthant": "context in one orthant, query N(0, I)",
               "noisy_y": "context y + N(0, 0.5²)"}


def probe_rows(probes: dict[str, dict[str, list[float]]], d: int, n: int) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the out-of-distribution table: per probe and method, the error / d at a few k."""
    ks = sorted({1, d // 2, d - 1, d, n - 1})
    rows = [[f"{probe}: {PROBE_NOTES[probe]}" if i == 0 else "", name.replace("_", " "), *(f"{errs[k]:.4f}" for k in ks)]
            for probe, curves in probes.items() for i, (name, errs) in enumerate(curves.items())]
    return ["probe", "method", *(f"k={k}" for k in ks)], rows


@torch.no_grad()
def model_predictions(model: nn.Module, p: Prompts, device: torch.device, batch: int = 512) -> torch.Tensor:
    """(B, n) transformer predictions, in the model's mode (callers run it in eval mode); one forward per k
    when the queries are not the next points."""
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
    return torch.cat(outs)


def error_by_k(pred: torch.Tensor, p: Prompts) -> list[float]:
    """Squared error / d at each k = 0..n-1, averaged over prompts."""
    return ((pred - p.targets) ** 2).mean(0).div(p.xs.shape[-1]).tolist()


def error_standard_error(pred: torch.Tensor, p: Prompts, k: int) -> float:
    """The standard error of error_by_k's mean at k: the spread of the per-prompt squared error / d over √B."""
    per_prompt = ((pred[:, k] - p.targets[:, k]) ** 2).div(p.xs.shape[-1])  # (B,)
    return (per_prompt.std() / len(per_prompt) ** 0.5).item()


def evaluate_all(model: nn.Module, p: Prompts, device: torch.device,
                 baselines: dict[str, Callable] | None = None) -> dict[str, list[float]]:
    """{method: error/d per k} for the transformer and each baseline ({name: fit}, default the linear class's)
    on the same prompts."""
    out = {"transformer": error_by_k(model_predictions(model, p, device), p)}
    for name, fit in (baselines or baselines_for("linear")).items():
        out[name] = error_by_k(predict_per_k(fit, p), p)
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


def plot_agreement_by_k(agreement: dict[str, list[float]], d: int, path: str | Path, title: str) -> str:
    """Log-scale disagreement (squared difference / d) between the transformer and each algorithm against k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for name, vals in agreement.items():
        ax.plot(range(1, len(vals)), np.maximum(vals[1:], FLOOR), marker="o", ms=3, label=name.replace("_", " "))
    ax.axvline(d, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("in-context examples k")
    ax.set_ylabel("squared difference to the transformer / d")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return str(save_figure(fig, path))
