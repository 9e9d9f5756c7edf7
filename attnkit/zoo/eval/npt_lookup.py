"""The NPT lookup probe on duplicated rows (Kossen et al. 2021, §4.1): intervention, corruption, picture.

Batches hold P test rows with their targets masked, then their P duplicates with targets shown
(`attnkit.zoo.data.lookup`). Intervention: the duplicates' targets are replaced by other rows' targets; the
lookup correlation is the Pearson correlation between the originals' predictions and those new values
(≈ 1 when the model copies from the duplicate, ≈ 0 when it predicts from the row's own features).
Corruption (`attnkit.zoo.eval.npt.corrupt_other_rows`): every other row has each attribute permuted across rows,
so no row matches its duplicate any more; what is left is the row's own features, and the drop measures
how much the model used the others.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from attnkit.zoo.data.lookup import hide_masked, pair_rows
from attnkit.zoo.eval.npt import corrupt_other_rows
from attnkit.zoo.plots import save_figure
from attnkit.zoo.report import Report

CORRUPTION_ROWS = 256  # test rows of the corruption probe: one forward pass each


def pair_batch(values: torch.Tensor, originals: torch.Tensor, n: int, t: int,
               duplicate_targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, mask), each (2P, d): the originals with target masked (and zeroed), then their duplicates (targets shown,
    replaced by `duplicate_targets` (P,) when given)."""
    rows = pair_rows(originals, n)
    x = values[rows].clone()  # (2P, d)
    mask = torch.zeros_like(x, dtype=torch.bool)
    P = len(originals)
    mask[:P, t] = True
    if duplicate_targets is not None:
        x[P:, t] = duplicate_targets
    return hide_masked(x, mask), mask


@torch.no_grad()
def predict_pairs(model: nn.Module, values: torch.Tensor, originals: torch.Tensor, n: int, t: int, pairs: int,
                  device: torch.device, duplicate_targets: torch.Tensor | None = None) -> torch.Tensor:
    """(R,) target predictions of the originals, `pairs` originals (and their duplicates) per forward pass."""
    out = []
    for i in range(0, len(originals), pairs):
        chunk = originals[i:i + pairs]
        dup = None if duplicate_targets is None else duplicate_targets[i:i + pairs]
        x, mask = pair_batch(values, chunk, n, t, dup)
        numeric, _ = model(x.to(device), mask.to(device))  # (2P, d)
        out.append(numeric[:len(chunk), t].float().cpu())
    return torch.cat(out)


