"""AdamW with decay on matrices only, and learning-rate schedules, shared by every model's training.

Weight decay applies to parameters with ≥ 2 dims (Linear and Embedding weights); biases, LayerNorm gains
and other vectors are not decayed (as nanoGPT and most GPT recipes do).

Schedules, with `step` counted from 0 and lr the peak:
    cosine:    linear warmup lr·(step+1)/(warmup+1), then cosine decay to min_lr at max_steps.
    noam:      Vaswani et al. 2017, d_model^-0.5 · min(s^-0.5, s·warmup^-1.5) with s = step + 1,
               rescaled so the peak (at s = warmup) equals lr: lr · min(sqrt(warmup/s), s/warmup).
    constant:  linear warmup, then lr.
"""
from __future__ import annotations

import inspect
import math

import torch
import torch.nn as nn

SCHEDULES = ("cosine", "noam", "constant")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: ≥2-D params decayed, the rest not. Tied weights appear once."""
    params = [p for p in model.parameters() if p.requires_grad]  # parameters() already dedups tied weights
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                   device: torch.device) -> torch.optim.AdamW:
    extra = {}
    if device.type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters:
        extra["fused"] = True  # one kernel for all parameters
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, **extra)


def lr_at(step: int, *, schedule: str, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Learning rate for optimizer step `step` (0-based)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "noam":
        s, w = step + 1, max(warmup_steps, 1)
        return lr * min(math.sqrt(w / s), s / w)
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return lr
    if step >= max_steps:
        return min_lr
    ratio = (step - warmup_steps) / max(max_steps - warmup_steps, 1)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)
