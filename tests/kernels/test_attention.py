"""The Triton attention kernel (forward and backward) against the float64 reference.

On CPU the kernels run through Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1), which is slow:
shapes are small, but every case spans several 64-wide blocks so block skipping, band edges and boundary
masking are all exercised. Relative error = max|out − ref| / max|ref|.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import attnkit
from attnkit.kernels.attention import attn_mask_tile_occupancy
from attnkit.kernels.reference import attention_reference, masked_softmax, visible_mask
from attnkit.kernels.runtime import INTERPRET

# CUDA runs the compiled kernels; under the interpreter (conftest's default) they would crawl, so run them with
# TRITON_INTERPRET=0 on a GPU machine.
NO_COMPILED_CUDA = not torch.cuda.is_available() or INTERPRET
CUDA_REASON = "needs CUDA and TRITON_INTERPRET=0"
ON_CPU = pytest.mark.skipif(not INTERPRET, reason="on CPU the kernels need TRITON_INTERPRET=1")
DEVICES = [pytest.param("cpu", marks=ON_CPU),
           pytest.param("cuda", marks=pytest.mark.skipif(NO_COMPILED_CUDA, reason=CUDA_REASON))]
FP32_TOL = 2e-4
LOWP_FACTOR = 3.0  # fast path may be at most 3× as far from float64 as torch's own low-precision computation


def attention_triton(*args, **kw):
    """The kernel through the public op, its only entry point."""
    return attnkit.attention(*args, backend="triton", **kw)


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.detach().double(), ref.detach().double()
    return ((x - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def make_inputs(B, Hq, Hkv, Lq, Lk, D, dtype, device, bias_shape=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, h, L, D, generator=g).to(device, dtype).requires_grad_()
               for h, L in ((Hq, Lq), (Hkv, Lk), (Hkv, Lk)))
    bias = None
    if bias_shape is not None:
        bias = torch.randn(*bias_shape, generator=g).to(device, dtype).requires_grad_()
    do = torch.randn(B, Hq, Lq, D, generator=g).to(device, dtype)
    return q, k, v, bias, do


def run(fn, q, k, v, bias, do, **kw):
    """Output and gradients (dq, dk, dv[, dbias]) of fn for upstream gradient do."""
    out = fn(q, k, v, bias=bias, **kw)
    inputs = [q, k, v] + ([bias] if bias is not None else [])
    return [out, *torch.autograd.grad(out, inputs, do)]


def run_ref64(q, k, v, bias, do, **kw):
    up = lambda t: None if t is None else t.detach().double().requires_grad_()  # noqa: E731
    return run(attention_reference, up(q), up(k), up(v), up(bias), do.double(), **kw)


def naive_lowp(q, k, v, *, bias=None, causal=False, window=(-1, -1), key_padding_mask=None, attn_mask=None):
    """Attention computed by torch entirely in q's (low-precision) dtype: the baseline for fp16/bf16 error."""
    G = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(G, 1), v.repeat_interleave(G, 1)
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        s = s + bias
    mask = visible_mask(q.shape[2], k.shape[2], causal=causal, window=window, key_padding_mask=key_padding_mask,
                        attn_mask=attn_mask, device=q.device)
    return masked_softmax(s, mask) @ v


def check_fp32(got, ref, names=("out", "dq", "dk", "dv", "dbias")):
    errs = {n: rel_err(g, r) for n, g, r in zip(names, got, ref)}
    assert all(torch.isfinite(g).all() for g in got), errs
    assert max(errs.values()) < FP32_TOL, errs
    return errs


