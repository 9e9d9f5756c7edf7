"""attnkit.kernels: the Triton kernels, the float64 definitions they are held to, and the torch backend.

    attention.py / relative.py / rotary.py   Triton kernels and their launchers (no autograd: `attnkit.ops`
                                             registers the only autograd path)
    reference.py                             float64 definitions of every op (the tests' truth)
    torch_path.py                            the torch backend (SDPA / chunked), same results at O(chunk · L)
    validate.py                              every argument check, once
    runtime.py                               the interpreter switch and shared constants, read once

Importing this package does not import triton; the kernel modules are loaded on first use,
so the torch path works on machines where triton cannot initialise.
"""
from attnkit.kernels.reference import attention_reference, visible_mask
from attnkit.kernels.torch_path import attention_chunked
from attnkit.kernels.validate import check_attention_args

__all__ = ["attention_reference", "attention_chunked", "visible_mask", "check_attention_args"]
