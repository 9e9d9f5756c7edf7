"""The one transformer block of the zoo, its MLP and a stack of them (x-transformers' AttentionLayers, small).

Every model builds its layers here; what differs between them is arguments, not copies:

    norm       "layer" (LayerNorm) or "rms" (RMSNorm); norm_bias=False drops LayerNorm's bias
    pre_ln     True:  x = x + drop(f(norm(x)))        (GPT-2, ViT, Music, Image, NPT, the usual modern choice)
               False: x = norm(x + drop(f(x)))        (Vaswani et al. 2017, BERT)
    activation "gelu", "relu", "relu2" (ReLU², Primer) or "swiglu" (Shazeer 2020; gate and value in one matmul)
    cross      adds cross-attention over a `context` (an encoder's output) between self-attention and the MLP
    position   "none" | "rotary" | "relative" | "t5" | "alibi", handed to `MultiHeadAttention` by name

Adopting it in a new model (a Decision Transformer, an ASR decoder, ...):

    self.blocks = Stack(n_layer, d_model, n_head, causal=True)             # decoder-only
    x = self.blocks(x, caches=caches)                                       # (B, L, d) -> (B, L, d)
    self.decoder = Stack(n_layer, d_model, n_head, causal=True, cross=True)  # encoder-decoder
    y = self.decoder(y, context=memory, context_mask=src_mask, caches=caches)
    caches = self.decoder.make_caches()                                     # for `attnkit.generation.decode`

Parameter names are stable and part of the checkpoint format: ln_1, attn, (ln_cross, cross_attn), ln_2,
mlp.fc, mlp.proj. Older layouts are mapped onto them by `rename_keys` (see each model's `OLD_NAMES`).
Submodules are created in the order attention, then MLP, so seeded initial weights are what they were
before the zoo shared this block.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit.nn.layers import KVCache, MultiHeadAttention, dropout, new_kv_cache

ACTIVATIONS = ("gelu", "relu", "relu2", "swiglu")
NORMS = ("layer", "rms")


def make_norm(kind: str, d_model: int, bias: bool = True) -> nn.Module:
    """LayerNorm (eps 1e-5, optional bias) or RMSNorm over the last dim."""
    if kind == "layer":
        return nn.LayerNorm(d_model, bias=bias)
    if kind == "rms":
        return nn.RMSNorm(d_model)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class MLP(nn.Module):
    """Position-wise feed-forward: fc → activation → (inner dropout) → proj. (..., d) -> (..., d).

    The block applies the residual dropout to the output, so the MLP has only the inner one
    (Vaswani et al. drop after the activation too; GPT-2 does not: inner_dropout=0).
    """

    def __init__(self, d_model: int, hidden: int, *, activation: str = "gelu", inner_dropout: float = 0.0,
                 bias: bool = True):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.fc = nn.Linear(d_model, 2 * hidden if activation == "swiglu" else hidden, bias=bias)
        self.proj = nn.Linear(hidden, d_model, bias=bias)
        self.dropout = nn.Dropout(inner_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)  # (..., hidden) or (..., 2·hidden) for SwiGLU
        if self.activation == "gelu":
            h = F.gelu(h)
        elif self.activation == "relu":
            h = F.relu(h)
        elif self.activation == "relu2":
            h = F.relu(h).square()
        else:
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value  # (..., hidden)
        return self.proj(dropout(self.dropout, h))  # (..., d)


@dataclass
class LayerCache:
    """One block's decoding state: its self-attention keys/values and, with cross-attention, the projected
    context (filled on the first call, then reused)."""
    self_attn: KVCache
    cross_attn: KVCache | None = None

    @property
    def length(self) -> int:
        return self.self_attn.length

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows `index` (beam search). Only self-attention moves: beam search reorders within each
        source's group of beams, whose cross-attention rows are identical."""
        self.self_attn.reorder(index)


