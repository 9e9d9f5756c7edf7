"""transformers models on attnkit's ops: ``attn_implementation="attnkit"``.

    import attnkit.integrations.hf  # registers "attnkit" with transformers
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="attnkit")

Like FlashAttention's integration, the mask is never made dense: the registered mask function hands the
attention function the 2-D padding mask (or None), and causal / sliding window / scale become the op's own
arguments (`causal`, `window`, `key_padding_mask`, `scale`), so the kernel still skips invisible tiles.
A 4-D mask a caller passes in as-is (bool: `attn_mask`; float: added as `bias`) and a dense bias the model
computes itself (T5's `position_bias`) are used as given.

Not covered (each raises ValueError rather than computing something else): attention dropout > 0 in training,
attention sinks (`s_aux`), and `output_attentions`. Softcapping (Gemma 2) is `attnkit.attention`'s own `softcap` argument.
Mask patterns beyond causal, sliding window and padding (chunked attention, packed sequences found from
position_ids, image-token bidirectional spans) are not expressible here: as with FlashAttention, the model
must not rely on them.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import torch

import attnkit
import attnkit.kernels
from attnkit.ops import BACKENDS


@contextlib.contextmanager
def _checkout_root_hidden():
    """transformers >= 5.25 imports Hugging Face's `kernels` package when it loads. In an editable install,
    attnkit's kernels/ folder sits at the checkout's root, so from there (`python -m`, `python -c`, a script in
    the root: the working directory is on sys.path) Python would find it first. Hide the folder that holds
    attnkit's kernels/ while transformers loads (in a regular install that is site-packages/attnkit, never on
    sys.path: nothing is hidden); once Hugging Face's package is imported, sys.modules answers later imports."""
    root = Path(attnkit.kernels.__file__).resolve().parents[1]
    kept = sys.path[:]
    sys.path[:] = [p for p in kept if Path(p or os.getcwd()).resolve() != root]
    try:
        yield
    finally:
        sys.path[:] = kept


try:
    with _checkout_root_hidden():
        import transformers.modeling_utils  # noqa: F401  (loads Hugging Face's kernels package, if any)
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface
except ImportError as e:  # pragma: no cover - exercised by the tests' importorskip
    raise ImportError("attnkit.integrations.hf needs transformers: pip install 'attnkit[hf]'") from e

NAME = "attnkit"
_BACKEND = {"backend": "auto"}  # set by register(); "triton" forces the kernel (TRITON_INTERPRET=1 on CPU)


def attnkit_mask(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, mask_function=None, attention_mask=None,
                 **kwargs):
    """The mask transformers builds for "attnkit": the 2-D padding mask (B, kv_length), True = real token, or None.

    The attention function gets causal and sliding window from the module and its kwargs instead."""
    if attention_mask is None:
        return None
    attention_mask = attention_mask[:, -kv_length:]  # the cache keeps the last kv_length keys
    if attention_mask.shape[1] == kv_length and bool(attention_mask.all()):
        return None
    return attention_mask.to(torch.bool)


def attnkit_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                              sliding_window: int | None = None, softcap: float | None = None,
                              is_causal: bool | None = None, position_bias: torch.Tensor | None = None, **kwargs):
    """transformers' attention-function contract: query (B, Hq, Lq, D), key/value (B, Hkv, Lk, D) →
    ((B, Lq, Hq, D), None)."""
    if dropout and module.training:
        raise ValueError(f"dropout: attnkit attention has no attention dropout; got {dropout} in training "
                         "(set the config's attention_dropout to 0)")
    if kwargs.get("s_aux") is not None:
        raise ValueError("s_aux: attention sinks are not supported by attnkit")
    if kwargs.get("output_attentions"):
        raise ValueError("output_attentions: attnkit never builds the attention matrix; use attn_implementation='eager'")
    causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    key_padding_mask = attn_mask = bias = None
    if attention_mask is not None:
        if attention_mask.dim() == 2:
            key_padding_mask = attention_mask.to(torch.bool)
        elif attention_mask.dtype == torch.bool:
            attn_mask = attention_mask
        else:
            bias = attention_mask
    if position_bias is not None:
        bias = position_bias if bias is None else bias + position_bias
    # transformers' sliding window of W keys includes the query itself: W − 1 earlier keys are visible.
    window = (sliding_window - 1, -1) if sliding_window else (-1, -1)
    args = dict(causal=causal, window=window, key_padding_mask=key_padding_mask, attn_mask=attn_mask, bias=bias,
                scale=scaling, **_BACKEND)
    out = attnkit.attention(query, key, value, softcap=softcap, **args)
    return out.transpose(1, 2).contiguous(), None  # (B, Lq, Hq, D)


def register(backend: str = "auto") -> None:
    """Register "attnkit" with transformers (done on import with backend "auto"; calling it again is harmless).
    backend is `attnkit.attention`'s: "auto", "triton" or "torch"."""
    if backend not in BACKENDS:  # a bad name fails here, not inside a model
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    _BACKEND["backend"] = backend
    AttentionInterface.register(NAME, attnkit_attention_forward)
    AttentionMaskInterface.register(NAME, attnkit_mask)


register()

__all__ = ["NAME", "attnkit_attention_forward", "attnkit_mask", "register"]
