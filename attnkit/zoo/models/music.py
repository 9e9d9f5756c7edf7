"""Music Transformer (Huang et al. 2018): a decoder-only Transformer whose self-attention adds learned
relative-position embeddings (Shaw et al. 2018), through `attnkit.relative_attention`.

    logits_ij = (q_i·k_j + q_i·E[h, min(i − j, R − 1)]) / sqrt(D),  j ≤ i

E holds R learned vectors per head (R = max_relative), one per distance; farther keys share the last. The
paper's "skewing" trick is how the Triton kernel avoids the O(L²D) gather; the model only calls the op.

`position` picks the comparison arm of the paper:
    "absolute": the vanilla Transformer baseline, sinusoidal timing signal added to the embeddings;
    "relative": relative attention only (nothing absolute, so it is the same at every offset);
    "both":     timing signal plus relative attention (the paper's Music Transformer keeps the signal).
The sinusoid is computed for any length, so every arm can be evaluated on sequences longer than it was
trained on; only the relative arms learned what distance means.

Built bottom-up, nanoGPT style: timing_signal -> MusicConfig -> MusicTransformer, on the zoo's shared pre-LN
`Block` (attnkit.nn.blocks) with position="relative" for the relative arms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit.nn.layers import KVCache
from attnkit.nn.blocks import Stack
from attnkit.nn.init import init_weights

POSITIONS = ("absolute", "relative", "both")


def timing_signal(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """Sinusoidal positions of Vaswani et al.: (L,) int -> (L, d_model) float32, sin and cos halves."""
    half = d_model // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device) / max(half - 1, 1))
    angle = positions.float()[:, None] * freq[None, :]  # (L, half)
    signal = torch.cat([angle.sin(), angle.cos()], dim=1)  # (L, 2 * half)
    return F.pad(signal, (0, d_model - 2 * half))  # (L, d_model)


@dataclass
class MusicConfig:
    vocab_size: int = 93            # attnkit.zoo.data.chorales.VOCAB_SIZE
    block_size: int = 256           # training context (tokens); sampling may run longer
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    d_ff: int | None = None         # None = 4 * d_model
    dropout: float = 0.1
    position: str = "relative"      # absolute | relative | both
    max_relative: int | None = None  # learned distances 0..R-1 per head; None = block_size (the paper's R = L)

    def __post_init__(self):
        if self.position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {self.position!r}")
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        if self.max_relative is None:
            self.max_relative = self.block_size


class MusicTransformer(nn.Module):
    def __init__(self, cfg: MusicConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        relative = cfg.position in ("relative", "both")
        self.blocks = Stack(cfg.n_layer, cfg.d_model, cfg.n_head, d_ff=cfg.d_ff, causal=True, dropout=cfg.dropout,
                            position="relative" if relative else "none", max_relative=cfg.max_relative)
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying
        self.apply(init_weights)
        # Embeddings are scaled by sqrt(d_model) in `embed`, so this gives unit-variance token vectors
        # (comparable to the timing signal) and, tied, unit-scale initial logits (Tensor2Tensor's choice).
        nn.init.normal_(self.tok_emb.weight, std=cfg.d_model ** -0.5)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def make_caches(self, max_len: int | None = None) -> list[KVCache]:
        return self.blocks.make_caches(max_len)

    def embed(self, idx: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """(B, L) tokens at positions offset.. -> (B, L, d_model) block input."""
        x = self.tok_emb(idx) * math.sqrt(self.config.d_model)  # (B, L, d_model): same scale as the signal
        if self.config.position in ("absolute", "both"):
            pos = torch.arange(offset, offset + idx.shape[1], device=idx.device)
            x = x + timing_signal(pos, self.config.d_model).to(x.dtype)  # (B, L, d_model)
        return self.drop(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                caches: list[KVCache] | None = None,
                label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx: (B, L) tokens; targets: (B, L) next tokens, -100 = ignored. With `caches` (one per block),
        idx holds only the new tokens and positions continue from the cached length.

        Returns logits (B, L, vocab) and the mean cross-entropy over non-ignored targets (or None).
        """
        offset = caches[0].length if caches else 0
        x = self.embed(idx, offset)  # (B, L, d_model)
        x = self.blocks(x, caches=caches or None)  # (B, L, d_model)
        logits = self.head(self.ln_f(x))  # (B, L, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                   ignore_index=-100, label_smoothing=label_smoothing)
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Attention probabilities of one layer over idx: (B, L) -> (B, H, L, L), rows sum to 1 (dropout off).

        The fused op never forms these; the layer rebuilds them from its own q, k (and relative embeddings)
        through its public `need_weights` path.
        """
        return self.blocks.attention_maps(self.embed(idx))[layer]  # (B, H, L, L)
