"""Split-KV decoding: with few queries and a long cache, attnkit.attention(backend="triton") without gradients
splits the keys across programs and merges them through their LSEs. It must equal the float64 definition
(value and LSE) for every supported argument, and the dispatcher must pick it only where it applies.

The thresholds are lowered so the interpreter (tests/conftest.py sets TRITON_INTERPRET=1) runs small shapes."""
from __future__ import annotations

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


@pytest.mark.parametrize("head_dim, lq_bucket, autotuned", [(128, 1, False), (128, 16, False), (256, 1, False),
                                                             (128, 32, True), (64, 1, True)])
def test_decoding_at_a_large_head_dim_runs_the_first_forward_config(monkeypatch, head_dim, lq_bucket, autotuned):
    """On a GPU the forward autotunes over every config listed for its head dim, except for decoding-shaped
    launches from D = 128 up: one of the other candidates crashed there on an H200 (Triton 3.6, 2026-12-04)."""
    import triton
    monkeypatch.setattr(kernel, "INTERPRET", False)  # the interpreter keeps its one config
    monkeypatch.delenv("ATTNKIT_AUTOTUNE", raising=False)
    configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
               for bm, bn, w, s in kernel.FWD_SHAPES]
    prune = kernel._prune_for_head_dim(kernel.FWD_SHAPES, pin_decode=True)["early_config_prune"]
    listed = [c for c in configs
              if head_dim in kernel.FWD_SHAPES[(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages)]]
    assert len(listed) > 1
    kept = prune(configs, {"LQ_BUCKET": lq_bucket}, HEAD_DIM=head_dim)
    assert kept == (listed if autotuned else listed[:1])
