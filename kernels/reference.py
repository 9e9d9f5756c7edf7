"""Float64-exact definitions of attnkit's ops: the truth every backend and every test is held to.

These are library code, not test code. ``attention_reference`` *is* the meaning of ``attnkit.attention``; the
relative / T5 / ALiBi / rotary definitions are here too. Each builds the full L×L logits: they define, they do not
scale (the CPU backend that scales is `attnkit.kernels.torch_path`, which reuses these row functions).

Conventions (shared by every backend):
    logits[b, h, i, j] = scale · q[b, h, i]·k[b, h // G, j] + bias[b, h, i, j]        G = Hq // Hkv
    i' = i + (Lk − Lq)                       (bottom-right alignment, as FlashAttention ≥ 2.1)
    causal:  j ≤ i'
    window:  i' − left ≤ j ≤ i' + right      (−1 = unbounded on that side)
    key_padding_mask[b, j] True = real key;  attn_mask True = may attend.
    A query row that can see no key outputs zeros and passes back zero gradients.

Papers: Vaswani et al. 2017 (attention); Shaw et al. 2018 and Huang et al. 2018 (relative embeddings, the Music
Transformer's skewing); Raffel et al. 2020 (T5 buckets); Press et al. 2022 (ALiBi); Su et al. 2021 (rotary).
Limits: memory O(B·H·Lq·Lk); half precision is computed in float32 (as the kernels accumulate).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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
    document_ids: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Bool mask, True where query i may see key j, broadcastable to (B, H, rows, Lk); None = all visible.

    document_ids (B, Lk): packed sequences; query i (at position i') sees only keys j with
    document_ids[b, j] == document_ids[b, i'].

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
    if document_ids is not None:
        doc_q = document_ids[:, start + Lk - Lq:stop + Lk - Lq]  # (B, rows): the documents of positions i'
        same = (doc_q[:, None, :, None] == document_ids[:, None, None, :])  # (B, 1, rows, Lk)
        mask = same if mask is None else mask & same
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


def masked_logsumexp(s: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """log Σ_j exp(s_ij) over visible j: (..., rows); −inf (value and zero gradient) on rows with no visible key."""
    if mask is None:
        return torch.logsumexp(s, dim=-1)
    s = s.masked_fill(~mask, float("-inf"))
    has_key = mask.any(dim=-1)
    return torch.logsumexp(s.masked_fill(~has_key[..., None], 0.0), dim=-1).masked_fill(~has_key, float("-inf"))


def softcap_logits(s: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """Gemma 2's logit soft-capping, softcap·tanh(s / softcap), of the scaled q·k (as flash-attn's softcap):
    a bias (ALiBi, T5, a −inf mask) is added after the cap, so it is never capped itself."""
    return s if softcap is None else torch.tanh(s / softcap) * softcap


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision inputs are computed in float32, as the kernels accumulate in float32.
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _expand_kv(k: torch.Tensor, Hq: int) -> torch.Tensor:
    """(B, Hkv, Lk, D) -> (B, Hq, Lk, D): query head h reads kv head h // (Hq // Hkv)."""
    groups = Hq // k.shape[1]
    return k if groups == 1 else k.repeat_interleave(groups, dim=1)


def _attend_rows(q, k, v, bias, attn_mask, key_padding_mask, start, Lq, causal, window, scale, softcap=None,
                 return_lse=False, document_ids=None, dropout_p=0.0, dropout_seed=0, dropout_mask=None):
    """Attention for query rows [start, start + q.shape[2]) of a length-Lq query sequence (and their LSE)."""
    stop = start + q.shape[2]
    Lk = k.shape[2]
    cd = _compute_dtype(q.dtype)
    s = softcap_logits(torch.matmul(q.to(cd), k.to(cd).transpose(-1, -2)) * scale, softcap)  # (B, Hq, rows, Lk)
    if bias is not None:
        s = s + _rows(bias, start, stop).to(cd)
    mask = visible_mask(Lq, Lk, causal=causal, window=window, key_padding_mask=key_padding_mask,
                        attn_mask=attn_mask, rows=(start, stop), device=q.device, document_ids=document_ids)
    p = masked_softmax(s, mask)  # (B, Hq, rows, Lk)
    if dropout_p:
        p = p * _dropout_keep_rows(p, start, stop, dropout_p, dropout_seed, dropout_mask) / (1.0 - dropout_p)
    out = torch.matmul(p, v.to(cd)).to(q.dtype)  # (B, Hq, rows, D)
    return (out, masked_logsumexp(s, mask).to(torch.promote_types(cd, torch.float32))) if return_lse else out


