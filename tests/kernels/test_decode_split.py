"""Split-KV decoding: with few queries and a long cache, attnkit.attention(backend="triton") without gradients
splits the keys across programs and merges them through their LSEs. It must equal the float64 definition
(value and LSE) for every supported argument, and the dispatcher must pick it only where it applies.

The thresholds are lowered so the interpreter (tests/conftest.py sets TRITON_INTERPRET=1) runs small shapes."""
from __future__ import annotations

import math

import pytest
import torch

import attnkit
import attnkit.kernels.attention as kernel
from attnkit.kernels.reference import attention_reference
from attnkit.kernels.runtime import INTERPRET

pytestmark = pytest.mark.skipif(not INTERPRET and not torch.cuda.is_available(),
                                reason="the kernel needs CUDA or the interpreter")


@pytest.fixture
def small_splits(monkeypatch):
    monkeypatch.setattr(kernel, "SPLIT_KV_MIN_LK", 128)
    monkeypatch.setattr(kernel, "SPLIT_KV_CHUNK", 64)
    calls = []
    real = kernel.attention_decode_split
    monkeypatch.setattr(kernel, "attention_decode_split", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    return calls


@pytest.mark.parametrize("Lq, causal, Hq, Hkv, Lk, softcap", [(1, True, 4, 2, 300, None), (5, True, 4, 1, 333, 5.0),
                                                              (3, False, 2, 2, 290, None)])
def test_split_kv_decode_matches_float64(small_splits, Lq, causal, Hq, Hkv, Lk, softcap):
    g = torch.Generator().manual_seed(Lq)
    q, k, v = (torch.randn(1, h, L, 16, generator=g) for h, L in ((Hq, Lq), (Hkv, Lk), (Hkv, Lk)))
    with torch.no_grad():
        out, lse = attnkit.attention(q, k, v, causal=causal, softcap=softcap, return_lse=True, backend="triton")
    assert small_splits, "the dispatcher did not take the split-KV path"
    want, want_lse = attention_reference(q.double(), k.double(), v.double(), causal=causal, softcap=softcap,
                                         return_lse=True)
    torch.testing.assert_close(out, want.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, want_lse.float(), atol=1e-5, rtol=1e-5)


def test_split_kv_is_not_used_where_it_does_not_apply(small_splits):
    q, k = torch.randn(1, 2, 1, 16), torch.randn(1, 2, 300, 16)
    kpm = torch.ones(1, 300, dtype=torch.bool)
    with torch.no_grad():
        attnkit.attention(q, k, k, key_padding_mask=kpm, backend="triton")  # a per-key mask: plain forward
        attnkit.attention(torch.randn(1, 2, 40, 16), k, k, backend="triton")  # too many queries
    attnkit.attention(q.requires_grad_(), k, k, backend="triton")  # a gradient is needed
    assert not small_splits



def test_split_kv_only_when_the_plain_launch_leaves_sms_idle(small_splits, monkeypatch):
    """One program per (b, query head) that already fills every SM: the plain forward, which needs no merge."""
    q, k = torch.randn(1, 4, 1, 16), torch.randn(1, 4, 300, 16)
    monkeypatch.setattr(kernel, "_sm_count", lambda device: 4)
    with torch.no_grad():
        attnkit.attention(q, k, k, backend="triton")  # 4 programs on 4 SMs
        assert not small_splits
        attnkit.attention(q[:, :3], k[:, :3], k[:, :3], backend="triton")  # 3 programs: one SM idle
        assert small_splits


def _listed_configs(head_dim=None):
    """The forward's candidates as Triton configs: those listed for head_dim, or every one."""
    import triton
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            for (bm, bn, w, s), dims in kernel.FWD_SHAPES.items() if head_dim is None or head_dim in dims]


def _shape(config):
    return config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"], config.num_warps, config.num_stages


