"""Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words") for small images.

The image is cut into p×p patches, each patch is a token (a linear projection of its pixels), a learned
CLS token is prepended, learned positions are added, and a pre-norm encoder runs bidirectional
attention through `attnkit.attention` (via `MultiHeadAttention`). The class is read from the CLS token.

Built bottom-up: patchify/unpatchify → MLP → Block → ViTConfig → ViT.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from attnkit.layers import MultiHeadAttention
from attnkit.models.common import MLP, init_weights


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C·p·p) with N = (H/p)·(W/p) patches in raster order."""
    B, C, H, W = images.shape
    if H % patch or W % patch:
        raise ValueError(f"patch size {patch} must divide the image size {H}×{W}")
    x = images.reshape(B, C, H // patch, patch, W // patch, patch)  # (B, C, gh, p, gw, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, p, p)
    return x.reshape(B, (H // patch) * (W // patch), C * patch * patch)  # (B, N, C·p·p)


def unpatchify(patches: torch.Tensor, patch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `patchify`: (B, N, C·p·p) -> (B, C, H, W)."""
    B = patches.shape[0]
    gh, gw = height // patch, width // patch
    x = patches.reshape(B, gh, gw, channels, patch, patch)  # (B, gh, gw, C, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, gh, p, gw, p)
    return x.reshape(B, channels, height, width)


class Block(nn.Module):
    """Pre-norm encoder block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d_model: int, n_head: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_head, causal=False, dropout=dropout)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, mlp_ratio * d_model, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, N+1, d)
        return x + self.mlp(self.ln_2(x))


@dataclass
class ViTConfig:
    image_size: int = 8      # square images, image_size × image_size
    patch_size: int = 2      # 2 → 16 patches of 4 pixels on 8×8 digits
    channels: int = 1
    n_class: int = 10
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    mlp_ratio: int = 2
    dropout: float = 0.1

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} must divide image_size {self.image_size}")

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.patch_embed = nn.Linear(cfg.channels * cfg.patch_size ** 2, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.randn(1, cfg.n_patches + 1, d) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(d, cfg.n_head, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.n_class)
        self.apply(init_weights)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) floats in [0, 1] -> (B, N+1, d): CLS token then patch tokens, with positions."""
        x = self.patch_embed(patchify(images, self.cfg.patch_size))  # (B, N, d)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, d)
        return self.drop(torch.cat((cls, x), dim=1) + self.pos_embed)  # (B, N+1, d)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) floats in [0, 1] -> class logits (B, n_class)."""
        x = self.tokens(images)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x[:, 0]))  # (B, n_class), read from CLS

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Attention probabilities of every layer, (n_layer, B, n_head, N+1, N+1), for plots.

        The fused op never materialises probabilities, so this recomputes them from each layer's own
        projections (softmax(q·kᵀ/√d)); it is a visualisation path, not used in training.
        """
        x = self.tokens(images)
        maps = []
        for block in self.blocks:
            attn = block.attn
            h = block.ln_1(x)
            q = attn._heads(attn.q_proj(h), attn.n_head)  # (B, H, N+1, hd)
            k, _ = attn.kv_proj(h).split(attn.n_kv_head * attn.head_dim, dim=2)
            k = attn._heads(k, attn.n_kv_head).repeat_interleave(attn.n_head // attn.n_kv_head, dim=1)
            maps.append(torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(attn.head_dim), dim=-1))
            x = block(x)
        return torch.stack(maps)  # (n_layer, B, H, N+1, N+1)