def _dropout_keep_rows(p, start, stop, dropout_p, dropout_seed, dropout_mask):
    """Keep mask (B, Hq, rows, Lk) of rows [start, stop): the given dropout_mask's rows, or Bernoulli(1 − p)
    bits from a generator seeded by (dropout_seed, start), so a recomputed chunk draws the same bits."""
    if dropout_mask is not None:
        return _rows(_as4d(dropout_mask), start, stop).to(p.dtype)
    gen = torch.Generator(device=p.device).manual_seed(int(dropout_seed) * 1_000_003 + start)
    return (torch.rand(p.shape, generator=gen, device=p.device, dtype=torch.float32) >= dropout_p).to(p.dtype)


def attention_reference(q, k, v, *, causal=False, window=(-1, -1), key_padding_mask=None,
                        attn_mask=None, bias=None, scale=None, softcap=None, return_lse=False, document_ids=None,
                        dropout_p=0.0, dropout_seed=0, dropout_mask=None):
    """The definition of `attnkit.attention`, materialising the full (B, Hq, Lq, Lk) logits.

    logits = softcap·tanh(scale·q·kᵀ / softcap) + bias (no cap when softcap is None), then the masks; with
    return_lse also the natural-log log-sum-exp of each row's visible logits, (B, Hq, Lq) float32 (float64 for
    float64 inputs), −inf on rows that see no key. dropout_p: the probabilities P become P ∘ Z / (1 − dropout_p)
    before the product with v (the LSE and the normalizer keep every key), Z the bool keep mask dropout_mask
    (broadcastable to (B, Hq, Lq, Lk): e.g. the kernel's, from `attention_dropout_mask`) or drawn from
    dropout_seed."""
    Hq, Lq, D = q.shape[1], q.shape[2], q.shape[3]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    k, v = _expand_kv(k, Hq), _expand_kv(v, Hq)
    return _attend_rows(q, k, v, _as4d(bias), attn_mask, key_padding_mask, 0, Lq, causal, window, scale, softcap,
                        return_lse, document_ids, dropout_p, dropout_seed, dropout_mask)


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


def relative_attention_skewed(q, k, v, rel, *, causal=True, key_padding_mask=None, scale=None) -> torch.Tensor:
    """The Music Transformer's skewing procedure (Huang et al. 2018, §3.4.1): same result as the definition.

    Instead of gathering q·rel per (i, j) it lines the embeddings up by relative position, computes one
    (Lq, W) product QEr = q·Eᵀ, and turns it into the (Lq, Lk) term with pad → reshape → slice, so it never
    builds an (L, L, D) tensor; it still builds several (B, H, Lq, Lk) tensors (the baseline the fused
    path is measured against).

    causal (the paper's "masked" skew): column c of E is distance Lk − 1 − c; pad one zero column on the
    left, flatten, drop the first Lq entries, view as (Lq, Lk). For Lq = Lk = L this is exactly the paper's
    "pad, reshape to (L + 1, L), drop the first row".
    non-causal (tensor2tensor's unmasked skew): column c of E is offset j − i' = c − (Lk − 1), width
    W = Lq + Lk − 1; pad one column on the right, flatten, view the first Lq·W entries as (Lq, W), keep
    columns Lq − 1 ... Lq + Lk − 2.
    """
    B, H, Lq, D = q.shape
    Lk, R = k.shape[2], rel.shape[1]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    cd = _compute_dtype(q.dtype)
    k, v = _expand_kv(k, H), _expand_kv(v, H)
    qc = q.to(cd)
    relc = rel.to(cd).expand(H, R, D)
    if causal:
        dist = torch.arange(Lk - 1, -1, -1, device=q.device).clamp(max=R - 1)  # (Lk,) distance of column c
        qer = torch.matmul(qc, relc[:, dist].transpose(-1, -2))  # (B, H, Lq, Lk)
        padded = F.pad(qer, (1, 0))  # (B, H, Lq, Lk + 1)
        srel = padded.reshape(B, H, -1)[..., Lq:].reshape(B, H, Lq, Lk)  # (B, H, Lq, Lk)
    else:
        P = (R - 1) // 2
        offset = (torch.arange(Lq + Lk - 1, device=q.device) - (Lk - 1)).clamp(-P, P) + P  # (W,)
        qer = torch.matmul(qc, relc[:, offset].transpose(-1, -2))  # (B, H, Lq, W)
        W = Lq + Lk - 1
        padded = F.pad(qer, (0, 1))  # (B, H, Lq, W + 1)
        srel = padded.reshape(B, H, -1)[..., : Lq * W].reshape(B, H, Lq, W)[..., Lq - 1:Lq - 1 + Lk]
    s = (torch.matmul(qc, k.to(cd).transpose(-1, -2)) + srel) * scale  # (B, H, Lq, Lk)
    mask = visible_mask(Lq, Lk, causal=causal, key_padding_mask=key_padding_mask, device=q.device)
    p = masked_softmax(s, mask)
    return torch.matmul(p, v.to(cd)).to(q.dtype)  # (B, H, Lq, D)


