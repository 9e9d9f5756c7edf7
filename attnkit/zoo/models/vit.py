"""Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words") for small images.

The image is cut into p×p patches, each patch is a token (a linear projection of its pixels; with
`patch_kernel` k > p, of the k×k window centred on it, so neighbouring tokens overlap, a convolutional stem of
one layer as in Xiao et al. 2021, "Early Convolutions Help Transformers See Better"), a learned CLS token is
prepended, learned positions are added, and a pre-norm encoder runs bidirectional
attention through `attnkit.attention` (via `MultiHeadAttention`). The class is read from the CLS token.

Built bottom-up: patchify/unpatchify → ViTConfig → ViT, on the zoo's shared pre-LN `Block`
(attnkit.nn.blocks).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit.nn.blocks import Stack
from attnkit.nn.init import init_weights


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C·p·p) with N = (H/p)·(W/p) patches in raster order."""
    B, C, H, W = images.shape
    if H % patch or W % patch:
        raise ValueError(f"patch size {patch} must divide the image size {H}×{W}")
    x = images.reshape(B, C, H // patch, patch, W // patch, patch)  # (B, C, gh, p, gw, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, p, p)
    return x.reshape(B, (H // patch) * (W // patch), C * patch * patch)  # (B, N, C·p·p)


def overlapping_patches(images: torch.Tensor, patch: int, kernel: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C·k·k): for each p×p patch in raster order, the k×k window centred on it
    (zero-padded at the border; kernel − patch even). kernel == patch gives `patchify`."""
    windows = F.unfold(images, kernel, padding=(kernel - patch) // 2, stride=patch)  # (B, C·k·k, N)
    return windows.transpose(1, 2)  # (B, N, C·k·k), channel-major like patchify


def unpatchify(patches: torch.Tensor, patch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `patchify`: (B, N, C·p·p) -> (B, C, H, W)."""
    B = patches.shape[0]
    gh, gw = height // patch, width // patch
    x = patches.reshape(B, gh, gw, channels, patch, patch)  # (B, gh, gw, C, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, gh, p, gw, p)
    return x.reshape(B, channels, height, width)


@dataclass
class ViTConfig:
    image_size: int = 8      # square images, image_size × image_size
    patch_size: int = 2      # 2 → 16 patches of 4 pixels on 8×8 digits
    patch_kernel: int | None = None  # pixels each patch token sees, k×k centred on its patch; None = patch_size
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
        k = self.kernel
        if k < self.patch_size or (k - self.patch_size) % 2:
            raise ValueError(f"patch_kernel {k} must be patch_size {self.patch_size} plus an even number")

    @property
    def kernel(self) -> int:
        return self.patch_kernel or self.patch_size

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.patch_embed = nn.Linear(cfg.channels * cfg.kernel ** 2, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.randn(1, cfg.n_patches + 1, d) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = Stack(cfg.n_layer, d, cfg.n_head, d_ff=cfg.mlp_ratio * d, dropout=cfg.dropout)
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.n_class)
        self.apply(init_weights)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) floats in [0, 1] -> (B, N+1, d): CLS token then patch tokens, with positions."""
        x = self.patch_embed(overlapping_patches(images, self.cfg.patch_size, self.cfg.kernel))  # (B, N, d)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, d)
        return self.drop(torch.cat((cls, x), dim=1) + self.pos_embed)  # (B, N+1, d)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) floats in [0, 1] -> class logits (B, n_class)."""
        x = self.blocks(self.tokens(images))  # (B, N+1, d)
        return self.head(self.ln_f(x[:, 0]))  # (B, n_class), read from CLS

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Attention probabilities of every layer, (n_layer, B, n_head, N+1, N+1), for plots (the layer's
        public `need_weights` path; the fused op never forms them)."""
        return self.blocks.attention_maps(self.tokens(images))
