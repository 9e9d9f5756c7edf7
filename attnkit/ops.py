"""The public attention ops, and the one place that chooses between the Triton kernels and torch.

backend="auto"   → Triton kernel on CUDA tensors; on CPU, torch SDPA where it computes exactly our
                   semantics, else the chunked torch path (never more than chunk × Lk logits).
backend="triton" → force the kernel (on CPU this needs TRITON_INTERPRET=1: Triton's interpreter).
backend="torch"  → the pure-torch path, which is the op's definition.
"""
from __future__ import annotations

import os

import torch

from attnkit.kernels.reference import (attention_chunked, attention_sdpa, relative_attention_reference,
                                       sdpa_covers)
from attnkit.kernels.validate import check_attention_args, check_key_padding_mask, check_qkv

BACKENDS = ("auto", "triton", "torch")


def resolve_backend(backend: str, q: torch.Tensor) -> str:
    """Map a user's backend choice to "triton" or "torch" for tensors on q's device."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if q.is_cuda else "torch"
    if backend == "triton" and not q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before triton is "
                         "imported to run the kernel on CPU through Triton's interpreter")
    return backend


def attention(q, k, v, *, causal=False, window=(-1, -1), key_padding_mask=None, attn_mask=None,
              bias=None, scale=None, backend="auto") -> torch.Tensor:
    """Fused scaled-dot-product attention with masks and a learnable additive bias.

    Args:
        q: (B, Hq, Lq, D).  k, v: (B, Hkv, Lk, D) with Hq % Hkv == 0 (grouped-query attention).
           float32, float16 or bfloat16, one dtype and one device. Any D from 16 to 128 (e.g. 40, 80, 96).
        causal: query i sees key j iff j ≤ i + (Lk − Lq): bottom-right aligned, so decoding with a
           KV cache (Lq < Lk) works. For Lq = 3, Lk = 5 (■ = visible)::

                 k0 k1 k2 k3 k4
             q0  ■  ■  ■  ·  ·
             q1  ■  ■  ■  ■  ·
             q2  ■  ■  ■  ■  ■

        window: (left, right): query i sees j iff i' − left ≤ j ≤ i' + right with i' = i + (Lk − Lq);
           −1 is unbounded on that side. Combines with `causal` (window=(2, -1), causal=True is a
           sliding window of 3 keys).
        key_padding_mask: bool (B, Lk), True marks a real key.
        attn_mask: bool, broadcastable to (B, Hq, Lq, Lk); True = may attend.
        bias: float, broadcastable to (B, Hq, Lq, Lk), added to the logits. If it requires grad its
           gradient comes back in its own (broadcast) shape.
        scale: logit scale; None means 1/sqrt(D).
        backend: "auto" | "triton" | "torch" (see module docstring).

    Returns:
        (B, Hq, Lq, D) in q's dtype. A query that can see no key returns zeros and gets zero gradients.
    """
    check_attention_args(q, k, v, window=window, key_padding_mask=key_padding_mask,
                         attn_mask=attn_mask, bias=bias, scale=scale)
    window = tuple(window)
    if resolve_backend(backend, q) == "triton":
        from attnkit.kernels.attention import attention_triton
        return attention_triton(q, k, v, causal=causal, window=window, key_padding_mask=key_padding_mask,
                                attn_mask=attn_mask, bias=bias, scale=scale)
    if sdpa_covers(q, k, causal=causal, window=window, key_padding_mask=key_padding_mask,
                   attn_mask=attn_mask, bias=bias):
        return attention_sdpa(q, k, v, causal=causal, scale=scale)
    return attention_chunked(q, k, v, causal=causal, window=window, key_padding_mask=key_padding_mask,
                             attn_mask=attn_mask, bias=bias, scale=scale)


def check_rel(q: torch.Tensor, rel: torch.Tensor, causal: bool) -> None:
    if not isinstance(rel, torch.Tensor) or rel.dim() != 3:
        raise ValueError(f"rel must be a 3-D tensor (Hr, R, D), got {getattr(rel, 'shape', type(rel).__name__)}")
    H, D = q.shape[1], q.shape[3]
    if rel.shape[0] not in (1, H):
        raise ValueError(f"rel has {rel.shape[0]} heads; it must have 1 (shared) or H = {H}")
    if rel.shape[2] != D:
        raise ValueError(f"rel head dim {rel.shape[2]} does not match q head dim {D}")
    if rel.dtype != q.dtype or rel.device != q.device:
        raise ValueError(f"rel must match q's dtype and device ({q.dtype}, {q.device}), got ({rel.dtype}, {rel.device})")
    if not causal and rel.shape[1] % 2 == 0:
        raise ValueError(f"rel needs an odd R = 2P + 1 when causal=False, got R = {rel.shape[1]}")


def relative_attention(q, k, v, rel, *, causal=True, key_padding_mask=None, scale=None, backend="auto") -> torch.Tensor:
    """Attention with learned relative-position embeddings (Shaw et al. 2018; Music Transformer).

    logits_ij = scale · (q_i·k_j + q_i·rel[h, idx(i, j)]), i' = i + (Lk − Lq):
        causal=True:  idx = min(i' − j, R − 1), keys j ≤ i'. R = L is the Music Transformer.
        causal=False: idx = clamp(j − i', −P, P) + P, R = 2P + 1.
    q: (B, H, Lq, D); k, v: (B, Hkv, Lk, D); rel: (Hr, R, D), Hr ∈ {1, H}.
    Returns (B, H, Lq, D); gradients flow to q, k, v and rel.
    """
    check_qkv(q, k, v)
    check_key_padding_mask(key_padding_mask, q, k)
    check_rel(q, rel, causal)
    if resolve_backend(backend, q) == "triton":
        from attnkit.kernels.relative import relative_attention_triton
        return relative_attention_triton(q, k, v, rel, causal=causal, key_padding_mask=key_padding_mask, scale=scale)
    return relative_attention_reference(q, k, v, rel, causal=causal, key_padding_mask=key_padding_mask, scale=scale)
