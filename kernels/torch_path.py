"""The torch backend of attnkit's ops: what `backend="torch"` runs (and `backend="auto"` on CPU).

Same results as the float64 definitions in `attnkit.kernels.reference` (the tests hold it to them), computed so
that it scales: never more than chunk × Lk logits at a time.

    attention            torch SDPA where it computes exactly our semantics (`sdpa_covers`), SDPA per chunk of
                         query rows for packed documents, else `attention_chunked`: the definition's rows
                         (`reference._attend_rows`) one chunk at a time, recomputed in backward (activation
                         checkpointing), so the backward is O(chunk × Lk) too.
    relative / T5 / ALiBi  small calls: the Music Transformer's skewing (`reference.relative_attention_skewed`,
                         faster on CPU below SMALL_RELATIVE_LOGITS); else FlashAttention's recipe in torch, one
                         chunk of query rows at a time (`position_attention_chunked`), T5 / ALiBi through SDPA
                         per chunk with the bias built from an O(L) per-distance table.

Papers: Dao et al. 2022 (FlashAttention's recompute-in-backward); Huang et al. 2018 (skewing).
Limits: SDPA's is_causal is top-left aligned, so bottom-right causal with Lq ≠ Lk goes through a mask; torch
releases whose SDPA gives NaN on rows with no visible key (probed once) use the chunked path for masked calls.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from attnkit.kernels.reference import (_as4d, _attend_rows, _compute_dtype, _expand_kv, _rows,
                                       relative_attention_skewed, t5_bucket, visible_mask)
from attnkit.kernels.runtime import LOG2E

# Up to this many logits (B·H·Lq·Lk: 16 MiB in fp32) relative attention uses the Music Transformer's skewing,
# differentiated whole by autograd: on CPU it is ~20% faster than the chunked path there. Above it the chunked
# path is both faster (causal chunks skip invisible keys) and far smaller.
SMALL_RELATIVE_LOGITS = 1 << 22


def attention_torch(q, k, v, key_padding_mask, attn_mask, bias, causal, window, scale, softcap=None,
                    return_lse=False, document_ids=None, dropout=(0.0, 0)):
    """The torch backend of `attnkit.attention`: SDPA where it computes exactly this call, else the chunked
    definition. With return_lse, (out, lse) with lse in the kernels' units (base 2, +inf on rows that see no key),
    so both backends' op outputs mean the same."""
    args = dict(causal=causal, window=window, key_padding_mask=key_padding_mask, attn_mask=attn_mask, bias=bias,
                scale=scale)
    if sdpa_covers(q, k, causal=causal, window=window, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                   bias=bias, softcap=softcap, return_lse=return_lse, document_ids=document_ids, dropout_p=dropout[0]):
        return attention_sdpa(q, k, v, **args)
    if (document_ids is not None and softcap is None and not return_lse and not dropout[0]
            and sdpa_covers(q, k, causal=causal, window=window, key_padding_mask=key_padding_mask,
                            attn_mask=attn_mask, bias=bias)):
        return attention_sdpa_chunked(q, k, v, document_ids=document_ids, **args)  # packed documents, SDPA speed
    args.update(softcap=softcap, document_ids=document_ids, dropout_p=dropout[0], dropout_seed=dropout[1])
    if not return_lse:
        return attention_chunked(q, k, v, **args)
    out, lse = attention_chunked(q, k, v, return_lse=True, **args)
    return out, torch.where(torch.isinf(lse), float("inf"), lse * LOG2E).float()


def position_attention_torch(kind, q, k, v, pos, key_padding_mask, causal, scale, t5_args):
    """The torch backend of relative / T5 / ALiBi attention (kind "relative" | "t5" | "alibi")."""
    B, H, Lq, _ = q.shape
    if kind == "relative" and B * H * Lq * k.shape[2] <= SMALL_RELATIVE_LOGITS:
        return relative_attention_skewed(q, k, v, pos, causal=causal, key_padding_mask=key_padding_mask, scale=scale)
    return position_attention_chunked(q, k, v, pos, kind=kind, causal=causal, key_padding_mask=key_padding_mask,
                                      scale=scale, t5_args=t5_args)


# --------------------------------------------------------------------------------------------
# attention: chunked rows, SDPA
# --------------------------------------------------------------------------------------------

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
# relative / T5 / ALiBi: FlashAttention's recipe in torch, chunk by chunk
# --------------------------------------------------------------------------------------------

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