# (B, Hq, Hkv, Lq, Lk, D, kwargs, bias_shape). Masks are built from a seeded generator in `_masks`.
CASES = {
    "plain_gqa_d40": (1, 2, 1, 70, 90, 40, {}, None),
    "causal_square_d64": (1, 4, 2, 130, 130, 64, dict(causal=True), None),
    "causal_decode_block_lq_lt_lk": (1, 2, 2, 37, 150, 16, dict(causal=True), None),
    "causal_lq_gt_lk_empty_rows": (1, 2, 1, 100, 30, 32, dict(causal=True), None),
    "sliding_window_band_d80": (1, 1, 1, 200, 200, 80, dict(causal=True, window=(100, -1)), None),
    "two_sided_window": (1, 2, 1, 150, 140, 16, dict(window=(5, 7)), None),
    "kpm_empty_batch_d128": (2, 2, 1, 50, 77, 128, dict(key_padding_mask="kpm"), None),
    "attn_mask_full_empty_rows": (2, 2, 2, 50, 77, 16, dict(attn_mask="full"), None),
    "mask2d_and_bias_full": (2, 2, 1, 70, 66, 32, dict(attn_mask="2d"), (2, 2, 70, 66)),
    "bias_heads_rows_causal": (2, 4, 2, 70, 90, 16, dict(causal=True), (4, 1, 90)),
    "bias_cols_window_kpm_mask": (2, 2, 1, 65, 70, 32, dict(window=(30, 10), key_padding_mask="kpm",
                                                           attn_mask="full"), (2, 1, 65, 70)),
    "lq1_decode_bias_kpm": (2, 2, 1, 1, 77, 128, dict(causal=True, key_padding_mask="kpm"), (2, 1, 1, 77)),
}


def _masks(kw, B, Hq, Lq, Lk, device, seed=1):
    """Replace mask placeholders in kw with seeded random masks (with deliberately empty rows)."""
    g = torch.Generator().manual_seed(seed)
    kw = dict(kw)
    if kw.get("key_padding_mask") == "kpm":
        kpm = torch.rand(B, Lk, generator=g) > 0.3
        kpm[-1] = False  # the last batch element has no real key: every row empty
        kw["key_padding_mask"] = kpm.to(device)
    if kw.get("attn_mask") == "full":
        am = torch.rand(B, Hq, Lq, Lk, generator=g) > 0.4
        am[0, 0, 3] = False  # one empty row
        kw["attn_mask"] = am.to(device)
    elif kw.get("attn_mask") == "2d":
        kw["attn_mask"] = (torch.rand(Lq, Lk, generator=g) > 0.5).to(device)
    return kw


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(CASES))
def test_fp32_matches_reference(case, device):
    B, Hq, Hkv, Lq, Lk, D, kw, bias_shape = CASES[case]
    kw = _masks(kw, B, Hq, Lq, Lk, device)
    q, k, v, bias, do = make_inputs(B, Hq, Hkv, Lq, Lk, D, torch.float32, device, bias_shape)
    got = run(attention_triton, q, k, v, bias, do, **kw)
    ref = run_ref64(q, k, v, bias, do, **kw)
    check_fp32(got, ref)
    if bias is not None:
        assert got[-1].shape == bias.shape


@pytest.mark.parametrize("device", DEVICES)
def test_split_dkdv_passes_match_reference(device, monkeypatch):
    """From SPLIT_DKDV_HEAD_DIM up (128 on the GPU), dK and dV come from two launches of the dK/dV kernel, one
    accumulator each; force that path at a small head dim with GQA, a window, key padding and a bias."""
    import attnkit.kernels.attention as kernel
    monkeypatch.setattr(kernel, "SPLIT_DKDV_HEAD_DIM", 16)
    B, Hq, Hkv, Lq, Lk, D = 2, 2, 1, 65, 70, 16
    kw = _masks(dict(window=(30, 10), key_padding_mask="kpm"), B, Hq, Lq, Lk, device)
    q, k, v, bias, do = make_inputs(B, Hq, Hkv, Lq, Lk, D, torch.float32, device, (1, 2, 1, 70))
    check_fp32(run(attention_triton, q, k, v, bias, do, **kw), run_ref64(q, k, v, bias, do, **kw))


