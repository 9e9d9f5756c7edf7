"""Argument checks shared by every attention backend.

Bad input raises ``ValueError`` whose message starts with the argument's name, so a user
reading one line knows what to fix. The kernels and the torch path call the same checks, so a
call that is valid for one backend is valid for all.
"""
from __future__ import annotations

import torch

# float64 is accepted by the torch path only (tests compare against float64); the kernels reject it.
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


# Philox seeds live in [0, 2^30): they are int32 kernel arguments with room for a per-head offset.
DROPOUT_SEED_RANGE = 1 << 30


def dropout_seed_for(dropout_p: float, dropout_seed: int | None) -> int:
    """The seed an attention call uses: the caller's (mod the range), or one drawn from torch's global
    generator, so torch.manual_seed makes dropout reproducible; 0 without dropout."""
    if not dropout_p:
        return 0
    if dropout_seed is None:
        return int(torch.randint(0, DROPOUT_SEED_RANGE, (1,)).item())
    return int(dropout_seed) % DROPOUT_SEED_RANGE


def check_triton_inputs(q: torch.Tensor) -> None:
    """What the Triton attention kernels add to the contract: fp32/fp16/bf16 and D ≤ 256."""
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"q must be float32, float16 or bfloat16 for the Triton kernel, got {q.dtype} "
                         "(use backend='torch' for float64)")
    if q.shape[-1] > 256:
        raise ValueError(f"q head dim must be at most 256 for the Triton kernel, got {q.shape[-1]}")


def _broadcastable(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    if len(shape) > len(target):
        return False
    for s, t in zip(reversed(shape), reversed(target)):
        if s != 1 and s != t:
            return False
    return True


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """q: (B, Hq, Lq, D); k, v: (B, Hkv, Lk, D) with Hq % Hkv == 0, one dtype, one device."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D (B, H, L, D), got shape {tuple(t.shape)}")
        if t.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{name} must be float32, float16 or bfloat16 (float64: torch backend only), got {t.dtype}")
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise ValueError(f"{name} dtype {t.dtype} does not match q dtype {q.dtype}")
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device} but q is on {q.device}")
        if t.shape[0] != q.shape[0]:
            raise ValueError(f"{name} batch {t.shape[0]} does not match q batch {q.shape[0]}")
        if t.shape[-1] != q.shape[-1]:
            raise ValueError(f"{name} head dim {t.shape[-1]} does not match q head dim {q.shape[-1]}")
    if v.shape != k.shape:
        raise ValueError(f"v shape {tuple(v.shape)} does not match k shape {tuple(k.shape)}")
    if q.shape[1] % k.shape[1] != 0:
        raise ValueError(f"k has {k.shape[1]} heads, which does not divide q's {q.shape[1]} heads (GQA needs Hq % Hkv == 0)")
    if q.shape[-1] < 1 or q.shape[2] < 1 or k.shape[2] < 1:
        raise ValueError(f"q and k need non-empty L and D, got q {tuple(q.shape)} and k {tuple(k.shape)}")


def check_key_padding_mask(key_padding_mask, q, k) -> None:
    if key_padding_mask is None:
        return
    B, Lk = q.shape[0], k.shape[2]
    if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
        raise ValueError("key_padding_mask must be a bool tensor of shape (B, Lk), True marking real keys")
    if tuple(key_padding_mask.shape) != (B, Lk):
        raise ValueError(f"key_padding_mask must have shape (B, Lk) = {(B, Lk)}, got {tuple(key_padding_mask.shape)}")
    if key_padding_mask.device != q.device:
        raise ValueError(f"key_padding_mask is on {key_padding_mask.device} but q is on {q.device}")


def check_softcap(softcap) -> None:
    if softcap is not None and (isinstance(softcap, bool) or not isinstance(softcap, (int, float))
                                or not softcap > 0 or softcap == float("inf")):
        raise ValueError(f"softcap must be a finite number > 0 or None, got {softcap!r}")


def check_document_ids(document_ids, q, k) -> None:
    if document_ids is None:
        return
    B, Lk = q.shape[0], k.shape[2]
    if (not isinstance(document_ids, torch.Tensor) or document_ids.is_floating_point() or document_ids.is_complex()
            or document_ids.dtype == torch.bool):
        raise ValueError("document_ids must be an integer tensor of shape (B, Lk): the document of each position")
    if tuple(document_ids.shape) != (B, Lk):
        raise ValueError(f"document_ids must have shape (B, Lk) = {(B, Lk)}, got {tuple(document_ids.shape)}")
    if document_ids.device != q.device:
        raise ValueError(f"document_ids is on {document_ids.device} but q is on {q.device}")


def check_dropout(dropout_p, dropout_seed) -> None:
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)) or not 0 <= dropout_p < 1:
        raise ValueError(f"dropout_p must be a number in [0, 1), got {dropout_p!r}")
    if dropout_seed is not None and (isinstance(dropout_seed, bool) or not isinstance(dropout_seed, int)
                                     or dropout_seed < 0):
        raise ValueError(f"dropout_seed must be an int >= 0 or None, got {dropout_seed!r}")


def check_attention_args(q, k, v, *, window=(-1, -1), key_padding_mask=None, attn_mask=None, bias=None, scale=None,
                         softcap=None, document_ids=None, dropout_p=0.0, dropout_seed=None) -> None:
    """Validate the full `attnkit.attention` contract; raise ValueError naming the bad argument."""
    check_qkv(q, k, v)
    check_softcap(softcap)
    check_dropout(dropout_p, dropout_seed)
    check_document_ids(document_ids, q, k)
    B, Hq, Lq, _ = q.shape
    Lk = k.shape[2]
    full = (B, Hq, Lq, Lk)
    if (not isinstance(window, (tuple, list)) or len(window) != 2
            or not all(isinstance(w, int) and w >= -1 for w in window)):
        raise ValueError(f"window must be a pair of ints (left, right), each >= -1 (-1 = unbounded), got {window!r}")
    if scale is not None and not isinstance(scale, (int, float)):
        raise ValueError(f"scale must be a number or None, got {type(scale).__name__}")
    check_key_padding_mask(key_padding_mask, q, k)
    if attn_mask is not None:
        if not isinstance(attn_mask, torch.Tensor) or attn_mask.dtype != torch.bool:
            raise ValueError("attn_mask must be a bool tensor (True = may attend); pass float offsets as bias=")
        if not _broadcastable(tuple(attn_mask.shape), full):
            raise ValueError(f"attn_mask shape {tuple(attn_mask.shape)} is not broadcastable to (B, Hq, Lq, Lk) = {full}")
        if attn_mask.device != q.device:
            raise ValueError(f"attn_mask is on {attn_mask.device} but q is on {q.device}")
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or not bias.is_floating_point():
            raise ValueError("bias must be a floating-point tensor broadcastable to (B, Hq, Lq, Lk)")
        if not _broadcastable(tuple(bias.shape), full):
            raise ValueError(f"bias shape {tuple(bias.shape)} is not broadcastable to (B, Hq, Lq, Lk) = {full}")
        if bias.device != q.device:
            raise ValueError(f"bias is on {bias.device} but q is on {q.device}")
