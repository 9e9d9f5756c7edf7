"""Relative-position attention (learned embeddings), T5 buckets and ALiBi: the Triton kernels (run by Triton's
interpreter on CPU) against the float64 definitions, forward and every gradient; the torch references against
each other; argument errors."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import attnkit
from attnkit.kernels import relative as relative_kernels
from attnkit.kernels.reference import (alibi_attention_reference, alibi_slopes, relative_attention_reference,
                                       relative_attention_skewed, t5_attention_reference, t5_bucket)
from attnkit.kernels.torch_path import position_attention_chunked, relative_attention_chunked

FP32_TOL = 2e-4  # max|err| / max|ref|
FP16_TOL = 3e-3  # observed ≈ 3e-4 … 7e-4; torch's own fp16-input path is ≈ 2e-4 … 5e-4


def rel_err(out, ref):
    return float((out.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-12))


def make_qkv(B, H, Hkv, Lq, Lk, D, dtype=torch.float32):
    q = torch.randn(B, H, Lq, D, dtype=dtype)
    k = torch.randn(B, Hkv, Lk, D, dtype=dtype)
    v = torch.randn(B, Hkv, Lk, D, dtype=dtype)
    return q, k, v


def outputs_and_grads(fn, tensors):
    """Run fn on leaf copies of `tensors`; return (out, *grads) for a fixed, non-uniform upstream gradient."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves)
    weight = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out).to(out.dtype)
    grads = torch.autograd.grad((out * weight).sum(), leaves)
    return [out.detach(), *grads]


def check_against_reference(kernel_fn, reference_fn, tensors, tol):
    got = outputs_and_grads(kernel_fn, tensors)
    want = outputs_and_grads(reference_fn, [t.double() for t in tensors])
    names = ["out"] + [f"grad{i}" for i in range(len(tensors))]
    for name, g, w in zip(names, got, want):
        assert g.dtype == tensors[0].dtype or name != "out"
        assert torch.isfinite(g).all(), name
        err = rel_err(g, w)
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol:.0e}"


# --------------------------------------------------------------------------------------------
# torch references: definition (gather) == Music Transformer skewing == chunked CPU path
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("Lq,Lk,R,H,Hkv,Hr", [(9, 9, 9, 2, 2, 1), (5, 12, 4, 4, 2, 4), (12, 5, 30, 2, 1, 2),
                                             (40, 40, 7, 2, 2, 2)])
def test_torch_references_agree(causal, Lq, Lk, R, H, Hkv, Hr):
    if not causal:
        R = R | 1  # R = 2P + 1
    q, k, v = make_qkv(2, H, Hkv, Lq, Lk, 8, torch.float64)
    rel = torch.randn(Hr, R, 8, dtype=torch.float64)
    kpm = torch.rand(2, Lk) > 0.25
    ref = outputs_and_grads(lambda *t: relative_attention_reference(*t, causal=causal, key_padding_mask=kpm),
                            [q, k, v, rel])
    for other in (relative_attention_skewed,
                  lambda *t, **kw: relative_attention_chunked(*t, chunk=4, **kw),  # many chunks, checkpointed
                  lambda *t, **kw: attnkit.relative_attention(*t, backend="torch", **kw)):
        got = outputs_and_grads(lambda *t: other(*t, causal=causal, key_padding_mask=kpm), [q, k, v, rel])
        for g, w in zip(got, ref):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_skewing_matches_music_transformer_recipe():
    """For Lq = Lk = R = L the causal skew is exactly the paper's pad → reshape (L + 1, L) → drop first row."""
    L, D = 6, 4
    q, k, v = make_qkv(1, 1, 1, L, L, D, torch.float64)
    rel = torch.randn(1, L, D, dtype=torch.float64)
    E = rel[0].flip(0)  # paper's Er: column L − 1 is distance 0
    qer = q[0, 0] @ E.T  # (L, L)
    srel = torch.nn.functional.pad(qer, (1, 0)).reshape(L + 1, L)[1:]
    s = (q[0, 0] @ k[0, 0].T + srel) / D ** 0.5
    s = s.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
    want = torch.softmax(s, -1) @ v[0, 0]
    torch.testing.assert_close(relative_attention_skewed(q, k, v, rel)[0, 0], want)
    torch.testing.assert_close(relative_attention_reference(q, k, v, rel)[0, 0], want)


class LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any op produces while active."""
    largest = 0

    def __enter__(self):
        LargestTensor.largest = 0
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                LargestTensor.largest = max(LargestTensor.largest, t.numel())
        return out


def test_chunked_path_never_builds_full_logits():
    """Forward and backward of the CPU path: no intermediate tensor is larger than chunk × Lk logits per head."""
    B, H, L, D, chunk = 1, 2, 512, 16, 64
    q, k, v = make_qkv(B, H, H, L, L, D)
    rel = torch.randn(H, L, D)
    leaves = [t.requires_grad_() for t in (q, k, v, rel)]
    with LargestTensor():
        relative_attention_chunked(*leaves, chunk=chunk).sum().backward()
    assert LargestTensor.largest <= B * H * chunk * L
    assert rel.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------
# Triton kernel: learned relative embeddings
# --------------------------------------------------------------------------------------------

REL_CASES = [
    # causal, B, H, Hkv, Lq, Lk, R, Hr, key padding
    pytest.param(True, 1, 2, 2, 70, 70, 70, 1, False, id="causal-unclipped-R=L-shared"),
    pytest.param(True, 2, 4, 2, 40, 130, 20, 4, True, id="causal-clipped-perhead-gqa-Lq<Lk-padding"),
    pytest.param(True, 1, 2, 1, 130, 70, 200, 2, True, id="causal-R>L-gqa-Lq>Lk-empty-rows"),
    pytest.param(False, 1, 2, 2, 70, 70, 21, 1, False, id="bidirectional-clipped-shared"),
    pytest.param(False, 1, 4, 2, 40, 130, 301, 4, True, id="bidirectional-unclipped-perhead-gqa-padding"),
]


def _rel_inputs(B, H, Hkv, Lq, Lk, R, Hr, padding, dtype=torch.float32):
    q, k, v = make_qkv(B, H, Hkv, Lq, Lk, 16, dtype)
    rel = torch.randn(Hr, R, 16, dtype=dtype)
    kpm = None
    if padding:
        kpm = torch.rand(B, Lk) > 0.3
        if B > 1:
            kpm[-1] = False  # the last batch row has no real key: every query row is empty
    return (q, k, v, rel), kpm


@pytest.mark.parametrize("causal,B,H,Hkv,Lq,Lk,R,Hr,padding", REL_CASES)
def test_relative_kernel_fp32(causal, B, H, Hkv, Lq, Lk, R, Hr, padding):
    tensors, kpm = _rel_inputs(B, H, Hkv, Lq, Lk, R, Hr, padding)
    check_against_reference(
        lambda *t: attnkit.relative_attention(*t, causal=causal, key_padding_mask=kpm, backend="triton"),
        lambda *t: relative_attention_reference(*t, causal=causal, key_padding_mask=kpm), tensors, FP32_TOL)


@pytest.mark.parametrize("causal", [True, False])
def test_relative_kernel_fp16(causal):
    tensors, kpm = _rel_inputs(1, 2, 1, 70, 70, 33 if causal else 21, 2, True, torch.float16)
    check_against_reference(
        lambda *t: attnkit.relative_attention(*t, causal=causal, key_padding_mask=kpm, backend="triton"),
        lambda *t: relative_attention_reference(*t, causal=causal, key_padding_mask=kpm), tensors, FP16_TOL)


@pytest.mark.parametrize("causal,B,H,Hkv,Lq,Lk,R,Hr,padding", [REL_CASES[1], REL_CASES[3]])
def test_relative_kernel_split_backward_passes(monkeypatch, causal, B, H, Hkv, Lq, Lk, R, Hr, padding):
    # The split passes (dK and dV apart, dQ in column chunks, drel per band half) run from SPLIT_HEAD_DIM up
    # (D = 128 on a GPU); lowered here to the tests' padded head dim so the interpreter runs them.
    monkeypatch.setattr(relative_kernels, "SPLIT_HEAD_DIM", 16)
    assert relative_kernels._split(relative_kernels.POS_RELATIVE, 16) != ((relative_kernels.DKDV_BOTH,), 1, 1)
    test_relative_kernel_fp32(causal, B, H, Hkv, Lq, Lk, R, Hr, padding)


def test_relative_kernel_empty_rows_are_zero_and_backward_is_deterministic():
    tensors, kpm = _rel_inputs(2, 2, 2, 40, 70, 10, 1, True)  # batch 1: no real key at all
    run = lambda: outputs_and_grads(  # noqa: E731
        lambda *t: attnkit.relative_attention(*t, key_padding_mask=kpm, backend="triton"), tensors)
    first, second = run(), run()
    for a, b in zip(first, second):
        assert torch.equal(a, b)  # bit-identical: no atomics
    out, dq, dk, dv, drel = first
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert torch.equal(dq[1], torch.zeros_like(dq[1]))
    assert drel.abs().sum() > 0


# --------------------------------------------------------------------------------------------
# T5 bucketed bias
# --------------------------------------------------------------------------------------------

def test_t5_bucket_matches_t5():
    """T5's _relative_position_bucket (HF transformers) for relative_position = j − i, worked by hand: e.g.
    bidirectional |j − i| = 15 → 8 + ⌊8·ln(15/8)/ln(16)⌋ = 9, causal i − j = 31 → 16 + ⌊16·ln(31/16)/ln(8)⌋ = 21."""
    rp = torch.tensor([0, -1, 1, -7, -8, -15, -16, -31, -32, -127, -128, -500, 3, 16, 500])
    # bidirectional, 32 buckets, max_distance 128: 16 per side, 8 exact, then log-spaced up to 15.
    assert t5_bucket(rp, bidirectional=True).tolist() == [0, 1, 17, 7, 8, 9, 10, 11, 12, 15, 15, 15, 19, 26, 31]
    # causal, 32 buckets: 16 exact, log-spaced 16..31; keys after the query share bucket 0.
    assert t5_bucket(rp, bidirectional=False).tolist() == [0, 1, 0, 7, 8, 15, 16, 21, 21, 31, 31, 31, 0, 0, 0]


def test_t5_thresholds_reproduce_bucket_function():
    from attnkit.kernels.relative import t5_thresholds
    for bidirectional, nb, md in [(True, 32, 128), (False, 32, 128), (False, 16, 40), (True, 8, 20)]:
        thr, nbx, max_exact = t5_thresholds(nb, md, bidirectional)
        n = torch.arange(0, 3 * md)
        counted = torch.where(n < max_exact, n, max_exact + (n[:, None] >= thr[None, : nbx - max_exact - 1]).sum(1))
        assert torch.equal(counted, t5_bucket(-n, bidirectional=bidirectional, num_buckets=nb, max_distance=md))


T5_CASES = [
    pytest.param(True, None, 1, 2, 2, 130, 130, 32, 40, False, id="causal-far-tiles-one-bucket"),
    pytest.param(False, None, 2, 4, 2, 40, 130, 32, 128, True, id="bidirectional-gqa-Lq<Lk-padding"),
    pytest.param(True, True, 1, 2, 1, 70, 70, 16, 30, True, id="causal-mask-bidirectional-buckets"),
]


@pytest.mark.parametrize("causal,bidirectional,B,H,Hkv,Lq,Lk,nb,md,padding", T5_CASES)
def test_t5_kernel_fp32(causal, bidirectional, B, H, Hkv, Lq, Lk, nb, md, padding):
    q, k, v = make_qkv(B, H, Hkv, Lq, Lk, 16)
    table = torch.randn(H, nb)
    kpm = torch.rand(B, Lk) > 0.3 if padding else None
    kw = dict(bidirectional=bidirectional, num_buckets=nb, max_distance=md, causal=causal, key_padding_mask=kpm)
    check_against_reference(lambda *t: attnkit.t5_attention(*t, backend="triton", **kw),
                            lambda *t: t5_attention_reference(*t, **kw), [q, k, v, table], FP32_TOL)


def test_t5_kernel_fp16():
    q, k, v = make_qkv(1, 2, 2, 70, 70, 16, torch.float16)
    table = torch.randn(2, 32, dtype=torch.float16)
    kw = dict(causal=False, max_distance=20)
    check_against_reference(lambda *t: attnkit.t5_attention(*t, backend="triton", **kw),
                            lambda *t: t5_attention_reference(*t, **kw), [q, k, v, table], FP16_TOL)


# --------------------------------------------------------------------------------------------
# ALiBi
# --------------------------------------------------------------------------------------------

def test_alibi_slopes_are_press_et_al():
    assert torch.allclose(alibi_slopes(4), torch.tensor([0.25, 0.0625, 0.015625, 0.00390625]))
    # 6 heads: the 4-head slopes, then every other slope of the 8-head set.
    assert torch.allclose(alibi_slopes(6), torch.tensor([0.25, 0.0625, 0.015625, 0.00390625, 2 ** -1.0, 2 ** -3.0]))


@pytest.mark.parametrize("causal,B,H,Hkv,Lq,Lk,padding", [
    pytest.param(True, 1, 6, 3, 130, 130, False, id="causal-6-heads-gqa"),
    pytest.param(False, 2, 2, 2, 40, 130, True, id="bidirectional-Lq<Lk-padding"),
])
def test_alibi_kernel_fp32(causal, B, H, Hkv, Lq, Lk, padding):
    q, k, v = make_qkv(B, H, Hkv, Lq, Lk, 16)
    slopes = alibi_slopes(H)
    kpm = torch.rand(B, Lk) > 0.3 if padding else None
    check_against_reference(
        lambda *t: attnkit.alibi_attention(*t[:3], slopes=t[3], causal=causal, key_padding_mask=kpm, backend="triton"),
        lambda *t: alibi_attention_reference(*t, causal=causal, key_padding_mask=kpm), [q, k, v, slopes], FP32_TOL)


def test_alibi_kernel_fp16_default_slopes():
    q, k, v = make_qkv(1, 4, 4, 70, 70, 16, torch.float16)
    check_against_reference(lambda *t: attnkit.alibi_attention(*t, backend="triton"),
                            lambda *t: alibi_attention_reference(*t, alibi_slopes(4).double()), [q, k, v], FP16_TOL)


def test_torch_path_matches_definitions_for_t5_and_alibi():
    q, k, v = make_qkv(2, 4, 2, 300, 310, 8, torch.float64)  # > one 256-row chunk
    table = torch.randn(4, 32, dtype=torch.float64)
    kpm = torch.rand(2, 310) > 0.2
    for causal in (True, False):
        torch.testing.assert_close(attnkit.t5_attention(q, k, v, table, causal=causal, key_padding_mask=kpm),
                                   t5_attention_reference(q, k, v, table, causal=causal, key_padding_mask=kpm))
        torch.testing.assert_close(attnkit.alibi_attention(q, k, v, causal=causal, key_padding_mask=kpm),
                                   alibi_attention_reference(q, k, v, alibi_slopes(4).double(), causal=causal,
                                                             key_padding_mask=kpm))


@pytest.mark.parametrize("kind", ["t5", "alibi"])
def test_t5_alibi_cpu_sdpa_chunks_match_definition_with_grads_and_stay_o_chunk(kind):
    """The float32/64 CPU path runs SDPA per 64-row chunk: values and every gradient (q, k, v, table / slopes)
    equal the full-matrix definition, rows with no key give zeros, and no tensor exceeds chunk × Lk per head."""
    B, H, Hkv, Lq, Lk, chunk = 2, 4, 2, 200, 130, 64  # causal with Lq > Lk: the first 70 rows see no key
    q, k, v = make_qkv(B, H, Hkv, Lq, Lk, 8, torch.float64)
    kpm = torch.rand(B, Lk) > 0.2
    pos = torch.randn(H, 32, dtype=torch.float64) if kind == "t5" else alibi_slopes(H).double()
    leaves = [t.requires_grad_() for t in (q, k, v, pos)]
    for causal in (True, False):
        t5_args = (not causal, 32, 64)
        with LargestTensor():
            out = position_attention_chunked(*leaves, kind=kind, causal=causal, key_padding_mask=kpm,
                                             t5_args=t5_args, chunk=chunk)
            grads = torch.autograd.grad(out, leaves, torch.ones_like(out))
        assert LargestTensor.largest <= B * H * chunk * Lk
        if kind == "t5":
            want = t5_attention_reference(*leaves, bidirectional=not causal, num_buckets=32, max_distance=64,
                                          causal=causal, key_padding_mask=kpm)
        else:
            want = alibi_attention_reference(*leaves, causal=causal, key_padding_mask=kpm)
        torch.testing.assert_close(out, want)
        for got, ref in zip(grads, torch.autograd.grad(want, leaves, torch.ones_like(want))):
            torch.testing.assert_close(got, ref)
        if causal:
            assert out[:, :, :Lq - Lk].eq(0).all()


# --------------------------------------------------------------------------------------------
# Argument errors name the argument
# --------------------------------------------------------------------------------------------

def test_bad_arguments_raise_value_error_naming_them():
    q, k, v = make_qkv(1, 4, 2, 8, 8, 16)
    with pytest.raises(ValueError, match="rel has 3 heads"):
        attnkit.relative_attention(q, k, v, torch.randn(3, 8, 16))
    with pytest.raises(ValueError, match="rel head dim"):
        attnkit.relative_attention(q, k, v, torch.randn(4, 8, 8))
    with pytest.raises(ValueError, match="odd R"):
        attnkit.relative_attention(q, k, v, torch.randn(1, 8, 16), causal=False)
    with pytest.raises(ValueError, match="table"):
        attnkit.t5_attention(q, k, v, torch.randn(4, 16))  # num_buckets defaults to 32
    with pytest.raises(ValueError, match="num_buckets"):
        attnkit.t5_attention(q, k, v, torch.randn(4, 2), num_buckets=2, causal=False)
    with pytest.raises(ValueError, match="max_distance"):
        attnkit.t5_attention(q, k, v, torch.randn(4, 32), max_distance=4)
    with pytest.raises(ValueError, match="slopes"):
        attnkit.alibi_attention(q, k, v, slopes=torch.ones(3))
    with pytest.raises(ValueError, match="backend"):
        attnkit.alibi_attention(q, k, v, backend="cuda")