# --------------------------------------------------------------------------------------------
# Position schemes: T5 buckets, ALiBi slopes, and the chunked CPU path for relative / T5 / ALiBi attention
# --------------------------------------------------------------------------------------------

def t5_bucket(relative_position: torch.Tensor, *, bidirectional: bool, num_buckets: int = 32,
              max_distance: int = 128) -> torch.Tensor:
    """T5's relative-position bucket (Raffel et al. 2020; HF `_relative_position_bucket`), for j − i'.

    Half the buckets hold exact small distances, the rest grow logarithmically up to max_distance;
    bidirectional splits the buckets between keys before (j < i') and after (j > i') the query.
    Computed in float32, as T5 does. The Triton kernel counts integer thresholds read off this function
    (`attnkit.kernels.relative.t5_thresholds`), so both agree exactly.
    """
    n = -relative_position  # distance back from the query: i' − j
    ret = torch.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        ret = ret + (n < 0).long() * num_buckets
        n = n.abs()
    else:
        n = n.clamp(min=0)
    max_exact = num_buckets // 2
    large = torch.log(n.float() / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    large = (max_exact + large.to(torch.long)).clamp(max=num_buckets - 1)
    return ret + torch.where(n < max_exact, n, large)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """ALiBi's geometric head slopes (Press et al. 2022): 2^(−8/n), 2^(−16/n), ...; for n not a power of
    two, the slopes of the nearest lower power of two, then every other slope of the next one."""
    def powers(n):
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]
    p = 2 ** math.floor(math.log2(n_head))
    slopes = powers(p) + (powers(2 * p)[0::2][: n_head - p] if p < n_head else [])
    return torch.tensor(slopes, dtype=torch.float32)


def t5_attention_reference(q, k, v, table, *, bidirectional=None, num_buckets=32, max_distance=128, causal=False,
                           key_padding_mask=None, scale=None) -> torch.Tensor:
    """Definition of `attnkit.t5_attention`: logits = scale·q_i·k_j + table[h, bucket(j − i')], full matrix.

    table: (H, num_buckets). bidirectional=None means `not causal`.
    """
    Lq, Lk = q.shape[2], k.shape[2]
    bidirectional = (not causal) if bidirectional is None else bidirectional
    i = torch.arange(Lq, device=q.device).unsqueeze(1) + (Lk - Lq)
    j = torch.arange(Lk, device=q.device).unsqueeze(0)
    bucket = t5_bucket(j - i, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance)
    bias = table[:, bucket].unsqueeze(0)  # (1, H, Lq, Lk)
    return attention_reference(q, k, v, causal=causal, key_padding_mask=key_padding_mask,
                               bias=bias.to(_compute_dtype(q.dtype)), scale=scale)


def alibi_attention_reference(q, k, v, slopes, *, causal=True, key_padding_mask=None, scale=None) -> torch.Tensor:
    """Definition of `attnkit.alibi_attention`: logits = scale·q_i·k_j − slopes[h]·|i' − j|, full matrix."""
    Lq, Lk = q.shape[2], k.shape[2]
    i = torch.arange(Lq, device=q.device).unsqueeze(1) + (Lk - Lq)
    j = torch.arange(Lk, device=q.device).unsqueeze(0)
    bias = -slopes.to(_compute_dtype(q.dtype))[None, :, None, None] * (i - j).abs()  # (1, H, Lq, Lk)
    return attention_reference(q, k, v, causal=causal, key_padding_mask=key_padding_mask, bias=bias, scale=scale)
