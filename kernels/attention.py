"""Fused attention in Triton, forward and backward: the FlashAttention-2 algorithm with masks and bias gradients.

Credits: Tri Dao, "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning" (2023);
the layout follows Triton's tutorial 06-fused-attention.

What it computes (the meaning is `attnkit.kernels.reference.attention_reference`):

    logits[b, h, i, j] = scale · q[b, h, i]·k[b, h // G, j] + bias[b, h, i, j]          G = Hq // Hkv
    visible[b, h, i, j] = window(i', j) ∧ key_padding_mask[b, j] ∧ attn_mask[b, h, i, j]   i' = i + (Lk − Lq)
    out[b, h, i] = Σ_j softmax_j(logits | visible) · v[b, h // G, j]       (zeros where row i sees no key)

    causal is the window's right bound 0 (j ≤ i'); window=(left, right) keeps i' − left ≤ j ≤ i' + right.

How:
    forward   one program per (query block, b, h); online softmax over key blocks; saves the base-2
              log-sum-exp per row (LSE = +inf for a row with no visible key, so backward gets p = 0).
    backward  delta = rowsum(dO ∘ O); a dK/dV pass (one program per (key block, b, kv head), looping over the
              query heads of its GQA group and their query blocks) and a dQ pass (one program per query block,
              looping over key blocks). Every output element is written by exactly one program, in a fixed
              loop order: no atomics, gradients are bit-identical run to run.
    dbias     a separate pass whose programs own tiles of the bias's own (broadcast) shape; each loops over
              the (b, h, query block, key block) combinations that broadcast onto its tile in a fixed order,
              recomputes dS = P ∘ (dP − delta) and reduces it in registers. Scratch = the bias's own size.

Block skipping:
    causal / window: each query block computes the range of key blocks it can see (and each key block the
        range of query blocks that can see it); blocks outside are never loaded. Blocks fully inside the
        band run without the position mask; only the band's edges pay for it. Each kernel walks the three
        stages (near edge, middle, far edge) with one loop under tl.static_range(3), as the tutorial's STAGE.
    attn_mask: the launcher reduces the mask to a tile-occupancy table at OCC_BLOCK × OCC_BLOCK granularity
        ("is any entry True here?"); the kernels read the entries covering their BLOCK_M × BLOCK_N tile and
        skip tiles with none. A block-sparse mask (local 1-D/2-D attention, e.g. the Image Transformer)
        therefore costs only its occupied tiles. The table costs Lq·Lk / 256 bytes per mask (b, h).
    key_padding_mask, attn_mask and bias are read tile by tile; broadcast dims have stride 0 (torch.expand),
    so no L×L tensor is ever allocated by the kernel (memory O(L) beyond what the caller passes).

Limits:
    head dim D ≤ 256 (any value: padded to the next power of two ≥ 16 inside the kernel with masked loads);
    float32 / float16 / bfloat16 (float32 dots run in IEEE fp32 unless torch allows TF32 for matmuls);
    on CPU the kernels run through Triton's interpreter (TRITON_INTERPRET=1), where bf16 tiles are
    upcast to fp32 after loading because the interpreter's bf16 dot is wrong.
    dbias when the bias is broadcast over both Lq and Lk (e.g. one scalar per head) is one program per
    bias element looping over all Lq × Lk tiles: correct but serial.
    q, k, v need unit stride in the head dim (the launchers copy otherwise); every other stride is free. The
    kernels take their shared arguments as tuples (`_Meta.launch_args`), which needs Triton ≥ 3.3.
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from attnkit.kernels.occupancy import document_ranges, tile_occupancy
from attnkit.kernels.reference import _as4d
from attnkit.kernels.runtime import INTERPRET, LOG2E, input_precision, prepare_interpreter
from attnkit.kernels.validate import DROPOUT_SEED_RANGE

prepare_interpreter()
OCC_BLOCK = 16  # granularity of the attn_mask occupancy table; every BLOCK_M / BLOCK_N is a multiple ≥ 32
OCC = tl.constexpr(OCC_BLOCK)  # the same, as the kernels read it
_LOG2E = tl.constexpr(LOG2E)  # read inside @triton.jit: a global there must be a constexpr
# dK/dV pass: both gradients in one launch, or one per launch (the second recomputes Q·Kᵀ but holds one
# accumulator); split from this padded head dim up, where the joint pass spills (gpu_static_report.py).
DKDV_BOTH, DK_ONLY, DV_ONLY = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)
SPLIT_DKDV_HEAD_DIM = 128
# Dropout seeds live in [0, 2³⁰): the kernels add the (b, h) index to get one Philox key per head in int32.

# --------------------------------------------------------------------------------------------
# Autotune configs (data). The interpreter runs one fixed config; big blocks make it faster there.
# --------------------------------------------------------------------------------------------

# Lengths enter the key as powers of two: decoding with a KV cache grows Lk by one per step and must not retune.
_AUTOTUNE_KEY = ["LQ_BUCKET", "LK_BUCKET", "HEAD_DIM", "HAS_LEFT", "HAS_RIGHT", "HAS_KPM", "HAS_MASK", "HAS_BIAS",
                 "HAS_SOFTCAP", "HAS_DOCS", "HAS_DROPOUT"]
_DKDV_KEY = _AUTOTUNE_KEY + ["PART"]


# (BLOCK_M, BLOCK_N, num_warps, num_stages) → the padded head dims (16 … 256) it is an autotune candidate for.
# Kept at D = 64 and 128 only if it compiles for sm_90a with 0 bytes of register spills and every dot as a
# wgmma (benchmarks/gpu_static_report.py, specialized like a real launch; its table is in BENCHMARKS.md).
# D ≤ 32 reuses the D = 64 set (less register pressure), D = 256 the D = 128 set, except the forward's: with 3
# stages at D = 256, (128, 64, 8, 3) spills 32 B (causal) and asks for 256 KB of shared memory (an H100 has
# 227 KB), (64, 32, 4, 3) spills 8 B (window), so D = 256 runs 2 stages. A row kept for no head dim stays listed
# so the report keeps showing why it was dropped.
_SMALL, _LARGE = (16, 32, 64), (128, 256)
# At D = 128, (64, 32, 4, 3) gave way to its 2-stage twin: on an H200 under Triton 3.6 (2026-12-04) the 3-stage one
# hit an illegal memory access on every bf16 split-KV decode at 64k keys (Hq = 8 and 32; contiguous q too; fp16,
# fp32, 16k keys and the plain forward ran), and ran clean under compute-sanitizer, which serializes: a race in
# its pipelining, not an out-of-bounds index. 2 stages ran those shapes and fit float32 (the others need > 227 KB).
# At D = 64, (128, 64, 4, 3) sits at 252–255 registers and under Triton 3.6 spills 8 B with a window; its 8-warp
# twin stays (spill-free under 3.6 and 3.9), so it is kept up to D = 32 only (0 spills there, 2026-12-04).
FWD_SHAPES = {(128, 64, 4, 3): (16, 32), (128, 64, 8, 3): _SMALL + (128,), (128, 128, 8, 3): _SMALL,
              (64, 64, 4, 4): _SMALL + (128,), (128, 32, 4, 4): _SMALL, (64, 32, 4, 3): _SMALL,
              (128, 64, 8, 2): (256,), (128, 32, 8, 2): (256,), (64, 32, 4, 2): (128, 256)}
# dK/dV: BLOCK_N keys stay resident, BLOCK_M query rows stream past them. From D = 128 up dK and dV are
# separate passes (SPLIT_DKDV_HEAD_DIM); BLOCK_M = 64 spills at D = 128 even then.
DKDV_SHAPES = {(32, 128, 8, 2): _SMALL + _LARGE, (32, 128, 8, 3): _SMALL + _LARGE, (32, 64, 4, 2): _SMALL,
               (32, 64, 4, 3): (), (64, 128, 8, 2): (), (64, 64, 4, 2): ()}
# dQ: BLOCK_M query rows stay resident, BLOCK_N keys stream past them.
DQ_SHAPES = {(128, 32, 8, 3): _SMALL + _LARGE, (128, 64, 8, 3): _SMALL, (64, 64, 4, 3): _SMALL + _LARGE,
             (64, 32, 4, 2): _SMALL + _LARGE}
# dbias: it holds a (BLOCK_M, BLOCK_N) float32 accumulator beside the recomputed P and dP tiles. With 3 stages every
# config spills (16–348 bytes); the third stage's buffers are what tips it, 2 stages are spill-free (BENCHMARKS.md).
DBIAS_SHAPES = {(64, 64, 4, 2): _SMALL, (64, 128, 8, 2): _SMALL, (128, 64, 8, 2): _LARGE,
                (64, 64, 4, 3): (), (128, 64, 8, 3): (), (64, 128, 8, 3): ()}


def _configs(shapes):
    """Every candidate of a shape table; `_prune_for_head_dim` keeps those listed for the call's head dim."""
    if INTERPRET:
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 64}, num_warps=4, num_stages=1)]
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in shapes]


