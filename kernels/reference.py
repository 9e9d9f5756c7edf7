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

import functools
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


def attention_chunked(q, k, v, *, causal=False, window=(-1, -1), key_padding_mask=None,
                      attn_mask=None, bias=None, scale=None, chunk: int = 256, softcap=None, return_lse=False,
                      document_ids=None, dropout_p=0.0, dropout_seed=0, dropout_mask=None):
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
        args = (qc, k, v, bias, attn_mask, key_padding_mask, start, Lq, causal, window, scale, softcap, return_lse,
                document_ids, dropout_p, dropout_seed, dropout_mask)
        if needs_grad and Lq > chunk:
            outs.append(checkpoint(_attend_rows, *args, use_reentrant=False))
        else:
            outs.append(_attend_rows(*args))
    if not return_lse:
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return tuple(o[0] if len(outs) == 1 else torch.cat(o, dim=2) for o in zip(*outs))


def _sdpa_rows(q, k, v, bias, attn_mask, key_padding_mask, start, Lq, causal, window, scale, document_ids):
    """Query rows [start, start + rows) through SDPA with their (B, 1, rows, Lk) boolean mask (bias: −inf
    where hidden): what `attention_sdpa` does for the whole matrix, one chunk at a time."""
    stop = start + q.shape[2]
    Lk = k.shape[2]
    mask = visible_mask(Lq, Lk, causal=causal, window=window, key_padding_mask=key_padding_mask,
                        attn_mask=attn_mask, rows=(start, stop), device=q.device, document_ids=document_ids)
    if bias is not None:
        b = _rows(_as4d(bias), start, stop)
        mask = b if mask is None else b.masked_fill(~mask, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=q.shape[1] != k.shape[1])


def attention_sdpa_chunked(q, k, v, *, causal=False, window=(-1, -1), key_padding_mask=None, attn_mask=None,
                           bias=None, scale=None, document_ids=None, chunk: int = 256) -> torch.Tensor:
    """Packed documents on CPU at SDPA's speed: SDPA per chunk of query rows with that chunk's mask (its
    document mask never exceeds (B, 1, chunk, Lk)); with autograd each chunk is checkpointed. Needs SDPA to give
    empty rows zeros (`sdpa_covers` checks) and a bias in q's dtype."""
    Lq = q.shape[2]
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, bias))
    outs = []
    for start in range(0, Lq, chunk):
        args = (q[:, :, start:start + chunk], k, v, bias, attn_mask, key_padding_mask, start, Lq, causal, window,
                scale, document_ids)
        outs.append(checkpoint(_sdpa_rows, *args, use_reentrant=False) if needs_grad and Lq > chunk
                    else _sdpa_rows(*args))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def sdpa_covers(q, k, *, causal, window, key_padding_mask, attn_mask, bias, softcap=None, return_lse=False,
                document_ids=None, dropout_p=0.0) -> bool:
    """True when torch SDPA computes exactly attnkit's semantics for this call.

    Masks become one attn_mask for SDPA: boolean, or, with a bias, the bias with −inf where masked (SDPA
    adds a float mask to the scaled logits, and autograd reduces its gradient to the bias's own shape).
    That needs this torch's SDPA to give rows with no visible key zeros and zero gradients (probed once;
    older releases gave NaN), and a bias in q's dtype (SDPA takes the mask in the compute dtype).
    """
    if (bias is not None and bias.dtype != q.dtype) or softcap is not None or return_lse or document_ids is not None:
        return False  # SDPA has no logit cap, no LSE output on every device, and documents need an L×L mask
    if dropout_p:
        return False  # SDPA's dropout bits come from torch's global RNG: the backward could not redraw them
    if bias is None and key_padding_mask is None and attn_mask is None and tuple(window) == (-1, -1):
        # SDPA's is_causal is top-left aligned; it equals ours only when Lq == Lk. A single query (KV-cached
        # decoding) sees every key under bottom-right alignment, so it is plain non-causal attention.
        if not causal or q.shape[2] == k.shape[2] or q.shape[2] == 1:
            return True
    return _sdpa_zeroes_empty_rows()