@pytest.mark.parametrize("device", DEVICES)
def test_bias_broadcast_over_keys_has_zero_grad(device):
    """A bias constant along a query's row cannot change its softmax: its gradient is exactly 0 in theory,
    so compare absolutely (the per-element dS it sums are O(1))."""
    q, k, v, bias, do = make_inputs(2, 2, 1, 70, 90, 16, torch.float32, device, bias_shape=(1, 2, 1, 1))
    got = run(attention_triton, q, k, v, bias, do, causal=True)
    ref = run_ref64(q, k, v, bias, do, causal=True)
    check_fp32(got[:4], ref[:4])
    assert got[4].shape == (1, 2, 1, 1)
    assert got[4].abs().max() < 1e-4


@pytest.mark.parametrize("device", DEVICES)
def test_random_shapes(device):
    """A few seeded random draws over everything at once: GQA groups, odd lengths, D, masks, bias broadcast."""
    rng = torch.Generator().manual_seed(123)
    pick = lambda xs: xs[torch.randint(len(xs), (1,), generator=rng).item()]  # noqa: E731
    for trial in range(4):
        Hkv = pick([1, 2])
        Hq = Hkv * pick([1, 2])
        Lq, Lk = pick([1, 9, 33, 65, 97]), pick([5, 31, 64, 100])
        D = pick([16, 32, 64, 80, 96, 128])
        kw = dict(causal=pick([False, True]), window=pick([(-1, -1), (8, -1), (3, 20)]))
        kw.update({k: v for k, v in (("key_padding_mask", pick([None, "kpm"])), ("attn_mask", pick([None, "full"])))
                   if v is not None})
        bias_shape = pick([None, (Hq, Lq, Lk), (2, 1, 1, Lk)])
        kw = _masks(kw, 2, Hq, Lq, Lk, device, seed=trial)
        q, k, v, bias, do = make_inputs(2, Hq, Hkv, Lq, Lk, D, torch.float32, device, bias_shape, seed=trial)
        got = run(attention_triton, q, k, v, bias, do, **kw)
        ref = run_ref64(q, k, v, bias, do, **kw)
        check_fp32(got, ref)


