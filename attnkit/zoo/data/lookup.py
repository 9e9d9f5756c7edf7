"""The NPT's semi-synthetic lookup experiment (Kossen et al. 2021, §4.1): every row has a duplicate.

The table is scikit-learn's Friedman #1 regression problem (10 uniform features, 5 of them used, plus
Gaussian noise), generated offline from a seed: big enough (10k+ rows) that the model cannot memorise
the targets, and noisy enough that the features alone explain only part of the target, so looking the
answer up in the duplicate row is the best prediction. Rows n..2n-1 duplicate rows 0..n-1.

Training batches hold row pairs: the original's target is always masked (and is what the loss scores);
the duplicate shows it. At test time the duplicates' targets are replaced by other rows' targets (the
intervention): a model that looks its answer up must follow them, one that predicts from the row's own
features cannot.
"""
from __future__ import annotations

import numpy as np
import torch

from attnkit.zoo.data.tables import Table

LOOKUP_ROWS, LOOKUP_NOISE = 10_000, 3.0
LOOKUP_TEST_SHARE = 0.1  # held-out rows: never trained on; the probes intervene on their duplicates


def friedman_table(n_rows: int = LOOKUP_ROWS, noise: float = LOOKUP_NOISE, seed: int = 0) -> Table:
    """Friedman #1 as a `Table`: features x0..x9 standardized, target y (the last column) kept raw."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=n_rows, n_features=10, noise=noise, random_state=seed)
    mean, std = x.mean(0), x.std(0)
    values = np.concatenate([(x - mean) / std, y[:, None]], axis=1).astype(np.float32)  # (n, 11)
    columns = [f"x{j}" for j in range(10)] + ["y"]
    return Table(name=f"friedman1 ({n_rows} rows, noise {noise:g})", columns=columns,
                 kinds=["numeric"] * 11, categories=[[] for _ in columns], target=10, values=values,
                 missing=np.zeros_like(values, dtype=bool), raw_target=y.astype(np.float64),
                 feature_mean=[*mean.tolist(), 0.0], feature_std=[*std.tolist(), 1.0])


def pair_rows(originals: torch.Tensor, n: int) -> torch.Tensor:
    """Original row ids (P,) -> (2P,) ids of a batch: the originals, then their duplicates (id + n)."""
    return torch.cat([originals, originals + n])


def sample_pairs(pool: torch.Tensor, pairs: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """(2·pairs,) batch rows: `pairs` random originals from `pool` and their duplicates."""
    chosen = pool[torch.randperm(len(pool), generator=generator)[:pairs]]
    return pair_rows(chosen, n)


def intervene(targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """New duplicate targets (P,): the same values, permuted across rows (a derangement-like shuffle that
    keeps the target distribution and breaks every row's link to its own features)."""
    return targets[torch.randperm(len(targets), generator=generator)]


def lookup_batch(values: torch.Tensor, pool: torch.Tensor, n: int, t: int, pairs: int,
                 generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A training batch for one model: values, mask, labels, weight, each (1, 2P, d).

    values (2n, d) holds the table twice (target column standardized). The P originals have their target
    masked (set to 0 in `values`; the truth is in `labels`) and scored (weight 1/P); the duplicates show
    theirs and are not scored.
    """
    rows = sample_pairs(pool, pairs, n, generator)  # (2P,)
    labels = values[rows]  # (2P, d)
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:pairs, t] = True
    weight = torch.zeros_like(labels)
    weight[:pairs, t] = 1.0 / pairs
    return {"values": hide_masked(labels, mask)[None], "mask": mask[None], "labels": labels[None],
            "weight": weight[None]}


def hide_masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x with its masked cells set to 0: a masked target is absent from the input itself, not only ignored by
    the model (the NPT zeroes masked cells too), so no model can see the answer it is scored on."""
    return x.masked_fill(mask, 0.0)
