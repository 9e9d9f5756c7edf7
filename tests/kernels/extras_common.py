"""Shared by the tests of attnkit.attention's newer arguments (softcap / LSE, packing, dropout): the backends
to run, the error bars against float64, and the relative error they are measured in."""
import pytest
import torch

from attnkit.kernels.runtime import INTERPRET

KERNEL = pytest.mark.skipif(not INTERPRET and not torch.cuda.is_available(),
                            reason="the kernel needs CUDA or Triton's interpreter")
BACKENDS = ["torch", pytest.param("triton", marks=KERNEL)]
TOL = {torch.float32: 2e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}  # max|err| / max|ref|; gradients: twice


def rel_err(x, ref):
    """max |x − ref| / max |ref| over the finite entries of ref (which must be finite exactly where x is)."""
    x, ref = x.detach().double(), ref.detach().double()
    finite = torch.isfinite(ref)
    assert torch.equal(finite, torch.isfinite(x)), "infinite entries differ"
    return ((x - ref)[finite].abs().max() / ref[finite].abs().max().clamp_min(1e-12)).item()
