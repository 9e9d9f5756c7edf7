"""Pure-torch definitions of attnkit's attention ops. These are library code, not test code.

``attention_reference`` *is* the meaning of ``attnkit.attention``: every kernel is tested against it
(in float64), and it is also what the naive benchmark provider runs. It builds the full L×L logits.

``attention_chunked`` is the CPU path for cases torch SDPA does not cover exactly (bias, arbitrary masks,
sliding windows, bottom-right causal with Lq != Lk, rows with no visible key). It walks the queries in
chunks so it never holds more than ``chunk × Lk`` logits, and recomputes each chunk in backward
(activation checkpointing) so the backward is O(chunk × Lk) too.

Conventions (shared by every backend):
    logits[b, h, i, j] = scale · q[b, h, i]·k[b, h // G, j] + bias[b, h, i, j]        G = Hq // Hkv
    i' = i + (Lk − Lq)                       (bottom-right alignment, as FlashAttention ≥ 2.1)
    causal:  j ≤ i'
    window:  i' − left ≤ j ≤ i' + right      (−1 = unbounded on that side)
    key_padding_mask[b, j] True = real key;  attn_mask True = may attend.
    A query row that can see no key outputs zeros and passes back zero gradients.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def _as4d(t: torch.Tensor | None) -> torch.Tensor | None:
    """Prepend unit dims so a broadcastable mask/bias is 4-D: (B|1, H|1, Lq|1, Lk|1)."""
    if t is None:
        return None
    while t.dim() < 4:
        t = t.unsqueeze(0)
    return t


def _rows(t: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    """Slice query rows [start, stop) of a 4-D broadcastable tensor; size-1 row dims broadcast."""
    if t is None or t.shape[-2] == 1:
        return t
    return t[..., start:stop, :]


def visible_mask(
    Lq: int,
    Lk: int,
    *,
    causal: bool = False,
    window: tuple[int, int] = (-1, -1),
    key_padding_mask: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    rows: tuple[int, int] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor | None:
    """Bool mask, True where query i may see key j, broadcastable to (B, H, rows, Lk); None = all visible.

    `rows=(start, stop)` restricts to those query rows (for chunking) with positions still measured
    against the full Lq, so the chunked path and the full path agree exactly.
    """
    start, stop = rows if rows is not None else (0, Lq)
    mask = None
    left, right = window
    if causal or left >= 0 or right >= 0:
        i = torch.arange(start, stop, device=device).unsqueeze(1) + (Lk - Lq)  # (rows, 1): i'
        j = torch.arange(Lk, device=device).unsqueeze(0)  # (1, Lk)
        mask = torch.ones(stop - start, Lk, dtype=torch.bool, device=device)
        if causal:
            mask &= j <= i
        if left >= 0:
            mask &= j >= i - left
        if right >= 0:
            mask &= j <= i + right
        mask = mask[None, None]  # (1, 1, rows, Lk)
    if key_padding_mask is not None:
        kpm = key_padding_mask[:, None, None, :]  # (B, 1, 1, Lk)
        mask = kpm if mask is None else mask & kpm
    if attn_mask is not None:
        am = _rows(_as4d(attn_mask), start, stop)
        mask = am if mask is None else mask & am
    return mask


def masked_softmax(s: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last dim where masked entries get probability 0 and fully masked rows are all 0.

    Rows with no visible key are filled with 0 before the softmax (so no inf − inf = NaN) and zeroed
    after it, which also zeroes their gradient.
    """
    if mask is None:
        return torch.softmax(s, dim=-1)
    s = s.masked_fill(~mask, float("-inf"))
    has_key = mask.any(dim=-1, keepdim=True)
    s = s.masked_fill(~has_key, 0.0)
    p = torch.softmax(s, dim=-1)
    return p.masked_fill(~mask, 0.0)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision inputs are computed in float32, as the kernels accumulate in float32.
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _expand_kv(k: torch.Tensor, Hq: int) -> torch.Tensor:
    """(B, Hkv, Lk, D) -> (B, Hq, Lk, D): query head h reads kv head h // (Hq // Hkv)."""
    groups = Hq // k.shape[1]
    return k if groups == 1 else k.repeat_interleave(groups, dim=1)


def _attend_rows(q, k, v, bias, attn_mask, key_padding_mask, start, Lq, causal, window, scale):
    """Attention for query rows [start, start + q.shape[2]) of a length-Lq query sequence."""
    stop = start + q.shape[2]
    Lk = k.shape[2]
    cd = _compute_dtype(q.dtype)
    s = torch.matmul(q.to(cd), k.to(cd).transpose(-1, -2)) * scale  # (B, Hq, rows, Lk)
    if bias is not None:
        s = s + _rows(bias, start, stop).to(cd)
    mask = visible_mask(Lq, Lk, causal=causal, window=window, key_padding_mask=key_padding_mask,
                        attn_mask=attn_mask, rows=(start, stop), device=q.device)
    p = masked_softmax(s, mask)  # (B, Hq, rows, Lk)
    return torch.matmul(p, v.to(cd)).to(q.dtype)  # (B, Hq, rows, D)


