"""NPT's training batches on a table (Kossen et al. 2021, section 3): masked cells, BERT-style.

Every feature cell is selected with probability `feature_mask` and corrupted BERT-style (80 % mask token,
10 % a random value of that column, 10 % unchanged); every training target is masked with probability
`target_mask`, the other training targets are inputs; test targets are always masked and never scored.
The loss weights make the loss (1 − λ)·mean feature loss + λ·mean target loss, λ = `target_weight`.
"""
from __future__ import annotations

import torch

TRAIN, TEST, CONTEXT = 0, 1, 2   # row roles within one fold (CONTEXT: lookup duplicates, target visible)


def random_rows(shape: tuple[int, int], batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """(K, B) row indices for K folds of n_all rows: every row when the table fits in a batch, else a random
    subset per fold."""
    K, n_all = shape
    if batch_size >= n_all:
        return torch.arange(n_all).expand(K, n_all)
    return torch.stack([torch.randperm(n_all, generator=generator)[:batch_size] for _ in range(K)])


def masked_cell_batch(values: torch.Tensor, missing: torch.Tensor, roles: torch.Tensor, rows: torch.Tensor, t: int,
                      generator: torch.Generator, feature_mask: float, target_mask: float,
                      target_weight: float) -> dict[str, torch.Tensor]:
    """values (K, n_all, d), missing (n_all, d), roles (K, n_all), rows (K, B), target column t ->
    values, mask, labels, weight, each (K, B, d)."""
    K, B = rows.shape
    d = values.shape[2]
    labels = torch.gather(values, 1, rows[..., None].expand(K, B, d))    # (K, B, d)
    missing = missing[rows]                                              # (K, B, d)
    role = torch.gather(roles, 1, rows)                                  # (K, B)
    is_target = torch.zeros(d, dtype=torch.bool)
    is_target[t] = True

    # Features: select cells, then BERT-style corruption of the selected ones.
    chosen = (torch.rand(K, B, d, generator=generator) < feature_mask) & ~missing & ~is_target
    r = torch.rand(K, B, d, generator=generator)
    as_token = chosen & (r < 0.8)
    as_random = chosen & (r >= 0.8) & (r < 0.9)
    donors = torch.randint(0, B, (K, B, d), generator=generator)         # same column, random row
    inputs = torch.where(as_random, torch.gather(labels, 1, donors), labels)

    # Targets: training rows masked with target_mask (and trained on), test rows always masked, context never.
    target_chosen = (torch.rand(K, B, generator=generator) < target_mask) & (role == TRAIN) & ~missing[..., t]
    target_hidden = target_chosen | (role == TEST)
    mask = missing | as_token
    mask[..., t] |= target_hidden

    # Loss weights: mean over selected feature cells and over selected targets, traded off by λ.
    weight = torch.zeros(K, B, d)
    n_feat = chosen.sum((1, 2)).clamp(min=1)[:, None, None]
    n_tgt = target_chosen.sum(1).clamp(min=1)[:, None]
    weight = torch.where(chosen, (1 - target_weight) / n_feat, weight)
    weight[..., t] = torch.where(target_chosen, target_weight / n_tgt, 0.0)
    return {"values": inputs, "mask": mask, "labels": labels, "weight": weight}
