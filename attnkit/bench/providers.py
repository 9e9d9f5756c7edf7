"""Providers: the implementations being compared. Each says whether it can run at all here
(`unavailable`) and whether it computes a given op and mode (`unsupported`); both return a reason or None.

A provider's `setup(case)` does the once-per-problem work a real model would hoist out of its forward
(bool masks, FlexAttention block masks, index tables) and returns `forward()`, the call that is timed:
it reads the case's tensors and returns the (B, H, L, D) output. Gradients are taken by the runner.

Register a new provider with `register(Provider(...))`; tests inject a deliberately wrong one this way.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from attnkit.bench.cases import ATTENTION_OPS, OPS, T5_BUCKETS, T5_MAX_DISTANCE, Case
from attnkit.kernels import reference as ref
from attnkit.kernels import runtime

Forward = Callable[[], torch.Tensor]


@dataclass
class Provider:
    name: str
    description: str
    ops: tuple[str, ...]  # the ops it implements
    setup: Callable[[Case], Forward]
    available: Callable[[torch.device], Optional[str]] = lambda device: None  # reason it cannot run, or None
    supports: Callable[[str, str, torch.device, torch.dtype], Optional[str]] = lambda op, mode, dev, dt: None
    interpreted: Callable[[torch.device], bool] = lambda device: False  # timings are not kernel speed
    notes: dict = field(default_factory=dict)

    def unsupported(self, op: str, mode: str, device: torch.device, dtype: torch.dtype) -> Optional[str]:
        if op not in self.ops:
            return f"{self.name} does not implement {op}"
        return self.supports(op, mode, device, dtype)


PROVIDERS: dict[str, Provider] = {}


def register(provider: Provider) -> Provider:
    PROVIDERS[provider.name] = provider
    return provider


# --------------------------------------------------------------------------------------------
# attnkit: Triton kernels and the torch path
# --------------------------------------------------------------------------------------------

def _attnkit_call(case: Case, backend: str) -> torch.Tensor:
    import attnkit.ops as ops
    c, e = case, case.extras
    if c.op in ATTENTION_OPS:
        return ops.attention(c.q, c.k, c.v, causal=c.causal, window=e.get("window", (-1, -1)),
                             key_padding_mask=e.get("key_padding_mask"), bias=e.get("bias"),
                             document_ids=e.get("document_ids"), backend=backend)
    if c.op == "rel":
        return ops.relative_attention(c.q, c.k, c.v, e["rel"], causal=True, backend=backend)
    if c.op == "t5":
        return ops.t5_attention(c.q, c.k, c.v, e["table"], num_buckets=T5_BUCKETS, max_distance=T5_MAX_DISTANCE,
                                causal=False, backend=backend)
    return ops.alibi_attention(c.q, c.k, c.v, slopes=e["slopes"], causal=True, backend=backend)


# op -> (module under attnkit.kernels, launcher it must define, public op in attnkit.ops)
_TRITON_ENTRY = {op: ("attention", "attention_fwd", "attention") for op in ATTENTION_OPS}
_TRITON_ENTRY.update(rel=("relative", "position_attention_fwd", "relative_attention"),
                     t5=("relative", "position_attention_fwd", "t5_attention"),
                     alibi=("relative", "position_attention_fwd", "alibi_attention"))


def _interpreting() -> bool:
    return runtime.INTERPRET


def _triton_available(device: torch.device) -> Optional[str]:
    if device.type == "cpu" and not _interpreting():
        return "on CPU the kernels run only in Triton's interpreter: set TRITON_INTERPRET=1 before starting"
    try:
        importlib.import_module("triton")
    except Exception as e:  # noqa: BLE001 - any import failure means "not here", with its reason
        return f"triton does not import: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None


@functools.lru_cache(maxsize=None)
def _kernel_missing(module: str, fn: str, public: str) -> Optional[str]:
    import attnkit.ops as ops
    if not hasattr(ops, public):
        return f"attnkit.{public} does not exist yet"
    try:
        mod = importlib.import_module(f"attnkit.kernels.{module}")
    except ModuleNotFoundError:
        return f"kernels/{module}.py is not written yet"
    except Exception as e:  # noqa: BLE001
        return f"kernels/{module}.py fails to import: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None if hasattr(mod, fn) else f"kernels/{module}.py has no {fn} yet"


def _triton_supports(op, mode, device, dtype) -> Optional[str]:
    if dtype == torch.float64:
        return "the kernels take float32/16 only"
    return _kernel_missing(*_TRITON_ENTRY[op])


def _public_missing(op: str) -> Optional[str]:
    import attnkit.ops as ops
    public = _TRITON_ENTRY[op][2]
    return None if hasattr(ops, public) else f"attnkit.{public} does not exist yet"


register(Provider(
    "attnkit-triton", "attnkit's fused Triton kernels (backend='triton')", OPS,
    setup=lambda case: (lambda: _attnkit_call(case, "triton")),
    available=_triton_available, supports=_triton_supports,
    interpreted=lambda device: device.type == "cpu" or _interpreting()))

def _plain_forward_setup(case: Case) -> Forward:
    """The decode op through the plain forward kernel (one program per (b, h) for Lq = 1), skipping the
    dispatcher's split-KV path: what split-KV is measured against."""
    from attnkit import library
    return lambda: library.attention_fwd_op(case.q, case.k, case.v, None, None, None, False, -1, -1, None,
                                            "triton")[0]


