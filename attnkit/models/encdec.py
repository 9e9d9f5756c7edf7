"""The encoder-decoder Transformer of Vaswani et al. 2017, "Attention Is All You Need".

Built bottom-up: sinusoidal positions → FeedForward → EncoderLayer → DecoderLayer → EncDecConfig → EncDec.
Both layer orders are available: post-LN (the paper: x = LN(x + sublayer(x))) and pre-LN
(x = x + sublayer(LN(x)), with a final LN; trains without warmup tricks and is the usual modern choice).
With a shared source/target vocabulary the source embedding, target embedding and output projection are
one matrix (paper §3.4). Every attention goes through `attnkit.layers.MultiHeadAttention`, hence
`attnkit.attention`: the encoder masks padded source keys, the decoder is causal, cross-attention reads
the encoder's output via `context=`, and decoding keeps a `KVCache` per layer (see `attnkit.beam`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from attnkit.layers import KVCache, MultiHeadAttention


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """(length, d_model): PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d))."""
    pos = torch.arange(length, dtype=torch.float64)[:, None]                               # (L, 1)
    inv = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * inv)
    pe[:, 1::2] = torch.cos(pos * inv[: d_model // 2])
    return pe.float()


class FeedForward(nn.Module):
    """Position-wise FFN: Linear(d, d_ff) → activation → dropout → Linear(d_ff, d)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, activation: str = "relu"):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(x))))  # (B, L, d)


class Residual(nn.Module):
    """One sublayer with its residual and LayerNorm, in post-LN or pre-LN order; dropout on the sublayer output."""

    def __init__(self, d_model: int, dropout: float, pre_ln: bool):
        super().__init__()
        self.norm, self.dropout, self.pre_ln = nn.LayerNorm(d_model), nn.Dropout(dropout), pre_ln

    def forward(self, x: torch.Tensor, sublayer) -> torch.Tensor:
        if self.pre_ln:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class EncoderLayer(nn.Module):
    """Bidirectional self-attention (padded keys masked) then the FFN. Also BERT's layer."""

    def __init__(self, d_model: int, n_head: int, d_ff: int, dropout: float, pre_ln: bool,
                 activation: str = "relu"):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, n_head, causal=False)
        self.ffn = FeedForward(d_model, d_ff, dropout, activation)
        self.res1, self.res2 = Residual(d_model, dropout, pre_ln), Residual(d_model, dropout, pre_ln)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        # x: (B, L, d); pad_mask: (B, L) bool, True = real token
        x = self.res1(x, lambda h: self.attn(h, key_padding_mask=pad_mask))
        return self.res2(x, self.ffn)  # (B, L, d)


