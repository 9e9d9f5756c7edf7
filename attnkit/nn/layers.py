"""Multi-head attention as an nn.Module: projections, grouped-query heads, positions, KV cache.

Every model in the zoo uses this layer, and it calls `attnkit.attention` (or a positional variant), so
the backend choice (Triton on CUDA, torch on CPU) is made in one place for all of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from attnkit.ops import (alibi_attention, alibi_slopes, apply_rotary, attention, attention_probs, attention_step,
                         relative_attention, t5_attention, t5_bucket)

POSITIONS = ("none", "rotary", "relative", "alibi", "t5")


def dropout(module: nn.Dropout, x: torch.Tensor) -> torch.Tensor:
    """module(x), skipping the call where dropout is the identity (eval, or p = 0, where torch returns x itself
    and draws no random numbers): decoding one token at a time pays a module call per use otherwise."""
    return module(x) if module.training and module.p > 0 else x


@dataclass
class KVCache:
    """Keys and values seen so far by one attention layer: (B, Hkv, L, D) each, grown by concatenation."""
    k: torch.Tensor | None = None
    v: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k = k if self.k is None else torch.cat((self.k, k), dim=2)
        self.v = v if self.v is None else torch.cat((self.v, v), dim=2)
        return self.k, self.v

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search keeps the surviving hypotheses)."""
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


class StaticKVCache:
    """A preallocated KV cache (gpt-fast's): (B, Hkv, max_len, D) buffers written in place at the write position.

    `KVCache.append` concatenates, copying the whole cache at every token and handing the model a new tensor
    each step; here `append` copies only the new tokens into the buffers, which keep their shape and address,
    so a compiled decode step reuses its graph (the cache length is one dynamic size). Beam search reorders the
    buffers in place. Same interface as KVCache for self-attention: `length`, `k` / `v` (the written part),
    `append`, `reorder`."""

    def __init__(self, max_len: int):
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be an int >= 1, got {max_len!r}")
        self.max_len, self.pos = max_len, 0
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._layout: tuple | None = None  # (B, Hkv, D, dtype, device) of the first write

    @property
    def length(self) -> int:
        return self.pos

    @property
    def k(self) -> torch.Tensor | None:
        return None if self._k is None else self._k.narrow(2, 0, self.pos)  # (B, Hkv, pos, D) view

    @property
    def v(self) -> torch.Tensor | None:
        return None if self._v is None else self._v.narrow(2, 0, self.pos)  # (B, Hkv, pos, D) view

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = k.shape[2]
        if self.pos + n > self.max_len:
            raise ValueError(f"max_len {self.max_len} exceeded: {self.pos} cached + {n} new tokens")
        if self._k is None:
            B, H, _, D = k.shape
            self._k, self._v = k.new_empty(B, H, self.max_len, D), v.new_empty(B, H, self.max_len, D)
            self._layout = _layout(k)
        # copy_ would cast, broadcast or move what does not match; the layer's later steps rely on every write
        # having the layout of the first one (which the attention op checked)
        if not _layout(k) == _layout(v) == self._layout:
            raise ValueError(f"k and v must match the cache's (B, Hkv, D, dtype, device) = {self._layout}, got "
                             f"{_layout(k)} and {_layout(v)}")
        self._k.narrow(2, self.pos, n).copy_(k)  # narrow + copy_: one op each, cheaper than slice assignment
        self._v.narrow(2, self.pos, n).copy_(v)
        self.pos += n
        return self._k.narrow(2, 0, self.pos), self._v.narrow(2, 0, self.pos)  # (B, Hkv, pos, D) views

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows in place (beam search keeps the surviving hypotheses)."""
        if self._k is not None:
            self._k.copy_(self._k.index_select(0, index))
            self._v.copy_(self._v.index_select(0, index))


def _layout(t: torch.Tensor) -> tuple:
    """What a KV cache's writes must share: (B, H, D, dtype, device) of a (B, H, L, D) tensor."""
    return t.shape[0], t.shape[1], t.shape[3], t.dtype, t.device


