"""`dropout_p` of attnkit.attention: the kernel's forward and every gradient against the float64 definition given
the kernel's own keep mask (fetched with `attention_dropout_mask`, as flash-attn's tests fetch theirs), the torch
path against the definition given its generator's bits, same seed → same result, the keep rate, argument errors.

The Triton kernel runs through the interpreter on CPU (tests/conftest.py sets TRITON_INTERPRET=1)."""
from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.kernels.reference import attention_reference
from extras_common import KERNEL, TOL, rel_err  # tests/kernels/extras_common.py


def inputs(seed=0, B=2, H=2, Hkv=1, Lq=70, Lk=90, D=16):
    g = torch.Generator().manual_seed(seed)
    return ([torch.randn(B, H, Lq, D, generator=g), torch.randn(B, Hkv, Lk, D, generator=g),
             torch.randn(B, Hkv, Lk, D, generator=g), torch.randn(1, H, Lq, Lk, generator=g)],
            torch.randn(B, H, Lq, D, generator=g))


def run(fn, base, g_out, dtype, **kw):
    q, k, v, bias = (t.to(dtype).requires_grad_() for t in base)
    out = fn(q, k, v, bias=bias, **kw)
    return [out, *torch.autograd.grad(out, (q, k, v, bias), g_out.to(out.dtype))]


@KERNEL
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_kernel_dropout_matches_float64_given_its_mask(dtype):
    from attnkit.kernels.attention import attention_dropout_mask
    base, g_out = inputs(B=1, Lq=40, Lk=70)
    p, seed = 0.3, 1234
    kw = dict(causal=True, dropout_p=p, dropout_seed=seed)
    got = run(lambda *a, **k: attnkit.attention(*a, backend="triton", **k), base, g_out, dtype, **kw)
    mask = attention_dropout_mask(1, 2, 40, 70, p, seed, "cpu")
    assert abs(mask.float().mean().item() - (1 - p)) < 0.03
    want = run(attention_reference, [t.to(dtype) for t in base], g_out.double(), torch.float64, causal=True,
               dropout_p=p, dropout_mask=mask)
    for g, w in zip(got, want):
        assert rel_err(g, w) <= 2 * TOL[dtype]


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=KERNEL)])
def test_same_seed_same_result_other_seed_other_result(backend):
    base, g_out = inputs(1, B=1, H=2, Lq=20, Lk=40)
    kw = dict(causal=True, dropout_p=0.5, backend=backend)
    a = run(attnkit.attention, base, g_out, torch.float32, dropout_seed=7, **kw)
    b = run(attnkit.attention, base, g_out, torch.float32, dropout_seed=7, **kw)
    c = run(attnkit.attention, base, g_out, torch.float32, dropout_seed=8, **kw)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    torch.manual_seed(3)
    d = run(attnkit.attention, base, g_out, torch.float32, **kw)  # seed drawn from torch's generator
    torch.manual_seed(3)
    e = run(attnkit.attention, base, g_out, torch.float32, **kw)
    assert torch.equal(d[0], e[0])


def test_torch_path_dropout_matches_definition_with_gradients():
    """The torch path draws its bits per query chunk from (seed, chunk start); with one chunk (Lq ≤ 256) they are
    the definition's own for that seed."""
    base, g_out = inputs(2)
    kw = dict(causal=True, dropout_p=0.25, dropout_seed=11)
    got = run(lambda *a, **k: attnkit.attention(*a, backend="torch", **k), base, g_out, torch.float32, **kw)
    want = run(attention_reference, base, g_out.double(), torch.float64, **kw)
    for g, w in zip(got, want):
        assert rel_err(g, w) <= 2e-6


@pytest.mark.parametrize("kw", [dict(dropout_p=1.0), dict(dropout_p=-0.1), dict(dropout_p="0.1"),
                                dict(dropout_p=0.1, dropout_seed=-1), dict(dropout_p=0.1, dropout_seed=1.5)])
def test_bad_dropout_arguments_raise_naming_them(kw):
    q = torch.randn(1, 1, 4, 16)
    with pytest.raises(ValueError, match="^dropout_"):
        attnkit.attention(q, q, q, **kw)
