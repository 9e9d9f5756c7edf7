"""transformers models on attnkit's ops: ``attn_implementation="attnkit"``.

    import attnkit.integrations.hf  # registers "attnkit" with transformers
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="attnkit")

Like FlashAttention's integration, the mask is never made dense: the registered mask function hands the
attention function the 2-D padding mask (or None), and causal / sliding window / scale become the op's own
arguments (`causal`, `window`, `key_padding_mask`, `scale`), so the kernel still skips invisible tiles.
A 4-D mask a caller passes in as-is (bool: `attn_mask`; float: added as `bias`) and a dense bias the model
computes itself (T5's `position_bias`) are used as given.

Not covered (each raises ValueError rather than computing something else): attention dropout > 0 in training,
attention sinks (`s_aux`), and `output_attentions`. Softcapping (Gemma 2) is passed to `attnkit.attention` when it
accepts `softcap`; until then it runs a dense torch fallback (logits materialised, no kernel) and warns once.
Mask patterns beyond causal, sliding window and padding (chunked attention, packed sequences found from
position_ids, image-token bidirectional spans) are not expressible here: as with FlashAttention, the model
must not rely on them.
"""
from __future__ import annotations

import inspect
import warnings

import torch

import attnkit
from attnkit.ops import BACKENDS

try:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface
except ImportError as e:  # pragma: no cover - exercised by the tests' importorskip
    raise ImportError("attnkit.integrations.hf needs transformers: pip install 'attnkit[hf]'") from e

NAME = "attnkit"
_BACKEND = {"backend": "auto"}  # set by register(); "triton" forces the kernel (TRITON_INTERPRET=1 on CPU)
_ATTENTION_HAS_SOFTCAP = "softcap" in inspect.signature(attnkit.attention).parameters


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
    if softcap is not None and _ATTENTION_HAS_SOFTCAP:
        out = attnkit.attention(query, key, value, softcap=softcap, **args)
    elif softcap is not None:
        out = _softcap_fallback(query, key, value, softcap, **args)
    else:
        out = attnkit.attention(query, key, value, **args)
    return out.transpose(1, 2).contiguous(), None  # (B, Lq, Hq, D)


def _softcap_fallback(q, k, v, softcap, *, scale, bias, backend, **mask_args):
    """Dense torch attention with logits capped by softcap·tanh(logits / softcap) (Gemma 2)."""
    warnings.warn("attnkit.attention has no softcap argument yet: softcapped layers run a dense torch fallback",
                  stacklevel=3)
    from attnkit.kernels.reference import masked_softmax, visible_mask
    H, D = q.shape[1], q.shape[-1]
    scale = D ** -0.5 if scale is None else scale
    kf = k.float().repeat_interleave(H // k.shape[1], dim=1)  # (B, H, Lk, D)
    vf = v.float().repeat_interleave(H // v.shape[1], dim=1)
    s = softcap * torch.tanh((q.float() @ kf.transpose(-1, -2)) * scale / softcap)  # (B, H, Lq, Lk)
    if bias is not None:
        s = s + bias.float()
    mask = visible_mask(q.shape[2], k.shape[2], device=q.device, **mask_args)
    return (masked_softmax(s, mask) @ vf).to(q.dtype)


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