# ATTNKIT_AUTOTUNE=0 runs one config per launch; for the forward, the first whose shared memory fits an H100's
# 227 KB at the input's element size. Autotuning skips a config that does not fit, a single config would raise
# instead: float32 at D = 128 with a bias needs 295 KB in (128, 64, 8, 3) (H200, 2026-12-04).
SHARED_MEMORY_BYTES = 232448


def _fwd_shared_bytes(config, head_dim: int, elem_bytes: int) -> int:
    """The forward's shared memory, estimated: the resident q tile, `num_stages` buffered k and v tiles, and one
    float32 (BLOCK_M, BLOCK_N) tile for layout conversions (Triton 3.6 on sm_90 asked 295,424 and 295,168 bytes
    where this gives 294,912 and 311,296)."""
    bm, bn = config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"]
    return elem_bytes * head_dim * (bm + 2 * config.num_stages * bn) + 4 * bm * bn


def _prune_for_head_dim(shapes, forward: bool = False):
    """Keep the configs listed for the call's head dim; ATTNKIT_AUTOTUNE=0 keeps only one of them (tests on a GPU
    check values, and autotuning each mask combination they use would mostly compile): the first, or for the
    `forward` table the first that fits in shared memory."""
    def prune(configs, named_args, **kwargs):
        if INTERPRET:
            return configs
        dim = kwargs["HEAD_DIM"]
        kept = [c for c in configs
                if dim in shapes[(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages)]]
        if os.environ.get("ATTNKIT_AUTOTUNE") != "0":
            return kept
        if forward:
            elem = named_args["Q"].element_size()
            kept = [c for c in kept if _fwd_shared_bytes(c, dim, elem) <= SHARED_MEMORY_BYTES] or kept
        return kept[:1]
    return {"early_config_prune": prune}


FWD_CONFIGS = _configs(FWD_SHAPES)
DKDV_CONFIGS = _configs(DKDV_SHAPES)
DQ_CONFIGS = _configs(DQ_SHAPES)
DBIAS_CONFIGS = _configs(DBIAS_SHAPES)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

