"""The one place attnkit reads how its kernels run: the interpreter switch, and the constants every backend shares.

INTERPRET: Triton runs kernels through its CPU interpreter when TRITON_INTERPRET=1 is set before triton is first
imported (triton reads it once, at import), so it is read here once too; every module asks this one.
LOG2E: the kernels work in base 2 (exp2 / log2 are the GPU's native instructions); logits are scaled by log2(e).

`prepare_interpreter` fixes Triton 3.6's interpreter under numpy ≥ 2.4: every scalar is a shape-(1,) array there,
and its `tensor.__index__` calls int() on it, which numpy 2.4 no longer allows for ndim > 0. So
`for start_n in range(lo, hi, BLOCK_N)` with tensor bounds (every kernel loop here) raises
TypeError('only 0-dimensional arrays can be converted to Python scalars'). Triton ≥ 3.7 squeezes first; this applies
the same fix to older interpreters. Compiled kernels are untouched (the GPU never runs this).

`input_precision` is how every kernel runs an fp32 dot: exact IEEE unless the user opted into TF32 for matmuls.

No triton at import: the torch path imports this on machines where triton cannot initialise.
"""
from __future__ import annotations

import os

import torch

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
LOG2E = 1.4426950408889634  # log2(e)


def prepare_interpreter() -> None:
    """Patch Triton's interpreter (a no-op when compiling, or when already patched). Kernel modules call it once."""
    if not INTERPRET:
        return
    from triton.runtime import interpreter

    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_attnkit_patched", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._attnkit_patched = True
    interpreter._patch_lang_tensor = patched


def input_precision(dtype) -> str:
    """fp32 inputs get exact IEEE dots unless the user opted into TF32 for matmuls (as torch.matmul does);
    for fp16/bf16 operands the setting does not apply and the default ("tf32") is passed."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"


def lse_natural(lse: torch.Tensor) -> torch.Tensor:
    """The kernels' LSE (base 2, +inf on rows with no visible key) in natural-log units, −inf on those rows
    (torch.logsumexp's value there). Differentiable; its gradient is what `attention_bwd(dlse=...)` takes."""
    return torch.where(torch.isinf(lse), float("-inf"), lse * (1.0 / LOG2E))
