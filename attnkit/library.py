"""attnkit's ops as `torch.library` custom ops, so `torch.compile(fullgraph=True)` sees each as one node.

Each op is a forward op plus a backward op, both opaque to dynamo, with a fake (shape-only) implementation for
tracing and an autograd formula that calls the backward op. `backend` ("triton" or "torch", resolved by
`attnkit.ops`) chooses the implementation inside:

    triton → the kernels' launchers (`attention_fwd` / `attention_bwd`, ...), which run outside autograd;
    torch  → the pure-torch paths (SDPA, chunked, skewed). These rely on autograd, so their backward op
             recomputes the forward under `enable_grad` and differentiates it: the same numbers as eager.

Callers use `attnkit.attention` & co.; these ops are their implementation, not a second public API.
Every output is contiguous, as the fake implementations promise (inductor checks sizes and strides).
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch

from attnkit.kernels.reference import apply_rotary_reference
from attnkit.kernels.runtime import LOG2E
from attnkit.kernels.torch_path import attention_torch, position_attention_torch
_EMPTY = (0,)  # the shape of an absent output: custom ops return tensors, never None


def _contiguous(*ts):
    return tuple(t.contiguous() for t in ts)


@contextlib.contextmanager
def _autograd():
    """Autograd on inside an op's implementation: the custom-op machinery runs it below the autograd dispatch
    keys, so `enable_grad` alone would record nothing. Lifts only the autograd keys from the excluded set
    (autocast's stay excluded)."""
    C, K = torch._C, torch._C.DispatchKey
    exclude = C._dispatch_tls_local_exclude_set()
    for key in (K.AutogradOther, K.AutogradNestedTensor, K.AutogradFunctionality):
        exclude = exclude.remove(key)
    with C._ForceDispatchKeyGuard(C._dispatch_tls_local_include_set(), exclude), torch.enable_grad():
        yield


def _grad_leaf(t):
    return None if t is None else t.detach().requires_grad_(t.is_floating_point())


# --------------------------------------------------------------------------------------------
# attention(q, k, v, masks, bias)
# --------------------------------------------------------------------------------------------

def attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: Optional[torch.Tensor],
                     attn_mask: Optional[torch.Tensor], bias: Optional[torch.Tensor], causal: bool, window_left: int,
                     window_right: int, scale: Optional[float], backend: str, softcap: Optional[float] = None,
                     need_lse: bool = False, document_ids: Optional[torch.Tensor] = None, dropout_p: float = 0.0,
                     dropout_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (B, Hq, Lq, D), lse (B, Hq, Lq) float32 in base 2, +inf on rows with no visible key). The torch path
    returns an empty (0,) lse unless need_lse (it does not need one for its backward)."""
    window = (window_left, window_right)
    if backend == "triton":
        from attnkit.kernels.attention import attention_fwd
        out, lse = attention_fwd(q, k, v, causal=causal, window=window, key_padding_mask=key_padding_mask,
                                 attn_mask=attn_mask, bias=bias, scale=scale, softcap=softcap,
                                 document_ids=document_ids, dropout_p=dropout_p, dropout_seed=dropout_seed)
        return _contiguous(out, lse)
    dropout = (dropout_p, dropout_seed)
    with torch.no_grad():
        if need_lse:
            return _contiguous(*attention_torch(q, k, v, key_padding_mask, attn_mask, bias, causal, window, scale,
                                                softcap, True, document_ids, dropout))
        out = attention_torch(q, k, v, key_padding_mask, attn_mask, bias, causal, window, scale, softcap,
                              document_ids=document_ids, dropout=dropout)
    return out.contiguous(), q.new_empty(_EMPTY, dtype=torch.float32)


# The op runs `attention_fwd` below the dispatcher; eager inference on the torch path calls it directly
# (`attnkit.ops.attention`), which skips the custom-op dispatch where no graph is recorded or traced.
attention_fwd_op = torch.library.custom_op("attnkit::attention_fwd", attention_fwd, mutates_args=())


@attention_fwd_op.register_fake
def _(q, k, v, key_padding_mask, attn_mask, bias, causal, window_left, window_right, scale, backend, softcap=None,
      need_lse=False, document_ids=None, dropout_p=0.0, dropout_seed=0):
    lse_shape = q.shape[:3] if backend == "triton" or need_lse else _EMPTY
    return q.new_empty(q.shape), q.new_empty(lse_shape, dtype=torch.float32)


@torch.library.custom_op("attnkit::attention_bwd", mutates_args=())
def attention_bwd_op(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                     lse: torch.Tensor, key_padding_mask: Optional[torch.Tensor], attn_mask: Optional[torch.Tensor],
                     bias: Optional[torch.Tensor], causal: bool, window_left: int, window_right: int,
                     scale: Optional[float], backend: str, need_dbias: bool, softcap: Optional[float] = None,
                     document_ids: Optional[torch.Tensor] = None, dropout_p: float = 0.0, dropout_seed: int = 0,
                     dlse: Optional[torch.Tensor] = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv, dbias); dbias is empty (0,) unless need_dbias, else in bias's own (broadcast) shape.
    dlse: the gradient w.r.t. the forward op's (base-2) lse output, or None when nothing used it."""
    window = (window_left, window_right)
    if backend == "triton":
        from attnkit.kernels.attention import attention_bwd
        dq, dk, dv, dbias = attention_bwd(do, q, k, v, out, lse, causal=causal, window=window,
                                          key_padding_mask=key_padding_mask, attn_mask=attn_mask, bias=bias,
                                          scale=scale, need_dbias=need_dbias, softcap=softcap,
                                          dlse=None if dlse is None else dlse * LOG2E,  # per natural-log unit
                                          document_ids=document_ids, dropout_p=dropout_p, dropout_seed=dropout_seed)
    else:
        with _autograd():
            q_, k_, v_ = _grad_leaf(q), _grad_leaf(k), _grad_leaf(v)
            bias_ = _grad_leaf(bias) if need_dbias else bias
            outputs, grads_out = [], [do]
            if dlse is None:
                outputs.append(attention_torch(q_, k_, v_, key_padding_mask, attn_mask, bias_, causal, window,
                                               scale, softcap, document_ids=document_ids,
                                               dropout=(dropout_p, dropout_seed)))
            else:
                outputs.extend(attention_torch(q_, k_, v_, key_padding_mask, attn_mask, bias_, causal, window,
                                               scale, softcap, True, document_ids, (dropout_p, dropout_seed)))
                grads_out.append(dlse)
            leaves = (q_, k_, v_, bias_) if need_dbias else (q_, k_, v_)
            grads = torch.autograd.grad(outputs, leaves, grads_out, allow_unused=True)
        dq, dk, dv = (torch.zeros_like(t) if g is None else g for g, t in zip(grads[:3], (q, k, v)))
        dbias = grads[3] if need_dbias else None
        if need_dbias and dbias is None:
            dbias = torch.zeros_like(bias)
    if dbias is None:
        dbias = q.new_empty(_EMPTY)
    return _contiguous(dq, dk, dv, dbias)


