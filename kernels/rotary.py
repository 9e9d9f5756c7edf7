"""Fused rotary position embedding in Triton, forward and backward (RoFormer, Su et al. 2021).

What it computes (the meaning is `attnkit.kernels.reference.apply_rotary_reference`): for each row l of
x (B, H, L, D) and each pair (x1, x2) of its first `rot` = 2·cos.shape[-1] features,

    out1 = x1·cos[l, i] − x2·sin[l, i]        out2 = x1·sin[l, i] + x2·cos[l, i]

half-split (GPT-NeoX, LLaMA): x1 = x[..., i], x2 = x[..., i + rot/2]; interleaved (GPT-J): x1 = x[..., 2i],
x2 = x[..., 2i + 1]. Features past `rot` are copied. The caller passes cos/sin for the absolute positions of
x's rows (offset … offset + L − 1 when decoding with a KV cache), computed once in float64 and stored in fp32.

One program per (block of rows, b·h) reads x once and writes the output once, in fp32 arithmetic. The backward
is the same kernel with the rotation inverted (sin → −sin): rotations are orthogonal.

Limits: x's last dim must be contiguous (the launcher copies otherwise); any B, H, L strides (e.g. a
transposed (B, L, H, D) projection) are read in place.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from attnkit.kernels.runtime import INTERPRET, prepare_interpreter

prepare_interpreter()
BLOCK_L = 64 if INTERPRET else 32


@triton.jit
def _rotary_kernel(X, Out, Cos, Sin, stride_xb, stride_xh, stride_xl, stride_ob, stride_oh, stride_ol, stride_cl,
                   H, L, D,
                   HALF: tl.constexpr, HALF_PAD: tl.constexpr, PASS_PAD: tl.constexpr,
                   INTERLEAVED: tl.constexpr, INVERSE: tl.constexpr, BLOCK_L: tl.constexpr):
    offs_l = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    off_b, off_h = tl.program_id(1) // H, tl.program_id(1) % H
    X += off_b * stride_xb + off_h * stride_xh
    Out += off_b * stride_ob + off_h * stride_oh
    offs_i = tl.arange(0, HALF_PAD)
    ok = (offs_l[:, None] < L) & (offs_i[None, :] < HALF)
    cos = tl.load(Cos + offs_l[:, None] * stride_cl + offs_i[None, :], mask=ok, other=1.0)  # (BLOCK_L, HALF)
    sin = tl.load(Sin + offs_l[:, None] * stride_cl + offs_i[None, :], mask=ok, other=0.0)
    if INVERSE:
        sin = -sin
    if INTERLEAVED:
        col1 = 2 * offs_i
        col2 = 2 * offs_i + 1
    else:
        col1 = offs_i
        col2 = offs_i + HALF
    x1 = tl.load(X + offs_l[:, None] * stride_xl + col1[None, :], mask=ok, other=0.0).to(tl.float32)
    x2 = tl.load(X + offs_l[:, None] * stride_xl + col2[None, :], mask=ok, other=0.0).to(tl.float32)
    o1 = x1 * cos - x2 * sin
    o2 = x1 * sin + x2 * cos
    tl.store(Out + offs_l[:, None] * stride_ol + col1[None, :], o1.to(Out.dtype.element_ty), mask=ok)
    tl.store(Out + offs_l[:, None] * stride_ol + col2[None, :], o2.to(Out.dtype.element_ty), mask=ok)
    if PASS_PAD > 0:  # features past the rotated ones are copied
        offs_p = 2 * HALF + tl.arange(0, PASS_PAD)
        okp = (offs_l[:, None] < L) & (offs_p[None, :] < D)
        xp = tl.load(X + offs_l[:, None] * stride_xl + offs_p[None, :], mask=okp, other=0.0)
        tl.store(Out + offs_l[:, None] * stride_ol + offs_p[None, :], xp, mask=okp)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool, inverse: bool) -> torch.Tensor:
    B, H, L, D = x.shape
    if x.stride(3) != 1:
        x = x.contiguous()
    out = torch.empty((B, H, L, D), device=x.device, dtype=x.dtype)
    half = cos.shape[-1]
    n_pass = D - 2 * half
    grid = (triton.cdiv(L, BLOCK_L), B * H)
    _rotary_kernel[grid](x, out, cos, sin, *x.stride()[:3], *out.stride()[:3], cos.stride(0), H, L, D,
                         HALF=half, HALF_PAD=triton.next_power_of_2(half),
                         PASS_PAD=triton.next_power_of_2(n_pass) if n_pass > 0 else 0,
                         INTERLEAVED=interleaved, INVERSE=inverse, BLOCK_L=BLOCK_L)
    return out


def rotary_fwd(x, cos, sin, interleaved=False):
    """Launcher outside autograd: x rotated by (cos, sin) (L, rot/2) float32. Stable entry point for wrappers."""
    return _rotate(x, cos, sin, interleaved, inverse=False)


def rotary_bwd(dout, cos, sin, interleaved=False):
    """The backward of `rotary_fwd`: the inverse rotation of dout."""
    return _rotate(dout, cos, sin, interleaved, inverse=True)
