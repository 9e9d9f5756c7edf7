"""The benchmarked ops: how to build one problem (a Case), its float64 reference, and its FLOP count.

Every op is one call of an attnkit public op; the other providers compute the same thing their own way.

    op       what it computes                                          learnable extras (get grads in bwd)
    causal   attention(causal=True)
    full     attention(causal=False)
    window   attention(causal=True, window=(W − 1, −1)): W = min(256, L/4) keys
    padding  attention(key_padding_mask): batch b keeps L − (b mod 4)·L/8 real keys, non-causal
    bias     attention(bias=(1, H, L, L)), non-causal                  bias
    rel      relative_attention(rel=(H, L, D), causal=True)            rel   (Music Transformer, R = L)
    t5       t5_attention(table=(H, 32), bidirectional, 128 max dist) table (T5 encoder)
    alibi    alibi_attention(causal=True), standard slopes (fixed)
    varlen   attention(causal=True, document_ids): each row packs documents of L/2, L/4, L/8, L/8 tokens
             (rotated per batch row), causal within each document (pre-training with packing)
    decode   attention(q of 1 token, a cache of L keys): one decoding step (split-KV on the kernel path)

FLOPs (the FlashAttention benchmark's formula, stated so the TFLOPS can be checked):
    forward = 4 · B · H · D · pairs, pairs = Lq·Lk (full, padding, bias, t5), Lq·Lk / 2 (causal, rel,
    alibi), the exact count of visible (i, j) pairs for the sliding window and varlen, L per row for decode.
    Backward = 2.5 × forward, forward + backward = 3.5 × forward. Extra work of the position terms (q·rel, bias adds) is not counted;
    padded keys are counted (the work a dense kernel would do).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from attnkit.kernels import reference as ref
from attnkit.kernels import torch_path

OPS = ("causal", "full", "window", "padding", "bias", "rel", "t5", "alibi", "varlen", "decode")
ATTENTION_OPS = ("causal", "full", "window", "padding", "bias", "varlen", "decode")  # attnkit.attention calls
POSITION_OPS = ("rel", "t5", "alibi")  # relative-position ops
MODES = ("fwd", "bwd", "fwd+bwd")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
T5_BUCKETS, T5_MAX_DISTANCE = 32, 128


def window_keys(L: int) -> int:
    """Keys a query sees in the `window` op (itself included)."""
    return max(1, min(256, L // 4))


def document_lengths(b: int, L: int) -> list[int]:
    """Documents packed into batch row b of the `varlen` op: L/2, L/4, L/8, L/8 (the last takes the rest),
    rotated by b so rows differ."""
    parts = [L // 2, L // 4, L // 8]
    parts.append(L - sum(parts))
    parts = [n for n in parts if n > 0]
    r = b % len(parts)
    return parts[r:] + parts[:r]


def document_ids(B: int, L: int, device=None) -> torch.Tensor:
    """(B, L) int32 document ids of the `varlen` op's packing."""
    rows = [torch.repeat_interleave(torch.arange(len(ls)), torch.tensor(ls)) for ls in
            (document_lengths(b, L) for b in range(B))]
    return torch.stack(rows).to(device=device, dtype=torch.int32)