register(Provider(
    "attnkit-triton-plain", "attnkit's forward kernel without split-KV (decode only)", ("decode",),
    setup=_plain_forward_setup, available=_triton_available,
    supports=lambda op, mode, device, dtype: "forward only" if mode != "fwd" else _triton_supports(op, mode, device,
                                                                                                     dtype),
    interpreted=lambda device: device.type == "cpu" or _interpreting()))

register(Provider(
    "attnkit-torch", "attnkit's pure-torch path (backend='torch': SDPA where exact, else chunked)", OPS,
    setup=lambda case: (lambda: _attnkit_call(case, "torch")),
    supports=lambda op, mode, device, dtype: None if op in ATTENTION_OPS else _public_missing(op)))


# --------------------------------------------------------------------------------------------
# torch SDPA: default dispatch and each backend forced
# --------------------------------------------------------------------------------------------

def _sdpa_mask(case: Case):
    """(is_causal, attn_mask) expressing an attention op for F.scaled_dot_product_attention."""
    e = case.extras
    if case.op == "causal":
        return True, None
    if case.op == "full":
        return False, None
    if case.op == "window":
        return False, ref.visible_mask(case.L, case.L, causal=True, window=e["window"], device=case.device)
    if case.op == "padding":
        return False, e["key_padding_mask"][:, None, None, :]  # (B, 1, 1, L)
    if case.op == "varlen":  # what SDPA users do without a varlen kernel: a dense (B, 1, L, L) document mask
        return False, ref.visible_mask(case.L, case.L, causal=True, document_ids=e["document_ids"], device=case.device)
    # full, decode (one query sees the whole cache); bias: the bias tensor itself is the float attn_mask, read at
    # call time
    return False, None


def _sdpa_setup(backend_name: Optional[str]):
    def setup(case: Case) -> Forward:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        is_causal, mask = _sdpa_mask(case)

        def forward():
            attn_mask = case.extras["bias"] if case.op == "bias" else mask
            if backend_name is None:
                return F.scaled_dot_product_attention(case.q, case.k, case.v, attn_mask=attn_mask, is_causal=is_causal)
            with sdpa_kernel(getattr(SDPBackend, backend_name)):
                return F.scaled_dot_product_attention(case.q, case.k, case.v, attn_mask=attn_mask, is_causal=is_causal)
        return forward
    return setup


register(Provider("sdpa", "torch SDPA, default dispatch", ATTENTION_OPS, setup=_sdpa_setup(None)))
for _name, _backend in (("math", "MATH"), ("flash", "FLASH_ATTENTION"), ("efficient", "EFFICIENT_ATTENTION"),
                        ("cudnn", "CUDNN_ATTENTION")):
    register(Provider(f"sdpa-{_name}", f"torch SDPA forced to SDPBackend.{_backend}", ATTENTION_OPS,
                      setup=_sdpa_setup(_backend)))


# --------------------------------------------------------------------------------------------
# Materialised bias (x-transformers style): build the (L, L) position bias, add it through SDPA
# --------------------------------------------------------------------------------------------

