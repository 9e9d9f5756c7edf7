"""Every argument check of attnkit's ops, in one module: attention, relative / T5 / ALiBi, rotary.

Bad input raises ``ValueError`` whose message starts with the argument's name, so a user
reading one line knows what to fix. `attnkit.ops` runs these once per call, before choosing a backend, so a
call that is valid for one backend is valid for all; `check_triton_inputs` adds what only the kernels need.
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


def check_scale(scale) -> None:
    if scale is not None and not isinstance(scale, (int, float)):
        raise ValueError(f"scale must be a number or None, got {type(scale).__name__}")


def check_attention_args(q, k, v, *, window=(-1, -1), key_padding_mask=None, attn_mask=None, bias=None, scale=None,
                         softcap=None, document_ids=None, dropout_p=0.0, dropout_seed=None, return_lse=False) -> None:
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
    check_scale(scale)
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
    if not isinstance(return_lse, bool):
        raise ValueError(f"return_lse must be a bool, got {return_lse!r}")


# --------------------------------------------------------------------------------------------
# relative / T5 / ALiBi attention, rotary
# --------------------------------------------------------------------------------------------

def check_position_args(q, k, v, key_padding_mask, scale) -> None:
    """What relative, T5 and ALiBi attention share with `attention`: q, k, v, the padding mask and the scale."""
    check_qkv(q, k, v)
    check_key_padding_mask(key_padding_mask, q, k)
    check_scale(scale)


def check_rel(q: torch.Tensor, rel: torch.Tensor, causal: bool) -> None:
    if not isinstance(rel, torch.Tensor) or rel.dim() != 3:
        raise ValueError(f"rel must be a 3-D tensor (Hr, R, D), got {getattr(rel, 'shape', type(rel).__name__)}")
    H, D = q.shape[1], q.shape[3]
    if rel.shape[0] not in (1, H):
        raise ValueError(f"rel has {rel.shape[0]} heads; it must have 1 (shared) or H = {H}")
    if rel.shape[2] != D:
        raise ValueError(f"rel head dim {rel.shape[2]} does not match q head dim {D}")
    if rel.shape[1] < 1:
        raise ValueError("rel needs at least one embedding (R >= 1)")
    if rel.dtype != q.dtype or rel.device != q.device:
        raise ValueError(f"rel must match q's dtype and device ({q.dtype}, {q.device}), "
                         f"got ({rel.dtype}, {rel.device})")
    if not causal and rel.shape[1] % 2 == 0:
        raise ValueError(f"rel needs an odd R = 2P + 1 when causal=False, got R = {rel.shape[1]}")


def check_t5(q: torch.Tensor, table: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int) -> None:
    H = q.shape[1]
    if not isinstance(num_buckets, int) or num_buckets < (4 if bidirectional else 2):
        raise ValueError(f"num_buckets must be an int >= {4 if bidirectional else 2} "
                         f"(bidirectional={bidirectional}), got {num_buckets!r}")
    max_exact = (num_buckets // 2 if bidirectional else num_buckets) // 2
    if not isinstance(max_distance, int) or max_distance <= max_exact:
        raise ValueError(f"max_distance must be an int > {max_exact} (the exact-distance buckets), "
                         f"got {max_distance!r}")
    if not isinstance(table, torch.Tensor) or tuple(table.shape) != (H, num_buckets):
        raise ValueError(f"table must be a tensor of shape (H, num_buckets) = {(H, num_buckets)}, "
                         f"got {tuple(getattr(table, 'shape', ()))}")
    if not table.is_floating_point() or table.device != q.device:
        raise ValueError(f"table must be a floating-point tensor on {q.device}")


def check_slopes(q: torch.Tensor, slopes) -> None:
    H = q.shape[1]
    if not isinstance(slopes, torch.Tensor) or tuple(slopes.shape) != (H,) or not slopes.is_floating_point():
        raise ValueError(f"slopes must be a float tensor of shape (H,) = ({H},), "
                         f"got {tuple(getattr(slopes, 'shape', ()))}")
    if slopes.device != q.device:
        raise ValueError(f"slopes is on {slopes.device} but q is on {q.device}")


def check_rotary_args(x, offset, base, rotary_dim) -> int:
    """Check `apply_rotary`'s arguments; returns the rotary dim (None → D)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a 4-D float tensor (B, H, L, D), got {tuple(getattr(x, 'shape', ()))}")
    D = x.shape[-1]
    rotary_dim = D if rotary_dim is None else rotary_dim
    if not isinstance(rotary_dim, int) or rotary_dim < 2 or rotary_dim % 2 or rotary_dim > D:
        raise ValueError(f"rotary_dim must be an even int in [2, D = {D}], got {rotary_dim!r}")
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an int >= 0, got {offset!r}")
    if not isinstance(base, (int, float)) or base <= 1:
        raise ValueError(f"base must be a number > 1, got {base!r}")
    return rotary_dim
