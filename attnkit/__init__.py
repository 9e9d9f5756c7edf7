"""attnkit: fused Triton attention with masks, learnable biases and relative positions, and a model zoo on it.

Public ops (each picks the Triton kernel on CUDA and a torch path elsewhere; see `attnkit.ops`):
    attnkit.attention(q, k, v, *, causal, window, key_padding_mask, attn_mask, bias, scale, backend)
    attnkit.relative_attention(q, k, v, rel, *, causal, key_padding_mask, scale, backend)
"""
from attnkit.ops import attention, relative_attention, resolve_backend

__version__ = "0.1.0"

__all__ = ["attention", "relative_attention", "resolve_backend", "__version__"]