class Block(nn.Module):
    """Self-attention → (cross-attention) → MLP, each a residual sublayer with its norm (pre- or post-LN).

    d_ff: MLP hidden width (default 4·d_model). dropout: on every sublayer's output (the residual dropout);
    inner_dropout: inside the MLP. attn_kwargs go to `MultiHeadAttention` (position, max_relative,
    n_kv_head, rotary_base, ...). bias: in every Linear; norm_bias: in LayerNorm.
    attention_cls: the self-attention module (default MultiHeadAttention; GPT's recipe subclasses it), built
    as attention_cls(d_model, n_head, causal=, bias=, **attn_kwargs); forward's extra keyword arguments
    (attn_inputs) go to it.
    """

    def __init__(self, d_model: int, n_head: int, *, d_ff: int | None = None, causal: bool = False,
                 cross: bool = False, pre_ln: bool = True, norm: str = "layer", norm_bias: bool = True,
                 activation: str = "gelu", dropout: float = 0.0, inner_dropout: float = 0.0, bias: bool = True,
                 attention_cls: type[nn.Module] = MultiHeadAttention, **attn_kwargs):
        super().__init__()
        self.pre_ln = pre_ln
        self.ln_1 = make_norm(norm, d_model, norm_bias)
        self.attn = attention_cls(d_model, n_head, causal=causal, bias=bias, **attn_kwargs)
        if cross:
            self.ln_cross = make_norm(norm, d_model, norm_bias)
            self.cross_attn = MultiHeadAttention(d_model, n_head, causal=False, bias=bias)
        self.cross = cross
        self.ln_2 = make_norm(norm, d_model, norm_bias)
        self.mlp = MLP(d_model, d_ff or 4 * d_model, activation=activation, inner_dropout=inner_dropout, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def _input(self, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """A sublayer's input: norm(x) with pre-LN, x itself with post-LN."""
        return norm(x) if self.pre_ln else x

    def _residual(self, x: torch.Tensor, y: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """The residual stream after a sublayer's output y: x + drop(y), normed with post-LN."""
        x = x + dropout(self.dropout, y)
        return x if self.pre_ln else norm(x)

    def forward(self, x: torch.Tensor, *, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, cache: KVCache | LayerCache | None = None,
                need_weights: bool = False, **attn_inputs):
        """x: (B, L, d) → (B, L, d); with need_weights, (output, self-attention probabilities (B, H, L, Lk)).

        key_padding_mask (B, L) and attn_mask mask self-attention; context (B, Lc, d) with context_mask
        (B, Lc) feeds cross-attention. cache: a KVCache (self-attention only) or a LayerCache; x then holds
        only the new positions.
        """
        self_cache, cross_cache = (cache.self_attn, cache.cross_attn) if isinstance(cache, LayerCache) \
            else (cache, None)
        # The sublayers are written out, not passed as closures: a decode step runs this once per layer per token.
        y = self.attn(self._input(x, self.ln_1), key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                      cache=self_cache, need_weights=need_weights, **attn_inputs)  # (B, L, d)
        y, probs = y if need_weights else (y, None)
        x = self._residual(x, y, self.ln_1)  # (B, L, d)
        if self.cross:
            y = self.cross_attn(self._input(x, self.ln_cross), context, key_padding_mask=context_mask,
                                cache=cross_cache)  # (B, L, d)
            x = self._residual(x, y, self.ln_cross)
        x = self._residual(x, self.mlp(self._input(x, self.ln_2)), self.ln_2)  # (B, L, d)
        return (x, probs) if need_weights else x


class Stack(nn.ModuleList):
    """n_layer Blocks built with the same arguments (see `Block`), run in order.

    A ModuleList, so parameters are named `<stack>.<i>.<...>` exactly as a hand-written loop over blocks.
    """

    def __init__(self, n_layer: int, d_model: int, n_head: int, **block_kwargs):
        super().__init__(Block(d_model, n_head, **block_kwargs) for _ in range(n_layer))

    def make_caches(self, max_len: int | None = None) -> list[KVCache] | list[LayerCache]:
        """One empty cache per block: self-attention caches for self-attention stacks, LayerCaches with
        cross-attention. With max_len (the longest context decoding will reach) self-attention writes into a
        StaticKVCache(max_len), else a KVCache grown by concatenation; the cross-attention context is a KVCache."""
        return [LayerCache(new_kv_cache(max_len), KVCache()) if block.cross else new_kv_cache(max_len)
                for block in self]

    def forward(self, x: torch.Tensor, *, caches: list | None = None, **kwargs) -> torch.Tensor:
        """x: (B, L, d) → (B, L, d); kwargs go to every Block (masks, context); caches: one per block."""
        for i, block in enumerate(self):
            x = block(x, cache=None if caches is None else caches[i], **kwargs)  # (B, L, d)
        return x

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """Self-attention probabilities of every block for input x: (n_layer, B, H, L, L), for pictures."""
        maps = []
        for block in self:
            x, p = block(x, need_weights=True, **kwargs)
            maps.append(p)
        return torch.stack(maps)


def rename_keys(state_dict: dict, rules: list[tuple[str, str]], prefix: str = "") -> None:
    """Rename checkpoint keys below `prefix` in place by regex rules (pattern, replacement); first match wins.

    A model registers `register_load_state_dict_pre_hook(old_names_hook(rules))`, so weights saved
    before a layout change load unchanged (safetensors' load_model goes through load_state_dict).
    """
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix):]
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, rest)
            if n:
                if prefix + new not in state_dict:
                    state_dict[prefix + new] = state_dict.pop(key)
                break


def old_names_hook(rules: list[tuple[str, str]]):
    """A load_state_dict pre-hook applying `rename_keys(rules)` to the keys of the module it is registered on."""
    def hook(module, state_dict, prefix, *args):
        rename_keys(state_dict, rules, prefix)
    return hook