@torch.no_grad()
def predict_corrupted(model: nn.Module, values: torch.Tensor, originals: torch.Tensor, n: int, t: int,
                      pairs: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """(R,) predictions of each original alone among corrupted rows: one forward pass per row."""
    out = []
    for i in range(0, len(originals), pairs):
        chunk = originals[i:i + pairs]
        x, mask = pair_batch(values, chunk, n, t)
        for r in range(len(chunk)):
            v, m = corrupt_other_rows(x, mask, r, generator)
            numeric, _ = model(v.to(device), m.to(device))
            out.append(numeric[r, t].float().cpu())
    return torch.stack(out)


ONSET_CORRELATION = 0.9  # "lookup has appeared": the validation lookup correlation first reaches this


def lookup_onset(metrics: list[dict], key: str = "val_lookup_corr", threshold: float = ONSET_CORRELATION) -> int | None:
    """The first evaluated step whose lookup correlation reaches `threshold` (None if none does). Lookup
    appears suddenly (README), so this step, on every seed, says how reliably a recipe finds it."""
    for record in metrics:
        if record.get(key) is not None and record[key] >= threshold:
            return int(record["step"])
    return None


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().numpy(), b.double().numpy()
    if a.std() < 1e-12 or b.std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def r2(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float(1 - ((pred - y) ** 2).mean() / y.var(unbiased=False).clamp_min(1e-12))


@torch.no_grad()
def datapoint_attention(model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Attention between datapoints of every ABD block, each (H, N, N) float32 (row i attends to row j)."""
    from attnkit.zoo.models.npt import ABD
    from attnkit.nn.blocks import Block

    h = model.embed(x, mask)  # (N, d, e)
    maps = []
    for block in model.blocks:
        if isinstance(block, ABD):
            N, d, e = h.shape
            out, probs = Block.forward(block, h.reshape(1, N, d * e), need_weights=True)  # (1, N, d·e), (1, H, N, N)
            maps.append(probs[0])
            h = out.view(N, d, e)
        else:
            h = block(h)
    return maps


def plot_datapoint_attention(maps: list[torch.Tensor], query: int, duplicate: int, path: str | Path,
                             title: str) -> str:
    """One panel per ABD layer: the query row's attention over the batch's rows (mean over heads, the most
    focused head's weight on the duplicate in the label), with its duplicate marked; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(maps), 1, figsize=(7.5, 1.9 * len(maps) + 0.6), dpi=110, squeeze=False)
    for i, (ax, probs) in enumerate(zip(axes[:, 0], maps)):
        heads = probs[:, query].cpu().numpy()  # (H, N): the query row's attention in each head
        row = heads.mean(0)  # (N,)
        colors = ["tab:gray"] * len(row)
        colors[query], colors[duplicate] = "tab:blue", "tab:red"
        ax.bar(np.arange(len(row)), row, color=colors, width=1.0)
        ax.text(0.01, 0.95, f"to its duplicate: {row[duplicate]:.3f} (mean of {len(heads)} heads), "
                f"{heads[:, duplicate].max():.3f} in the most focused head", transform=ax.transAxes,
                ha="left", va="top", fontsize=8, color="tab:red")
        ax.set_ylabel(f"ABD {i + 1}", fontsize=8)
        ax.set_xlim(-1, len(row))
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel(f"row in the batch (query row {query} in blue, its duplicate in red)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return str(save_figure(fig, path))


def lookup_validation(model: nn.Module, values: torch.Tensor, rows: torch.Tensor, n: int, t: int, pairs: int,
                      device: torch.device) -> tuple[float, float]:
    """(clean MSE of the standardized target, lookup correlation) on `rows`: the evaluation during training."""
    y = values[rows, t]  # (R,)
    clean = predict_pairs(model, values, rows, n, t, pairs, device)
    new = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    moved = predict_pairs(model, values, rows, n, t, pairs, device, duplicate_targets=new)
    return float(((clean - y) ** 2).mean()), correlation(moved, new)


def lookup_report(model: nn.Module, values: torch.Tensor, n: int, t: int, train_rows: torch.Tensor,
                  test_rows: torch.Tensor, pairs: int, device: torch.device, features: np.ndarray,
                  raw_target: np.ndarray, out_dir: Path, seed: int) -> Report:
    """Clean, intervened and corrupted predictions of the test rows, a features-only baseline, the table and
    the datapoint-attention PNG. values (2n, d): the table twice, target standardized. The model is
    used as it is (the caller puts it in eval mode)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    g = torch.Generator().manual_seed(seed)
    y = values[test_rows, t]  # (R,) standardized true targets
    clean = predict_pairs(model, values, test_rows, n, t, pairs, device)
    new = y[torch.randperm(len(y), generator=g)]  # the intervention: other rows' targets
    moved = predict_pairs(model, values, test_rows, n, t, pairs, device, duplicate_targets=new)
    probe_rows = test_rows[:CORRUPTION_ROWS]
    corrupted = predict_corrupted(model, values, probe_rows, n, t, pairs, device, g)
    shown = test_rows[:min(pairs, 64)]  # the pictured batch: at most 64 pairs, so the bars stay readable
    x, mask = pair_batch(values, shown, n, t)
    maps = datapoint_attention(model, x.to(device), mask.to(device))

    gbm = HistGradientBoostingRegressor(random_state=seed).fit(features[train_rows], raw_target[train_rows])
    y_raw = torch.as_tensor(raw_target[test_rows.numpy()])
    gbm_pred = torch.as_tensor(gbm.predict(features[test_rows.numpy()]))
    y_probe = y[:len(probe_rows)]
    result = {
        "lookup_correlation": correlation(moved, new),
        "intervened_correlation_with_own_target": correlation(moved, y),
        "clean": {"correlation": correlation(clean, y), "r2": r2(clean, y)},
        "corruption": {"rows": len(probe_rows),
                       "clean": {"correlation": correlation(clean[:len(probe_rows)], y_probe),
                                 "r2": r2(clean[:len(probe_rows)], y_probe)},
                       "corrupted": {"correlation": correlation(corrupted, y_probe), "r2": r2(corrupted, y_probe)}},
        "features_only_gbm": {"correlation": correlation(gbm_pred, y_raw), "r2": r2(gbm_pred, y_raw)},
        "test_rows": len(test_rows), "pairs_per_batch": pairs,
    }
    c = result["corruption"]
    c["drop"] = {k: c["clean"][k] - c["corrupted"][k] for k in ("correlation", "r2")}

    report = Report(metrics=result)
    report.table(f"NPT lookup on duplicated rows: {len(test_rows)} test rows, {pairs} pairs per batch",
                 ["predictions", "correlation", "R²", "what it shows"], [
                     ["NPT, duplicates show the true target", result["clean"]["correlation"],
                      result["clean"]["r2"], "against the true target"],
                     ["NPT, duplicates' targets intervened", result["lookup_correlation"], r2(moved, new),
                      "against the new (intervened) targets: lookup"],
                     ["NPT, other rows' features shuffled", c["corrupted"]["correlation"], c["corrupted"]["r2"],
                      f"corruption probe, {len(probe_rows)} rows (clean R² {c['clean']['r2']:.4f})"],
                     ["gradient boosting on the row's features", result["features_only_gbm"]["correlation"],
                      result["features_only_gbm"]["r2"], "no lookup possible: the ceiling without it"]])
    png = plot_datapoint_attention(maps, 0, len(shown), Path(out_dir) / "datapoint_attention.png",
                                   f"attention between datapoints of test row {int(test_rows[0])} "
                                   f"(batch of {2 * len(shown)} rows)")
    result["datapoint_attention_png"] = png
    report.file("datapoint attention", png)
    return report