@attention_bwd_op.register_fake
def _(do, q, k, v, out, lse, key_padding_mask, attn_mask, bias, causal, window_left, window_right, scale, backend,
      need_dbias, softcap=None, document_ids=None, dropout_p=0.0, dropout_seed=0, dlse=None):
    dbias = bias.new_empty(bias.shape) if need_dbias else q.new_empty(_EMPTY)
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), dbias


def _attention_setup(ctx, inputs, output):
    (q, k, v, key_padding_mask, attn_mask, bias, causal, left, right, scale, backend, softcap, need_lse, document_ids,
     dropout_p, dropout_seed) = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, key_padding_mask, attn_mask, bias, document_ids)
    ctx.args = (causal, left, right, scale, backend)
    ctx.extras = (softcap, document_ids is not None, dropout_p, dropout_seed)
    ctx.need_dbias = bias is not None and ctx.needs_input_grad[5]
    ctx.need_lse = need_lse


def _attention_backward(ctx, do, dlse):
    q, k, v, out, lse, key_padding_mask, attn_mask, bias, document_ids = ctx.saved_tensors
    softcap, _, dropout_p, dropout_seed = ctx.extras
    dq, dk, dv, dbias = attention_bwd_op(do, q, k, v, out, lse, key_padding_mask, attn_mask, bias, *ctx.args,
                                         ctx.need_dbias, softcap, document_ids, dropout_p, dropout_seed,
                                         dlse if ctx.need_lse else None)
    return (dq, dk, dv, None, None, dbias if ctx.need_dbias else None) + (None,) * 10


attention_fwd_op.register_autograd(_attention_backward, setup_context=_attention_setup)