def test_decoding_at_d128_autotunes_without_the_config_that_raced(monkeypatch):
    """On an H200 (Triton 3.6, 2026-12-04) the 3-stage (64, 32, 4, 3) crashed every bf16 split-KV decode at 64k
    keys, D = 128; its 2-stage twin ran them. A decoding-shaped launch autotunes over the whole D = 128 list."""
    monkeypatch.setattr(kernel, "INTERPRET", False)  # the interpreter keeps its one config
    monkeypatch.delenv("ATTNKIT_AUTOTUNE", raising=False)
    prune = kernel._prune_for_head_dim(kernel.FWD_SHAPES, forward=True)["early_config_prune"]
    q = torch.empty(1, 8, 1, 128, dtype=torch.bfloat16)
    kept = [_shape(c) for c in prune(_listed_configs(), {"Q": q, "LQ_BUCKET": 1}, HEAD_DIM=128)]
    assert kept == [(128, 64, 8, 3), (64, 64, 4, 4), (64, 32, 4, 2)]


@pytest.mark.parametrize("dtype, want", [(torch.bfloat16, (128, 64, 8, 3)), (torch.float16, (128, 64, 8, 3)),
                                         (torch.float32, (64, 32, 4, 2))])
def test_one_config_per_launch_fits_shared_memory(monkeypatch, dtype, want):
    """ATTNKIT_AUTOTUNE=0 keeps one forward config: the first, unless its shared memory exceeds an H100's. At
    D = 128 in float32 with a bias Triton asked 295,424 bytes for (128, 64, 8, 3) (limit 232,448)."""
    monkeypatch.setattr(kernel, "INTERPRET", False)
    monkeypatch.setenv("ATTNKIT_AUTOTUNE", "0")
    prune = kernel._prune_for_head_dim(kernel.FWD_SHAPES, forward=True)["early_config_prune"]
    q = torch.empty(2, 2, 1, 128, dtype=dtype)
    kept = prune(_listed_configs(128), {"Q": q, "LQ_BUCKET": 1}, HEAD_DIM=128)
    assert [_shape(c) for c in kept] == [want]
    first = _listed_configs(128)[0]
    assert kernel._fwd_shared_bytes(first, 128, 4) > kernel.SHARED_MEMORY_BYTES >= kernel._fwd_shared_bytes(first, 128, 2)


@pytest.mark.parametrize("has_tail", [False, True])
def test_the_combine_kernel_weighs_empty_parts_zero_and_leaves_empty_rows_zero(has_tail):
    """The merge kernel against its definition, with base-2 LSEs as the forward stores them: +inf marks a part
    that saw no key (weight 0); a row no part saw gives output 0 and LSE −inf, never NaN."""
    S, rows, D = 3, 4, 24  # D not a power of two: the padded lanes stay unwritten
    g = torch.Generator().manual_seed(0)
    o, lse = torch.randn(S, rows, D, generator=g), torch.randn(S, rows, generator=g) * 3
    o_tail, lse_tail = torch.randn(rows, D, generator=g), torch.randn(rows, generator=g)
    lse[1, 0] = float("inf")                             # row 0: split 1 empty
    lse[:, 3] = float("inf")                             # row 3: every split empty ...
    lse_tail[3] = float("inf")                           # ... and the tail
    out, lse_out = torch.full((rows, D), 7.0), torch.empty(rows)
    kernel._split_kv_combine[(rows,)](o, lse, o_tail, lse_tail, out, lse_out, rows, S, HEAD_DIM=32,
                                      HEAD_DIM_REAL=D, HAS_TAIL=has_tail, num_warps=1)
    parts_o = torch.cat([o, o_tail[None]]) if has_tail else o                        # (parts, rows, D)
    parts_lse = (torch.cat([lse, lse_tail[None]]) if has_tail else lse).double()      # (parts, rows)
    nat = torch.where(parts_lse.isinf(), float("-inf"), parts_lse / math.log2(math.e))
    want_lse = torch.logsumexp(nat, 0)
    w = torch.exp(nat - torch.where(want_lse.isinf(), 0.0, want_lse))                 # 0 for empty parts
    want = (w[..., None] * parts_o.double()).sum(0)
    torch.testing.assert_close(out, want.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse_out, want_lse.float(), atol=1e-5, rtol=1e-5)
    assert lse_out[3] == float("-inf") and bool((out[3] == 0).all())
