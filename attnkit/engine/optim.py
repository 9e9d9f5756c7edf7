"""Optimizers and learning-rate schedules shared by every model's training.

AdamW (the default): weight decay applies to parameters with ≥ 2 dims (Linear and Embedding weights);
biases, norm gains and other vectors are not decayed (as nanoGPT and most GPT recipes do).

Muon (Jordan et al. 2024, `torch.optim.Muon`, torch ≥ 2.9) with AdamW, as in modded-nanogpt: Muon
orthogonalises the momentum of each hidden matrix (the Linear weights inside the blocks) with a few
Newton-Schulz steps; embeddings, the output head (any module named `lm_head`) and every vector (gains,
biases, scalars) stay on AdamW, whose update suits them better. Both share the schedule: each param group
carries `lr_scale`, and the trainer sets `lr = schedule(step) · lr_scale`.

Schedules, with `step` counted from 0 and lr the peak:
    cosine:    linear warmup lr·(step+1)/(warmup+1), then cosine decay to min_lr at max_steps.
    noam:      Vaswani et al. 2017, d_model^-0.5 · min(s^-0.5, s·warmup^-1.5) with s = step + 1,
               rescaled so the peak (at s = warmup) equals lr: lr · min(sqrt(warmup/s), s/warmup).
    constant:  linear warmup, then lr.
    trapezoid: linear warmup, constant lr, then a linear decay to min_lr over the last `cooldown`
               share of max_steps (modded-nanogpt's schedule; COOLDOWN = 0.4 of the run).
"""
from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.nn as nn

from attnkit.errors import UserError

SCHEDULES = ("cosine", "noam", "constant", "trapezoid")
OPTIMIZERS = ("adamw", "muon")
COOLDOWN = 0.4  # share of the run the trapezoid schedule spends decaying


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: ≥2-D params decayed, the rest not. Tied weights appear once."""
    params = [p for p in model.parameters() if p.requires_grad]  # parameters() already dedups tied weights
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The weights Muon updates: every nn.Linear weight except the output head's and any shared with an
    embedding (a tied head). Each parameter once, in model order."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    seen, out = set(), []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or name.split(".")[-1] == "lm_head":
            continue
        w = module.weight
        if w.requires_grad and id(w) not in embedded and id(w) not in seen:
            seen.add(id(w))
            out.append(w)
    return out


def muon_available() -> bool:
    return hasattr(torch.optim, "Muon")


class MuonAdamW:
    """torch.optim.Muon on the hidden matrices and torch.optim.AdamW on everything else, stepped together.

    Quacks like one optimizer for the trainer and GradScaler: `param_groups` lists both optimizers' groups
    (the same dicts, so setting group["lr"] reaches them), and `state_dict` holds both.
    """

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer):
        self.muon, self.adamw = muon, adamw

    @property
    def param_groups(self) -> list[dict]:
        return self.muon.param_groups + self.adamw.param_groups

    @property
    def state(self) -> dict:
        return {**self.muon.state, **self.adamw.state}

    def step(self, closure=None):
        loss = self.muon.step(closure)
        self.adamw.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"muon", "adamw"}:
            raise UserError("the checkpoint's optimizer state is not Muon + AdamW; resume with the optimizer "
                            "the run was trained with")
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                   device: torch.device, *, optimizer: str = "adamw", muon_lr: float = 0.05,
                   muon_momentum: float = 0.95) -> torch.optim.Optimizer | MuonAdamW:
    """AdamW over param_groups(model), or (optimizer="muon") Muon at peak muon_lr on hidden_matrices(model)
    plus AdamW at peak lr on the rest. weight_decay applies to AdamW's matrices only."""
    if optimizer not in OPTIMIZERS:
        raise UserError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    extra = {}
    if device.type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters:
        extra["fused"] = True  # one kernel for all parameters
    if optimizer == "adamw":
        return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, **extra)
    if not muon_available():
        raise UserError(f"the muon optimizer needs torch.optim.Muon (torch ≥ 2.9); this is torch {torch.__version__}")
    hidden = hidden_matrices(model)
    hidden_ids = {id(p) for p in hidden}
    rest = [{**g, "params": [p for p in g["params"] if id(p) not in hidden_ids], "lr_scale": 1.0}
            for g in param_groups(model, weight_decay)]
    muon = torch.optim.Muon([{"params": hidden, "lr_scale": muon_lr / lr}], lr=muon_lr, weight_decay=0.0,
                            momentum=muon_momentum, nesterov=True)
    adamw = torch.optim.AdamW([g for g in rest if g["params"]], lr=lr, betas=betas, **extra)
    return MuonAdamW(muon, adamw)


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
    if schedule == "trapezoid":
        decay_from = max_steps * (1 - COOLDOWN)
        if step < decay_from:
            return lr
        return lr + (step - decay_from) / max(max_steps - decay_from, 1) * (min_lr - lr)
    ratio = (step - warmup_steps) / max(max_steps - warmup_steps, 1)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)
