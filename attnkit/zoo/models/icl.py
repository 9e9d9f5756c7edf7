"""A GPT-style decoder that learns regression in context (Garg et al. 2022).

The prompt (x_1, y_1, …, x_n, y_n) becomes 2n tokens: x_i as it is (d numbers) and y_i as (y_i, 0, …, 0),
the authors' layout. A linear read-in maps each token to the model width, learned positions are added,
a causal pre-norm stack runs, and a linear read-out after every x token predicts that point's y from the
pairs before it: prediction i sees (x_1, y_1, …, x_i) only.

Built bottom-up: interleave → ICLConfig → ICLTransformer, on the zoo's shared causal `Stack`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from attnkit.nn.blocks import Stack
from attnkit.nn.init import init_weights


def interleave(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """xs (B, n, d), ys (B, n) -> tokens (B, 2n, d): x_1, (y_1, 0…0), x_2, (y_2, 0…0), …"""
    B, n, d = xs.shape
    y_tokens = torch.zeros_like(xs)  # (B, n, d)
    y_tokens[..., 0] = ys
    return torch.stack((xs, y_tokens), dim=2).reshape(B, 2 * n, d)  # (B, 2n, d)


@dataclass
class ICLConfig:
    n_dims: int = 8        # d: inputs x ∈ R^d
    n_points: int = 17     # longest prompt, in (x, y) pairs: 2d + 1 reads k = 0..2d in-context examples
    n_layer: int = 4
    n_head: int = 2
    n_embd: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.0
    position: str = "learned"  # learned (GPT-2 embeddings) | rotary (inside attention)
    y_token: str = "padded"    # padded: (y, 0…0) through the x read-in (Garg et al.) | own: y's own read-in


    def __post_init__(self):
        if self.position not in ("learned", "rotary"):
            raise ValueError(f"position must be 'learned' or 'rotary', got {self.position!r}")
        if self.y_token not in ("padded", "own"):
            raise ValueError(f"y_token must be 'padded' or 'own', got {self.y_token!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_dims < 1 or self.n_points < 1:
            raise ValueError(f"n_dims and n_points must be positive, got {self.n_dims}, {self.n_points}")


class ICLTransformer(nn.Module):
    def __init__(self, cfg: ICLConfig):
        super().__init__()
        self.cfg = cfg
        self.read_in = nn.Linear(cfg.n_dims, cfg.n_embd)
        # "own": y reaches the model through its own read-in, so it is never confused with x's first coordinate.
        self.read_in_y = nn.Linear(1, cfg.n_embd) if cfg.y_token == "own" else None
        self.wpe = nn.Embedding(2 * cfg.n_points, cfg.n_embd) if cfg.position == "learned" else None
        self.blocks = Stack(cfg.n_layer, cfg.n_embd, cfg.n_head, causal=True, d_ff=cfg.mlp_ratio * cfg.n_embd,
                            dropout=cfg.dropout, position="rotary" if cfg.position == "rotary" else "none")
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.read_out = nn.Linear(cfg.n_embd, 1)
        self.apply(init_weights)

    def forward(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """xs (B, n, d), ys (B, n) -> predictions (B, n): entry i is f(x_i) guessed from the i pairs before it."""
        B, n, d = xs.shape
        if d != self.cfg.n_dims:
            raise ValueError(f"prompt points have {d} coordinates; this model reads d = {self.cfg.n_dims}")
        if n > self.cfg.n_points:
            raise ValueError(f"prompt has {n} points; this model reads at most {self.cfg.n_points}")
        if self.read_in_y is None:
            h = self.read_in(interleave(xs, ys))  # (B, 2n, C)
        else:
            hx, hy = self.read_in(xs), self.read_in_y(ys[..., None])  # (B, n, C) each
            h = torch.stack((hx, hy), dim=2).reshape(B, 2 * n, -1)  # (B, 2n, C): x_1, y_1, x_2, …
        if self.wpe is not None:
            h = h + self.wpe(torch.arange(2 * n, device=xs.device))
        h = self.blocks(h)  # (B, 2n, C)
        return self.read_out(self.ln_f(h[:, ::2]))[..., 0]  # (B, n), read after every x