def new_kv_cache(max_len: int | None = None) -> KVCache | StaticKVCache:
    """A self-attention cache: StaticKVCache(max_len) when the longest context is known (decoding), else KVCache."""
    return KVCache() if max_len is None else StaticKVCache(max_len)


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with n_head query heads sharing n_kv_head key/value heads.

    position: "none" (the model adds its own, e.g. learned or sinusoidal); "rotary" (applied to q and k
    of self-attention at their absolute positions, so the KV cache stays valid); "relative" (learned
    relative embeddings, Shaw et al. / Music Transformer, through `attnkit.relative_attention`, with
    `max_relative` embeddings per head, or shared across heads with `shared_relative=True`); "alibi"
    (fixed linear distance penalties with the standard geometric head slopes, `attnkit.alibi_attention`);
    "t5" (a learned scalar per head and T5 distance bucket, `t5_num_buckets` buckets up to
    `t5_max_distance`, bidirectional unless causal, `attnkit.t5_attention`). Relative, ALiBi and T5 measure
    distances with bottom-right alignment, so they too stay valid with a KV cache. All positional schemes
    apply to self-attention only; cross-attention ignores them.
    """

    def __init__(self, d_model: int, n_head: int, n_kv_head: int | None = None, *, causal: bool = False,
                 dropout: float = 0.0, bias: bool = True, position: str = "none", rotary_base: float = 10000.0,
                 max_relative: int = 512, shared_relative: bool = False, t5_num_buckets: int = 32,
                 t5_max_distance: int = 128):
        super().__init__()
        n_kv_head = n_kv_head or n_head
        if d_model % n_head != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_head ({n_head})")
        if n_head % n_kv_head != 0:
            raise ValueError(f"n_head ({n_head}) must be divisible by n_kv_head ({n_kv_head})")
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_kv_head, d_model // n_head
        self.causal, self.position, self.rotary_base = causal, position, rotary_base
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.kv_proj = nn.Linear(d_model, 2 * n_kv_head * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)
        if position == "relative":
            # causal: R distances 0..R-1; bidirectional: R = 2P + 1 offsets -P..P.
            R = max_relative if causal else 2 * max_relative + 1
            self.rel = nn.Parameter(torch.randn(1 if shared_relative else n_head, R, self.head_dim) * 0.02)
        if position == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(n_head), persistent=False)  # (n_head,)
        if position == "t5":
            self.t5_num_buckets, self.t5_max_distance = t5_num_buckets, t5_max_distance
            self.t5_table = nn.Parameter(torch.randn(n_head, t5_num_buckets) * 0.02)  # (n_head, buckets)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, n, self.head_dim).transpose(1, 2)  # (B, n, L, hd)

    def _kv_heads(self, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k and v (B, Hkv, L, hd) from kv_proj's output (B, L, 2·Hkv·hd), as views of it: no copies, and one
        view, permute and unbind instead of a split and two head reshapes (Tensor.split is a Python wrapper;
        a decode step pays this per layer per token). The strides are the split's, so attention reads the same
        layout bit for bit."""
        B, L, _ = kv.shape
        return kv.view(B, L, 2, self.n_kv_head, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def _rotate(self, x: torch.Tensor, offset: int) -> torch.Tensor:
        # The fused Triton apply on CUDA, the torch reference elsewhere (attnkit.apply_rotary decides).
        return apply_rotary(x, offset=offset, base=self.rotary_base)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, *,
                key_padding_mask: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None,
                bias: torch.Tensor | None = None, cache: KVCache | None = None, need_weights: bool = False):
        """x: (B, Lq, d_model); context: (B, Lk, d_model) for cross-attention, else x itself.

        need_weights=True returns (output, probabilities (B, Hq, Lq, Lk) float32): the softmax this call
        used, rebuilt densely by `attnkit.ops.attention_probs` from the same q and k (the fused op never
        forms it). For pictures and probes only.

        With a cache, x holds only the new tokens; their keys are appended and causal masking is
        bottom-right aligned, so position i of x sees every cached key plus x[:i+1].
        For cross-attention the cache holds the projected context after the first call.
        """
        B, Lq, C = x.shape
        q = self._heads(self.q_proj(x), self.n_head)  # (B, Hq, Lq, hd)
        stepping = cache is not None and cache.length > 0  # the first call on this cache checked the layout
        offset = 0
        if context is not None and cache is not None and cache.k is not None:
            k, v = cache.k, cache.v  # cross-attention: context already projected
        else:
            src = x if context is None else context
            k, v = self._kv_heads(self.kv_proj(src))  # (B, Hkv, Lk, hd) each
            if context is None and cache is not None:
                offset = cache.length
            if self.position == "rotary" and context is None:
                q, k = self._rotate(q, offset), self._rotate(k, offset)
            if cache is not None:
                k, v = cache.append(k, v)
        causal = self.causal and context is None
        if self.position in ("relative", "alibi", "t5") and context is None:
            if attn_mask is not None or bias is not None:
                raise ValueError(f"attn_mask and bias are not supported with position={self.position!r}")
            if self.position == "relative":
                y = relative_attention(q, k, v, self.rel.to(q.dtype), causal=causal,
                                       key_padding_mask=key_padding_mask)  # (B, Hq, Lq, hd)
            elif self.position == "alibi":
                y = alibi_attention(q, k, v, slopes=self.alibi_slopes, causal=causal,
                                    key_padding_mask=key_padding_mask)  # (B, Hq, Lq, hd)
            else:
                y = t5_attention(q, k, v, self.t5_table, num_buckets=self.t5_num_buckets,
                                 max_distance=self.t5_max_distance, causal=causal,
                                 key_padding_mask=key_padding_mask)  # (B, Hq, Lq, hd)
        elif stepping and key_padding_mask is None and attn_mask is None and bias is None:
            y = attention_step(q, k, v, causal=causal)  # (B, Hq, Lq, hd)
        else:
            y = attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask,
                          attn_mask=attn_mask, bias=bias)  # (B, Hq, Lq, hd)
        y = y.transpose(1, 2).reshape(B, Lq, C)  # (B, Lq, d_model)
        y = dropout(self.resid_dropout, self.out_proj(y))
        if not need_weights:
            return y
        rel = self.rel if self.position == "relative" and context is None else None
        if self.position in ("alibi", "t5") and context is None:
            bias = self._position_bias(q.shape[2], k.shape[2], causal, q.device)  # (1, H, Lq, Lk)
        return y, attention_probs(q, k, causal=causal, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                                  bias=bias, rel=rel)  # (B, Hq, Lq, Lk)

    def _position_bias(self, Lq: int, Lk: int, causal: bool, device) -> torch.Tensor:
        """The ALiBi or T5 logit bias (1, H, Lq, Lk) that the fused ops add without building it (for pictures)."""
        i = torch.arange(Lq, device=device)[:, None] + (Lk - Lq)  # bottom-right aligned query positions
        j = torch.arange(Lk, device=device)[None, :]
        if self.position == "alibi":
            return -self.alibi_slopes.float()[None, :, None, None] * (i - j).abs()
        bucket = t5_bucket(j - i, bidirectional=not causal, num_buckets=self.t5_num_buckets,
                           max_distance=self.t5_max_distance)  # (Lq, Lk)
        return self.t5_table.float()[:, bucket][None]
