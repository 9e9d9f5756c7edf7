"""The public attention ops, and the one place that chooses between the Triton kernels and torch.

backend="auto"   → Triton kernel on CUDA tensors; on CPU, torch SDPA where it computes exactly our
                   semantics, else the chunked torch path (never more than chunk × Lk logits).
backend="triton" → force the kernel (on CPU this needs TRITON_INTERPRET=1: Triton's interpreter).
backend="torch"  → the torch backend (`attnkit.kernels.torch_path`), held to the float64 definitions in
                   `attnkit.kernels.reference`.

These functions are the only public entry point of each op. Each validates its arguments (`kernels/validate.py`),
makes its one backend decision (`resolve_backend`; `_attention_backend` adds split-KV decoding), then calls its
registered `torch.library` op (`attnkit.library`), the op's only autograd path, so `torch.compile(fullgraph=True)`
treats it as one node with a registered backward.
"""
from __future__ import annotations

import functools

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from attnkit import library
from attnkit.kernels.reference import (alibi_slopes, masked_softmax, relative_index, rotary_cos_sin, t5_bucket,
                                       visible_mask)
from attnkit.kernels.runtime import INTERPRET, lse_natural
from attnkit.kernels.torch_path import attention_sdpa
from attnkit.kernels.validate import (check_attention_args, check_position_args, check_qkv, check_rel,
                                      check_rotary_args, check_slopes, check_t5, check_triton_inputs,
                                      dropout_seed_for)

BACKENDS = ("auto", "triton", "torch")


def resolve_backend(backend: str, q: torch.Tensor) -> str:
    """Map a user's backend choice to "triton" or "torch" for tensors on q's device."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if q.is_cuda else "torch"
    if backend == "triton" and not q.is_cuda and not INTERPRET:
        raise ValueError("backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before triton is "
                         "imported to run the kernel on CPU through Triton's interpreter")
    return backend


def _eager() -> bool:
    """Whether this call runs now, rather than being recorded by a compiler (dynamo) or a tracer (make_fx, fake
    tensors: a dispatch mode), which must see the registered ops and build every table in the graph."""
    return not torch.compiler.is_compiling() and _get_current_dispatch_mode() is None


def _needs_grad(*tensors) -> bool:
    """Whether autograd records a graph through an op on these tensors (None entries are absent arguments)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _attention_backend(backend, q, k, v, window, key_padding_mask, attn_mask, bias, document_ids,
                       dropout_p) -> str:
    """The one backend decision of `attention`: "torch", "triton", or "split_kv" when decoding (Lq ≤ 16 queries,
    a long cache, no gradient needed) on the kernel path, which spreads the keys over many programs
    (`attnkit.kernels.attention.attention_decode_split`)."""
    backend = resolve_backend(backend, q)
    if backend == "torch":
        return backend
    check_triton_inputs(q)
    if _needs_grad(q, k, v):
        return backend
    from attnkit.kernels.attention import split_kv_supported
    if split_kv_supported(q, k, window=window, key_padding_mask=key_padding_mask, attn_mask=attn_mask, bias=bias,
                          document_ids=document_ids, dropout_p=dropout_p):
        return "split_kv"
    return backend