def padding_lengths(B: int, L: int) -> list[int]:
    """Real keys per batch row in the `padding` op: L, 7L/8, 3L/4, 5L/8, L, ..."""
    return [L - (b % 4) * (L // 8) for b in range(B)]


@dataclass
class Case:
    """One benchmark problem. q, k, v: (B, H, L, D). `extras` holds the op's other arguments."""
    op: str
    B: int
    H: int
    L: int
    D: int
    dtype: torch.dtype
    device: torch.device
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    extras: dict = field(default_factory=dict)
    learnable: tuple[str, ...] = ()  # names in `extras` that get gradients in bwd modes
    scale: float = 1.0
    ref_cache: dict = field(default_factory=dict, repr=False)  # mode -> float64 (out, grads): shared by providers

    @property
    def causal(self) -> bool:
        return self.op in ("causal", "window", "rel", "alibi", "varlen")

    def grad_inputs(self) -> list[torch.Tensor]:
        """The tensors whose gradients a bwd mode computes: q, k, v, then the learnable extras."""
        return [self.q, self.k, self.v] + [self.extras[n] for n in self.learnable]

    def requires_grad_(self, flag: bool = True) -> "Case":
        for t in self.grad_inputs():
            t.requires_grad_(flag)
        return self


def build_case(op: str, B: int, H: int, L: int, D: int, dtype: torch.dtype, device, seed: int = 0) -> Case:
    """Random inputs for `op` (deterministic in seed); tensors are created on `device` in `dtype`."""
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape, std=1.0):  # drawn on the device: a (1, H, L, L) bias at L = 16k is too big to copy over
        return (torch.randn(*shape, generator=g, device=device, dtype=torch.float32) * std).to(dtype)

    q, k, v = randn(B, H, 1 if op == "decode" else L, D), randn(B, H, L, D), randn(B, H, L, D)
    extras, learnable = {}, ()
    if op == "window":
        extras["window"] = (window_keys(L) - 1, -1)
    elif op == "padding":
        lengths = torch.tensor(padding_lengths(B, L))
        extras["key_padding_mask"] = (torch.arange(L)[None, :] < lengths[:, None]).to(device)  # (B, L)
    elif op == "bias":
        extras["bias"], learnable = randn(1, H, L, L), ("bias",)
    elif op == "rel":
        extras["rel"], learnable = randn(H, L, D, std=0.5), ("rel",)
    elif op == "t5":
        extras["table"], learnable = randn(H, T5_BUCKETS), ("table",)
    elif op == "alibi":
        extras["slopes"] = ref.alibi_slopes(H).to(device)  # float32, fixed
    elif op == "varlen":
        extras["document_ids"] = document_ids(B, L, device)
    elif op not in ("causal", "full", "decode"):
        raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS)}")
    return Case(op, B, H, L, D, dtype, device, q, k, v, extras, learnable, 1.0 / math.sqrt(D))


def upcast(case: Case, dtype=torch.float64) -> Case:
    """A detached copy of the case in `dtype` (floating tensors only; masks and slopes' meaning kept)."""
    def cast(t):
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            return t.detach().to(dtype).requires_grad_(t.requires_grad)
        return t
    return Case(case.op, case.B, case.H, case.L, case.D, dtype, case.device, cast(case.q), cast(case.k),
                cast(case.v), {n: cast(t) for n, t in case.extras.items()}, case.learnable, case.scale)


def reference(case: Case) -> torch.Tensor:
    """The op's definition, computed chunked (never the full L×L at once) so float64 fits at long L."""
    e, kw = case.extras, dict(scale=case.scale)
    if case.op in ATTENTION_OPS:
        return torch_path.attention_chunked(case.q, case.k, case.v, causal=case.causal, window=e.get("window", (-1, -1)),
                                     key_padding_mask=e.get("key_padding_mask"), bias=e.get("bias"),
                                     document_ids=e.get("document_ids"), **kw)
    if case.op == "rel":
        return torch_path.position_attention_chunked(case.q, case.k, case.v, e["rel"], kind="relative", causal=True, **kw)
    if case.op == "t5":
        return torch_path.position_attention_chunked(case.q, case.k, case.v, e["table"], kind="t5", causal=False,
                                              t5_args=(True, T5_BUCKETS, T5_MAX_DISTANCE), **kw)
    return torch_path.position_attention_chunked(case.q, case.k, case.v, e["slopes"], kind="alibi", causal=True, **kw)


def visible_pairs(op: str, L: int) -> float:
    """Query-key pairs counted for the FLOP formula (see the module docstring)."""
    if op == "window":
        W = window_keys(L)
        return float(sum(min(i + 1, W) for i in range(L)))
    if op in ("causal", "rel", "alibi"):
        return L * L / 2
    if op == "varlen":  # per row; every row packs the same lengths
        return float(sum(n * (n + 1) // 2 for n in document_lengths(0, L)))
    if op == "decode":
        return float(L)
    return float(L * L)


def flops(op: str, mode: str, B: int, H: int, L: int, D: int) -> float:
    fwd = 4.0 * B * H * D * visible_pairs(op, L)
    return fwd * {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}[mode]
