"""GPT: a decoder-only transformer language model (Radford et al. 2018/2019), built bottom-up as in nanoGPT.

GPTConfig → GPT, on the zoo's shared pre-LN `Block` (attnkit.models.blocks: LayerNorm, causal
`attnkit.layers.MultiHeadAttention`, GELU MLP). Attention it runs on attnkit's Triton kernel on CUDA and on torch elsewhere, and it carries a KV cache
for decoding. Positions are learned embeddings (GPT-2) or rotary (RoFormer) inside attention.
Weights: normal(0, 0.02), residual projections scaled by 1/sqrt(2·n_layer) (GPT-2), token embedding tied
to the output head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit.layers import KVCache
from attnkit.models.blocks import Stack, make_norm, old_names_hook
from attnkit.models.common import init_weights


# Checkpoints written before the zoo shared one block (issue 13) named the MLP c_fc / c_proj.
OLD_NAMES = [(r"^blocks\.(\d+)\.mlp\.c_fc\.", r"blocks.\1.mlp.fc."),
             (r"^blocks\.(\d+)\.mlp\.c_proj\.", r"blocks.\1.mlp.proj.")]


@dataclass
class GPTConfig:
    vocab_size: int = 65       # set from the tokenizer
    block_size: int = 64       # longest context (learned positions need it; rotary keeps the same limit)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True          # biases in Linear and LayerNorm (GPT-2: True)
    position: str = "learned"  # learned | rotary

    def __post_init__(self):
        if self.position not in ("learned", "rotary"):
            raise ValueError(f"GPT position must be 'learned' or 'rotary', got {self.position!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


# Presets: name -> GPTConfig kwargs (vocab and block size come from the data).
PRESETS: dict[str, dict] = {
    "debug": dict(n_layer=2, n_head=2, n_embd=32),              # trains in seconds; for tests
    "demo": dict(n_layer=4, n_head=4, n_embd=128),              # nanoGPT's CPU recipe; ~0.8 M params
    "small": dict(n_layer=6, n_head=6, n_embd=384),             # nanoGPT's char-Shakespeare GPU recipe
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),            # 124 M with the GPT-2 vocabulary
}


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.block_size, c.n_embd) if c.position == "learned" else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = Stack(c.n_layer, c.n_embd, c.n_head, causal=True, dropout=c.dropout, bias=c.bias,
                            norm_bias=c.bias, position="rotary" if c.position == "rotary" else "none")
        self.ln_f = make_norm("layer", c.n_embd, c.bias)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf 2017)
        self.apply(init_weights)
        for name, p in self.named_parameters():
            if name.endswith("attn.out_proj.weight") or name.endswith("mlp.proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))
        self.register_load_state_dict_pre_hook(old_names_hook(OLD_NAMES))

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding and self.wpe is not None else n

    def make_caches(self) -> list[KVCache]:
        """One empty KV cache per layer, for `forward(..., caches=...)` and `attnkit.generate`."""
        return self.blocks.make_caches()

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                caches: list[KVCache] | None = None, label_smoothing: float = 0.0):
        """idx: (B, T) token ids. With caches, idx holds only new tokens, placed after the cached ones.

        Returns (logits, loss): logits (B, T, V) and the mean cross-entropy against targets (B, T),
        or, without targets, logits (B, 1, V) for the last position only (as nanoGPT) and loss None.
        """
        B, T = idx.shape
        start = caches[0].length if caches is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence length {start + T} exceeds block_size {self.config.block_size}")
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            pos = torch.arange(start, start + T, device=idx.device)  # (T,)
            x = x + self.wpe(pos)  # (B, T, C)
        x = self.drop(x)
        x = self.ln_f(self.blocks(x, caches=caches))  # (B, T, C)  # (B, T, C)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None  # (B, 1, V)
        logits = self.lm_head(x)  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1,
                               label_smoothing=label_smoothing)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
                 use_cache: bool = True, on_token=None) -> torch.Tensor:
        """Continue idx (B, T) by max_new_tokens sampled tokens; returns (B, T + max_new_tokens)."""
        from attnkit.generate import generate

        return generate(self, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        generator=generator, use_cache=use_cache, on_token=on_token)