def _bias_sdpa_setup(case: Case) -> Forward:
    L, dev = case.L, case.device
    i = torch.arange(L, device=dev)[:, None]
    j = torch.arange(L, device=dev)[None, :]
    causal_fill = torch.zeros(L, L, device=dev, dtype=case.dtype).masked_fill(j > i, float("-inf"))  # (L, L)
    e = case.extras
    if case.op == "t5":
        bucket = ref.t5_bucket(j - i, bidirectional=True, num_buckets=T5_BUCKETS, max_distance=T5_MAX_DISTANCE)

        def forward():
            bias = e["table"][:, bucket].unsqueeze(0)  # (1, H, L, L)
            return F.scaled_dot_product_attention(case.q, case.k, case.v, attn_mask=bias)
    elif case.op == "alibi":
        dist = (i - j).abs().to(case.dtype)  # (L, L)

        def forward():
            bias = -e["slopes"].to(case.dtype)[:, None, None] * dist + causal_fill  # (H, L, L)
            return F.scaled_dot_product_attention(case.q, case.k, case.v, attn_mask=bias.unsqueeze(0))
    else:  # rel: Shaw's form, q·rel gathered into a (B, H, L, L) term
        idx = (i - j).clamp(min=0)  # (L, L), R = L

        def forward():
            qe = torch.matmul(case.q, e["rel"].transpose(-1, -2))  # (B, H, L, R)
            srel = qe.gather(-1, idx.expand(*qe.shape[:2], L, L))  # (B, H, L, L)
            return F.scaled_dot_product_attention(case.q, case.k, case.v,
                                                  attn_mask=srel * case.scale + causal_fill)
    return forward


register(Provider("bias+sdpa", "materialised (L, L) position bias added through SDPA (x-transformers style)",
                  ("rel", "t5", "alibi"), setup=_bias_sdpa_setup))


# --------------------------------------------------------------------------------------------
# Naive reference (full L×L) and the Music Transformer skewing reference
# --------------------------------------------------------------------------------------------

def _naive_setup(case: Case) -> Forward:
    c, e = case, case.extras
    if c.op in ATTENTION_OPS:
        return lambda: ref.attention_reference(c.q, c.k, c.v, causal=c.causal, window=e.get("window", (-1, -1)),
                                               key_padding_mask=e.get("key_padding_mask"), bias=e.get("bias"),
                                               document_ids=e.get("document_ids"))
    if c.op == "rel":
        return lambda: ref.relative_attention_reference(c.q, c.k, c.v, e["rel"], causal=True)
    if c.op == "t5":
        return lambda: ref.t5_attention_reference(c.q, c.k, c.v, e["table"], num_buckets=T5_BUCKETS,
                                                  max_distance=T5_MAX_DISTANCE, causal=False)
    return lambda: ref.alibi_attention_reference(c.q, c.k, c.v, e["slopes"], causal=True)


def _has_ref(name: str) -> Optional[str]:
    return None if hasattr(ref, name) else f"kernels/reference.py has no {name} yet"


_NAIVE_NEEDS = {"t5": "t5_attention_reference", "alibi": "alibi_attention_reference"}
register(Provider("naive", "reference definition materialising the full (B, H, L, L) logits", OPS,
                  setup=_naive_setup,
                  supports=lambda op, mode, device, dtype: _has_ref(_NAIVE_NEEDS[op]) if op in _NAIVE_NEEDS else None))

register(Provider("skewing", "Music Transformer skewing (pad, reshape, slice; Huang et al. 2018)", ("rel",),
                  setup=lambda c: (lambda: ref.relative_attention_skewed(c.q, c.k, c.v, c.extras["rel"], causal=True)),
                  supports=lambda op, mode, device, dtype: _has_ref("relative_attention_skewed")))


# --------------------------------------------------------------------------------------------
# FlexAttention, torch.compile'd
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _flex_fns():
    """Compiled FlexAttention wrappers, one per kind of score modification (compiled once per process)."""
    import torch._dynamo
    from torch.nn.attention.flex_attention import flex_attention
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)

    def plain(q, k, v, block_mask):
        return flex_attention(q, k, v, block_mask=block_mask)

    def bias(q, k, v, b, block_mask):
        return flex_attention(q, k, v, score_mod=lambda s, bi, h, qi, ki: s + b[0, h, qi, ki], block_mask=block_mask)

    def rel(q, k, v, r, scale, block_mask):
        qe = torch.matmul(q, r.transpose(-1, -2))  # (B, H, L, R): the O(L·R) relative term

        def score_mod(s, bi, h, qi, ki):
            return s + qe[bi, h, qi, (qi - ki).clamp(min=0)] * scale
        return flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask)

    def t5(q, k, v, table, bucket_by_offset, block_mask):
        L = q.shape[2]
        return flex_attention(q, k, v, block_mask=block_mask,
                              score_mod=lambda s, bi, h, qi, ki: s + table[h, bucket_by_offset[ki - qi + L - 1]])

    def alibi(q, k, v, slopes, block_mask):
        return flex_attention(q, k, v, block_mask=block_mask,
                              score_mod=lambda s, bi, h, qi, ki: s - slopes[h] * (qi - ki).abs())

    return {name: torch.compile(fn) for name, fn in
            dict(plain=plain, bias=bias, rel=rel, t5=t5, alibi=alibi).items()}


