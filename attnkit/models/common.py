"""Pieces shared by several models in the zoo. (GPT keeps its own nanoGPT-style copy so gpt.py reads alone.)"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    """Position-wise feed-forward: Linear → GELU → Linear → dropout. (..., d_model) -> (..., d_model)."""

    def __init__(self, d_model: int, hidden: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(d_model, hidden)
        self.proj = nn.Linear(hidden, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))  # (..., d_model)


def init_weights(m: nn.Module) -> None:
    """GPT-2 / BERT init, for `model.apply`: Linear and Embedding weights ~ N(0, 0.02), Linear biases zero."""
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
    if isinstance(m, nn.Linear) and m.bias is not None:
        nn.init.zeros_(m.bias)
