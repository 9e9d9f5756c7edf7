"""Image Transformer (Parmar et al. 2018): class-conditional autoregressive pixel generation with local attention.

Each pixel is a token of `levels` intensities; the model predicts pixel t from the pixels before it, with
a softmax over intensities, so its loss is a likelihood and reports as bits per dimension.

Order and attention (`attention`):
    full     raster order, causal attention over every earlier pixel.
    local1d  raster order; query blocks of `block_1d` pixels see their own block and `memory_1d` pixels before it.
    local2d  block-raster order, as in the paper: query blocks of `query_block` (bh, bw) pixels, generated
             one block after another; each sees a memory flange of `memory_flange` (fh, fw) pixels above,
             left and right. The pattern reaches the kernel as a block-sparse bool attn_mask (local ∧ causal).

Class conditioning adds a learned class embedding to every position (a start token alone would be out of
reach of later queries under local attention). Inputs are shifted right by one: position t holds the
embedding of pixel t−1 (a start token at t = 0) plus the 2D position of pixel t.

Built bottom-up: ImageTransformerConfig → ImageTransformer, on the zoo's shared pre-LN `Block`
(attnkit.nn.blocks); sampling runs on the zoo's decode loop (attnkit.generation.decode).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit.generation.decode import decode_n_tokens, sampling
from attnkit.nn.masks import and_masks, block_raster_order, causal_mask, local_1d_mask, local_2d_mask
from attnkit.nn.blocks import Stack
from attnkit.nn.modes import direct_calls
from attnkit.nn.init import init_weights

ATTENTION_PATTERNS = ("full", "local1d", "local2d")


@dataclass
class ImageTransformerConfig:
    image_size: int = 16                          # square images, image_size × image_size pixels
    levels: int = 17                              # intensities 0..levels-1
    n_class: int = 10                             # conditioning classes
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    dropout: float = 0.1
    attention: str = "local2d"                    # full | local1d | local2d
    query_block: tuple[int, int] = (4, 8)         # local2d query block (bh, bw)
    memory_flange: tuple[int, int] = (4, 4)       # local2d flange (rows above, columns left and right)
    block_1d: int = 32                            # local1d query block length
    memory_1d: int = 64                           # local1d memory before each query block

    def __post_init__(self):
        if self.attention not in ATTENTION_PATTERNS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_PATTERNS)}, got {self.attention!r}")
        self.query_block, self.memory_flange = tuple(self.query_block), tuple(self.memory_flange)
        if self.attention == "local2d":
            bh, bw = self.query_block
            if self.image_size % bh or self.image_size % bw:
                raise ValueError(f"query block {bh}×{bw} must tile the {self.image_size}×{self.image_size} image")

    @property
    def length(self) -> int:
        return self.image_size ** 2

    def order(self) -> torch.Tensor:
        """(L,) raster index of the pixel generated at each sequence position."""
        if self.attention == "local2d":
            return block_raster_order(self.image_size, self.image_size, self.query_block)
        return torch.arange(self.length)

    def mask(self) -> torch.Tensor | None:
        """(L, L) bool pattern over sequence positions, causality included; None = plain causal."""
        L = self.length
        if self.attention == "local1d":
            return and_masks(local_1d_mask(L, self.block_1d, self.memory_1d), causal_mask(L))
        if self.attention == "local2d":
            s = self.image_size
            return and_masks(local_2d_mask(s, s, self.query_block, self.memory_flange), causal_mask(L))
        return None


class ImageTransformer(nn.Module):
    def __init__(self, cfg: ImageTransformerConfig):
        super().__init__()
        self.cfg = cfg
        d, S = cfg.d_model, cfg.image_size
        self.start = cfg.levels  # input token id of the start position
        self.pixel_embed = nn.Embedding(cfg.levels + 1, d)
        self.row_embed = nn.Parameter(torch.randn(S, d) * 0.02)
        self.col_embed = nn.Parameter(torch.randn(S, d) * 0.02)
        self.class_embed = nn.Embedding(cfg.n_class, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = Stack(cfg.n_layer, d, cfg.n_head, causal=True, dropout=cfg.dropout)
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.levels)
        order = cfg.order()
        self.register_buffer("order", order, persistent=False)  # (L,) position -> raster index
        self.register_buffer("inverse", torch.argsort(order), persistent=False)  # raster index -> position
        mask = cfg.mask()
        self.register_buffer("attn_mask", mask, persistent=False)  # (L, L) or None
        self.apply(init_weights)

    def to_sequence(self, images: torch.Tensor) -> torch.Tensor:
        """(B, S, S, ...) -> (B, L, ...) in generation order."""
        return images.flatten(1, 2)[:, self.order]

    def to_image(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L, ...) in generation order -> (B, S, S, ...)."""
        S = self.cfg.image_size
        x = seq[:, self.inverse]
        return x.reshape(x.shape[0], S, S, *x.shape[2:])

    def _position(self) -> torch.Tensor:
        """(L, d): 2D position embedding of the pixel predicted at each sequence position."""
        S = self.cfg.image_size
        pos = (self.row_embed[:, None, :] + self.col_embed[None, :, :]).reshape(S * S, -1)  # raster
        return pos[self.order]

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """images: (B, S, S) long in [0, levels); labels: (B,) -> logits (B, S, S, levels)."""
        seq = self.to_sequence(images.long())  # (B, L)
        start = torch.full_like(seq[:, :1], self.start)
        inp = torch.cat((start, seq[:, :-1]), dim=1)  # (B, L): shifted right
        x = self.pixel_embed(inp) + self._position() + self.class_embed(labels)[:, None, :]  # (B, L, d)
        x = self.blocks(self.drop(x), attn_mask=self.attn_mask)  # (B, L, d)
        logits = self.head(self.ln_f(x))  # (B, L, levels)
        return self.to_image(logits)  # (B, S, S, levels)

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per pixel, in nats (divide by ln 2 for bits/dim)."""
        logits = self(images, labels)
        return F.cross_entropy(logits.reshape(-1, self.cfg.levels), images.long().reshape(-1))

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None, on_pixel=None) -> torch.Tensor:
        """Draw one image per label, pixel by pixel with a KV cache: (N,) -> (N, S, S) long in [0, levels).

        temperature 0 is greedy; `on_pixel(t)` is called after each of the L pixels (progress bars).
        """
        N = labels.shape[0]
        pos = self._position()  # (L, d)
        cls = self.class_embed(labels)[:, None, :]  # (N, 1, d)

        def step(tokens: torch.Tensor, caches, t: int) -> torch.Tensor:
            """tokens (N, 1): pixel t−1 (the start token at t = 0) → logits (N, levels) of pixel t."""
            x = self.pixel_embed(tokens) + pos[t] + cls  # (N, 1, d)
            mask = None if self.attn_mask is None else self.attn_mask[t:t + 1, :t + 1]  # (1, t+1)
            return self.head(self.ln_f(self.blocks(x, attn_mask=mask, caches=caches)[:, -1]))  # (N, levels)

        processors, choose = sampling(temperature, top_k, None, generator)
        counter = iter(range(self.cfg.length))
        start = torch.full((N, 1), self.start, dtype=torch.long, device=labels.device)
        with direct_calls(self):  # a pixel per step: skip nn.Module's per-call overhead
            seq = decode_n_tokens(step, start, self.cfg.length,
                                  new_caches=lambda: self.blocks.make_caches(self.cfg.length),
                                  processors=processors, choose=choose,
                                  on_token=None if on_pixel is None else lambda tok, logits: on_pixel(next(counter)))
        return self.to_image(seq[:, 1:])  # (N, S, S)