def _flex_setup(case: Case) -> Forward:
    from torch.nn.attention.flex_attention import create_block_mask
    c, e, L = case, case.extras, case.L
    if c.causal and c.op not in ("window", "varlen"):
        def mask_mod(b, h, qi, ki):
            return qi >= ki
    elif c.op == "window":
        W = e["window"][0]

        def mask_mod(b, h, qi, ki):
            return (qi >= ki) & (qi - ki <= W)
    elif c.op == "padding":
        kpm = e["key_padding_mask"]

        def mask_mod(b, h, qi, ki):
            return kpm[b, ki]
    elif c.op == "varlen":  # FlexAttention's document masking
        doc = e["document_ids"]

        def mask_mod(b, h, qi, ki):
            return (qi >= ki) & (doc[b, qi] == doc[b, ki])
    else:
        mask_mod = None
    # Block masks are built once per shape and reused, as a model does across layers: not timed.
    block_mask = None if mask_mod is None else create_block_mask(
        mask_mod, c.B if c.op in ("padding", "varlen") else None, None, L, L, device=c.device)
    fns = _flex_fns()
    if c.op == "bias":
        return lambda: fns["bias"](c.q, c.k, c.v, e["bias"], block_mask)
    if c.op == "rel":
        return lambda: fns["rel"](c.q, c.k, c.v, e["rel"], c.scale, block_mask)
    if c.op == "t5":
        offsets = torch.arange(-(L - 1), L, device=c.device)  # j − i for index j − i + L − 1
        bucket = ref.t5_bucket(offsets, bidirectional=True, num_buckets=T5_BUCKETS, max_distance=T5_MAX_DISTANCE)
        return lambda: fns["t5"](c.q, c.k, c.v, e["table"], bucket, block_mask)
    if c.op == "alibi":
        slopes = e["slopes"].to(c.dtype)
        return lambda: fns["alibi"](c.q, c.k, c.v, slopes, block_mask)
    return lambda: fns["plain"](c.q, c.k, c.v, block_mask)


def _flex_available(device: torch.device) -> Optional[str]:
    try:
        importlib.import_module("torch.nn.attention.flex_attention")
    except Exception as e:  # noqa: BLE001
        return f"torch {torch.__version__} has no FlexAttention ({type(e).__name__})"
    if device.type == "cpu":
        import shutil
        if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
            return "torch.compile on CPU needs a C++ compiler (g++), none found"
    return None


def _flex_supports(op, mode, device, dtype) -> Optional[str]:
    if op == "decode":
        return "FlexAttention's decoding path needs its own block mask for Lq = 1 (not set up here)"
    if device.type == "cpu" and mode != "fwd":
        return "FlexAttention has no backward on CPU"
    return None


register(Provider("flex", "FlexAttention (torch.compile'd; block masks built outside the timing)", OPS,
                  setup=_flex_setup, available=_flex_available, supports=_flex_supports))


# --------------------------------------------------------------------------------------------
# flash-attn (Dao-AILab), if installed
# --------------------------------------------------------------------------------------------

def _flash_attn_available(device: torch.device) -> Optional[str]:
    if device.type != "cuda":
        return "flash-attn runs on CUDA only"
    try:
        importlib.import_module("flash_attn")
    except Exception as e:  # noqa: BLE001
        return f"flash-attn is not installed ({type(e).__name__})"
    return None


def _flash_attn_supports(op, mode, device, dtype) -> Optional[str]:
    if dtype not in (torch.float16, torch.bfloat16):
        return "flash-attn takes float16/bfloat16 only"
    return None


def _flash_attn_setup(case: Case) -> Forward:
    from flash_attn import flash_attn_func
    c, e = case, case.extras
    window = (e["window"][0], 0) if c.op == "window" else (-1, -1)
    slopes = e["slopes"].float() if c.op == "alibi" else None

    def forward():  # flash-attn takes (B, L, H, D)
        out = flash_attn_func(c.q.transpose(1, 2), c.k.transpose(1, 2), c.v.transpose(1, 2),
                              causal=c.causal, window_size=window, alibi_slopes=slopes)
        return out.transpose(1, 2)
    return forward


register(Provider("flash-attn", "flash-attn's flash_attn_func (no bias gradient, padding needs varlen)",
                  ("causal", "full", "window", "alibi"), setup=_flash_attn_setup,
                  available=_flash_attn_available, supports=_flash_attn_supports))