LOWP_CASES = {
    "causal_gqa_bias": (1, 4, 2, 70, 90, 64, dict(causal=True), (1, 4, 70, 90)),
    "window_kpm_d80": (2, 2, 1, 65, 70, 80, dict(window=(20, 5), key_padding_mask="kpm"), (2, 1, 65, 70)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", list(LOWP_CASES))
def test_low_precision_within_3x_torch(case, dtype, device):
    B, Hq, Hkv, Lq, Lk, D, kw, bias_shape = LOWP_CASES[case]
    kw = _masks(kw, B, Hq, Lq, Lk, device)
    q, k, v, bias, do = make_inputs(B, Hq, Hkv, Lq, Lk, D, dtype, device, bias_shape)
    got = run(attention_triton, q, k, v, bias, do, **kw)
    ref = run_ref64(q, k, v, bias, do, **kw)
    base = run(naive_lowp, q, k, v, bias, do, **kw)
    for name, g, b, r in zip(("out", "dq", "dk", "dv", "dbias"), got, base, ref):
        assert g.dtype == dtype and torch.isfinite(g).all()
        assert rel_err(g, r) <= LOWP_FACTOR * rel_err(b, r) + 1e-6, (name, rel_err(g, r), rel_err(b, r))


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_are_bit_identical_across_runs(device):
    """GQA (dK/dV summed over 2 query heads) and a batch-broadcast bias (dbias summed over 2 batches)."""
    B, Hq, Hkv, Lq, Lk = 2, 2, 1, 70, 90
    kw = _masks(dict(causal=True, attn_mask="full"), B, Hq, Lq, Lk, device)
    q, k, v, bias, do = make_inputs(B, Hq, Hkv, Lq, Lk, 32, torch.float32, device, bias_shape=(1, Hq, Lq, Lk))
    first = run(attention_triton, q, k, v, bias, do, **kw)
    second = run(attention_triton, q, k, v, bias, do, **kw)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_rows_give_zeros_and_zero_grads(device):
    B, H, Lq, Lk, D = 1, 2, 40, 50, 16
    am = torch.ones(B, H, Lq, Lk, dtype=torch.bool, device=device)
    am[:, :, 5:9] = False  # rows that see nothing
    kpm = torch.ones(B, Lk, dtype=torch.bool, device=device)
    q, k, v, bias, do = make_inputs(B, H, H, Lq, Lk, D, torch.float32, device, bias_shape=(B, H, Lq, Lk))
    out, dq, dk, dv, dbias = run(attention_triton, q, k, v, bias, do, attn_mask=am, key_padding_mask=kpm)
    for t in (out, dq, dk, dv, dbias):
        assert torch.isfinite(t).all()
    assert out[:, :, 5:9].abs().max() == 0 and dq[:, :, 5:9].abs().max() == 0
    assert dbias[:, :, 5:9].abs().max() == 0
    # Causal with Lq > Lk: the first Lq − Lk queries see no key (bottom-right alignment).
    q, k, v, _, do = make_inputs(1, 1, 1, 90, 20, 16, torch.float32, device)
    out, dq, _, _ = run(attention_triton, q, k, v, None, do, causal=True)
    assert out[:, :, :70].abs().max() == 0 and dq[:, :, :70].abs().max() == 0
    assert out[:, :, 70:].abs().min() > 0


@pytest.mark.parametrize("device", DEVICES)
def test_masked_tiles_are_skipped_not_computed(device):
    """Poison k and v with NaN where no query may look. A computed-then-masked tile would leak it, since
    p = 0 times NaN is NaN in p @ v; a skipped tile never loads it. Covers the attn_mask occupancy table (forward
    and backward) and the causal block range (forward). Poisoned spans are 128-aligned, so this holds for every
    BLOCK_M, BLOCK_N ≤ 128 the autotuner may pick on CUDA."""
    B, H, Lq, Lk, D = 1, 1, 40, 320, 16
    am = torch.rand(B, H, Lq, Lk, device=device) > 0.5
    am[..., 128:256] = False  # keys no query sees
    q, k, v, _, do = make_inputs(B, H, H, Lq, Lk, D, torch.float32, device)
    with torch.no_grad():
        k[:, :, 128:256], v[:, :, 128:256] = float("nan"), float("nan")
    clean = [t.detach().clone().nan_to_num(0.0).requires_grad_() for t in (q, k, v)]
    got = run(attention_triton, q, k, v, None, do, attn_mask=am)
    ref = run_ref64(*clean, None, do, attn_mask=am)
    check_fp32(got, ref)

    q, k, v, _, do = make_inputs(1, 1, 1, 256, 256, D, torch.float32, device)
    v_poisoned = v.detach().clone()
    v_poisoned[:, :, 128:] = float("nan")  # only queries 128.. may see these keys
    out = attention_triton(q.detach(), k.detach(), v_poisoned, causal=True)
    ref = attention_reference(q.detach().double(), k.detach().double(), v.detach().double(), causal=True)
    assert rel_err(out[:, :, :128], ref[:, :, :128]) < FP32_TOL


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor (in bytes) any torch op produces while active. Counts bytes because the
    interpreter copies arguments' storage as uint8."""

    def __init__(self):
        super().__init__()
        self.nbytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                self.nbytes = max(self.nbytes, t.numel() * t.element_size())
        return out


@ON_CPU
def test_memory_is_linear_in_length_without_attn_mask_or_bias():
    """Causal + window + key padding, forward and backward: nothing of size Lq × Lk is ever allocated."""
    L, D = 192, 16
    q, k, v, _, do = make_inputs(1, 1, 1, L, L, D, torch.float32, "cpu")
    kpm = torch.ones(1, L, dtype=torch.bool)
    kpm[:, -7:] = False
    with _LargestTensor() as largest:
        run(attention_triton, q, k, v, None, do, causal=True, window=(40, -1), key_padding_mask=kpm)
    assert largest.nbytes <= q.numel() * 4  # the size of q itself; one fp32 L × L would be L / D = 12× that


def test_tile_occupancy_of_a_local_2d_mask():
    """The table the kernels use to skip attn_mask tiles: a block-diagonal mask occupies only its diagonal."""
    L, blk = 128, 32
    idx = torch.arange(L)
    local = (idx[:, None] // blk) == (idx[None, :] // blk)  # (L, L) block-diagonal, 4 blocks of 32
    occ = attn_mask_tile_occupancy(local, L, L)
    assert occ.shape == (1, 1, L // 16, L // 16)
    assert occ.float().mean().item() == pytest.approx(1 / 4)
    # Broadcast dims stay size 1; partial tiles at the end count.
    occ = attn_mask_tile_occupancy(torch.tensor([True] + [False] * 20), 5, 21)
    assert occ.tolist() == [[[[1, 0]]]]


@pytest.mark.parametrize("device", DEVICES)
def test_public_entry_point_and_non_contiguous_inputs(device):
    B, H, L, D = 1, 2, 50, 32
    qkv = torch.randn(B, L, 3, H, D, device=device)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (B, H, L, D) views, not contiguous
    out = attnkit.attention(q, k, v, causal=True, backend="triton")
    ref = attention_reference(q.double(), k.double(), v.double(), causal=True)
    assert rel_err(out, ref) < FP32_TOL
    # Window bounds far beyond int32 mean "unbounded" in effect and must not overflow the kernel's index math.
    out = attnkit.attention(q, k, v, window=(10**12, 10**12), backend="triton")
    assert rel_err(out, attention_reference(q.double(), k.double(), v.double())) < FP32_TOL


@pytest.mark.parametrize("device", DEVICES)
def test_bad_input_raises_value_error_naming_the_argument(device):
    q = torch.randn(1, 4, 8, 16, device=device)
    k = torch.randn(1, 2, 8, 16, device=device)
    bad = [
        (dict(q=q.double(), k=k.double(), v=k.double()), "q"),
        (dict(q=q[0], k=k, v=k), "q"),
        (dict(q=q, k=torch.randn(1, 3, 8, 16, device=device), v=torch.randn(1, 3, 8, 16, device=device)), "k"),
        (dict(q=q, k=k.half(), v=k.half()), "k"),
        (dict(q=q, k=k, v=k, attn_mask=torch.ones(3, 8, dtype=torch.bool, device=device)), "attn_mask"),
        (dict(q=q, k=k, v=k, attn_mask=torch.ones(8, 8, device=device)), "attn_mask"),
        (dict(q=q, k=k, v=k, bias=torch.ones(2, 4, 8, 8, device=device)), "bias"),
        (dict(q=q, k=k, v=k, key_padding_mask=torch.ones(1, 9, dtype=torch.bool, device=device)), "key_padding_mask"),
        (dict(q=q, k=k, v=k, window=(2,)), "window"),
        (dict(q=torch.randn(1, 1, 4, 300, device=device), k=torch.randn(1, 1, 4, 300, device=device),
              v=torch.randn(1, 1, 4, 300, device=device)), "q"),
    ]
    for args, name in bad:
        with pytest.raises(ValueError, match=f"^{name}"):
            attention_triton(**args)


@pytest.mark.skipif(NO_COMPILED_CUDA, reason=CUDA_REASON)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("L, causal", [(1024, True), (4096, False), (8192, True)])
def test_cuda_long_sequences(L, causal, dtype):
    B, H, D = 1, 2, 64  # the float64 reference holds (B, H, L, L) logits: 1 GiB at 8k
    q, k, v, _, do = make_inputs(B, H, H, L, L, D, dtype, "cuda")
    got = run(attention_triton, q, k, v, None, do, causal=causal)
    ref = run_ref64(q, k, v, None, do, causal=causal)
    base = run(naive_lowp, q, k, v, None, do, causal=causal)
    for g, b, r in zip(got, base, ref):
        assert rel_err(g, r) <= LOWP_FACTOR * rel_err(b, r) + 1e-6
