"""The torch paths of attnkit.attention: the chunked CPU path and SDPA must equal the reference definition."""
from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.kernels.reference import attention_reference
from attnkit.kernels.torch_path import attention_chunked, sdpa_covers


def _inputs(B=2, Hq=4, Hkv=2, Lq=50, Lk=40, D=16, dtype=torch.float64):
    q = torch.randn(B, Hq, Lq, D, dtype=dtype, requires_grad=True)
    k = torch.randn(B, Hkv, Lk, D, dtype=dtype, requires_grad=True)
    v = torch.randn(B, Hkv, Lk, D, dtype=dtype, requires_grad=True)
    return q, k, v


def _out_and_grads(fn, q, k, v, bias=None, **kw):
    out = fn(q, k, v, bias=bias, **kw)
    inputs = [q, k, v] + ([bias] if bias is not None else [])
    return [out, *torch.autograd.grad(out, inputs, torch.ones_like(out))]


def test_chunked_equals_reference_with_every_mask_and_bias():
    q, k, v = _inputs()
    B, Hq, Lq, Lk = 2, 4, 50, 40
    kw = dict(causal=True, window=(12, -1), key_padding_mask=torch.rand(B, Lk) > 0.2,
              attn_mask=torch.rand(Hq, Lq, Lk) > 0.3)
    bias = torch.randn(1, Hq, Lq, Lk, dtype=torch.float64, requires_grad=True)
    # chunk=16 < Lq: several chunks, each recomputed in backward (checkpointing).
    got = _out_and_grads(lambda *a, **k_: attention_chunked(*a, chunk=16, **k_), q, k, v, bias, **kw)
    ref = _out_and_grads(attention_reference, q, k, v, bias, **kw)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


def test_reference_gradients_match_finite_differences_with_empty_rows():
    q, k, v = _inputs(B=1, Hq=2, Hkv=1, Lq=5, Lk=4, D=3)
    am = torch.rand(1, 2, 5, 4) > 0.3
    am[0, 0, 1] = False  # an empty row: output 0, gradient 0
    bias = torch.randn(2, 1, 4, dtype=torch.float64, requires_grad=True)
    fn = lambda q, k, v, b: attention_reference(q, k, v, attn_mask=am, bias=b, causal=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v, bias))
    out, dq = _out_and_grads(attention_reference, q, k, v, attn_mask=am)[:2]
    assert out[0, 0, 1].abs().max() == 0 and dq[0, 0, 1].abs().max() == 0


@pytest.mark.parametrize("causal, Lq, Lk", [(False, 20, 30), (True, 25, 25)])
def test_auto_backend_uses_sdpa_where_it_is_exact(causal, Lq, Lk):
    q, k, v = _inputs(Lq=Lq, Lk=Lk, dtype=torch.float32)
    assert sdpa_covers(q, k, causal=causal, window=(-1, -1), key_padding_mask=None, attn_mask=None, bias=None)
    got = _out_and_grads(lambda *a, **k_: attnkit.attention(*a, backend="auto", **k_), q, k, v, causal=causal)
    ref = _out_and_grads(attention_reference, q, k, v, causal=causal)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


def test_auto_backend_bottom_right_causal_with_lq_ne_lk():
    """SDPA's is_causal is top-left aligned; with Lq != Lk the auto path must not use it (it passes a
    bottom-right boolean mask instead, or falls back to the chunked path)."""
    q, k, v = _inputs(Lq=7, Lk=20)
    out = attnkit.attention(q, k, v, causal=True)
    torch.testing.assert_close(out, attention_reference(q, k, v, causal=True))
    # Row 0 is query position 13 of 20: it sees keys 0..13 only (bottom-right), so key 14's value cannot matter.
    v2 = v.detach().clone()
    v2[:, :, 14:] += 100.0
    torch.testing.assert_close(attnkit.attention(q, k, v2, causal=True)[:, :, 0], out[:, :, 0])


@pytest.mark.parametrize("kwargs, name", [
    (dict(q=torch.randn(1, 4, 8, 16), k=torch.randn(1, 3, 8, 16), v=torch.randn(1, 3, 8, 16)), "k"),
    (dict(q=torch.randn(4, 8, 16), k=torch.randn(1, 4, 8, 16), v=torch.randn(1, 4, 8, 16)), "q"),
    (dict(q=torch.randn(1, 4, 8, 16), k=torch.randn(1, 4, 8, 8), v=torch.randn(1, 4, 8, 8)), "k"),
    (dict(q=torch.randn(1, 4, 8, 16), k=torch.randn(1, 4, 8, 16), v=torch.randn(1, 4, 9, 16)), "v"),
    (dict(q=torch.randn(1, 4, 8, 16), k=torch.randn(1, 4, 8, 16), v=torch.randn(1, 4, 8, 16),
          attn_mask=torch.ones(5, 8, dtype=torch.bool)), "attn_mask"),
    (dict(q=torch.randn(1, 4, 8, 16), k=torch.randn(1, 4, 8, 16), v=torch.randn(1, 4, 8, 16),
          bias=torch.ones(1, 3, 8, 8)), "bias"),
    (dict(q=torch.randn(1, 4, 8, 16), k=torch.randn(1, 4, 8, 16), v=torch.randn(1, 4, 8, 16),
          key_padding_mask=torch.ones(1, 8)), "key_padding_mask"),
    (dict(q=torch.randn(1, 4, 8, 16), k=torch.randn(1, 4, 8, 16), v=torch.randn(1, 4, 8, 16),
          window=(-2, 0)), "window"),
    (dict(q=torch.randn(1, 4, 8, 16), k=torch.randn(1, 4, 8, 16), v=torch.randn(1, 4, 8, 16),
          backend="cuda"), "backend"),
])
def test_bad_input_raises_value_error_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        attnkit.attention(**kwargs)
