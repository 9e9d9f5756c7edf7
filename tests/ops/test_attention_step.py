"""attnkit.ops.attention_step, the decode loop's one-token attention after a cache's first (checked) call: the same
bits as `attention`, without the per-call argument checks only where `attention` itself would run torch SDPA on the
whole cache; every other call goes through `attention` and its checks."""
import pytest
import torch

from attnkit import ops


def _qkv(B=2, Hq=4, Hkv=2, Lq=1, Lk=37, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, Hq, Lq, D, generator=g), torch.randn(B, Hkv, Lk, D, generator=g),
            torch.randn(B, Hkv, Lk, D, generator=g))


def _checks_raise(monkeypatch):
    """Make `attention`'s argument checks raise, so a call that still returns skipped them."""
    def check(*args, **kwargs):
        raise AssertionError("checked")
    monkeypatch.setattr(ops, "check_attention_args", check)


@pytest.mark.parametrize("Hkv", [4, 2, 1])
@pytest.mark.parametrize("causal", [True, False])
def test_one_token_step_equals_attention_bit_for_bit(Hkv, causal):
    q, k, v = _qkv(Hkv=Hkv)
    with torch.inference_mode():
        step = ops.attention_step(q, k, v, causal=causal)
        full = ops.attention(q, k, v, causal=causal)
    assert torch.equal(step, full)


def test_a_view_of_a_static_buffer_gives_the_same_bits():
    q, k, v = _qkv(Lk=20)
    buf_k, buf_v = torch.zeros(2, 2, 64, 16), torch.zeros(2, 2, 64, 16)
    buf_k.narrow(2, 0, 20).copy_(k)
    buf_v.narrow(2, 0, 20).copy_(v)
    with torch.inference_mode():
        step = ops.attention_step(q, buf_k.narrow(2, 0, 20), buf_v.narrow(2, 0, 20), causal=True)
    assert torch.equal(step, ops.attention(q, k, v, causal=True))


def test_one_token_step_skips_the_checks(monkeypatch):
    q, k, v = _qkv()
    _checks_raise(monkeypatch)
    with torch.inference_mode():
        assert ops.attention_step(q, k, v, causal=True).shape == q.shape


@pytest.mark.parametrize("case", ["several queries", "window", "needs grad"])
def test_every_other_call_goes_through_the_checked_op(monkeypatch, case):
    q, k, v = _qkv(Lq=3 if case == "several queries" else 1)
    window = (4, -1) if case == "window" else (-1, -1)
    if case == "needs grad":
        q.requires_grad_(True)
    _checks_raise(monkeypatch)
    with pytest.raises(AssertionError, match="checked"):
        ops.attention_step(q, k, v, causal=True, window=window)


def test_a_windowed_step_equals_attention():
    q, k, v = _qkv()
    with torch.inference_mode():
        assert torch.equal(ops.attention_step(q, k, v, causal=True, window=(7, -1)),
                           ops.attention(q, k, v, causal=True, window=(7, -1)))
