"""attnkit: fused Triton attention with masks, learnable biases and relative positions, and a model zoo on it.

Public ops (each picks the Triton kernel on CUDA and a torch path elsewhere; see `attnkit.ops`):
    attnkit.attention(q, k, v, *, causal, window, key_padding_mask, attn_mask, bias, scale, backend)
    attnkit.relative_attention(q, k, v, rel, *, causal, key_padding_mask, scale, backend)
    attnkit.t5_attention(q, k, v, table, *, bidirectional, num_buckets, max_distance, causal, key_padding_mask, scale, backend)
    attnkit.alibi_attention(q, k, v, *, slopes, causal, key_padding_mask, scale, backend)
    attnkit.apply_rotary(x, *, offset, base, interleaved, rotary_dim, backend)

Each is a `torch.library` op underneath (`attnkit.library`: fake implementation + registered backward), so
`torch.compile(fullgraph=True)` compiles models that use them. transformers models: `attnkit.integrations.hf`.

A trained run from Python (imported on first use, so the ops alone stay light):
    run = attnkit.load_run("runs/demo"); run.generate("The ", max_new_tokens=50)   # or run.predict(x)
"""
from attnkit.ops import (alibi_attention, apply_rotary, attention, relative_attention, resolve_backend,
                         t5_attention)

__version__ = "0.1.0"

__all__ = ["attention", "relative_attention", "t5_attention", "alibi_attention", "apply_rotary", "resolve_backend",
           "load_run", "__version__"]


def __getattr__(name: str):
    if name == "load_run":
        from attnkit.engine.sample import load_run

        return load_run
    raise AttributeError(f"module 'attnkit' has no attribute {name!r}")
