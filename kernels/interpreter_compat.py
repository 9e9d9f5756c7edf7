"""Triton 3.6's interpreter under numpy ≥ 2.4: every scalar is a shape-(1,) array there, and its
`tensor.__index__` calls int() on it, which numpy 2.4 no longer allows for ndim > 0. So
`for start_n in range(lo, hi, BLOCK_N)` with tensor bounds (every kernel loop here) raises
TypeError('only 0-dimensional arrays can be converted to Python scalars'). Triton ≥ 3.7 squeezes first;
this applies the same fix to older interpreters. Compiled kernels are untouched (the GPU never runs this)."""
from __future__ import annotations


def patch_interpreter_index() -> None:
    from triton.runtime import interpreter

    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_attnkit_patched", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._attnkit_patched = True
    interpreter._patch_lang_tensor = patched
