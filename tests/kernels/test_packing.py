"""Packed sequences (`document_ids`): both backends against the float64 definition with every gradient, against
attending each document on its own, the kernel's tile skipping, the cu_seqlens helper and argument errors.

The Triton kernel runs through the interpreter on CPU (tests/conftest.py sets TRITON_INTERPRET=1)."""
from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.kernels.reference import attention_reference
from attnkit.ops import document_ids_from_cu_seqlens
from extras_common import BACKENDS, KERNEL, TOL, rel_err  # tests/kernels/extras_common.py


def packed_ids(lengths_per_row):
    return torch.stack([torch.repeat_interleave(torch.arange(len(ls)), torch.tensor(ls)) for ls in lengths_per_row])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_document_ids_match_float64_with_gradients(backend, dtype):
    g = torch.Generator().manual_seed(0)
    B, H, Hkv, L, D = 2, 2, 1, 100, 16
    doc = packed_ids([[30, 50, 20], [100]])
    kpm = torch.ones(B, L, dtype=torch.bool)
    kpm[1, 80:] = False
    base = [torch.randn(B, H, L, D, generator=g), torch.randn(B, Hkv, L, D, generator=g),
            torch.randn(B, Hkv, L, D, generator=g), torch.randn(1, H, 1, L, generator=g)]
    g_out = torch.randn(B, H, L, D, generator=g)
    kw = dict(causal=True, key_padding_mask=kpm, document_ids=doc)
    q, k, v, bias = (t.to(dtype).requires_grad_() for t in base)
    out = attnkit.attention(q, k, v, bias=bias, backend=backend, **kw)
    grads = torch.autograd.grad(out, (q, k, v, bias), g_out.to(dtype))
    ref = [t.to(dtype).double().requires_grad_() for t in base]
    r_out = attention_reference(*ref[:3], bias=ref[3], **kw)
    r_grads = torch.autograd.grad(r_out, ref, g_out.double())
    assert rel_err(out, r_out) <= TOL[dtype]
    for got, want in zip(grads, r_grads):
        assert rel_err(got, want) <= 2 * TOL[dtype]


@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_row_equals_each_document_alone(backend):
    """Causal attention over a packed row = causal attention over each document separately (what packing
    must mean), with the documents' keys invisible to each other."""
    g = torch.Generator().manual_seed(2)
    lengths = [17, 64, 49]
    q, k, v = (torch.randn(1, 2, sum(lengths), 16, generator=g) for _ in range(3))
    out = attnkit.attention(q, k, v, causal=True, document_ids=packed_ids([lengths]), backend=backend)
    start = 0
    for n in lengths:
        part = slice(start, start + n)
        alone = attnkit.attention(q[:, :, part], k[:, :, part], v[:, :, part], causal=True, backend=backend)
        torch.testing.assert_close(out[:, :, part], alone, atol=2e-5, rtol=2e-5)
        start += n


@KERNEL
def test_kernel_never_loads_tiles_that_share_no_document():
    """Values of document 1 are NaN. Query rows 0–63 (document 0) meet them only in tiles whose query and key
    blocks share no document; a NaN there would reach the output through P·V even with P = 0, so finite outputs
    prove those tiles were skipped, not merely masked."""
    L = 128
    doc = packed_ids([[64, 64]])
    q, k = torch.randn(1, 1, L, 16), torch.randn(1, 1, L, 16)
    v = torch.randn(1, 1, L, 16)
    v[:, :, 64:] = float("nan")
    out = attnkit.attention(q, k, v, document_ids=doc, backend="triton")
    assert torch.isfinite(out[:, :, :64]).all()
    want = attention_reference(q[:, :, :64], k[:, :, :64], v[:, :, :64])
    torch.testing.assert_close(out[:, :, :64], want, atol=2e-5, rtol=2e-5)


def test_cu_seqlens_become_document_ids():
    assert document_ids_from_cu_seqlens(torch.tensor([0, 3, 5])).tolist() == [[0, 0, 0, 1, 1]]
    assert document_ids_from_cu_seqlens(torch.tensor([0, 2]), 4).tolist() == [[0, 0, -1, -1]]  # padding: −1
    for bad in (torch.tensor([1, 3]), torch.tensor([0, 3, 3]), torch.tensor([0.0, 2.0]), torch.tensor([0])):
        with pytest.raises(ValueError, match="^cu_seqlens"):
            document_ids_from_cu_seqlens(bad)
    with pytest.raises(ValueError, match="^length"):
        document_ids_from_cu_seqlens(torch.tensor([0, 3]), 2)


@pytest.mark.parametrize("bad", [torch.zeros(1, 8), torch.zeros(1, 7, dtype=torch.long),
                                 torch.zeros(1, 8, dtype=torch.bool), "0"])
def test_bad_document_ids_raise_naming_them(bad):
    q = torch.randn(1, 1, 8, 16)
    with pytest.raises(ValueError, match="^document_ids"):
        attnkit.attention(q, q, q, document_ids=bad)
