"""Fused rotary apply (Triton, run by the interpreter on CPU) against the float64 reference, forward and backward,
both layouts, partial rotation, and the position offset used when decoding with a KV cache."""
import pytest
import torch

import attnkit


def rel_err(out, ref):
    return float((out.detach().double() - ref.detach().double()).abs().max() / ref.detach().double().abs().max())


@pytest.mark.parametrize("interleaved", [False, True], ids=["half-split", "interleaved"])
@pytest.mark.parametrize("rotary_dim", [None, 16], ids=["full", "partial"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-4), (torch.float16, 2e-3)], ids=["fp32", "fp16"])
def test_rotary_kernel_matches_reference(interleaved, rotary_dim, dtype, tol):
    # A transposed (B, L, H, D) projection, as the attention layer passes it: strided rows, contiguous features.
    x = torch.randn(2, 70, 3, 24).transpose(1, 2).to(dtype)
    upstream = torch.randn(2, 3, 70, 24, dtype=torch.float64)
    kw = dict(offset=7, interleaved=interleaved, rotary_dim=rotary_dim)
    xk = x.clone().requires_grad_()
    out = attnkit.apply_rotary(xk, backend="triton", **kw)
    out.backward(upstream.to(dtype))
    xr = x.double().requires_grad_()
    ref = attnkit.apply_rotary(xr, backend="torch", **kw)
    ref.backward(upstream)
    assert out.dtype == dtype and out.shape == x.shape
    assert rel_err(out, ref) < tol
    assert rel_err(xk.grad, xr.grad) < tol
    if rotary_dim is not None:  # features past rotary_dim pass through untouched, and so do their gradients
        assert torch.equal(out[..., rotary_dim:], x[..., rotary_dim:])
        assert torch.equal(xk.grad[..., rotary_dim:], upstream[..., rotary_dim:].to(dtype))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_offset_is_the_absolute_position(backend):
    """Rotating the last 5 rows with offset = 65 equals rotating the whole sequence and keeping them (KV cache)."""
    x = torch.randn(1, 2, 70, 32)
    full = attnkit.apply_rotary(x, backend=backend)
    tail = attnkit.apply_rotary(x[:, :, 65:], offset=65, backend=backend)
    torch.testing.assert_close(tail, full[:, :, 65:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rotary_scores_depend_only_on_relative_position(interleaved):
    """q_m·k_n after rotation depends on m − n only (the point of RoPE), and the rotation keeps norms."""
    q, k = torch.randn(1, 1, 1, 32, dtype=torch.float64), torch.randn(1, 1, 1, 32, dtype=torch.float64)
    score = lambda m, n: (attnkit.apply_rotary(q, offset=m, interleaved=interleaved)  # noqa: E731
                          * attnkit.apply_rotary(k, offset=n, interleaved=interleaved)).sum()
    torch.testing.assert_close(score(10, 3), score(107, 100))
    assert not torch.allclose(score(10, 3), score(10, 4))
    rotated = attnkit.apply_rotary(q, offset=123, interleaved=interleaved)
    torch.testing.assert_close(rotated.norm(), q.norm())


def test_bad_arguments():
    x = torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match="rotary_dim"):
        attnkit.apply_rotary(x, rotary_dim=5)
    with pytest.raises(ValueError, match="offset"):
        attnkit.apply_rotary(x, offset=-1)
    with pytest.raises(ValueError, match="x must be"):
        attnkit.apply_rotary(torch.randn(2, 4, 8))
