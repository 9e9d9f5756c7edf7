"""`softcap` and `return_lse` of attnkit.attention: both backends against the float64 definition (forward, LSE and
every gradient, including the LSE's own), the LSE merge identity split-KV relies on, and argument errors.

The Triton kernel runs through the interpreter on CPU (tests/conftest.py sets TRITON_INTERPRET=1)."""
from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.kernels.reference import attention_reference
from extras_common import BACKENDS, TOL, rel_err  # tests/kernels/extras_common.py


def loss_of(out, lse, g_out, g_lse):
    """A scalar that depends on out and on the finite LSE entries (−inf rows carry no gradient)."""
    return (out.float() * g_out).sum() + (lse.masked_fill(torch.isinf(lse), 0.0) * g_lse).sum()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_softcap_and_lse_match_float64_with_gradients(backend, dtype):
    g = torch.Generator().manual_seed(0)
    B, H, Hkv, Lq, Lk, D = 2, 2, 1, 40, 70, 16
    base = [torch.randn(B, H, Lq, D, generator=g) * 2, torch.randn(B, Hkv, Lk, D, generator=g) * 2,
            torch.randn(B, Hkv, Lk, D, generator=g), torch.randn(1, H, Lq, Lk, generator=g)]
    kpm = torch.rand(B, Lk, generator=g) > 0.3
    kpm[-1] = False  # batch row 1 sees no key: out 0, lse −inf, no gradient
    g_out, g_lse = torch.randn(B, H, Lq, D, generator=g), torch.randn(B, H, Lq, generator=g)
    kw = dict(causal=True, window=(30, -1), key_padding_mask=kpm, softcap=3.0)
    q, k, v, bias = (t.to(dtype).requires_grad_() for t in base)
    out, lse = attnkit.attention(q, k, v, bias=bias, return_lse=True, backend=backend, **kw)
    assert lse.shape == (B, H, Lq) and lse.dtype == torch.float32
    assert torch.isneginf(lse[1]).all() and out[1].eq(0).all()
    grads = torch.autograd.grad(loss_of(out, lse, g_out, g_lse), (q, k, v, bias))
    ref = [t.to(dtype).double().requires_grad_() for t in base]
    r_out, r_lse = attention_reference(*ref[:3], bias=ref[3], return_lse=True, **kw)
    r_grads = torch.autograd.grad(loss_of(r_out, r_lse, g_out.double(), g_lse.double()), ref)
    assert rel_err(out, r_out) <= TOL[dtype]
    assert rel_err(lse, r_lse) <= TOL[dtype]
    for got, want in zip(grads, r_grads):
        assert rel_err(got, want) <= 2 * TOL[dtype]


@pytest.mark.parametrize("backend", BACKENDS)
def test_softcap_bounds_the_logits(backend):
    """With a cap c the logits lie in (−c, c): the LSE of a row of n keys is within log(n) ± c."""
    q = torch.randn(1, 1, 8, 16) * 20
    k = torch.randn(1, 1, 64, 16) * 20
    out, lse = attnkit.attention(q, k, k, softcap=2.0, return_lse=True, backend=backend)
    n = torch.tensor(64.0).log()
    assert (lse <= n + 2.0).all() and (lse >= n - 2.0).all()
    _, lse_uncapped = attnkit.attention(q, k, k, return_lse=True, backend=backend)
    assert (lse_uncapped > n + 2.0).any()  # the cap did something


@pytest.mark.parametrize("backend", BACKENDS)
def test_lse_merges_two_halves_of_the_keys(backend):
    """Attention over keys A ∪ B from the two partial results: the identity split-KV decoding and ring
    attention use (lse = logaddexp(lse_A, lse_B), out = Σ exp(lse_t − lse)·out_t)."""
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(2, 2, 5, 16, generator=g), torch.randn(2, 2, 90, 16, generator=g), torch.randn(2, 2, 90, 16,
                                                                                                           generator=g)
    out, lse = attnkit.attention(q, k, v, return_lse=True, backend=backend)
    o1, l1 = attnkit.attention(q, k[:, :, :37], v[:, :, :37], return_lse=True, backend=backend)
    o2, l2 = attnkit.attention(q, k[:, :, 37:], v[:, :, 37:], return_lse=True, backend=backend)
    merged_lse = torch.logaddexp(l1, l2)
    merged = (l1 - merged_lse).exp()[..., None] * o1 + (l2 - merged_lse).exp()[..., None] * o2
    torch.testing.assert_close(merged_lse, lse, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged, out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), "2", True])
def test_bad_softcap_raises_naming_it(bad):
    q = torch.randn(1, 1, 4, 16)
    with pytest.raises(ValueError, match="^softcap"):
        attnkit.attention(q, q, q, softcap=bad)


def test_bad_return_lse_raises_naming_it():
    q = torch.randn(1, 1, 4, 16)
    with pytest.raises(ValueError, match="^return_lse"):
        attnkit.attention(q, q, q, return_lse=1)


def test_registered_op_with_the_new_arguments_passes_opcheck():
    """torch.library.opcheck (schema, fake against real, autograd registration) of the attention op with
    softcap, the LSE output, packed documents and dropout, on the torch path."""
    from attnkit import library
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 2, 6, 8, generator=g, requires_grad=True) for _ in range(3))
    doc = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
    args = (q, k, v, None, None, None, True, -1, -1, None, "torch", 2.0, True, doc, 0.2, 5)
    torch.library.opcheck(library.attention_fwd_op, args)
