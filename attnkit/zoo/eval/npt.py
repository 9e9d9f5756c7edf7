"""Tabular evaluation for the NPT: predictions of a fold's test rows, per-fold metrics, scikit-learn baselines on
the same folds, the corruption of the corruption probe, and the rows of the table they are shown in."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from attnkit.fsio import atomic_write
from attnkit.zoo.data.tables import Table


def classification_metrics(y: np.ndarray, prob: np.ndarray, n_classes: int) -> dict[str, float]:
    from sklearn.metrics import log_loss, roc_auc_score

    prob = np.clip(prob, 1e-7, 1.0)
    prob = prob / prob.sum(1, keepdims=True)
    out = {"accuracy": float((prob.argmax(1) == y).mean()),
           "nll": float(log_loss(y, prob, labels=list(range(n_classes))))}
    try:
        if n_classes == 2:
            out["auroc"] = float(roc_auc_score(y, prob[:, 1]))
        else:
            out["auroc"] = float(roc_auc_score(y, prob, multi_class="ovr", labels=list(range(n_classes))))
    except ValueError:  # a fold without some class: AUROC is undefined there
        out["auroc"] = float("nan")
    return out


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    mse = float(((pred - y) ** 2).mean())
    return {"rmse": math.sqrt(mse), "r2": float(1 - mse / max(float(y.var()), 1e-12))}


def mean_std(per_fold: list[dict[str, float]]) -> dict[str, dict[str, Any]]:
    keys = per_fold[0].keys()
    return {k: {"mean": float(np.nanmean([f[k] for f in per_fold])), "std": float(np.nanstd([f[k] for f in per_fold])),
                "per_fold": [f[k] for f in per_fold]} for k in keys}


def corrupt_other_rows(values: torch.Tensor, mask: torch.Tensor, keep: int, generator: torch.Generator):
    """values, mask (N, d) with every row but `keep` shuffled column by column, each column by its own
    permutation (a cell's value and mask bit move together): columns keep their values, rows lose theirs."""
    n_all, d = values.shape
    others = torch.cat([torch.arange(keep), torch.arange(keep + 1, n_all)])
    perm = torch.stack([others[torch.randperm(len(others), generator=generator)] for _ in range(d)], 1)  # (N-1, d)
    v, m = values.clone(), mask.clone()
    v[others] = torch.gather(values, 0, perm)
    m[others] = torch.gather(mask, 0, perm)
    return v, m


def sklearn_baselines(table: Table, splits: list[tuple[np.ndarray, np.ndarray]],
                      seed: int) -> dict[str, list[dict[str, float]]]:
    """scikit-learn models on the same splits (features standardized, categorical one-hot)."""
    from sklearn import ensemble, linear_model, neighbors

    if table.target_is_categorical:
        models = {"GradientBoosting": lambda: ensemble.GradientBoostingClassifier(random_state=seed),
                  "RandomForest": lambda: ensemble.RandomForestClassifier(random_state=seed),
                  "kNN": lambda: neighbors.KNeighborsClassifier(),
                  "LogisticRegression": lambda: linear_model.LogisticRegression(max_iter=2000)}
    else:
        models = {"GradientBoosting": lambda: ensemble.GradientBoostingRegressor(random_state=seed),
                  "RandomForest": lambda: ensemble.RandomForestRegressor(random_state=seed),
                  "kNN": lambda: neighbors.KNeighborsRegressor(),
                  "LinearRegression (ridge)": lambda: linear_model.Ridge()}
    X, y = table.features(), table.raw_target
    results: dict[str, list[dict[str, float]]] = {}
    for name, make in models.items():
        results[name] = []
        for train_rows, test_rows in splits:
            model = make().fit(X[train_rows], y[train_rows].astype(int) if table.target_is_categorical else y[train_rows])
            if table.target_is_categorical:
                prob = np.zeros((len(test_rows), table.n_classes))
                prob[:, model.classes_.astype(int)] = model.predict_proba(X[test_rows])
                results[name].append(classification_metrics(y[test_rows].astype(int), prob, table.n_classes))
            else:
                results[name].append(regression_metrics(y[test_rows], model.predict(X[test_rows])))
    return results


def metrics_header(names: list[str]) -> list[str]:
    return ["model", *(name.upper() if name in ("nll", "rmse", "auroc") else name for name in names)]


def metrics_rows(rows: dict[str, dict[str, dict[str, Any]]], names: list[str]) -> list[list[str]]:
    """One row per model, one cell per metric: mean ± std over folds (accuracy in percent)."""
    out = []
    for model_name, metrics in rows.items():
        cells = []
        for name in names:
            m, s = metrics[name]["mean"], metrics[name]["std"]
            cells.append(f"{100 * m:.2f} ± {100 * s:.2f} %" if name == "accuracy" else f"{m:.4f} ± {s:.4f}")
        out.append([model_name, *cells])
    return out


@torch.no_grad()
def predict_rows(model: nn.Module, values: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, t: int,
                 n_classes: int, batch_size: int | None, device: torch.device) -> torch.Tensor:
    """One NPT's target outputs for `rows` of values, mask (N, d): class probabilities (R, C) when n_classes
    > 0, else standardized values (R,).

    When the table does not fit in one batch, each chunk of the rows goes in with a random sample of
    the other rows as context (a fixed generator, so predictions are deterministic).
    """
    n_all = values.shape[0]
    batch_size = batch_size or n_all
    chunks = [rows] if batch_size >= n_all else list(rows.split(max(batch_size // 2, 1)))
    g = torch.Generator().manual_seed(0)
    outs = []
    for chunk in chunks:
        if len(chunks) == 1:
            index, pos = torch.arange(n_all), chunk
        else:
            others = torch.ones(n_all, dtype=torch.bool)
            others[chunk] = False
            pool = others.nonzero().squeeze(1)
            context = pool[torch.randperm(len(pool), generator=g)[:batch_size - len(chunk)]]
            index, pos = torch.cat([chunk, context]), torch.arange(len(chunk))
        numeric, logits = model(values[index].to(device), mask[index].to(device))  # (B, d), (B, d, C)
        if n_classes:
            outs.append(logits[pos, t, :n_classes].float().softmax(-1).cpu())
        else:
            outs.append(numeric[pos, t].float().cpu())
    return torch.cat(outs)


def target_correlation(pred: np.ndarray, y: np.ndarray, n_classes: int) -> float:
    """Pearson correlation of prediction and true target: of the predicted value for a numeric target
    (n_classes 0); of the class probabilities (R, C) and the one-hot true class (all classes pooled)."""
    if n_classes:
        pred, y = pred.ravel(), np.eye(n_classes)[y.astype(int)].ravel()
    if np.std(pred) < 1e-12 or np.std(y) < 1e-12:
        return float("nan")
    return float(np.corrcoef(pred, y)[0, 1])


def write_predictions(path: Path, table: Table, splits: list[tuple[np.ndarray, np.ndarray]], outs: list[torch.Tensor],
                      decode_true, decode_output) -> None:
    """predictions.csv: every row once, predicted by the fold that held it out: row, fold, true target,
    prediction (and the class probabilities for a categorical target). decode_true(k, raw) and
    decode_output(k, out) turn fold k's values into text."""
    f = io.StringIO(newline="")  # the whole file in memory, then one atomic write
    w = csv.writer(f)
    extra = [f"p_{c}" for c in table.categories[table.target]] if table.target_is_categorical else []
    w.writerow(["row", "fold", "true", "predicted", *extra])
    for k, out in enumerate(outs):
        for row, o in zip(splits[k][1].tolist(), out):
            true, pred = decode_true(k, table.raw_target[row]), decode_output(k, o)
            w.writerow([row, k, true, pred, *([f"{p:.4f}" for p in o.tolist()] if extra else [])])
    atomic_write(path, f.getvalue())