@triton.jit
def _snap_band(lo_vis, lo_full, hi_full, hi_vis, BLOCK: tl.constexpr):
    """(lo, full_lo, full_hi, hi) in multiples of BLOCK from the visible range [lo_vis, hi_vis) and the fully visible
    one [lo_full, hi_full) (all ≥ 0, so // is a floor on the GPU and in the interpreter alike):
    lo ≤ full_lo ≤ full_hi ≤ hi."""
    lo = (lo_vis // BLOCK) * BLOCK
    hi = tl.maximum(tl.cdiv(hi_vis, BLOCK) * BLOCK, lo)
    full_lo = tl.minimum(tl.maximum(tl.cdiv(lo_full, BLOCK) * BLOCK, lo), hi)
    full_hi = tl.minimum(tl.maximum((hi_full // BLOCK) * BLOCK, full_lo), hi)
    return lo, full_lo, full_hi, hi


@triton.jit
def _key_block_range(start_m, sizes, window,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr):
    """Key blocks that query block `start_m` must visit, as the band (lo, full_lo, full_hi, hi): [lo, full_lo) and
    [full_hi, hi) need the position mask, [full_lo, full_hi) are visible to every row of the block. The kernels
    walk it in three stages under tl.static_range(3), stage s over [band[s], band[s + 1]): the near edge (0), the
    fully visible middle (1, no position mask) and the far edge (2), as the tutorial's STAGE."""
    _, _, N_CTX_Q, N_CTX_K = sizes
    window_left, window_right = window
    first_i = start_m * BLOCK_M + N_CTX_K - N_CTX_Q  # i' of the block's first row
    last_i = tl.minimum(start_m * BLOCK_M + BLOCK_M, N_CTX_Q) - 1 + N_CTX_K - N_CTX_Q  # ... and of its last row
    lo_vis = first_i * 0
    lo_full = first_i * 0
    hi_vis = first_i * 0 + N_CTX_K
    hi_full = first_i * 0 + N_CTX_K
    if HAS_LEFT:  # j ≥ i' − left
        lo_vis = tl.maximum(first_i - window_left, 0)
        lo_full = tl.maximum(last_i - window_left, 0)
    if HAS_RIGHT:  # j ≤ i' + right
        hi_vis = tl.minimum(tl.maximum(last_i + window_right + 1, 0), N_CTX_K)
        hi_full = tl.minimum(tl.maximum(first_i + window_right + 1, 0), N_CTX_K)
    return _snap_band(lo_vis, lo_full, hi_full, hi_vis, BLOCK_N)


@triton.jit
def _query_block_range(start_n, sizes, window,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr):
    """Query blocks that can see key block `start_n`, the band of `_key_block_range` in multiples of BLOCK_M."""
    _, _, N_CTX_Q, N_CTX_K = sizes
    window_left, window_right = window
    first_j = start_n * BLOCK_N
    last_j = tl.minimum(first_j + BLOCK_N, N_CTX_K) - 1
    shift = N_CTX_K - N_CTX_Q  # i = i' − shift
    lo_vis = first_j * 0
    lo_full = first_j * 0
    hi_vis = first_j * 0 + N_CTX_Q
    hi_full = first_j * 0 + N_CTX_Q
    if HAS_RIGHT:  # i' ≥ j − right
        lo_vis = tl.minimum(tl.maximum(first_j - window_right - shift, 0), N_CTX_Q)
        lo_full = tl.minimum(tl.maximum(last_j - window_right - shift, 0), N_CTX_Q)
    if HAS_LEFT:  # i' ≤ j + left
        hi_vis = tl.minimum(tl.maximum(last_j + window_left - shift + 1, 0), N_CTX_Q)
        hi_full = tl.minimum(tl.maximum(first_j + window_left - shift + 1, 0), N_CTX_Q)
    return _snap_band(lo_vis, lo_full, hi_full, hi_vis, BLOCK_M)


@triton.jit
def _query_program(Q, K, V, stride_q, stride_k, stride_v, H, GROUPS, BLOCK_M: tl.constexpr):
    """Where a forward or dQ program works: the start of its query block, its (b, h) grid index off_hz, b and h
    (int64), and q, k, v advanced to them (GQA: query head h reads kv head h // G)."""
    start_m = tl.program_id(0) * BLOCK_M
    off_hz = tl.program_id(1)
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    off_hk = off_h // GROUPS
    return (start_m, off_hz, off_z, off_h, Q + off_z * stride_q[0] + off_h * stride_q[1],
            K + off_z * stride_k[0] + off_hk * stride_k[1], V + off_z * stride_v[0] + off_hk * stride_v[1])


@triton.jit
def _tile_occupied(Occ, stride_tm, stride_tn, start_m, start_n, N_CTX_Q, N_CTX_K,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """True if attn_mask has any True entry in rows [start_m, +BLOCK_M) × keys [start_n, +BLOCK_N)."""
    occ_m = start_m // OCC + tl.arange(0, BLOCK_M // OCC)
    occ_n = start_n // OCC + tl.arange(0, BLOCK_N // OCC)
    inside = (occ_m[:, None] < tl.cdiv(N_CTX_Q, OCC)) & (occ_n[None, :] < tl.cdiv(N_CTX_K, OCC))
    occ = tl.load(Occ + occ_m[:, None] * stride_tm + occ_n[None, :] * stride_tn, mask=inside, other=0)
    return tl.max(tl.max(occ.to(tl.int32), axis=1), axis=0) > 0


@triton.jit
def _mask_pointers(extras, stride_bias, stride_mask, stride_occ, off_z, off_h, N_CTX_K):
    """(Bias, Mask, KPM, Occ, Doc, DocRange) at batch row off_z, query head off_h: the bias, attn_mask and
    occupancy table through their (broadcast) strides; the padding mask and document tables are contiguous (B, ·)."""
    Bias, Mask, KPM, Occ, Doc, DocRange = extras
    return (Bias + off_z * stride_bias[0] + off_h * stride_bias[1], Mask + off_z * stride_mask[0] + off_h * stride_mask[1],
            KPM + off_z * N_CTX_K, Occ + off_z * stride_occ[0] + off_h * stride_occ[1], Doc + off_z * N_CTX_K,
            DocRange + off_z * tl.cdiv(N_CTX_K, OCC) * 2)


@triton.jit
def _tile_live(Occ, DocRange, stride_occ, start_m, start_n, sizes,
               HAS_MASK: tl.constexpr, HAS_DOCS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Whether the tile (query rows [start_m, +BLOCK_M), keys [start_n, +BLOCK_N)) can hold a visible entry:
    attn_mask has one there (occupancy table) and the rows and keys share a document. True without either."""
    _, _, N_CTX_Q, N_CTX_K = sizes
    live = True
    if HAS_MASK:
        live = _tile_occupied(Occ, stride_occ[2], stride_occ[3], start_m, start_n, N_CTX_Q, N_CTX_K, BLOCK_M,
                              BLOCK_N)
    if HAS_DOCS:
        live = live & _docs_overlap(DocRange, start_m, start_n, N_CTX_Q, N_CTX_K, BLOCK_M, BLOCK_N)
    return live


@triton.jit
def _load_T(Ptr, offs, stride, N, offs_d, HEAD_DIM_REAL, UPCAST: tl.constexpr):
    """Rows offs (< N) of a (·, D) tensor with unit head-dim stride, loaded transposed: (HEAD_DIM, len(offs))."""
    xT = tl.load(Ptr + offs[None, :] * stride + offs_d[:, None],
                 mask=(offs[None, :] < N) & (offs_d[:, None] < HEAD_DIM_REAL), other=0.0)
    if UPCAST:
        xT = xT.to(tl.float32)
    return xT


@triton.jit
def _load_q_do(Q, DO, offs_m, row_ok, stride_q, offs_d, HEAD_DIM_REAL, UPCAST: tl.constexpr):
    """(mask, q, dO) of the query rows offs_m (valid where row_ok): q through its row stride, dO contiguous (·, D)."""
    q_mask = row_ok[:, None] & (offs_d[None, :] < HEAD_DIM_REAL)
    q = tl.load(Q + offs_m[:, None] * stride_q[2] + offs_d[None, :], mask=q_mask, other=0.0)
    do = tl.load(DO + offs_m[:, None] * HEAD_DIM_REAL + offs_d[None, :], mask=q_mask, other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    return q_mask, q, do


@triton.jit
def _block_T(Ptr, start, stride, N, offs_d, HEAD_DIM_REAL, UPCAST: tl.constexpr, BLOCK: tl.constexpr):
    """The rows [start, start + BLOCK) of a (·, D) tensor as `_load_T` reads them, and their indices."""
    offs = start + tl.arange(0, BLOCK)
    return offs, _load_T(Ptr, offs, stride, N, offs_d, HEAD_DIM_REAL, UPCAST)


@triton.jit
def _kv_block_T(K, V, start_n, stride_k, stride_v, N_CTX_K, offs_d, HEAD_DIM_REAL, UPCAST: tl.constexpr,
                BLOCK_N: tl.constexpr):
    """The key indices [start_n, start_n + BLOCK_N) and those keys and values transposed: (D, BLOCK_N) each."""
    offs_n, kT = _block_T(K, start_n, stride_k[2], N_CTX_K, offs_d, HEAD_DIM_REAL, UPCAST, BLOCK_N)
    return offs_n, kT, _load_T(V, offs_n, stride_v[2], N_CTX_K, offs_d, HEAD_DIM_REAL, UPCAST)


@triton.jit
def _tanh(x):
    """tanh through exp2 (the interpreter has no tanh); |x| is clipped at 15, where tanh is 1 in float32."""
    x = tl.minimum(tl.maximum(x, -15.0), 15.0)
    return 1.0 - 2.0 / (tl.math.exp2(x * 2.8853900817779268) + 1.0)  # 2·log2(e)


@triton.jit
def _softcap_grad(ds, qk, qk_scale, softcap2, HAS_SOFTCAP: tl.constexpr):
    """∂/∂(q·k) from ∂/∂(capped logits): × (1 − tanh²) of the capped term, recomputed from the raw q·k tile
    (the bias is added after the cap, so its own gradient is dS unchanged)."""
    if HAS_SOFTCAP:
        t = _tanh(qk * qk_scale / softcap2)
        ds = ds * (1.0 - t * t)
    return ds


@triton.jit
def _dropout_keep(drop_seed, offs_i, offs_j, N_CTX_K, drop_p):
    """Dropout's keep mask of one tile: the Philox uniform at (key = the (b, h) seed, counter = i·Lk + j) is ≥ p.
    offs_i / offs_j broadcast as in `_score_tile`; the backward regenerates exactly these bits."""
    return tl.rand(drop_seed, offs_i * N_CTX_K + offs_j) >= drop_p


@triton.jit
def _docs_overlap(DocRange, start_m, start_n, N_CTX_Q, N_CTX_K, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """False when the tile's query rows and keys share no document: their [min, max] document-id ranges
    (DocRange: (min, max) per OCC positions of this batch row) are disjoint. Query i sits at position i'."""
    shift = N_CTX_K - N_CTX_Q
    q_first = (start_m + shift) // OCC
    q_last = (tl.minimum(start_m + BLOCK_M, N_CTX_Q) - 1 + shift) // OCC
    qb = q_first + tl.arange(0, 2 * (BLOCK_M // OCC))  # the rows span at most BLOCK_M // OCC + 1 blocks
    kb = start_n // OCC + tl.arange(0, BLOCK_N // OCC)
    k_ok = kb < tl.cdiv(N_CTX_K, OCC)
    q_lo = tl.min(tl.load(DocRange + qb * 2, mask=qb <= q_last, other=2147483647), axis=0)
    q_hi = tl.max(tl.load(DocRange + qb * 2 + 1, mask=qb <= q_last, other=-2147483647), axis=0)
    k_lo = tl.min(tl.load(DocRange + kb * 2, mask=k_ok, other=2147483647), axis=0)
    k_hi = tl.max(tl.load(DocRange + kb * 2 + 1, mask=k_ok, other=-2147483647), axis=0)
    return (q_lo <= k_hi) & (k_lo <= q_hi)


@triton.jit
def _score_tile(qk, offs_i, offs_j, qk_scale, Bias, Mask, KPM, stride_bias, stride_mask,
                N_CTX_Q, N_CTX_K, window, softcap2, Doc,
                POS_MASK: tl.constexpr, HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr,
                HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, HAS_KPM: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
                HAS_DOCS: tl.constexpr):
    """Logits in base-2 units, −inf where hidden. offs_i / offs_j are query / key indices already shaped to
    broadcast onto qk: (M, 1) and (1, N) for a (queries, keys) tile, (1, M) and (N, 1) for a transposed one."""
    s = qk * qk_scale
    if HAS_SOFTCAP:  # scale·q·k → c·tanh(scale·q·k / c); in base-2 units with softcap2 = c·log2(e), the same form
        s = softcap2 * _tanh(s / softcap2)
    in_bounds = (offs_i < N_CTX_Q) & (offs_j < N_CTX_K)
    if HAS_BIAS:
        b = tl.load(Bias + offs_i * stride_bias[2] + offs_j * stride_bias[3], mask=in_bounds, other=0.0)
        s += b.to(tl.float32) * _LOG2E
    # Tiles from the fully visible middle of the band (POS_MASK False) need no select without a padding or
    # boolean mask: the streamed blocks lie inside [0, Lq) / [0, Lk) by construction, and out-of-range rows of
    # the program's own block (queries in forward/dQ, keys in dK/dV) only feed outputs that are never stored.
    if POS_MASK or HAS_KPM or HAS_MASK or HAS_DOCS:
        visible = in_bounds
        if POS_MASK:
            i_shift = offs_i + (N_CTX_K - N_CTX_Q)  # i' (bottom-right alignment)
            window_left, window_right = window
            if HAS_LEFT:
                visible = visible & (offs_j >= i_shift - window_left)
            if HAS_RIGHT:
                visible = visible & (offs_j <= i_shift + window_right)
        if HAS_KPM:
            kpm = tl.load(KPM + offs_j, mask=offs_j < N_CTX_K, other=0)
            visible = visible & (kpm != 0)
        if HAS_MASK:
            am = tl.load(Mask + offs_i * stride_mask[2] + offs_j * stride_mask[3], mask=in_bounds, other=0)
            visible = visible & (am != 0)
        if HAS_DOCS:  # packed sequences: only keys of the query's own document (query i is at position i')
            doc_q = tl.load(Doc + offs_i + (N_CTX_K - N_CTX_Q), mask=offs_i < N_CTX_Q, other=-1)
            doc_k = tl.load(Doc + offs_j, mask=offs_j < N_CTX_K, other=-2)
            visible = visible & (doc_q == doc_k)
        s = tl.where(visible, s, float("-inf"))
    return s


# --------------------------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------------------------

@triton.autotune(configs=FWD_CONFIGS, key=_AUTOTUNE_KEY,
                 prune_configs_by=_prune_for_head_dim(FWD_SHAPES, forward=True))
@triton.jit
def _attn_fwd(Q, K, V, Out, LSE, extras,
              stride_q, stride_k, stride_v, stride_bias, stride_mask, stride_occ,
              sizes, LQ_BUCKET, LK_BUCKET, qk_scale, window, softcap2, dropout,
              HEAD_DIM: tl.constexpr, HEAD_DIM_REAL: tl.constexpr,
              HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
              HAS_KPM: tl.constexpr, HAS_SOFTCAP: tl.constexpr, HAS_DOCS: tl.constexpr, HAS_DROPOUT: tl.constexpr,
              UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per (query block, b, h): online softmax over the key blocks the block can see. Out and LSE are
    contiguous (B, Hq, Lq, D) / (B, Hq, Lq); the head dim of q, k, v has unit stride (the launcher ensures it)."""
    H, GROUPS, N_CTX_Q, N_CTX_K = sizes
    drop_seed, drop_p = dropout
    start_m, off_hz, off_z, off_h, Q, K, V = _query_program(Q, K, V, stride_q, stride_k, stride_v, H, GROUPS, BLOCK_M)
    Out += off_hz.to(tl.int64) * N_CTX_Q * HEAD_DIM_REAL
    LSE += off_hz.to(tl.int64) * N_CTX_Q
    Bias, Mask, KPM, Occ, Doc, DocRange = _mask_pointers(extras, stride_bias, stride_mask, stride_occ, off_z, off_h,
                                                         N_CTX_K)
    drop_seed += off_hz  # one Philox key per (b, h)

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q_mask = (offs_m[:, None] < N_CTX_Q) & (offs_d[None, :] < HEAD_DIM_REAL)
    q = tl.load(Q + offs_m[:, None] * stride_q[2] + offs_d[None, :], mask=q_mask, other=0.0)  # (BLOCK_M, D)
    if UPCAST:
        q = q.to(tl.float32)
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    band = _key_block_range(start_m // BLOCK_M, sizes, window, BLOCK_M, BLOCK_N, HAS_LEFT, HAS_RIGHT)
    for stage in tl.static_range(3):
        for start_n in range(band[stage], band[stage + 1], BLOCK_N):
            start_n = tl.multiple_of(start_n, BLOCK_N)
            if _tile_live(Occ, DocRange, stride_occ, start_m, start_n, sizes, HAS_MASK, HAS_DOCS, BLOCK_M, BLOCK_N):
                offs_n, kT = _block_T(K, start_n, stride_k[2], N_CTX_K, offs_d, HEAD_DIM_REAL, UPCAST, BLOCK_N)
                qk = tl.dot(q, kT, input_precision=INPUT_PRECISION)  # (BLOCK_M, BLOCK_N), kT: (D, BLOCK_N)
                s = _score_tile(qk, offs_m[:, None], offs_n[None, :], qk_scale, Bias, Mask, KPM, stride_bias, stride_mask,
                                N_CTX_Q, N_CTX_K, window, softcap2, Doc,
                                stage != 1, HAS_LEFT, HAS_RIGHT, HAS_BIAS, HAS_MASK, HAS_KPM, HAS_SOFTCAP, HAS_DOCS)
                m_ij = tl.maximum(m_i, tl.max(s, 1))
                # A row with nothing visible yet keeps m = −inf; subtract 0 instead so exp2 gives 0, not NaN.
                m_safe = tl.where(m_ij == float("-inf"), 0.0, m_ij)
                p = tl.math.exp2(s - m_safe[:, None])
                alpha = tl.math.exp2(m_i - m_safe)
                l_i = l_i * alpha + tl.sum(p, 1)
                v = tl.load(V + offs_n[:, None] * stride_v[2] + offs_d[None, :],
                            mask=(offs_n[:, None] < N_CTX_K) & (offs_d[None, :] < HEAD_DIM_REAL), other=0.0)
                if UPCAST:
                    v = v.to(tl.float32)
                acc = acc * alpha[:, None]
                if HAS_DROPOUT:  # the normalizer l_i keeps every key; only the values see the dropped probabilities
                    keep = _dropout_keep(drop_seed, offs_m[:, None], offs_n[None, :], N_CTX_K, drop_p)
                    p = tl.where(keep, p * (1.0 / (1.0 - drop_p)), 0.0)
                acc = tl.dot(p.to(v.dtype), v, acc, input_precision=INPUT_PRECISION)
                m_i = m_ij
    # Empty rows (l = 0): output 0 and LSE = +inf, so backward recomputes p = exp2(s − inf) = 0.
    empty = l_i == 0.0
    acc = acc / tl.where(empty, 1.0, l_i)[:, None]
    lse = tl.where(empty, float("inf"), m_i + tl.math.log2(tl.where(empty, 1.0, l_i)))
    tl.store(LSE + offs_m, lse, mask=offs_m < N_CTX_Q)
    tl.store(Out + offs_m[:, None] * HEAD_DIM_REAL + offs_d[None, :], acc.to(Out.dtype.element_ty), mask=q_mask)


# --------------------------------------------------------------------------------------------
# Backward
# --------------------------------------------------------------------------------------------

@triton.jit
def _attn_bwd_preprocess(O, DO, Delta, N_CTX_Q, HEAD_DIM: tl.constexpr, HEAD_DIM_REAL: tl.constexpr,
                         BLOCK_M: tl.constexpr):
    """delta[z, h, i] = Σ_d O·dO (O and dO contiguous (B, Hq, Lq, D))."""
    off_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    off_hz = tl.program_id(1)
    offs_d = tl.arange(0, HEAD_DIM)
    mask = (off_m[:, None] < N_CTX_Q) & (offs_d[None, :] < HEAD_DIM_REAL)
    base = off_hz.to(tl.int64) * N_CTX_Q * HEAD_DIM_REAL
    ptrs = base + off_m[:, None] * HEAD_DIM_REAL + offs_d[None, :]
    o = tl.load(O + ptrs, mask=mask, other=0.0).to(tl.float32)
    do = tl.load(DO + ptrs, mask=mask, other=0.0).to(tl.float32)
    tl.store(Delta + off_hz.to(tl.int64) * N_CTX_Q + off_m, tl.sum(o * do, axis=1), mask=off_m < N_CTX_Q)


@triton.autotune(configs=DKDV_CONFIGS, key=_DKDV_KEY, prune_configs_by=_prune_for_head_dim(DKDV_SHAPES))
@triton.jit
def _attn_bwd_dkdv(Q, K, V, DO, DK, DV, LSE, Delta, extras,
                   stride_q, stride_k, stride_v, stride_bias, stride_mask, stride_occ,
                   sizes, LQ_BUCKET, LK_BUCKET, qk_scale, window, softcap2, dropout, sm_scale,
                   HEAD_DIM: tl.constexpr, HEAD_DIM_REAL: tl.constexpr,
                   HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
                   HAS_KPM: tl.constexpr, HAS_SOFTCAP: tl.constexpr, HAS_DOCS: tl.constexpr,
                   HAS_DROPOUT: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
                   PART: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per (key block, b, kv head). It loops over the GROUPS query heads sharing this kv head, so
    the GQA sum happens in registers in a fixed order (deterministic, no atomics). dO, LSE and delta are
    contiguous (B, Hq, Lq[, D]); dK and dV contiguous (B, Hkv, Lk, D). The tile is computed in the transposed
    (keys, queries) frame: the resident k, v are the A operands, P and dS come out already transposed."""
    H, GROUPS, N_CTX_Q, N_CTX_K = sizes
    drop_seed, drop_p = dropout
    start_n = tl.program_id(0) * BLOCK_N
    off_hkz = tl.program_id(1)
    H_KV = H // GROUPS
    off_z = (off_hkz // H_KV).to(tl.int64)
    off_hk = (off_hkz % H_KV).to(tl.int64)
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_mask = (offs_n[:, None] < N_CTX_K) & (offs_d[None, :] < HEAD_DIM_REAL)
    K += off_z * stride_k[0] + off_hk * stride_k[1]
    V += off_z * stride_v[0] + off_hk * stride_v[1]
    k = tl.load(K + offs_n[:, None] * stride_k[2] + offs_d[None, :], mask=kv_mask, other=0.0)  # (BLOCK_N, D)
    v = tl.load(V + offs_n[:, None] * stride_v[2] + offs_d[None, :], mask=kv_mask, other=0.0)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    # PART: both accumulators, or (D ≥ SPLIT_DKDV_HEAD_DIM) one per launch: at D = 128 two (BLOCK_N, 128)
    # float32 accumulators spill on sm_90a in every config; one pass each costs one more Q·Kᵀ instead.
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    band = _query_block_range(start_n // BLOCK_N, sizes, window, BLOCK_M, BLOCK_N, HAS_LEFT, HAS_RIGHT)
    for g in range(0, GROUPS):
        off_h = off_hk * GROUPS + g
        off_hz = off_z * H + off_h
        Qh = Q + off_z * stride_q[0] + off_h * stride_q[1]
        DOh = DO + off_hz * N_CTX_Q * HEAD_DIM_REAL
        LSEh = LSE + off_hz * N_CTX_Q
        Deltah = Delta + off_hz * N_CTX_Q
        Biash, Maskh, KPM, Occh, Doc, DocRange = _mask_pointers(extras, stride_bias, stride_mask, stride_occ, off_z,
                                                                off_h, N_CTX_K)
        seed = drop_seed + off_hz.to(tl.int32)
        for stage in tl.static_range(3):  # as in _attn_fwd, over query blocks
            for start_m in range(band[stage], band[stage + 1], BLOCK_M):
                start_m = tl.multiple_of(start_m, BLOCK_M)
                live = _tile_live(Occh, DocRange, stride_occ, start_m, start_n, sizes, HAS_MASK, HAS_DOCS, BLOCK_M,
                                  BLOCK_N)
                if live:
                    offs_m = start_m + tl.arange(0, BLOCK_M)
                    row_ok = offs_m < N_CTX_Q
                    qT = _load_T(Qh, offs_m, stride_q[2], N_CTX_Q, offs_d, HEAD_DIM_REAL, UPCAST)  # (D, BLOCK_M)
                    do = tl.load(DOh + offs_m[:, None] * HEAD_DIM_REAL + offs_d[None, :],
                                 mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM_REAL), other=0.0)
                    if UPCAST:
                        do = do.to(tl.float32)
                    lse = tl.load(LSEh + offs_m, mask=row_ok, other=float("inf"))
                    qkT = tl.dot(k, qT, input_precision=INPUT_PRECISION)  # (BLOCK_N, BLOCK_M)
                    sT = _score_tile(qkT, offs_m[None, :], offs_n[:, None], qk_scale, Biash, Maskh, KPM, stride_bias, stride_mask,
                                     N_CTX_Q, N_CTX_K, window, softcap2, Doc,
                                     stage != 1, HAS_LEFT, HAS_RIGHT, HAS_BIAS, HAS_MASK, HAS_KPM, HAS_SOFTCAP,
                                     HAS_DOCS)
                    pT = tl.math.exp2(sT - lse[None, :])
                    if HAS_DROPOUT:
                        keepT = _dropout_keep(seed, offs_m[None, :], offs_n[:, None], N_CTX_K, drop_p)
                    if PART != DK_ONLY:
                        pT_v = pT
                        if HAS_DROPOUT:  # dV = (P ∘ Z / (1 − p))ᵀ dO
                            pT_v = tl.where(keepT, pT * (1.0 / (1.0 - drop_p)), 0.0)
                        dv = tl.dot(pT_v.to(do.dtype), do, dv, input_precision=INPUT_PRECISION)
                    if PART != DV_ONLY:
                        delta = tl.load(Deltah + offs_m, mask=row_ok, other=0.0)
                        dpT = tl.dot(v, tl.trans(do), input_precision=INPUT_PRECISION)  # (BLOCK_N, BLOCK_M)
                        if HAS_DROPOUT:  # dS = P ∘ (dP ∘ Z / (1 − p) − delta)
                            dpT = tl.where(keepT, dpT * (1.0 / (1.0 - drop_p)), 0.0)
                        dsT = _softcap_grad(pT * (dpT - delta[None, :]), qkT, qk_scale, softcap2, HAS_SOFTCAP)
                        dk = tl.dot(dsT.to(qT.dtype), tl.trans(qT), dk, input_precision=INPUT_PRECISION)
    out = off_hkz.to(tl.int64) * N_CTX_K * HEAD_DIM_REAL + offs_n[:, None] * HEAD_DIM_REAL + offs_d[None, :]
    if PART != DV_ONLY:
        tl.store(DK + out, (dk * sm_scale).to(DK.dtype.element_ty), mask=kv_mask)
    if PART != DK_ONLY:
        tl.store(DV + out, dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.autotune(configs=DQ_CONFIGS, key=_AUTOTUNE_KEY, prune_configs_by=_prune_for_head_dim(DQ_SHAPES))
@triton.jit
def _attn_bwd_dq(Q, K, V, DO, DQ, LSE, Delta, extras,
                 stride_q, stride_k, stride_v, stride_bias, stride_mask, stride_occ,
                 sizes, LQ_BUCKET, LK_BUCKET, qk_scale, window, softcap2, dropout, sm_scale,
                 HEAD_DIM: tl.constexpr, HEAD_DIM_REAL: tl.constexpr,
                 HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
                 HAS_KPM: tl.constexpr, HAS_SOFTCAP: tl.constexpr, HAS_DOCS: tl.constexpr, HAS_DROPOUT: tl.constexpr,
                 UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per (query block, b, h), looping over key blocks. dO, dQ, LSE and delta are contiguous
    (B, Hq, Lq[, D])."""
    H, GROUPS, N_CTX_Q, N_CTX_K = sizes
    drop_seed, drop_p = dropout
    start_m, off_hz, off_z, off_h, Q, K, V = _query_program(Q, K, V, stride_q, stride_k, stride_v, H, GROUPS, BLOCK_M)
    DO += off_hz.to(tl.int64) * N_CTX_Q * HEAD_DIM_REAL
    DQ += off_hz.to(tl.int64) * N_CTX_Q * HEAD_DIM_REAL
    LSE += off_hz.to(tl.int64) * N_CTX_Q
    Delta += off_hz.to(tl.int64) * N_CTX_Q
    Bias, Mask, KPM, Occ, Doc, DocRange = _mask_pointers(extras, stride_bias, stride_mask, stride_occ, off_z, off_h,
                                                         N_CTX_K)
    drop_seed += off_hz

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_CTX_Q
    q_mask, q, do = _load_q_do(Q, DO, offs_m, row_ok, stride_q, offs_d, HEAD_DIM_REAL, UPCAST)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    lse = tl.load(LSE + offs_m, mask=row_ok, other=float("inf"))
    delta = tl.load(Delta + offs_m, mask=row_ok, other=0.0)
    band = _key_block_range(start_m // BLOCK_M, sizes, window, BLOCK_M, BLOCK_N, HAS_LEFT, HAS_RIGHT)
    for stage in tl.static_range(3):  # as in _attn_fwd
        for start_n in range(band[stage], band[stage + 1], BLOCK_N):
            start_n = tl.multiple_of(start_n, BLOCK_N)
            if _tile_live(Occ, DocRange, stride_occ, start_m, start_n, sizes, HAS_MASK, HAS_DOCS, BLOCK_M, BLOCK_N):
                offs_n, kT, vT = _kv_block_T(K, V, start_n, stride_k, stride_v, N_CTX_K, offs_d, HEAD_DIM_REAL,
                                             UPCAST, BLOCK_N)
                qk = tl.dot(q, kT, input_precision=INPUT_PRECISION)  # (BLOCK_M, BLOCK_N)
                s = _score_tile(qk, offs_m[:, None], offs_n[None, :], qk_scale, Bias, Mask, KPM, stride_bias, stride_mask,
                                N_CTX_Q, N_CTX_K, window, softcap2, Doc,
                                stage != 1, HAS_LEFT, HAS_RIGHT, HAS_BIAS, HAS_MASK, HAS_KPM, HAS_SOFTCAP, HAS_DOCS)
                p = tl.math.exp2(s - lse[:, None])
                dp = tl.dot(do, vT, input_precision=INPUT_PRECISION)  # (BLOCK_M, BLOCK_N)
                if HAS_DROPOUT:
                    keep = _dropout_keep(drop_seed, offs_m[:, None], offs_n[None, :], N_CTX_K, drop_p)
                    dp = tl.where(keep, dp * (1.0 / (1.0 - drop_p)), 0.0)
                ds = _softcap_grad(p * (dp - delta[:, None]), qk, qk_scale, softcap2, HAS_SOFTCAP)
                dq = tl.dot(ds.to(kT.dtype), tl.trans(kT), dq, input_precision=INPUT_PRECISION)
    tl.store(DQ + offs_m[:, None] * HEAD_DIM_REAL + offs_d[None, :], (dq * sm_scale).to(DQ.dtype.element_ty),
             mask=q_mask)


@triton.autotune(configs=DBIAS_CONFIGS, key=_AUTOTUNE_KEY + ["ROWS_BCAST", "COLS_BCAST"],
                 prune_configs_by=_prune_for_head_dim(DBIAS_SHAPES))
@triton.jit
def _attn_bwd_dbias(Q, K, V, DO, LSE, Delta, DBias, extras,
                    stride_q, stride_k, stride_v, stride_bias, stride_mask, stride_occ,
                    sizes, LQ_BUCKET, LK_BUCKET, qk_scale, window, softcap2, dropout, bias_loops,
                    ROWS_BCAST: tl.constexpr, COLS_BCAST: tl.constexpr, HEAD_DIM: tl.constexpr,
                    HEAD_DIM_REAL: tl.constexpr,
                    HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
                    HAS_KPM: tl.constexpr, HAS_SOFTCAP: tl.constexpr, HAS_DOCS: tl.constexpr,
                    HAS_DROPOUT: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """dbias = Σ over broadcast dims of dS, dS = P ∘ (dP − delta). One program per tile of the bias's own shape
    (Bb, Hb, Lqb, Lkb), DBias contiguous float32: it owns a BLOCK_M × BLOCK_N tile (or a row / column / scalar
    when the bias broadcasts over Lq and/or Lk) and loops, in a fixed order, over the batches, heads, query and
    key blocks that map onto it. The sum stays in registers: deterministic, no scratch beyond dbias itself."""
    H, GROUPS, N_CTX_Q, N_CTX_K = sizes
    drop_seed, drop_p = dropout
    BIAS_H, N_B_LOOP, N_H_LOOP = bias_loops
    n_tiles_n = tl.cdiv(N_CTX_K, BLOCK_N)
    if COLS_BCAST:
        n_tiles_n = 1
    tile_m = tl.program_id(0) // n_tiles_n
    tile_n = tl.program_id(0) % n_tiles_n
    bias_z = tl.program_id(1) // BIAS_H
    bias_h = tl.program_id(1) % BIAS_H
    offs_d = tl.arange(0, HEAD_DIM)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    m_first = tile_m * BLOCK_M
    m_last = m_first + 1  # exclusive bound on block starts: one query block ...
    if ROWS_BCAST:
        m_first = 0
        m_last = N_CTX_Q  # ... or all of them
    for iz in range(0, N_B_LOOP):
        off_z = (bias_z + iz).to(tl.int64)
        for ih in range(0, N_H_LOOP):
            off_h = (bias_h + ih).to(tl.int64)
            off_hk = off_h // GROUPS
            off_hz = off_z * H + off_h
            Qh = Q + off_z * stride_q[0] + off_h * stride_q[1]
            DOh = DO + off_hz * N_CTX_Q * HEAD_DIM_REAL
            Kh = K + off_z * stride_k[0] + off_hk * stride_k[1]
            Vh = V + off_z * stride_v[0] + off_hk * stride_v[1]
            Biash, Maskh, KPMz, Occh, Docz, DocRangez = _mask_pointers(extras, stride_bias, stride_mask, stride_occ,
                                                                       off_z, off_h, N_CTX_K)
            for start_m in range(m_first, m_last, BLOCK_M):
                offs_m = start_m + tl.arange(0, BLOCK_M)
                row_ok = offs_m < N_CTX_Q
                _, q, do = _load_q_do(Qh, DOh, offs_m, row_ok, stride_q, offs_d, HEAD_DIM_REAL, UPCAST)
                lse = tl.load(LSE + off_hz * N_CTX_Q + offs_m, mask=row_ok, other=float("inf"))
                delta = tl.load(Delta + off_hz * N_CTX_Q + offs_m, mask=row_ok, other=0.0)
                lo, _, _, hi = _key_block_range(start_m // BLOCK_M, sizes, window, BLOCK_M, BLOCK_N, HAS_LEFT,
                                                HAS_RIGHT)
                n_first = tl.maximum(tile_n * BLOCK_N, lo)
                n_last = tl.minimum(tile_n * BLOCK_N + 1, hi)
                if COLS_BCAST:
                    n_first = lo
                    n_last = hi
                for start_n in range(n_first, n_last, BLOCK_N):
                    live = _tile_live(Occh, DocRangez, stride_occ, start_m, start_n, sizes, HAS_MASK, HAS_DOCS,
                                      BLOCK_M, BLOCK_N)
                    if live:
                        offs_n, kT, vT = _kv_block_T(Kh, Vh, start_n, stride_k, stride_v, N_CTX_K, offs_d,
                                                     HEAD_DIM_REAL, UPCAST, BLOCK_N)
                        qk = tl.dot(q, kT, input_precision=INPUT_PRECISION)
                        s = _score_tile(qk, offs_m[:, None], offs_n[None, :], qk_scale, Biash, Maskh, KPMz, stride_bias, stride_mask,
                                        N_CTX_Q, N_CTX_K, window, softcap2, Docz,
                                        True, HAS_LEFT, HAS_RIGHT, HAS_BIAS, HAS_MASK, HAS_KPM, HAS_SOFTCAP, HAS_DOCS)
                        p = tl.math.exp2(s - lse[:, None])
                        dp = tl.dot(do, vT, input_precision=INPUT_PRECISION)
                        if HAS_DROPOUT:
                            keep = _dropout_keep(drop_seed + off_hz.to(tl.int32), offs_m[:, None], offs_n[None, :],
                                                 N_CTX_K, drop_p)
                            dp = tl.where(keep, dp * (1.0 / (1.0 - drop_p)), 0.0)
                        acc += p * (dp - delta[:, None])
    # DBias is contiguous (Bb, Hb, Lqb, Lkb) with Lqb = 1 when ROWS_BCAST and Lkb = 1 when COLS_BCAST.
    n_cols = N_CTX_K
    if COLS_BCAST:
        n_cols = 1
    n_rows = N_CTX_Q
    if ROWS_BCAST:
        n_rows = 1
    DBias += tl.program_id(1).to(tl.int64) * n_rows * n_cols
    offs_m = tile_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if ROWS_BCAST and COLS_BCAST:
        tl.store(DBias, tl.sum(tl.sum(acc, axis=1), axis=0))
    elif ROWS_BCAST:
        tl.store(DBias + offs_n, tl.sum(acc, axis=0), mask=offs_n < N_CTX_K)
    elif COLS_BCAST:
        tl.store(DBias + offs_m, tl.sum(acc, axis=1), mask=offs_m < N_CTX_Q)
    else:
        tl.store(DBias + offs_m[:, None] * N_CTX_K + offs_n[None, :], acc,
                 mask=(offs_m[:, None] < N_CTX_Q) & (offs_n[None, :] < N_CTX_K))


# --------------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------------

def attn_mask_tile_occupancy(attn_mask: torch.Tensor, Lq: int, Lk: int, block: int = OCC_BLOCK) -> torch.Tensor:
    """(Bm, Hm, ceil(Lq'/block), ceil(Lk'/block)) int8: 1 where the mask has any True in that block × block tile.

    Dims the mask broadcasts (size 1) stay size 1. Lq' / Lk' are the mask's own sizes. Public so that callers can
    see how block-sparse a mask is (`occupancy.float().mean()` ≈ the fraction of tiles the kernels compute)."""
    return tile_occupancy(_as4d(attn_mask), block, block).to(torch.int8)


def _unit_stride(*ts):
    """The kernels read rows with unit stride in the head dim; other strides are free."""
    return tuple(t if t.stride(-1) == 1 else t.contiguous() for t in ts)


def _buckets(Lq: int, Lk: int) -> tuple[int, int]:
    """Autotune key for the lengths (the kernels ignore these arguments)."""
    return triton.next_power_of_2(Lq), triton.next_power_of_2(Lk)


class _Meta:
    """Plain attributes describing one call (window bounds with causal folded in, which masks are present)."""

    def __init__(self, q, k, causal, window, key_padding_mask, attn_mask, bias, scale, softcap=None,
                 document_ids=None, dropout_p=0.0, dropout_seed=0):
        left, right = window
        if causal:  # causal is the window's right bound 0
            right = 0 if right < 0 else min(right, 0)
        # A bound beyond Lq + Lk changes nothing; clamping keeps the kernels' int32 index arithmetic in range.
        reach = q.shape[2] + k.shape[2]
        left, right = (min(w, reach) if w >= 0 else w for w in (left, right))
        self.left, self.right = left, right
        self.bias, self.attn_mask, self.key_padding_mask = bias, attn_mask, key_padding_mask
        self.dtype = q.dtype
        D = q.shape[-1]
        self.sm_scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
        self.head_dim = max(16, triton.next_power_of_2(D))
        self.head_dim_real = D
        self.softcap2 = float(softcap) * LOG2E if softcap else 0.0  # the cap in the kernels' base-2 units
        self.document_ids = document_ids  # (B, Lk) int: packed sequences, or None
        self.drop_p, self.drop_seed = float(dropout_p), int(dropout_seed) % DROPOUT_SEED_RANGE

    def constexprs(self):
        """Compile-time arguments shared by every kernel launch."""
        return dict(HEAD_DIM=self.head_dim, HEAD_DIM_REAL=self.head_dim_real,
                    HAS_LEFT=self.left >= 0, HAS_RIGHT=self.right >= 0, HAS_BIAS=self.bias is not None,
                    HAS_MASK=self.attn_mask is not None, HAS_KPM=self.key_padding_mask is not None,
                    HAS_SOFTCAP=self.softcap2 > 0, HAS_DOCS=self.document_ids is not None, HAS_DROPOUT=self.drop_p > 0,
                    UPCAST=INTERPRET and self.dtype == torch.bfloat16, INPUT_PRECISION=input_precision(self.dtype))

    def launch_args(self, q, k, v):
        """The arguments every kernel takes after its own tensors, in signature order, grouped into tuples
        (Triton passes each element as its own specialized argument): `extras` = the bias, mask, padding,
        occupancy and document tensors; the (z, h, row) strides of q, k, v; the (broadcast, stride-0) strides of
        bias, mask and occupancy; `sizes` = (H, GROUPS, Lq, Lk); the autotune buckets; the scaled softmax
        scale; `window`; the cap; `dropout` = (seed, p). An absent tensor is q, a never-read placeholder. The
        padding mask and the document tables are contiguous (B, ·): the kernels derive their batch strides."""
        B, Hq, Lq, _ = q.shape
        Hkv, Lk = k.shape[1], k.shape[2]
        full = (B, Hq, Lq, Lk)
        bias, mask, occ, kpm, doc, ranges = q, q, q, q, q, q
        bias_strides = mask_strides = occ_strides = (0, 0, 0, 0)
        if self.bias is not None:
            bias = _as4d(self.bias).expand(full)
            bias_strides = bias.stride()
        if self.attn_mask is not None:
            mask = _as4d(self.attn_mask).view(torch.uint8).expand(full)
            occ = attn_mask_tile_occupancy(self.attn_mask, Lq, Lk)
            occ = occ.expand(B, Hq, triton.cdiv(Lq, OCC_BLOCK), triton.cdiv(Lk, OCC_BLOCK))
            mask_strides, occ_strides = mask.stride(), occ.stride()
        if self.key_padding_mask is not None:
            kpm = self.key_padding_mask.view(torch.uint8).contiguous()  # (B, Lk)
        if self.document_ids is not None:
            doc = self.document_ids.to(torch.int32).contiguous()  # (B, Lk)
            ranges = document_ranges(doc, OCC_BLOCK)  # (B, ceil(Lk / OCC), 2)
        return ((bias, mask, kpm, occ, doc, ranges), q.stride()[:3], k.stride()[:3], v.stride()[:3],
                tuple(bias_strides), tuple(mask_strides), tuple(occ_strides), (Hq, Hq // Hkv, Lq, Lk),
                *_buckets(Lq, Lk), self.sm_scale * LOG2E, (self.left, self.right), self.softcap2,
                (self.drop_seed, self.drop_p))


def _attn_forward(q, k, v, meta):
    B, Hq, Lq, D = q.shape
    o = torch.empty((B, Hq, Lq, D), device=q.device, dtype=q.dtype)
    lse = torch.empty((B, Hq, Lq), device=q.device, dtype=torch.float32)
    grid = lambda META: (triton.cdiv(Lq, META["BLOCK_M"]), B * Hq)  # noqa: E731
    _attn_fwd[grid](q, k, v, o, lse, *meta.launch_args(q, k, v), **meta.constexprs())
    return o, lse


def _attn_backward(do, q, k, v, o, lse, meta, need_dbias, dlse=None):
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    do = do.contiguous()  # shares o's contiguous strides
    shared, consts = meta.launch_args(q, k, v), meta.constexprs()
    delta = torch.empty_like(lse)
    PRE_BLOCK = 64
    _attn_bwd_preprocess[(triton.cdiv(Lq, PRE_BLOCK), B * Hq)](o, do, delta, Lq, HEAD_DIM=meta.head_dim,
                                                               HEAD_DIM_REAL=D, BLOCK_M=PRE_BLOCK)
    if dlse is not None:  # d lse_i / d logits_ij = p_ij, so the LSE's gradient joins dS = P ∘ (dP − delta)
        delta = delta - dlse.to(torch.float32)
    dq = torch.empty((B, Hq, Lq, D), device=q.device, dtype=q.dtype)
    dk = torch.empty((B, Hkv, Lk, D), device=k.device, dtype=k.dtype)
    dv = torch.empty_like(dk)
    grid_kv = lambda META: (triton.cdiv(Lk, META["BLOCK_N"]), B * Hkv)  # noqa: E731
    parts = (DK_ONLY, DV_ONLY) if meta.head_dim >= SPLIT_DKDV_HEAD_DIM else (DKDV_BOTH,)
    for part in parts:
        _attn_bwd_dkdv[grid_kv](q, k, v, do, dk, dv, lse, delta, *shared, meta.sm_scale, PART=part.value, **consts)
    grid_q = lambda META: (triton.cdiv(Lq, META["BLOCK_M"]), B * Hq)  # noqa: E731
    _attn_bwd_dq[grid_q](q, k, v, do, dq, lse, delta, *shared, meta.sm_scale, **consts)
    if not need_dbias:
        return dq, dk, dv, None
    bias = meta.bias
    Bb, Hb, Lqb, Lkb = _as4d(bias).shape
    rows_bcast, cols_bcast = Lqb == 1 and Lq > 1, Lkb == 1 and Lk > 1
    dbias4 = torch.empty((Bb, Hb, Lqb, Lkb), device=q.device, dtype=torch.float32)

    def grid_bias(META):
        tiles_m = 1 if rows_bcast else triton.cdiv(Lq, META["BLOCK_M"])
        tiles_n = 1 if cols_bcast else triton.cdiv(Lk, META["BLOCK_N"])
        return (tiles_m * tiles_n, Bb * Hb)

    loops = (Hb, B if Bb == 1 else 1, Hq if Hb == 1 else 1)  # bias heads; batches, heads summed per program
    _attn_bwd_dbias[grid_bias](q, k, v, do, lse, delta, dbias4, *shared, loops, ROWS_BCAST=rows_bcast,
                               COLS_BCAST=cols_bcast, **consts)
    return dq, dk, dv, dbias4.reshape(bias.shape).to(bias.dtype)


def attention_fwd(q, k, v, *, causal=False, window=(-1, -1), key_padding_mask=None, attn_mask=None, bias=None,
                  scale=None, softcap=None, document_ids=None, dropout_p=0.0, dropout_seed=0):
    """Forward launcher, outside autograd: (out (B, Hq, Lq, D), lse (B, Hq, Lq) float32 as the kernel stores it:
    base 2, +inf on rows with no visible key; `runtime.lse_natural` converts).

    The kernel behind `attnkit.attention(..., backend="triton")` (its registered op calls this);
    inputs already validated by `attnkit.kernels.validate`."""
    q, k, v = _unit_stride(q, k, v)
    meta = _Meta(q, k, causal, tuple(window), key_padding_mask, attn_mask, bias, scale, softcap, document_ids,
                 dropout_p, dropout_seed)
    return _attn_forward(q, k, v, meta)


def attention_bwd(do, q, k, v, out, lse, *, causal=False, window=(-1, -1), key_padding_mask=None, attn_mask=None,
                  bias=None, scale=None, need_dbias=False, softcap=None, dlse=None, document_ids=None, dropout_p=0.0,
                  dropout_seed=0):
    """Backward launcher, outside autograd: (dq, dk, dv, dbias or None) from `attention_fwd`'s out and lse.
    dlse: gradient w.r.t. the natural-log LSE (`lse_natural(lse)`), (B, Hq, Lq), or None."""
    q, k, v = _unit_stride(q, k, v)
    meta = _Meta(q, k, causal, tuple(window), key_padding_mask, attn_mask, bias, scale, softcap, document_ids,
                 dropout_p, dropout_seed)
    return _attn_backward(do, q, k, v, out, lse, meta, need_dbias, dlse)


@triton.jit
def _dropout_mask_kernel(Out, drop_seed, drop_p, N_CTX_Q, N_CTX_K, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    off_hz = tl.program_id(2)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    keep = _dropout_keep(drop_seed + off_hz, offs_m[:, None], offs_n[None, :], N_CTX_K, drop_p)
    Out += off_hz.to(tl.int64) * N_CTX_Q * N_CTX_K
    tl.store(Out + offs_m[:, None] * N_CTX_K + offs_n[None, :], keep.to(tl.int8),
             mask=(offs_m[:, None] < N_CTX_Q) & (offs_n[None, :] < N_CTX_K))


def attention_dropout_mask(B, H, Lq, Lk, dropout_p, dropout_seed, device) -> torch.Tensor:
    """(B, H, Lq, Lk) bool: the keep mask the kernels use for this seed (for tests: it is L×L)."""
    out = torch.empty(B, H, Lq, Lk, dtype=torch.int8, device=device)
    grid = (triton.cdiv(Lq, 64), triton.cdiv(Lk, 64), B * H)
    _dropout_mask_kernel[grid](out, int(dropout_seed) % DROPOUT_SEED_RANGE, float(dropout_p), Lq, Lk,
                               BLOCK_M=64, BLOCK_N=64)
    return out.bool()


# --------------------------------------------------------------------------------------------
# Split-KV decoding: few queries, a long KV cache
# --------------------------------------------------------------------------------------------

SPLIT_KV_MAX_LQ = 16        # queries per row up to which decoding splits the keys
# ... when the cache is at least this long. On an H200 (2026-12-04, benchmarks/gpu_check.sh, D = 128, Hq = 32)
# the split path took ~0.6 ms a call whatever the length (0.59 / 0.66 / 0.66 ms at 16k / 32k / 64k keys: a fixed
# cost not yet located), so it paid only where the plain forward is slower than that: 64k keys at B·Hq = 32
# (0.66 against 0.78 ms); at 16k and 32k it lost (0.59 against 0.26 ms, 0.66 against 0.40 ms).
SPLIT_KV_MIN_LK = 65536
SPLIT_KV_CHUNK = 1024       # keys per split (the number of splits grows with the cache)


def _sm_count(device: torch.device) -> int:
    """Streaming multiprocessors the launch can fill (an H100's 132 where there is no GPU: the interpreter)."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 132


def split_kv_supported(q, k, *, window=(-1, -1), key_padding_mask=None, attn_mask=None, bias=None,
                       document_ids=None, dropout_p=0.0) -> bool:
    """Whether `attention_decode_split` computes this call: few queries, a long cache, and only causal / scale /
    softcap (the splits run as extra heads, so per-key masks and biases cannot follow them)."""
    B, Hq, Lq, Lk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    # With one program per (b, head) already filling every SM the plain forward is faster and has no merge: on an
    # H200 at Lk = 8k, B·Hq = 256 it ran 0.26 ms against the split path's 0.98 ms (2026-12-04).
    fills = B * Hq >= _sm_count(q.device)
    return (not fills and Lq <= SPLIT_KV_MAX_LQ and Lk >= max(SPLIT_KV_MIN_LK, 2 * Lq) and tuple(window) == (-1, -1)
            and key_padding_mask is None and attn_mask is None and bias is None and document_ids is None
            and not dropout_p)


@triton.jit
def _merge_part(acc, m_i, l_i, ORow, LSERow, offs_d, d_ok):
    """Fold one part's row (output at ORow, base-2 LSE at LSERow: +inf where it saw no key) into the merge."""
    lse = tl.load(LSERow)
    lse = tl.where(lse == float("inf"), float("-inf"), lse)  # an empty part weighs 0
    m_new = tl.maximum(m_i, lse)
    m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # no part so far saw a key: exp2(−inf − 0) keeps all 0
    alpha = tl.math.exp2(m_i - m_ref)
    w = tl.math.exp2(lse - m_ref)
    o = tl.load(ORow + offs_d, mask=d_ok, other=0.0).to(tl.float32)
    return acc * alpha + w * o, m_new, l_i * alpha + w


@triton.jit
def _split_kv_combine(O, LSE, OTail, LSETail, Out, LSEOut, ROWS, S,
                      HEAD_DIM: tl.constexpr, HEAD_DIM_REAL: tl.constexpr, HAS_TAIL: tl.constexpr):
    """One program per query row r: out_r = Σ_s e^{lse_s − lse}·out_s over the S splits (O (S, ROWS, D) and LSE
    (S, ROWS), base 2, as the forward wrote them) and the tail (OTail (ROWS, D)), lse = log Σ_s e^{lse_s}
    stored in natural log."""
    r = tl.program_id(0)
    offs_d = tl.arange(0, HEAD_DIM)
    d_ok = offs_d < HEAD_DIM_REAL
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    m_i = float("-inf")
    l_i = 0.0
    for s in range(S):
        row = s * ROWS + r
        acc, m_i, l_i = _merge_part(acc, m_i, l_i, O + row * HEAD_DIM_REAL, LSE + row, offs_d, d_ok)
    if HAS_TAIL:
        acc, m_i, l_i = _merge_part(acc, m_i, l_i, OTail + r * HEAD_DIM_REAL, LSETail + r, offs_d, d_ok)
    empty = l_i == 0.0  # no key in any part: output 0, LSE −inf (torch.logsumexp's value)
    out = acc / tl.where(empty, 1.0, l_i)
    lse = tl.where(empty, float("-inf"), (m_i + tl.math.log2(tl.where(empty, 1.0, l_i))) * (1.0 / _LOG2E))
    tl.store(Out + r * HEAD_DIM_REAL + offs_d, out.to(Out.dtype.element_ty), mask=d_ok)
    tl.store(LSEOut + r, lse)


def attention_decode_split(q, k, v, *, causal=False, scale=None, softcap=None, chunk=None):
    """Forward only (inference): (out (B, Hq, Lq, D), lse (B, Hq, Lq) natural log). flash-attn's split-KV /
    FlexAttention's flex-decoding: with Lq = 1 the plain forward runs B·Hq programs, a handful of SMs for one
    long cache; here the keys [0, P) that every query sees (P = Lk − Lq + 1 when causal) are cut into S splits of
    `chunk` keys, and one launch of the forward kernel treats the splits as its batch and (b, kv head) as its
    heads, so B·Hq·S programs share the work. The splits merge through their LSEs (lse = logsumexp_s lse_s,
    out = Σ_s e^{lse_s − lse}·out_s). Causal: the last Lq − 1 keys, which only some queries see, are one more part
    through the causal kernel (bottom-right alignment makes its visibility exactly the global one).
    No copy of the cache: split s is rows [s·C, (s + 1)·C) of every (b, kv head), a strided view of k and v
    whenever their batch and head dims merge into one stride (a contiguous cache, or a `StaticKVCache` view of its
    longer buffer), whether or not the splits tile Lk; the remainder is read in place too."""
    q, k, v = _unit_stride(q, k, v)
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    P = Lk - Lq + 1 if causal else Lk
    S = max(1, P // (chunk or SPLIT_KV_CHUNK))
    C = P // S  # keys per split; the remainder [S·C, P) joins the tail

    def kv(t):  # (b, kv head hk, split s) → kernel batch s, head b·Hkv + hk; query head b·Hq + h reads h // G
        return t.reshape(B * Hkv, Lk, D)[:, :S * C].unflatten(1, (S, C)).transpose(0, 1)  # (S, B·Hkv, C, D)
    q_split = q.reshape(1, B * Hq, Lq, D).expand(S, B * Hq, Lq, D)  # every split sees every query (stride 0)
    o, lse = attention_fwd(q_split, kv(k), kv(v), scale=scale, softcap=softcap)  # (S, B·Hq, Lq, D), (S, B·Hq, Lq)
    has_tail = S * C < Lk  # the remainder of the prefix (no mask) and, when causal, the partly visible tail
    o_tail, lse_tail = (attention_fwd(q, k[:, :, S * C:], v[:, :, S * C:], causal=causal, scale=scale,
                                      softcap=softcap) if has_tail else (o, lse))  # (B, Hq, Lq, D), (B, Hq, Lq)
    out = torch.empty((B, Hq, Lq, D), device=q.device, dtype=q.dtype)
    lse_out = torch.empty((B, Hq, Lq), device=q.device, dtype=torch.float32)
    # One launch merges the parts (flash-attn's combine kernel) where a dozen torch ops did: the split path cost
    # ~0.5 ms a call at every cache length on an H200, a floor that looks like launch overhead (2026-12-04).
    _split_kv_combine[(B * Hq * Lq,)](o, lse, o_tail, lse_tail, out, lse_out, B * Hq * Lq, S,
                                      HEAD_DIM=max(16, triton.next_power_of_2(D)), HEAD_DIM_REAL=D,
                                      HAS_TAIL=has_tail, num_warps=1 if D <= 64 else 2)
    return out, lse_out