@torch.library.custom_op("attnkit::attention_decode", mutates_args=())
def attention_decode_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: Optional[float],
                        softcap: Optional[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Split-KV decoding (forward only, no autograd): (out, lse in natural log, −inf on rows with no key)."""
    from attnkit.kernels.attention import attention_decode_split
    return _contiguous(*attention_decode_split(q, k, v, causal=causal, scale=scale, softcap=softcap))


@attention_decode_op.register_fake
def _(q, k, v, causal, scale, softcap):
    return q.new_empty(q.shape), q.new_empty(q.shape[:3], dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# Position attention: kind "relative" (pos = rel), "t5" (pos = table), "alibi" (pos = slopes)
# --------------------------------------------------------------------------------------------

@torch.library.custom_op("attnkit::position_attention_fwd", mutates_args=())
def position_attention_fwd_op(kind: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor,
                              key_padding_mask: Optional[torch.Tensor], causal: bool, scale: Optional[float],
                              bidirectional: bool, num_buckets: int, max_distance: int, backend: str
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (B, H, Lq, D), lse (B, H, Lq) float32, or empty (0,) on the torch path)."""
    t5_args = (bidirectional, num_buckets, max_distance)
    if backend == "triton":
        from attnkit.kernels.relative import position_attention_fwd
        out, lse = position_attention_fwd(kind, q, k, v, pos, causal=causal, key_padding_mask=key_padding_mask,
                                          scale=scale, t5_args=t5_args)
        return _contiguous(out, lse)
    with torch.no_grad():
        out = position_attention_torch(kind, q, k, v, pos, key_padding_mask, causal, scale, t5_args)
    return out.contiguous(), q.new_empty(_EMPTY, dtype=torch.float32)


@position_attention_fwd_op.register_fake
def _(kind, q, k, v, pos, key_padding_mask, causal, scale, bidirectional, num_buckets, max_distance, backend):
    lse_shape = q.shape[:3] if backend == "triton" else _EMPTY
    return q.new_empty(q.shape), q.new_empty(lse_shape, dtype=torch.float32)


@torch.library.custom_op("attnkit::position_attention_bwd", mutates_args=())
def position_attention_bwd_op(kind: str, do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              pos: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                              key_padding_mask: Optional[torch.Tensor], causal: bool, scale: Optional[float],
                              bidirectional: bool, num_buckets: int, max_distance: int, backend: str
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv, dpos), dpos in pos's shape and dtype."""
    t5_args = (bidirectional, num_buckets, max_distance)
    if backend == "triton":
        from attnkit.kernels.relative import position_attention_bwd
        grads = position_attention_bwd(kind, do, q, k, v, pos, out, lse, causal=causal,
                                       key_padding_mask=key_padding_mask, scale=scale, t5_args=t5_args)
        return _contiguous(*grads)
    with _autograd():
        leaves = tuple(_grad_leaf(t) for t in (q, k, v, pos))
        o = position_attention_torch(kind, *leaves, key_padding_mask, causal, scale, t5_args)
        grads = torch.autograd.grad(o, leaves, do)
    return _contiguous(*grads)


@position_attention_bwd_op.register_fake
def _(kind, do, q, k, v, pos, out, lse, key_padding_mask, causal, scale, bidirectional, num_buckets, max_distance,
      backend):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), pos.new_empty(pos.shape)


def _position_setup(ctx, inputs, output):
    kind, q, k, v, pos, key_padding_mask, causal, scale, bidirectional, num_buckets, max_distance, backend = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, pos, out, lse, key_padding_mask)
    ctx.kind = kind
    ctx.args = (causal, scale, bidirectional, num_buckets, max_distance, backend)


def _position_backward(ctx, do, _dlse):
    q, k, v, pos, out, lse, key_padding_mask = ctx.saved_tensors
    dq, dk, dv, dpos = position_attention_bwd_op(ctx.kind, do, q, k, v, pos, out, lse, key_padding_mask, *ctx.args)
    return None, dq, dk, dv, dpos, None, None, None, None, None, None, None


position_attention_fwd_op.register_autograd(_position_backward, setup_context=_position_setup)


# --------------------------------------------------------------------------------------------
# Rotary: the backward is the inverse rotation, i.e. the same op with `inverse` flipped
# --------------------------------------------------------------------------------------------

def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool, inverse: bool,
              backend: str) -> torch.Tensor:
    """x (B, H, L, D) rotated by the angles of (cos, sin) (L, rot/2), or by their negatives if inverse."""
    if backend == "triton":
        from attnkit.kernels.rotary import rotary_bwd, rotary_fwd
        cos = cos.to(device=x.device, dtype=torch.float32).contiguous()
        sin = sin.to(device=x.device, dtype=torch.float32).contiguous()
        return (rotary_bwd if inverse else rotary_fwd)(x, cos, sin, interleaved).contiguous()
    return apply_rotary_reference(x, cos, -sin if inverse else sin, interleaved=interleaved).contiguous()


# As attention_fwd: eager inference on the torch path calls `rotary` directly (`attnkit.ops.apply_rotary`).
rotary_op = torch.library.custom_op("attnkit::rotary", rotary, mutates_args=())


@rotary_op.register_fake
def _(x, cos, sin, interleaved, inverse, backend):
    return x.new_empty(x.shape)


def _rotary_setup(ctx, inputs, output):
    x, cos, sin, interleaved, inverse, backend = inputs
    ctx.save_for_backward(cos, sin)
    ctx.args = (interleaved, not inverse, backend)


def _rotary_backward(ctx, dout):
    cos, sin = ctx.saved_tensors
    return rotary_op(dout, cos, sin, *ctx.args), None, None, None, None, None


rotary_op.register_autograd(_rotary_backward, setup_context=_rotary_setup)