@functools.cache
def _sdpa_zeroes_empty_rows() -> bool:
    # Run the probe with autograd on even if the first masked call happens under no_grad/inference_mode.
    with torch.inference_mode(False), torch.enable_grad():
        q = torch.ones(1, 1, 2, 4, requires_grad=True)
        bias = torch.zeros(1, 1, 2, 2, requires_grad=True)
        visible = torch.tensor([[True, True], [False, False]])
        ok = True
        for mask in (visible, bias.masked_fill(~visible, float("-inf"))):
            out = F.scaled_dot_product_attention(q, q.detach(), q.detach(), attn_mask=mask)
            out.sum().backward()
            ok &= bool(out[0, 0, 1].eq(0).all() and q.grad.isfinite().all() and q.grad[0, 0, 1].eq(0).all())
        return ok and bool(bias.grad.isfinite().all())


def attention_sdpa(q, k, v, *, causal=False, window=(-1, -1), key_padding_mask=None, attn_mask=None,
                   bias=None, scale=None) -> torch.Tensor:
    """torch SDPA with attnkit's masks (and bias) turned into one attn_mask; see `sdpa_covers`."""
    Lq, Lk = q.shape[2], k.shape[2]
    plain_causal = (causal and bias is None and key_padding_mask is None and attn_mask is None
                    and tuple(window) == (-1, -1) and (Lq == Lk or Lq == 1))
    mask = None
    if not plain_causal:
        mask = visible_mask(Lq, Lk, causal=causal, window=window, key_padding_mask=key_padding_mask,
                            attn_mask=attn_mask, device=q.device)  # bool, or None when all is visible
    if bias is not None:
        mask = _as4d(bias) if mask is None else _as4d(bias).masked_fill(~mask, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=plain_causal and Lq > 1, scale=scale,
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


class _Chunk:
    """Index bookkeeping for query rows [start, stop) against keys [0, ncols) of a length-Lk sequence."""

    def __init__(self, start: int, stop: int, Lq: int, Lk: int, causal: bool, device):
        # Causal rows never see keys past their last i', so they only touch keys [0, ncols).
        self.start, self.stop, self.off = start, stop, Lk - Lq
        self.ncols = min(Lk, max(stop + Lk - Lq, 1)) if causal else Lk
        self.i = torch.arange(start, stop, device=device).unsqueeze(1) + (Lk - Lq)  # (rows, 1): i'
        self.j = torch.arange(self.ncols, device=device).unsqueeze(0)  # (1, ncols)

    def mask(self, causal: bool, key_padding_mask) -> torch.Tensor | None:
        """(B|1, 1, rows, ncols) bool visibility, or None when everything is visible."""
        mask = (self.j <= self.i)[None, None] if causal else None
        if key_padding_mask is not None:
            kpm = key_padding_mask[:, None, None, :self.ncols]
            mask = kpm if mask is None else mask & kpm
        return mask

    def rel_index(self, R: int, causal: bool) -> tuple[torch.Tensor, int]:
        """(rows, ncols) embedding index and how many embeddings these rows can reach."""
        if causal:
            reach = max(min(R, self.stop + self.off), 1)  # 1 + the largest distance i' − j these rows meet
            return (self.i - self.j).clamp(min=0, max=reach - 1), reach
        P = (R - 1) // 2
        return (self.j - self.i).clamp(-P, P) + P, R


def _chunk_positions(kind, pos, ch: _Chunk, causal, t5_args, dtype):
    """(index, reach) for "relative", the (rows, ncols) bucket map for "t5", |δ| (rows, ncols) for "alibi"."""
    if kind == "relative":
        return ch.rel_index(pos.shape[1], causal)
    if kind == "t5":
        bidirectional, num_buckets, max_distance = t5_args
        return t5_bucket(ch.j - ch.i, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance)
    return (ch.i - ch.j).abs().to(dtype)


def _chunk_logits(kind, q_c, k, pos, ch: _Chunk, causal, scale, t5_args, key_padding_mask):
    """Masked logits (B, H, rows, ncols) of one chunk, built in place to keep few chunk-sized tensors alive."""
    s = torch.matmul(q_c, k[:, :, :ch.ncols].transpose(-1, -2))  # (B, H, rows, ncols)
    extra = _chunk_positions(kind, pos, ch, causal, t5_args, s.dtype)
    if kind == "relative":
        idx, reach = extra
        qe = torch.matmul(q_c, pos[:, :reach].transpose(-1, -2))  # (B, H, rows, reach): one product per distance
        s.add_(qe.gather(-1, idx.expand(*qe.shape[:2], *idx.shape)))
        del qe
        s.mul_(scale)
    elif kind == "t5":
        s.mul_(scale).add_(pos[:, extra])  # + table[h, bucket]
    else:
        s.mul_(scale).sub_(pos[:, None, None] * extra)  # − slope_h·|δ|
    mask = ch.mask(causal, key_padding_mask)
    if mask is not None:
        s.masked_fill_(~mask, float("-inf"))
    return s


class _ChunkedPositionAttention(torch.autograd.Function):
    """FlashAttention's recipe in torch, one chunk of query rows at a time: the forward keeps only the output
    and the row log-sum-exp; the backward recomputes each chunk's probabilities and forms its gradients in place.
    Peak extra memory ≈ a handful of (B, H, chunk, Lk) tensors, whatever L is."""

    @staticmethod
    def forward(ctx, q, k, v, pos, key_padding_mask, kind, causal, scale, t5_args, chunk):
        B, H, Lq, D = q.shape
        Lk = k.shape[2]
        cd = _compute_dtype(q.dtype)
        qc, kc, vc = q.to(cd), _expand_kv(k, H).to(cd), _expand_kv(v, H).to(cd)
        posc = pos.to(cd)
        if kind == "relative":
            posc = posc.expand(H, *posc.shape[1:])
        out = torch.empty(B, H, Lq, D, dtype=cd, device=q.device)
        lse = torch.empty(B, H, Lq, 1, dtype=cd, device=q.device)
        for start in range(0, Lq, chunk):
            ch = _Chunk(start, min(start + chunk, Lq), Lq, Lk, causal, q.device)
            s = _chunk_logits(kind, qc[:, :, ch.start:ch.stop], kc, posc, ch, causal, scale, t5_args,
                              key_padding_mask)
            m = torch.logsumexp(s, dim=-1, keepdim=True)  # (B, H, rows, 1); −inf on rows with no key
            m = m.masked_fill(torch.isinf(m), float("inf"))  # → p = exp(s − inf) = 0 on those rows
            p = s.sub_(m).exp_()
            torch.matmul(p, vc[:, :, :ch.ncols], out=out[:, :, ch.start:ch.stop])
            lse[:, :, ch.start:ch.stop] = m
            del s, p
        ctx.save_for_backward(q, k, v, pos, out, lse)
        ctx.key_padding_mask, ctx.kind, ctx.causal, ctx.scale = key_padding_mask, kind, causal, scale
        ctx.t5_args, ctx.chunk = t5_args, chunk
        return out.to(q.dtype)

    @staticmethod
    def backward(ctx, dout):
        q, k, v, pos, out, lse = ctx.saved_tensors
        kind, causal, scale, chunk = ctx.kind, ctx.causal, ctx.scale, ctx.chunk
        B, H, Lq, D = q.shape
        Hkv, Lk = k.shape[1], k.shape[2]
        cd = out.dtype
        qc, kc, vc = q.to(cd), _expand_kv(k, H).to(cd), _expand_kv(v, H).to(cd)
        posc = pos.to(cd)
        if kind == "relative":
            posc = posc.expand(H, *posc.shape[1:])
        do = dout.to(cd)
        delta = (do * out).sum(-1, keepdim=True)  # (B, H, Lq, 1)
        dq = torch.empty_like(qc)
        dk, dv = torch.zeros_like(kc), torch.zeros_like(vc)
        dpos = torch.zeros(H, *posc.shape[1:], dtype=cd, device=q.device) if kind != "alibi" \
            else torch.zeros(H, dtype=cd, device=q.device)
        for start in range(0, Lq, chunk):
            ch = _Chunk(start, min(start + chunk, Lq), Lq, Lk, causal, q.device)
            rows, cols = slice(ch.start, ch.stop), slice(0, ch.ncols)
            q_c, do_c = qc[:, :, rows], do[:, :, rows]
            extra = _chunk_positions(kind, posc, ch, causal, ctx.t5_args, cd)
            s = _chunk_logits(kind, q_c, kc, posc, ch, causal, scale, ctx.t5_args, ctx.key_padding_mask)
            p = s.sub_(lse[:, :, rows]).exp_()  # (B, H, rows, ncols)
            del s
            dv[:, :, cols] += torch.matmul(p.transpose(-1, -2), do_c)
            ds = torch.matmul(do_c, vc[:, :, cols].transpose(-1, -2)).sub_(delta[:, :, rows]).mul_(p)  # dlogits
            del p
            dq_c = torch.matmul(ds, kc[:, :, cols])  # (B, H, rows, D)
            dk[:, :, cols] += torch.matmul(ds.transpose(-1, -2), q_c)
            if kind == "relative":
                idx, reach = extra
                dqe = torch.zeros(B, H, ch.stop - ch.start, reach, dtype=cd, device=q.device)
                dqe.scatter_add_(-1, idx.expand(B, H, *idx.shape), ds)  # Σ over keys at the same distance
                dq_c += torch.matmul(dqe, posc[:, :reach])
                if ctx.needs_input_grad[3]:
                    dpos[:, :reach] += torch.matmul(dqe.transpose(-1, -2), q_c).sum(0)  # (H, reach, D)
                del dqe
                dq[:, :, rows] = dq_c * scale
            elif kind == "t5":
                dsum = ds.sum(0).reshape(H, -1)  # (H, rows·ncols)
                dpos.scatter_add_(1, extra.reshape(1, -1).expand(H, -1), dsum)
                dq[:, :, rows] = dq_c * scale
            else:
                dpos -= (ds.sum(0) * extra).sum((-1, -2))
                dq[:, :, rows] = dq_c * scale
            del ds
        dk.mul_(scale)
        if Hkv != H:  # GQA: each kv head collects the gradients of its query heads
            dk = dk.view(B, Hkv, H // Hkv, Lk, D).sum(2)
            dv = dv.view(B, Hkv, H // Hkv, Lk, D).sum(2)
        if kind == "relative":
            dpos.mul_(scale)  # logits = scale·q·(k + e): e's gradient carries the scale like k's
            if pos.shape[0] == 1:
                dpos = dpos.sum(0, keepdim=True)
        return (dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), dpos.to(pos.dtype),
                None, None, None, None, None, None)


def _distance_bias(kind, pos, Lq, Lk, t5_args, dtype) -> torch.Tensor:
    """(H, Lq + Lk − 1) bias of every signed distance δ = i' − j ∈ [1 − Lq, Lk − 1] (column δ + Lq − 1):
    T5's table[h, bucket] or ALiBi's −slope_h·|δ|. A bias that depends on δ alone costs O(L) to build; chunks gather from it."""
    delta = torch.arange(1 - Lq, Lk, device=pos.device)  # every i' − j, ascending
    if kind == "t5":
        bidirectional, num_buckets, max_distance = t5_args
        bucket = t5_bucket(-delta, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance)
        return pos.to(dtype)[:, bucket]
    return -pos.to(dtype)[:, None] * delta.abs().to(dtype)


def _position_rows_sdpa(q_c, k, v, bias1d, key_padding_mask, start, Lq, causal, scale):
    """Query rows [start, start + rows) through SDPA, their (1|B, H, rows, ncols) bias gathered from bias1d."""
    Lk = k.shape[2]
    ch = _Chunk(start, start + q_c.shape[2], Lq, Lk, causal, q_c.device)
    bias = bias1d[:, ch.i - ch.j + (Lq - 1)].unsqueeze(0)  # (1, H, rows, ncols)
    mask = ch.mask(causal, key_padding_mask)
    if mask is not None:
        bias = bias.masked_fill(~mask, float("-inf"))
    return F.scaled_dot_product_attention(q_c, k[:, :, :ch.ncols], v[:, :, :ch.ncols], attn_mask=bias.to(q_c.dtype),
                                          scale=scale, enable_gqa=q_c.shape[1] != k.shape[1])


def _position_attention_sdpa(q, k, v, pos, kind, causal, key_padding_mask, scale, t5_args, chunk):
    """T5 / ALiBi on CPU at SDPA's speed: SDPA per chunk of query rows, each chunk's bias built on the fly
    from the O(L) per-distance bias, so memory stays O(chunk · Lk); with autograd each chunk is checkpointed
    (the backward rebuilds its bias). Causal chunks only pass the keys their rows can see."""
    Lq, Lk = q.shape[2], k.shape[2]
    bias1d = _distance_bias(kind, pos, Lq, Lk, t5_args, q.dtype)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, pos))
    outs = []
    for start in range(0, Lq, chunk):
        args = (q[:, :, start:start + chunk], k, v, bias1d, key_padding_mask, start, Lq, causal, scale)
        if needs_grad and Lq > chunk:
            outs.append(checkpoint(_position_rows_sdpa, *args, use_reentrant=False))
        else:
            outs.append(_position_rows_sdpa(*args))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def position_attention_chunked(q, k, v, pos, *, kind: str, causal: bool, key_padding_mask=None, scale=None,
                               t5_args=(False, 32, 128), chunk: int = 256) -> torch.Tensor:
    """CPU path for relative / T5 / ALiBi attention: at most a few (B, H, chunk, Lk) tensors at a time.

    pos: rel (Hr, R, D) | table (H, num_buckets) | slopes (H,). Causal chunks only look at the keys their rows
    can see (j ≤ i'), so the causal path does about half the work of the full-matrix definitions; the backward
    recomputes each chunk's probabilities from the saved log-sum-exp (as FlashAttention does) rather than
    storing them. Gradients reach q, k, v and pos; not twice differentiable.
    T5 and ALiBi in float32 / float64 run through SDPA chunk by chunk (`_position_attention_sdpa`) when this
    torch's SDPA gives empty rows zeros (`_sdpa_zeroes_empty_rows`); half precision keeps the float32 path
    here, since SDPA would add the bias in q's dtype.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if (kind in ("t5", "alibi") and q.dtype in (torch.float32, torch.float64) and pos.dtype == q.dtype
            and _sdpa_zeroes_empty_rows()):
        return _position_attention_sdpa(q, k, v, pos, kind, causal, key_padding_mask, scale, tuple(t5_args), chunk)
    return _ChunkedPositionAttention.apply(q, k, v, pos, key_padding_mask, kind, causal, scale, tuple(t5_args),
                                           chunk)


def relative_attention_chunked(q, k, v, rel, *, causal=True, key_padding_mask=None, scale=None,
                               chunk: int = 256) -> torch.Tensor:
    """Same result as `relative_attention_reference`, holding at most (B, H, chunk, Lk) logits."""
    return position_attention_chunked(q, k, v, rel, kind="relative", causal=causal,
                                      key_padding_mask=key_padding_mask, scale=scale, chunk=chunk)


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