def attention(q, k, v, *, causal=False, window=(-1, -1), key_padding_mask=None, attn_mask=None,
              bias=None, scale=None, softcap=None, return_lse=False, document_ids=None, dropout_p=0.0,
              dropout_seed=None, backend="auto"):
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
        softcap: None, or c > 0: the scaled q·k becomes c·tanh(scale·q·k / c) (Gemma 2, flash-attn's softcap)
           before the bias is added and the masks applied; gradients are exact (× (1 − tanh²)).
        return_lse: also return each row's log-sum-exp of its visible logits, natural log, (B, Hq, Lq) float32,
           −inf where the row sees no key. Differentiable (d lse_i / d logit_ij = p_ij). Two attentions over
           disjoint key sets merge exactly: lse = logaddexp(lse1, lse2), out = Σ_t exp(lse_t − lse)·out_t.
        document_ids: int (B, Lk): packed sequences (several documents per row, FlexAttention's document
           masking). Query i sees key j only if document_ids[b, j] == document_ids[b, i'], composed with
           causal / window / padding / attn_mask; positions then usually restart per document (the caller's
           rotary offsets or position ids). Why document ids rather than flash-attn's cu_seqlens: they keep the
           (B, H, L, D) layout every other argument uses, allow any number of packed rows per batch and
           padding after the last document, and cost O(L) memory; the kernel skips every tile whose query
           and key blocks share no document (per-block min / max ids), so packing costs what the documents
           cost. `document_ids_from_cu_seqlens` converts flash-attn's varlen layout.
        dropout_p: dropout on the attention probabilities (pass it only in training, as with SDPA):
           P → P ∘ Z / (1 − dropout_p), Z ~ Bernoulli(1 − dropout_p) per (b, h, i, j); the LSE keeps every key.
           The kernel draws Z from Philox keyed by dropout_seed and regenerates it in the backward (nothing
           L×L is stored); the torch path from a torch generator per query chunk. Same seed, same result on
           one backend (the two backends' bits differ). dropout_seed None: drawn from torch's global generator.
           `attnkit.kernels.attention.attention_dropout_mask` returns the kernel's Z for a seed (tests).
        backend: "auto" | "triton" | "torch" (see module docstring).

    Returns:
        (B, Hq, Lq, D) in q's dtype, or (out, lse) with return_lse. A query that can see no key returns
        zeros and gets zero gradients.
    """
    check_attention_args(q, k, v, window=window, key_padding_mask=key_padding_mask,
                         attn_mask=attn_mask, bias=bias, scale=scale, softcap=softcap, document_ids=document_ids,
                         dropout_p=dropout_p, dropout_seed=dropout_seed, return_lse=return_lse)
    backend = _attention_backend(backend, q, k, v, window, key_padding_mask, attn_mask, bias, document_ids,
                                 dropout_p)
    if backend == "split_kv":
        out, lse = library.attention_decode_op(q, k, v, bool(causal), _float(scale), _float(softcap))
        return (out, lse) if return_lse else out
    left, right = window
    # Eager inference on the torch path (decoding on CPU) calls the op's implementation directly: the custom-op
    # dispatch costs about as much as a one-token attention itself, and it only matters to autograd and compile.
    direct = backend == "torch" and _eager() and not _needs_grad(q, k, v, bias)
    fwd = library.attention_fwd if direct else library.attention_fwd_op
    out, lse = fwd(q, k, v, key_padding_mask, attn_mask, bias, bool(causal), int(left), int(right), _float(scale),
                   backend, _float(softcap), return_lse, document_ids, float(dropout_p),
                   dropout_seed_for(dropout_p, dropout_seed))
    if not return_lse:
        return out
    return out, lse_natural(lse)


def attention_step(q, k, v, *, causal=False, window=(-1, -1)):
    """`attention(q, k, v, causal=causal, window=window)` for the calls after the first in a decode loop over one
    KV cache: q (B, Hq, Lq, D) comes from the layer's own projection and k, v (B, Hkv, Lk, D) from the cache, so
    dtype, device, batch, heads and head dim are those the first call (the prefill, through `attention`) checked,
    and the cache checks each write against its layout. A one-token step over the whole cache in eager inference
    on the torch backend then runs what `attention` would run, torch SDPA, without the per-call argument checks
    and dispatch (a few percent of a CPU decode step, per layer per token); any other call is `attention`'s."""
    if (q.shape[2] == 1 and tuple(window) == (-1, -1) and resolve_backend("auto", q) == "torch" and _eager()
            and not _needs_grad(q, k, v)):
        return attention_sdpa(q, k, v, causal=causal)  # (B, Hq, 1, D): the torch path's call, bit for bit
    return attention(q, k, v, causal=causal, window=window)


def document_ids_from_cu_seqlens(cu_seqlens: torch.Tensor, length: int | None = None) -> torch.Tensor:
    """flash-attn's varlen layout → `document_ids`: cu_seqlens (N + 1,) int, 0 = c0 < c1 < … < cN, document d
    holding packed positions [c_d, c_{d+1}). Returns (1, length) int32 ids (length defaults to cN; positions
    past cN, padding, get id −1, a document of their own). Put the packed tokens on L: q (1, H, total, D)."""
    if (not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2
            or cu_seqlens.is_floating_point() or int(cu_seqlens[0]) != 0 or bool((cu_seqlens.diff() <= 0).any())):
        raise ValueError("cu_seqlens must be a 1-D integer tensor 0 = c0 < c1 < ... < cN (flash-attn's varlen layout)")
    total = int(cu_seqlens[-1])
    length = total if length is None else length
    if not isinstance(length, int) or length < total:
        raise ValueError(f"length must be an int >= cu_seqlens[-1] = {total}, got {length!r}")
    positions = torch.arange(length, device=cu_seqlens.device)
    ids = torch.searchsorted(cu_seqlens[1:].contiguous(), positions, right=True).to(torch.int32)
    return ids.masked_fill(positions >= total, -1)[None]


def _float(scale):
    return None if scale is None else float(scale)


def relative_attention(q, k, v, rel, *, causal=True, key_padding_mask=None, scale=None, backend="auto") -> torch.Tensor:
    """Attention with learned relative-position embeddings (Shaw et al. 2018; Music Transformer).

    logits_ij = scale · (q_i·k_j + q_i·rel[h, idx(i, j)]), i' = i + (Lk − Lq):
        causal=True:  idx = min(i' − j, R − 1), keys j ≤ i'. R = L is the Music Transformer.
        causal=False: idx = clamp(j − i', −P, P) + P, R = 2P + 1.
    q: (B, H, Lq, D); k, v: (B, Hkv, Lk, D); rel: (Hr, R, D), Hr ∈ {1, H}.
    Returns (B, H, Lq, D); gradients flow to q, k, v and rel.
    Memory is O(L·D) in the kernel; the torch path holds at most a few (B, H, 256, Lk) tensors (below
    SMALL_RELATIVE_LOGITS total logits it runs the skewing procedure whole, which is faster there).
    """
    check_position_args(q, k, v, key_padding_mask, scale)
    check_rel(q, rel, causal)
    return _position("relative", q, k, v, rel, key_padding_mask, causal, scale, backend)


def _position(kind, q, k, v, pos, key_padding_mask, causal, scale, backend, t5_args=(False, 32, 128)):
    out, _ = library.position_attention_fwd_op(kind, q, k, v, pos, key_padding_mask, bool(causal), _float(scale),
                                               *t5_args, resolve_backend(backend, q))
    return out


def t5_attention(q, k, v, table, *, bidirectional=None, num_buckets=32, max_distance=128, causal=False,
                 key_padding_mask=None, scale=None, backend="auto") -> torch.Tensor:
    """Attention with T5's bucketed relative bias (Raffel et al. 2020): a learned scalar per (head, bucket).

    logits_ij = scale · q_i·k_j + table[h, bucket(j − i')], i' = i + (Lk − Lq); the bucket function is
    T5's (exact up to num_buckets/2 (or /4 bidirectional), then logarithmic up to max_distance).
    q: (B, H, Lq, D); k, v: (B, Hkv, Lk, D); table: (H, num_buckets). bidirectional=None: `not causal`.
    Returns (B, H, Lq, D); gradients flow to q, k, v and table. No (Lq, Lk) bias tensor is built.
    T5 itself uses scale=1.0 (its init folds 1/sqrt(D) into the weights); the default here is 1/sqrt(D).
    """
    check_position_args(q, k, v, key_padding_mask, scale)
    bidirectional = (not causal) if bidirectional is None else bool(bidirectional)
    check_t5(q, table, bidirectional, num_buckets, max_distance)
    return _position("t5", q, k, v, table, key_padding_mask, causal, scale, backend,
                     t5_args=(bidirectional, num_buckets, max_distance))


def alibi_attention(q, k, v, *, slopes=None, causal=True, key_padding_mask=None, scale=None,
                    backend="auto") -> torch.Tensor:
    """Attention with linear biases (ALiBi, Press et al. 2022): logits_ij = scale·q_i·k_j − slope_h·|i' − j|.

    q: (B, H, Lq, D); k, v: (B, Hkv, Lk, D); slopes: (H,) float, default the standard geometric set
    2^(−8/H), 2^(−16/H), ... (`attnkit.kernels.reference.alibi_slopes`). ALiBi keeps them fixed, but if
    they require grad both backends return ∂loss/∂slopes = −Σ |i' − j|·dlogits. No bias tensor is built.
    """
    check_position_args(q, k, v, key_padding_mask, scale)
    if slopes is None:
        slopes = alibi_slopes(q.shape[1]).to(q.device)
    check_slopes(q, slopes)
    return _position("alibi", q, k, v, slopes, key_padding_mask, causal, scale, backend)


def apply_rotary(x, *, offset=0, base=10000.0, interleaved=False, rotary_dim=None, backend="auto") -> torch.Tensor:
    """Rotary position embedding (RoFormer, Su et al. 2021) applied to x at positions offset .. offset + L − 1.

    x: (B, H, L, D). rotary_dim (even, ≤ D; None = D) features are rotated, the rest pass through.
    interleaved=False pairs feature i with i + rotary_dim/2 (GPT-NeoX, LLaMA); True pairs 2i with 2i + 1
    (GPT-J). offset is the number of tokens already in the KV cache when decoding.
    Returns a new tensor like x; differentiable (the backward is the inverse rotation).
    """
    rotary_dim = check_rotary_args(x, offset, base, rotary_dim)
    L, eager = x.shape[2], _eager()
    table_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if eager:  # rows of a table built once per length bucket: the same bits as building these rows alone
        n = max(256, 1 << (offset + L - 1).bit_length())
        cos, sin = (t[offset:offset + L] for t in _rotary_table(n, rotary_dim, float(base), x.device, table_dtype))
    else:  # compiled or traced: the table is part of the graph
        positions = torch.arange(offset, offset + L, device=x.device)
        cos, sin = rotary_cos_sin(positions, rotary_dim, base, dtype=table_dtype)  # (L, rotary_dim / 2)
    backend = resolve_backend(backend, x)
    # Decoding (eager, torch path, no gradient) calls the op's implementation without the custom-op dispatch.
    rotate = library.rotary if eager and backend == "torch" and not _needs_grad(x) else library.rotary_op
    return rotate(x, cos, sin, bool(interleaved), False, backend)


@functools.lru_cache(maxsize=16)
def _rotary_table(n: int, rotary_dim: int, base: float, device: torch.device, dtype: torch.dtype):
    """`rotary_cos_sin` at positions 0 .. n − 1: (n, rotary_dim / 2) each. Built outside inference mode, so the
    tables of a call made while decoding can also be saved for a later backward."""
    with torch.inference_mode(False):
        return rotary_cos_sin(torch.arange(n, device=device), rotary_dim, base, dtype=dtype)


def attention_probs(q, k, *, causal=False, window=(-1, -1), key_padding_mask=None, attn_mask=None, bias=None,
                    rel=None, scale=None) -> torch.Tensor:
    """The attention probabilities (B, Hq, Lq, Lk) that `attention` (or, with `rel`, `relative_attention`
    with causal as given) uses, in float32. Dense by design: for pictures and probes, never for training.
    """
    check_qkv(q, k, k)
    H, Lq, D = q.shape[1], q.shape[2], q.shape[3]
    Lk = k.shape[2]
    scale = 1.0 / D ** 0.5 if scale is None else scale
    qf = q.float()
    kf = k.float().repeat_interleave(H // k.shape[1], dim=1)  # (B, H, Lk, D)
    s = qf @ kf.transpose(-1, -2)  # (B, H, Lq, Lk)
    if rel is not None:
        check_rel(q, rel, causal)
        qe = torch.einsum("bhid,hrd->bhir", qf, rel.float().expand(H, *rel.shape[1:]))  # (B, H, Lq, R)
        idx = relative_index(Lq, Lk, rel.shape[1], causal, q.device)  # (Lq, Lk)
        s = s + qe.gather(-1, idx.expand(*qe.shape[:2], Lq, Lk))
    s = s * scale
    if bias is not None:
        s = s + bias.float()
    mask = visible_mask(Lq, Lk, causal=causal, window=tuple(window), key_padding_mask=key_padding_mask,
                        attn_mask=attn_mask, device=q.device)
    return masked_softmax(s, mask)


__all__ = ["attention", "relative_attention", "t5_attention", "alibi_attention", "apply_rotary", "attention_probs",
           "resolve_backend", "alibi_slopes", "t5_bucket", "rotary_cos_sin"]