def attention_reference(q, k, v, *, causal=False, window=(-1, -1), key_padding_mask=None,
                        attn_mask=None, bias=None, scale=None) -> torch.Tensor:
    """The definition of `attnkit.attention`, materialising the full (B, Hq, Lq, Lk) logits."""
    Hq, Lq, D = q.shape[1], q.shape[2], q.shape[3]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    k, v = _expand_kv(k, Hq), _expand_kv(v, Hq)
    return _attend_rows(q, k, v, _as4d(bias), attn_mask, key_padding_mask, 0, Lq, causal, window, scale)


def attention_chunked(q, k, v, *, causal=False, window=(-1, -1), key_padding_mask=None,
                      attn_mask=None, bias=None, scale=None, chunk: int = 256) -> torch.Tensor:
    """Same result as `attention_reference`, holding at most (B, Hq, chunk, Lk) logits at a time."""
    Hq, Lq, D = q.shape[1], q.shape[2], q.shape[3]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    k, v = _expand_kv(k, Hq), _expand_kv(v, Hq)
    bias = _as4d(bias)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, v, bias))
    outs = []
    for start in range(0, Lq, chunk):
        qc = q[:, :, start:start + chunk]
        args = (qc, k, v, bias, attn_mask, key_padding_mask, start, Lq, causal, window, scale)
        if needs_grad and Lq > chunk:
            outs.append(checkpoint(_attend_rows, *args, use_reentrant=False))
        else:
            outs.append(_attend_rows(*args))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def sdpa_covers(q, k, *, causal, window, key_padding_mask, attn_mask, bias) -> bool:
    """True when torch SDPA computes exactly attnkit's semantics for this call (no empty rows possible)."""
    if key_padding_mask is not None or attn_mask is not None or bias is not None:
        return False
    if tuple(window) != (-1, -1):
        return False
    # SDPA's is_causal is top-left aligned; it equals ours only when Lq == Lk.
    return not causal or q.shape[2] == k.shape[2]


def attention_sdpa(q, k, v, *, causal=False, scale=None) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale,
                                          enable_gqa=q.shape[1] != k.shape[1])


# --------------------------------------------------------------------------------------------
# Rotary position embedding (Su et al. 2021, RoFormer)
# --------------------------------------------------------------------------------------------

def rotary_cos_sin(positions: torch.Tensor, dim: int, base: float = 10000.0, dtype=torch.float32):
    """cos, sin of shape (L, dim // 2) for integer `positions` (L,)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float64) / dim))
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # (L, dim/2)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = False):
    """Rotate pairs of features of x (..., L, D) by angles with cos/sin (L, D_rot/2); D_rot = 2·cos.shape[-1].

    Half-split (GPT-NeoX) pairs feature i with i + D_rot/2; interleaved (GPT-J) pairs 2i with 2i+1.
    Features past D_rot pass through unchanged.
    """
    rot = 2 * cos.shape[-1]
    xr, xpass = x[..., :rot], x[..., rot:]
    cd = _compute_dtype(x.dtype)
    xr = xr.to(cd)
    cos, sin = cos.to(cd), sin.to(cd)
    if interleaved:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
        out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    else:
        x1, x2 = xr[..., : rot // 2], xr[..., rot // 2:]
        out = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return torch.cat((out.to(x.dtype), xpass), dim=-1)


# --------------------------------------------------------------------------------------------
# Relative-position attention (Shaw et al. 2018; Huang et al. 2018, Music Transformer)
# --------------------------------------------------------------------------------------------

def relative_index(Lq: int, Lk: int, R: int, causal: bool, device=None) -> torch.Tensor:
    """(Lq, Lk) long index into the R relative embeddings, with i' = i + (Lk − Lq).

    causal:     min(i' − j, R − 1)  (distances past R − 1 share the last embedding; j > i' is masked anyway)
    non-causal: clamp(j − i', −P, P) + P  with R = 2P + 1
    """
    i = torch.arange(Lq, device=device).unsqueeze(1) + (Lk - Lq)  # (Lq, 1)
    j = torch.arange(Lk, device=device).unsqueeze(0)  # (1, Lk)
    if causal:
        return (i - j).clamp(min=0, max=R - 1)
    P = (R - 1) // 2
    return (j - i).clamp(-P, P) + P


def relative_attention_reference(q, k, v, rel, *, causal=True, key_padding_mask=None, scale=None) -> torch.Tensor:
    """The definition of `attnkit.relative_attention` by direct gather; materialises (B, H, Lq, Lk).

    logits_ij = scale · (q_i·k_j + q_i·rel[h, idx(i, j)]),  rel: (Hr, R, D) with Hr ∈ {1, H}.
    """
    H, Lq, D = q.shape[1], q.shape[2], q.shape[3]
    Lk, R = k.shape[2], rel.shape[1]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    cd = _compute_dtype(q.dtype)
    k, v = _expand_kv(k, H), _expand_kv(v, H)
    qc = q.to(cd)
    s = torch.matmul(qc, k.to(cd).transpose(-1, -2))  # (B, H, Lq, Lk)
    qe = torch.einsum("bhid,hrd->bhir", qc, rel.to(cd).expand(H, R, D))  # (B, H, Lq, R)
    idx = relative_index(Lq, Lk, R, causal, q.device)  # (Lq, Lk)
    s = (s + qe.gather(-1, idx.expand(*qe.shape[:2], Lq, Lk))) * scale
    mask = visible_mask(Lq, Lk, causal=causal, key_padding_mask=key_padding_mask, device=q.device)
    p = masked_softmax(s, mask)
    return torch.matmul(p, v.to(cd)).to(q.dtype)  # (B, H, Lq, D)
