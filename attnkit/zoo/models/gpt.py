"""GPT: a decoder-only transformer language model (Radford et al. 2018/2019), built bottom-up as in nanoGPT.

CausalSelfAttention → GPTConfig → GPT, on the zoo's shared pre-LN `Block` (attnkit.nn.blocks). Attention
runs on attnkit's Triton kernel on CUDA and on torch elsewhere, and it carries a KV cache for decoding.
With the defaults this is GPT-2: learned positions, LayerNorm, GELU, normal(0, 0.02) weights with residual
projections scaled by 1/sqrt(2·n_layer), the token embedding tied to the output head.

The modern small-model recipe (modded-nanogpt, Jordan et al. 2024) is a set of switches, each ablatable:
    position="rotary"   rotary embeddings (RoFormer) instead of learned positions
    norm="rms"          RMSNorm everywhere, and on the token embedding
    qk_norm             RMS-normalise each head's queries and keys before attention (Dehghani et al. 2023)
    activation="relu2"  ReLU² in the MLP (So et al. 2021, Primer)
    tie_head=False      an untied output head
    zero_init           attention/MLP output projections and the head start at zero (each block starts
                        as the identity; the first logits are uniform)
    softcap             logits = softcap · tanh(logits / softcap) (Gemma 2); 0 is off
    value_embeds        that many extra token embeddings, mixed into the values of the first and last
                        layers (layer i and n-1-i share table i) with learned weights
    unet                U-net skips: the second half's layer n-1-i adds a learned multiple of the first
                        half's layer-i output
    window              sliding-window attention over the last `window` keys (0: the whole context);
                        `forward(window=...)` narrows it per call, which the GPT task uses for window warmup
Muon, the schedule and torch.compile are the trainer's (attnkit.engine.optim, attnkit.engine.trainer).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit.nn.layers import KVCache, MultiHeadAttention, dropout, new_kv_cache
from attnkit.nn.blocks import ACTIVATIONS, NORMS, Block, make_norm, old_names_hook
from attnkit.nn.init import init_weights
from attnkit.ops import attention, attention_step


# Checkpoints written before the zoo shared one block (issue 13) named the MLP c_fc / c_proj.
OLD_NAMES = [(r"^blocks\.(\d+)\.mlp\.c_fc\.", r"blocks.\1.mlp.fc."),
             (r"^blocks\.(\d+)\.mlp\.c_proj\.", r"blocks.\1.mlp.proj.")]


class CausalSelfAttention(MultiHeadAttention):
    """Causal MultiHeadAttention (its projections, rotary and KV cache) plus QK-norm, a sliding window and
    value embeddings. Self-attention only."""

    def __init__(self, d_model: int, n_head: int, *, qk_norm: bool = False, window: int = 0,
                 value_embed: bool = False, **kwargs):
        super().__init__(d_model, n_head, **kwargs)
        self.qk_norm, self.window = qk_norm, window
        # v = λ0·v + λ1·ve: the layer learns how much of the token's value embedding to use.
        self.value_lambdas = nn.Parameter(torch.tensor([0.5, 0.5])) if value_embed else None

    def forward(self, x: torch.Tensor, *, cache: KVCache | None = None, window: int | None = None,
                value_embed: torch.Tensor | None = None, document_ids: torch.Tensor | None = None,
                key_padding_mask=None, attn_mask=None, need_weights: bool = False) -> torch.Tensor:
        """x: (B, L, C) → (B, L, C). value_embed: (B, L, C) for a layer built with value_embed=True.
        document_ids: (B, L) int, packed documents: a query sees only keys of its own document."""
        if key_padding_mask is not None or attn_mask is not None or need_weights:
            raise ValueError("GPT's attention takes no masks and returns no weights")
        B, L, C = x.shape
        q = self._heads(self.q_proj(x), self.n_head)  # (B, H, L, hd)
        k, v = self._kv_heads(self.kv_proj(x))  # (B, Hkv, L, hd) each
        if self.value_lambdas is not None:
            v = self.value_lambdas[0] * v + self.value_lambdas[1] * self._heads(value_embed, self.n_kv_head)
        if self.qk_norm:
            q, k = F.rms_norm(q, (self.head_dim,)), F.rms_norm(k, (self.head_dim,))  # (B, H, L, hd)
        offset = cache.length if cache is not None else 0
        if self.position == "rotary":
            q, k = self._rotate(q, offset), self._rotate(k, offset)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, Hkv, Lk, hd)
        w = self.window if window is None else window
        win = (w - 1, -1) if w > 0 else (-1, -1)
        if offset > 0 and document_ids is None:  # a decode step: the first call on this cache checked the layout
            y = attention_step(q, k, v, causal=True, window=win)  # (B, H, L, hd)
        else:
            y = attention(q, k, v, causal=True, window=win, document_ids=document_ids)  # (B, H, L, hd)
        y = y.transpose(1, 2).reshape(B, L, C)  # (B, L, C)
        return dropout(self.resid_dropout, self.out_proj(y))


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
    # The modern recipe's switches (see the module docstring); the defaults are GPT-2.
    norm: str = "layer"        # layer | rms
    qk_norm: bool = False
    activation: str = "gelu"   # gelu | relu | relu2 | swiglu
    tie_head: bool = True
    zero_init: bool = False
    softcap: float = 0.0
    value_embeds: int = 0
    unet: bool = False
    window: int = 0            # keys each query sees; 0 = the whole context

    def __post_init__(self):
        if self.position not in ("learned", "rotary"):
            raise ValueError(f"GPT position must be 'learned' or 'rotary', got {self.position!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        for name in ("softcap", "value_embeds", "window"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.value_embeds > (self.n_layer + 1) // 2:
            raise ValueError(f"value_embeds ({self.value_embeds}) must be at most half the layers, rounded up "
                             f"({(self.n_layer + 1) // 2}): layer i and n_layer-1-i share table i")


# Presets: name -> GPTConfig kwargs (vocab and block size come from the data).
PRESETS: dict[str, dict] = {
    "debug": dict(n_layer=2, n_head=2, n_embd=32),              # trains in seconds; for tests
    "demo": dict(n_layer=4, n_head=4, n_embd=128),              # nanoGPT's CPU recipe; ~0.8 M params
    "small": dict(n_layer=6, n_head=6, n_embd=384),             # nanoGPT's char-Shakespeare GPU recipe
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),            # 124 M with the GPT-2 vocabulary
}
# The modern recipe at the demo's size (`--flavor speedrun`): every switch on.
RECIPE = dict(position="rotary", norm="rms", qk_norm=True, activation="relu2", tie_head=False, zero_init=True,
              softcap=15.0, value_embeds=1, unet=True, bias=False)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.block_size, c.n_embd) if c.position == "learned" else None
        self.ln_emb = make_norm("rms", c.n_embd) if c.norm == "rms" else None
        self.drop = nn.Dropout(c.dropout)
        self.value_embeds = nn.ModuleList(nn.Embedding(c.vocab_size, c.n_embd) for _ in range(c.value_embeds))
        self.blocks = nn.ModuleList(
            Block(c.n_embd, c.n_head, causal=True, dropout=c.dropout, bias=c.bias, norm=c.norm, norm_bias=c.bias,
                  activation=c.activation, attention_cls=CausalSelfAttention, qk_norm=c.qk_norm, window=c.window,
                  value_embed=self._value_table(i) is not None,
                  position="rotary" if c.position == "rotary" else "none")
            for i in range(c.n_layer))
        # U-net: layer n-1-i of the second half adds skip_weights[i] · (the output of layer i).
        self.skip_weights = nn.Parameter(torch.ones(c.n_layer // 2)) if c.unet else None
        self.ln_f = make_norm(c.norm, c.n_embd, c.bias)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        if c.tie_head:
            self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf 2017)
        self.apply(init_weights)
        for name, p in self.named_parameters():
            if name.endswith("attn.out_proj.weight") or name.endswith("mlp.proj.weight"):
                if c.zero_init:
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))
        if c.zero_init and not c.tie_head:
            nn.init.zeros_(self.lm_head.weight)
        self.register_load_state_dict_pre_hook(old_names_hook(OLD_NAMES))

    def _value_table(self, layer: int) -> int | None:
        """Which value embedding layer `layer` mixes in (the first and last layers share one), or None."""
        i = min(layer, self.config.n_layer - 1 - layer)
        return i if i < self.config.value_embeds else None

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding and self.wpe is not None else n

    def make_caches(self, max_len: int | None = None) -> list[KVCache]:
        """One empty KV cache per layer, for `forward(..., caches=...)` and `attnkit.generation.generate`:
        a StaticKVCache(max_len) when max_len is given (the longest context decoding will reach), else a KVCache."""
        return [new_kv_cache(max_len) for _ in self.blocks]

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                caches: list[KVCache] | None = None, label_smoothing: float = 0.0, window: int | None = None,
                document_ids: torch.Tensor | None = None, positions: torch.Tensor | None = None):
        """idx: (B, T) token ids. With caches, idx holds only new tokens, placed after the cached ones.
        window: attend over at most that many keys this call (window warmup); None = config.window.
        Packed documents (training): document_ids (B, T) int, attention stays inside each document; positions
        (B, T), each token's position in its document, for learned positions (rotary needs none: within one
        document its scores depend only on the distance, the same with or without restarting).

        Returns (logits, loss): logits (B, T, V) and the mean cross-entropy against targets (B, T),
        or, without targets, logits (B, 1, V) for the last position only (as nanoGPT) and loss None.
        """
        c = self.config
        B, T = idx.shape
        start = caches[0].length if caches is not None else 0
        if start + T > c.block_size:
            raise ValueError(f"sequence length {start + T} exceeds block_size {c.block_size}")
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None and positions is None:
            # rows start..start+T of the table as a view: wpe(arange) copies the same rows (decoding pays per token)
            x = x + self.wpe.weight.narrow(0, start, T)  # (B, T, C) + (T, C)
        elif self.wpe is not None:
            x = x + self.wpe(positions)  # (B, T) positions → (B, T, C)
        if self.ln_emb is not None:
            x = self.ln_emb(x)  # (B, T, C)
        x = dropout(self.drop, x)
        ve = [table(idx) for table in self.value_embeds]  # value_embeds × (B, T, C)
        skips = []
        for i, block in enumerate(self.blocks):
            if self.skip_weights is not None and i >= c.n_layer - len(self.skip_weights):
                x = x + self.skip_weights[c.n_layer - 1 - i] * skips.pop()  # (B, T, C)
            table = self._value_table(i)
            x = block(x, cache=None if caches is None else caches[i], window=window, document_ids=document_ids,
                      value_embed=None if table is None else ve[table])  # (B, T, C)
            if self.skip_weights is not None and i < len(self.skip_weights):
                skips.append(x)
        x = self.ln_f(x)  # (B, T, C)
        if targets is None:
            return self._logits(x if T == 1 else x[:, [-1], :]), None  # (B, 1, V); a decode step has one row
        logits = self._logits(x)  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1,
                               label_smoothing=label_smoothing)
        return logits, loss

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(x)  # (B, T, V)
        if self.config.softcap:
            logits = self.config.softcap * torch.tanh(logits / self.config.softcap)
        return logits

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
                 use_cache: bool = True, static_cache: bool = True, compile: bool = False,
                 on_token=None) -> torch.Tensor:
        """Continue idx (B, T) by max_new_tokens sampled tokens; returns (B, T + max_new_tokens).
        static_cache, compile: see `attnkit.generation.generate`."""
        from attnkit.generation.generate import generate

        return generate(self, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        generator=generator, use_cache=use_cache, static_cache=static_cache, compile=compile,
                        on_token=on_token)