@dataclass
class DecoderCache:
    """Per decoder layer: self-attention keys/values so far and the projected encoder output."""
    self_attn: KVCache
    cross_attn: KVCache

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the rows in `index`. Only self-attention moves: beam search reorders within each source's
        group of beams, whose cross-attention rows are identical."""
        self.self_attn.reorder(index)


class DecoderLayer(nn.Module):
    """Causal self-attention → cross-attention over the encoder output → FFN."""

    def __init__(self, d_model: int, n_head: int, d_ff: int, dropout: float, pre_ln: bool):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_head, causal=True)
        self.cross_attn = MultiHeadAttention(d_model, n_head, causal=False)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.res1, self.res2, self.res3 = (Residual(d_model, dropout, pre_ln) for _ in range(3))

    def forward(self, y: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor | None,
                cache: DecoderCache | None = None) -> torch.Tensor:
        # y: (B, Lt, d) target states (only the new ones with a cache); memory: (B, Ls, d); src_mask: (B, Ls)
        self_cache = cache.self_attn if cache is not None else None
        cross_cache = cache.cross_attn if cache is not None else None
        y = self.res1(y, lambda h: self.self_attn(h, cache=self_cache))
        y = self.res2(y, lambda h: self.cross_attn(h, context=memory, key_padding_mask=src_mask, cache=cross_cache))
        return self.res3(y, self.ffn)  # (B, Lt, d)


@dataclass
class EncDecConfig:
    src_vocab_size: int = 64
    tgt_vocab_size: int = 64
    shared_vocab: bool = True   # one vocabulary: tie source embedding, target embedding and output layer
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    max_len: int = 256          # longest source or target the sinusoid table covers
    n_enc_layer: int = 6
    n_dec_layer: int = 6
    n_head: int = 8
    d_model: int = 512
    d_ff: int = 2048
    dropout: float = 0.1
    pre_ln: bool = False        # False = the paper's post-LN; True = pre-LN (adds final LayerNorms)


class EncDec(nn.Module):
    """Transformer (base) for sequence-to-sequence; `forward` is teacher-forced, `attnkit.beam` decodes."""

    def __init__(self, cfg: EncDecConfig):
        super().__init__()
        if cfg.shared_vocab and cfg.src_vocab_size != cfg.tgt_vocab_size:
            raise ValueError("shared_vocab needs src_vocab_size == tgt_vocab_size")
        self.cfg = cfg
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.src_embed = self.tgt_embed if cfg.shared_vocab else \
            nn.Embedding(cfg.src_vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.register_buffer("pe", sinusoidal_positions(cfg.max_len, cfg.d_model), persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg.d_model, cfg.n_head, cfg.d_ff, cfg.dropout, cfg.pre_ln)
                                     for _ in range(cfg.n_enc_layer))
        self.decoder = nn.ModuleList(DecoderLayer(cfg.d_model, cfg.n_head, cfg.d_ff, cfg.dropout, cfg.pre_ln)
                                     for _ in range(cfg.n_dec_layer))
        # Pre-LN leaves the residual stream un-normalised, so each stack ends with a LayerNorm.
        self.enc_norm = nn.LayerNorm(cfg.d_model) if cfg.pre_ln else nn.Identity()
        self.dec_norm = nn.LayerNorm(cfg.d_model) if cfg.pre_ln else nn.Identity()
        self.lm_head = nn.Linear(cfg.d_model, cfg.tgt_vocab_size, bias=False)
        self.apply(self._init_weights)
        self.lm_head.weight = self.tgt_embed.weight  # paper §3.4: embeddings and pre-softmax layer share weights

    def _init_weights(self, m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=self.cfg.d_model ** -0.5)  # × sqrt(d) in _embed → unit scale
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    def _embed(self, table: nn.Embedding, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        L = ids.shape[1]
        if offset + L > self.cfg.max_len:
            raise ValueError(f"sequence of {offset + L} tokens is longer than max_len={self.cfg.max_len}")
        x = table(ids) * math.sqrt(self.cfg.d_model) + self.pe[offset:offset + L]  # (B, L, d)
        return self.dropout(x)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src: (B, Ls) ids → memory (B, Ls, d) and src_mask (B, Ls), True = real token."""
        src_mask = src != self.cfg.pad_id
        x = self._embed(self.src_embed, src)
        for layer in self.encoder:
            x = layer(x, src_mask)
        return self.enc_norm(x), src_mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor,
               caches: list[DecoderCache] | None = None) -> torch.Tensor:
        """tgt_in: (B, Lt) ids (BOS first) → logits (B, Lt, V). With caches, tgt_in holds only new tokens."""
        offset = caches[0].self_attn.length if caches else 0
        y = self._embed(self.tgt_embed, tgt_in, offset)
        for i, layer in enumerate(self.decoder):
            y = layer(y, memory, src_mask, caches[i] if caches else None)
        return self.lm_head(self.dec_norm(y))  # (B, Lt, V)

    def new_caches(self) -> list[DecoderCache]:
        return [DecoderCache(KVCache(), KVCache()) for _ in self.decoder]

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: src (B, Ls), tgt_in (B, Lt) → logits (B, Lt, V) for the next target token."""
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)

