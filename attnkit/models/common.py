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
