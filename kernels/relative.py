"""Position-aware fused attention in Triton, forward and backward: learned relative embeddings (Shaw et al. 2018;
Huang et al. 2018, Music Transformer), T5's bucketed relative bias (Raffel et al. 2020) and ALiBi (Press et al.
2022), in the FlashAttention-2 loop (Dao 2023) with no L×L tensor anywhere.

What it computes (the meanings are in `attnkit.kernels.reference`), with i' = i + (Lk − Lq), δ = i' − j:

    relative  logits_ij = scale · (q_i·k_j + q_i·rel[h, idx(δ)])
              idx(δ) = min(max(δ, 0), R − 1) (causal)  or  P − clamp(δ, −P, P) with R = 2P + 1 (bidirectional)
    t5        logits_ij = scale · q_i·k_j + table[h, bucket(δ)]          (T5's bucket function, from δ alone)
    alibi     logits_ij = scale · q_i·k_j − slope_h · |δ|
    out_i = Σ_j softmax_j(logits | j visible) v_j; causal: j ≤ i'; key_padding_mask; empty rows → zeros.

How the relative term is fused (the part FlashAttention and FlexAttention cannot express):
    A (BLOCK, BLOCK) tile with query block m and key block n only meets the 2·BLOCK − 1 distances
    δ = base − (BLOCK − 1) … base + BLOCK − 1, base = m0 + (Lk − Lq) − n0. The kernel loads those embedding rows
    (a "band", (2·BLOCK, D), clipped indices, so distances past R − 1 reuse the last row), computes
    q_tile @ bandᵀ (BLOCK, 2·BLOCK) as two (BLOCK, BLOCK) tl.dots, one per band half, and skews them into the
    tile with tl.gather: tile[r, c] = band[r, r − c + BLOCK − 1] (the lower half fills r ≤ c, the upper r > c).
    Tiles whose distances all clip to one embedding (far from the diagonal when R < L) skip the band and add
    q·rel[idx] per row.
    Backward: dQ gets scale · skew⁻¹(dS) @ band; dK, dV as in FlashAttention-2. drel: tiles on one block
    diagonal (m − n fixed) share the same band, so a third pass has one program per (b, h, block diagonal)
    walk its tiles and accumulate skew⁻¹(dS)ᵀ @ q in registers: one (2·BLOCK, D) partial per diagonal, a
    buffer of ≈ 2·(Lq + Lk)·D floats per (b, h). The partials are folded into (Hr, R, D) by a fixed-order
    torch reduction (adjacent diagonals' half-bands overlap exactly; clipped distances are summed with
    .sum()). No atomics: gradients are bit-identical run to run.
    T5 / ALiBi: the dQ pass also reduces dS per bucket (a one-hot over the band's buckets) or Σ −|δ|·dS per
    slope, into one small vector per (b, h, query block); torch sums those in a fixed order.

T5 buckets: the bucket of |δ| ≥ num_buckets/2 (per direction) is T5's float32 log formula; the launcher
evaluates that formula (the reference, `t5_bucket`) once for n = 0 … max_distance and passes the integer
thresholds where each bucket starts, and the kernel counts thresholds ≤ |δ|. So kernel and reference
agree bit for bit, with no device-dependent log rounding at bucket boundaries.

Limits: BLOCK_M = BLOCK_N (the diagonal structure needs square tiles); head dim ≤ 128 (padded to a power of
two ≥ 16); float32 / float16 / bfloat16 (fp32 dots in IEEE unless TF32 is allowed for matmuls). ALiBi slopes
receive a gradient too (Σ −|δ|·dS), though ALiBi normally keeps them fixed. On CPU the kernels run in Triton's
interpreter (TRITON_INTERPRET=1), where bf16 tiles are upcast to fp32 after loading.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from attnkit.kernels.attention import _LOG2E as LOG2E  # the one constexpr of runtime.LOG2E
from attnkit.kernels.attention import DK_ONLY, DKDV_BOTH, DV_ONLY
from attnkit.kernels.reference import t5_bucket
from attnkit.kernels.runtime import INTERPRET, input_precision, prepare_interpreter

prepare_interpreter()
POS_RELATIVE, POS_T5, POS_ALIBI = 0, 1, 2

# --------------------------------------------------------------------------------------------
# Launch configuration (data). Square tiles; the interpreter runs fastest with 64.
# --------------------------------------------------------------------------------------------

BLOCK = 64
NUM_WARPS = 4
NUM_STAGES = 1 if INTERPRET else 2
# Per position kind: (BLOCK, BLOCK, num_warps, num_stages) → head dims (padded) it is kept for: the fewest spill
# bytes, every dot a wgmma, on sm_90a under Triton 3.9 and 3.6 (benchmarks/gpu_static_report.py). The launchers
# run the first kept entry for their kind and head dim.
# 8 warps: the relative / T5 kernels hold a band product besides the FlashAttention state, and with 4 warps
# they spilled 64–3184 bytes (2026-12-02); with 8 every kept config is spill-free (2026-12-03). At D = 128 a
# second pipeline stage's buffers tip every position kernel into spilling (rel fwd 12 B, T5 dK/dV 32 B, ...), so
# D = 128 runs unpipelined (1 stage). The learned-relative kernels run 1 stage at every head dim: with 2, Triton
# 3.6's software pipeliner fails on their forward, dQ and drel ("PassManager::run failed", seen on an H200 on
# 2026-12-04) and their dK/dV spills 72 B there; with 1 stage all four are spill-free on 3.6 and 3.9 at D = 64.
_PIPELINED = {(64, 64, 8, 2): (16, 32, 64), (64, 64, 8, 1): (128,), (64, 64, 4, 2): ()}
POS_SHAPES = {POS_RELATIVE: {(64, 64, 8, 1): (16, 32, 64, 128), (64, 64, 8, 2): (), (64, 64, 4, 2): ()},
              POS_T5: _PIPELINED, POS_ALIBI: _PIPELINED}
# From this padded head dim up the learned-relative backward runs split passes (`_split`): the joint ones spill
# on sm_90a at D = 128 (dK/dV 68 B, dQ 96 B, drel 48 B), the split ones do not (BENCHMARKS.md).
SPLIT_HEAD_DIM = 128


def _split(kind: int, head_dim: int) -> tuple[tuple, int, int]:
    """(dK/dV parts, dQ column chunks, drel programs per block diagonal) for a kind and padded head dim.

    The cost, per (BLOCK, BLOCK) tile that meets the band, in BLOCK²·D multiply-adds (one dot over D = 1; the
    band products q·bandᵀ and skew⁻¹(dZ)·band are 2 each, one per half): recomputing dZ is QKᵀ 1 + band 2 + dP 1
    = 4 (P alone 3). dK/dV 6 → dK 5 + dV 4 = 9; dQ 7 (dZ·K 1, band 2) → 4 chunks × (4 + 0.25 + 0.5) = 19 (2
    chunks, 11, still spill 32–48 B); drel 6 → 2 halves × (4 + 1) = 10. The backward goes 19 → 38 (×2),
    forward (4) + backward 23 → 42 (×1.8): the price of 0 spill bytes, to be weighed against them on a GPU.
    """
    if kind == POS_RELATIVE and head_dim >= SPLIT_HEAD_DIM:
        return (DK_ONLY, DV_ONLY), 4, 2
    return (DKDV_BOTH,), 1, 1


def _launch_shape(kind: int, head_dim: int) -> tuple[int, int]:
    """(num_warps, num_stages) for a position kind and head dim (the interpreter: one warp config, one stage)."""
    if not INTERPRET:
        for (_, _, warps, stages), dims in POS_SHAPES[kind].items():
            if head_dim in dims:
                return warps, stages
    return NUM_WARPS, NUM_STAGES


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

@triton.jit
def _rel_index(delta, R, CAUSAL: tl.constexpr):
    """Embedding row used at signed distance delta = i' − j (monotone in delta)."""
    if CAUSAL:
        idx = tl.minimum(tl.maximum(delta, 0), R - 1)
    else:
        P = (R - 1) // 2
        idx = P - tl.minimum(tl.maximum(delta, -P), P)
    return idx


@triton.jit
def _t5_bucket(delta, Thr, NBX: tl.constexpr, MAX_EXACT: tl.constexpr, BIDIRECTIONAL: tl.constexpr):
    """T5 bucket of delta = i' − j: exact below MAX_EXACT, then one more bucket per threshold passed."""
    if BIDIRECTIONAL:
        side = tl.where(delta < 0, NBX, 0)  # keys after the query use the upper half of the buckets
        n = tl.abs(delta)
    else:
        side = delta * 0
        n = tl.maximum(delta, 0)
    large = n * 0 + MAX_EXACT
    for t in tl.static_range(NBX - MAX_EXACT - 1):
        large += (n >= tl.load(Thr + t)).to(large.dtype)
    return side + tl.where(n < MAX_EXACT, n, large)


@triton.jit
def _tile_logits(q, kT, Pos, Thr, offs_m, offs_n, start_m, start_n, OFF, R, slope, scale,
                 stride_pr, offs_d, HEAD_DIM_REAL,
                 POS_KIND: tl.constexpr, CAUSAL: tl.constexpr, BIDIRECTIONAL: tl.constexpr,
                 NBX: tl.constexpr, MAX_EXACT: tl.constexpr, BLOCK: tl.constexpr, UPCAST: tl.constexpr,
                 INPUT_PRECISION: tl.constexpr):
    """Logits (natural units, unmasked) of one (BLOCK, BLOCK) tile; q (BLOCK, D), kT (D, BLOCK)."""
    qk = tl.dot(q, kT, input_precision=INPUT_PRECISION)  # (BLOCK, BLOCK)
    dmin = start_m + OFF - start_n - (BLOCK - 1)  # smallest δ in the tile
    dmax = start_m + OFF - start_n + (BLOCK - 1)  # largest
    if POS_KIND == 0:  # learned relative embeddings
        r_lo = _rel_index(dmin, R, CAUSAL)
        r_hi = _rel_index(dmax, R, CAUSAL)
        if r_lo == r_hi:  # every distance clips to one embedding: q·rel[r] per row
            e = tl.load(Pos + r_lo * stride_pr + offs_d, mask=offs_d < HEAD_DIM_REAL, other=0.0)
            qe = tl.sum(q.to(tl.float32) * e.to(tl.float32)[None, :], axis=1)  # (BLOCK,)
            qk = qk + qe[:, None]
        else:  # the band in two (BLOCK, D) halves: half the live band product, the same FLOPs
            for half in tl.static_range(2):
                band_e = _band_half(Pos, dmin, half, R, stride_pr, offs_d, HEAD_DIM_REAL, CAUSAL, BLOCK, UPCAST)
                band = tl.dot(q, tl.trans(band_e), input_precision=INPUT_PRECISION)  # (BLOCK, BLOCK)
                qk = qk + _skew_half(band, half, BLOCK, _opaque_zero(dmin))
        z = qk * scale
    else:
        z = qk * scale
        delta = offs_m[:, None] + OFF - offs_n[None, :]  # (BLOCK, BLOCK): i' − j
        if POS_KIND == 1:  # T5 bucketed bias
            b_lo = _t5_bucket(dmin, Thr, NBX, MAX_EXACT, BIDIRECTIONAL)
            b_hi = _t5_bucket(dmax, Thr, NBX, MAX_EXACT, BIDIRECTIONAL)
            uniform = b_lo == b_hi
            if BIDIRECTIONAL:  # the two directions use different buckets
                uniform = uniform & ((dmin >= 0) | (dmax < 0))
            if uniform:  # far tiles: one bucket
                z = z + tl.load(Pos + b_lo * stride_pr).to(tl.float32)
            else:
                bucket = _t5_bucket(delta, Thr, NBX, MAX_EXACT, BIDIRECTIONAL)
                z = z + tl.load(Pos + bucket * stride_pr).to(tl.float32)
        else:  # ALiBi
            z = z - slope * tl.abs(delta).to(tl.float32)
    return z


@triton.jit
def _visible(offs_m, offs_n, KPM, N_CTX_Q, N_CTX_K, OFF, CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr):
    """(BLOCK, BLOCK) bool: query row exists, key exists, causal, key not padding."""
    vis = (offs_m[:, None] < N_CTX_Q) & (offs_n[None, :] < N_CTX_K)
    if CAUSAL:
        vis = vis & (offs_n[None, :] <= offs_m[:, None] + OFF)
    if HAS_KPM:
        kpm = tl.load(KPM + offs_n, mask=offs_n < N_CTX_K, other=0)
        vis = vis & (kpm != 0)[None, :]
    return vis


@triton.jit
def _band_half(Pos, dmin, HALF: tl.constexpr, R, stride_pr, offs_d, HEAD_DIM_REAL, CAUSAL: tl.constexpr,
               BLOCK: tl.constexpr, UPCAST: tl.constexpr):
    """Band rows t = HALF·BLOCK … HALF·BLOCK + BLOCK − 1 (distance dmin + t) as a (BLOCK, HEAD_DIM) tile."""
    rows = _rel_index(dmin + HALF * BLOCK + tl.arange(0, BLOCK), R, CAUSAL)  # (BLOCK,) embedding rows
    band_e = tl.load(Pos + rows[:, None] * stride_pr + offs_d[None, :], mask=offs_d[None, :] < HEAD_DIM_REAL,
                     other=0.0)
    if UPCAST:
        band_e = band_e.to(tl.float32)
    return band_e


@triton.jit
def _opaque_zero(x):
    """0, computed from the loop-variant scalar x in a way the compiler cannot fold. The skew's (BLOCK, BLOCK)
    index and mask tensors are loop-invariant; built from this zero they are rebuilt per tile, a few integer ops,
    instead of hoisted out of the loop and held in registers through it (64 per thread at 8 warps, the bulk of
    the relative kernels' spills on sm_90a)."""
    a = tl.abs(x)
    return a // (a + 1)


@triton.jit
def _skew_half(band, HALF: tl.constexpr, BLOCK: tl.constexpr, zero):
    """One band half's share of the tile: (BLOCK, BLOCK) → (BLOCK, BLOCK), tile[r, c] = band[r, t − HALF·BLOCK]
    with t = r − c + BLOCK − 1 (the lower half fills r ≤ c, the upper r > c; 0 elsewhere). zero: `_opaque_zero`."""
    t = tl.arange(0, BLOCK)[:, None] - tl.arange(0, BLOCK)[None, :] + BLOCK - 1 - HALF * BLOCK + zero
    ok = (t >= 0) & (t < BLOCK)
    return tl.where(ok, tl.gather(band, tl.where(ok, t, 0), 1), 0.0)


@triton.jit
def _unskew(ds, BLOCK: tl.constexpr, zero):
    """Inverse of the skew for both band halves, with one gather: (BLOCK, BLOCK) → (g, low). Band half HALF's
    share is out[r, s] = ds[r, c] with c = r + BLOCK − 1 − (HALF·BLOCK + s), 0 where c is outside the tile: half 0
    holds s ≥ r (`low`), half 1 s < r, and there c = (r − 1 − s) mod BLOCK, so g[r, s] = ds[r, (r − 1 − s) mod
    BLOCK] serves both (`_band_share`). The gathers were what spilled dQ at D = 128 under Triton 3.6: one in
    place of two, with dQ's reload of q and dO, takes it from 128–136 B to 0. zero: `_opaque_zero`; BLOCK is a
    power of two."""
    r = tl.arange(0, BLOCK)[:, None] + zero
    s = tl.arange(0, BLOCK)[None, :]
    return tl.gather(ds, (r - 1 - s) & (BLOCK - 1), 1), s >= r


@triton.jit
def _band_share(g, low, half):
    """Band half `half`'s (0 or 1, constant or not) share of the unskewed tile (g, low) from `_unskew`."""
    return tl.where(low != (half != 0), g, 0.0)


@triton.jit
def _load_rows(Ptr, offs, N, offs_d, HEAD_DIM_REAL, UPCAST: tl.constexpr):
    """Rows offs (< N) of a contiguous (·, D) block at Ptr as a (len(offs), HEAD_DIM) tile, zero past D."""
    x = tl.load(Ptr + offs[:, None] * HEAD_DIM_REAL + offs_d[None, :],
                mask=(offs[:, None] < N) & (offs_d[None, :] < HEAD_DIM_REAL), other=0.0)
    if UPCAST:
        x = x.to(tl.float32)
    return x


@triton.jit
def _store_rows(Ptr, x, offs, N, offs_d, HEAD_DIM_REAL):
    tl.store(Ptr + offs[:, None] * HEAD_DIM_REAL + offs_d[None, :], x.to(Ptr.dtype.element_ty),
             mask=(offs[:, None] < N) & (offs_d[None, :] < HEAD_DIM_REAL))


@triton.jit
def _head(Pos, offset, POS_KIND: tl.constexpr):
    """(this head's position parameters Pos + offset, its ALiBi slope or 0); offset = h · stride_ph, which is 0
    when the heads share one set of embeddings."""
    slope = 0.0
    if POS_KIND == 2:
        slope = tl.load(Pos + offset).to(tl.float32)
    return Pos + offset, slope


# --------------------------------------------------------------------------------------------
# Kernels. q, k, v, out, dO, dQ, dK, dV are contiguous (B, H[kv], L, D) (the launcher ensures it), so their
# offsets follow from the sizes; base offsets are int64 (B·H·L·D may pass 2³¹).
# --------------------------------------------------------------------------------------------

@triton.jit
def _pos_attn_fwd(Q, K, V, Pos, Thr, KPM, Out, LSE, stride_ph, stride_pr,
                  H, GROUPS, N_CTX_Q, N_CTX_K, R, scale, HEAD_DIM_REAL,
                  POS_KIND: tl.constexpr, CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr,
                  BIDIRECTIONAL: tl.constexpr, NBX: tl.constexpr, MAX_EXACT: tl.constexpr,
                  BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr, UPCAST: tl.constexpr,
                  INPUT_PRECISION: tl.constexpr):
    """One program per (query block, b, h): online softmax over the key blocks, the position term per tile."""
    start_m = tl.program_id(0) * BLOCK
    off_bh = tl.program_id(1).to(tl.int64)
    off_bhk = (off_bh // H) * (H // GROUPS) + (off_bh % H) // GROUPS  # GQA: query head h reads kv head h // G
    OFF = N_CTX_K - N_CTX_Q
    offs_m = start_m + tl.arange(0, BLOCK)
    offs_d = tl.arange(0, HEAD_DIM)
    q = _load_rows(Q + off_bh * N_CTX_Q * HEAD_DIM_REAL, offs_m, N_CTX_Q, offs_d, HEAD_DIM_REAL, UPCAST)
    K += off_bhk * N_CTX_K * HEAD_DIM_REAL
    V += off_bhk * N_CTX_K * HEAD_DIM_REAL
    Pos, slope = _head(Pos, (off_bh % H) * stride_ph, POS_KIND)
    KPM += (off_bh // H) * N_CTX_K

    m_i = tl.full((BLOCK,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK,), tl.float32)
    acc = tl.zeros((BLOCK, HEAD_DIM), tl.float32)
    hi = N_CTX_K
    if CAUSAL:  # keys past the block's last visible position are never loaded
        hi = tl.minimum(N_CTX_K, start_m + BLOCK + OFF)
    for start_n in range(0, hi, BLOCK):
        offs_n = start_n + tl.arange(0, BLOCK)
        k = _load_rows(K, offs_n, N_CTX_K, offs_d, HEAD_DIM_REAL, UPCAST)  # (BLOCK, D)
        v = _load_rows(V, offs_n, N_CTX_K, offs_d, HEAD_DIM_REAL, UPCAST)
        z = _tile_logits(q, tl.trans(k), Pos, Thr, offs_m, offs_n, start_m, start_n, OFF, R, slope, scale,
                         stride_pr, offs_d, HEAD_DIM_REAL, POS_KIND, CAUSAL, BIDIRECTIONAL, NBX, MAX_EXACT,
                         BLOCK, UPCAST, INPUT_PRECISION)
        vis = _visible(offs_m, offs_n, KPM, N_CTX_Q, N_CTX_K, OFF, CAUSAL, HAS_KPM)
        z = tl.where(vis, z * LOG2E, float("-inf"))  # base-2 logits
        m_new = tl.maximum(m_i, tl.max(z, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing visible yet: no NaN
        p = tl.math.exp2(z - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=INPUT_PRECISION)
        m_i = m_new
    has_key = l_i > 0
    out = acc / tl.where(has_key, l_i, 1.0)[:, None]
    lse = tl.where(has_key, m_i + tl.math.log2(tl.where(has_key, l_i, 1.0)), float("inf"))  # base 2
    _store_rows(Out + off_bh * N_CTX_Q * HEAD_DIM_REAL, out, offs_m, N_CTX_Q, offs_d, HEAD_DIM_REAL)
    tl.store(LSE + off_bh * N_CTX_Q + offs_m, lse, mask=offs_m < N_CTX_Q)


@triton.jit
def _tile_dz(q, k, v, do, lse, delta, Pos, Thr, KPM, offs_m, offs_n, start_m, start_n, OFF, R, slope, scale,
             stride_pr, offs_d, HEAD_DIM_REAL, N_CTX_Q, N_CTX_K,
             POS_KIND: tl.constexpr, CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr, BIDIRECTIONAL: tl.constexpr,
             NBX: tl.constexpr, MAX_EXACT: tl.constexpr, BLOCK: tl.constexpr, UPCAST: tl.constexpr,
             INPUT_PRECISION: tl.constexpr):
    """Recompute P of one tile and return (P, dZ), dZ = ∂loss/∂logits = P ∘ (dP − delta)."""
    z = _tile_logits(q, tl.trans(k), Pos, Thr, offs_m, offs_n, start_m, start_n, OFF, R, slope, scale,
                     stride_pr, offs_d, HEAD_DIM_REAL, POS_KIND, CAUSAL, BIDIRECTIONAL, NBX, MAX_EXACT,
                     BLOCK, UPCAST, INPUT_PRECISION)
    vis = _visible(offs_m, offs_n, KPM, N_CTX_Q, N_CTX_K, OFF, CAUSAL, HAS_KPM)
    z = tl.where(vis, z * LOG2E, float("-inf"))
    p = tl.math.exp2(z - lse[:, None])  # lse = +inf on empty rows → p = 0
    dp = tl.dot(do, tl.trans(v), input_precision=INPUT_PRECISION)  # (BLOCK, BLOCK)
    dz = p * (dp - delta[:, None])
    return p, dz


@triton.jit
def _pos_attn_bwd_dkdv(Q, K, V, DO, DK, DV, Pos, Thr, KPM, LSE, Delta, stride_ph, stride_pr,
                       H, GROUPS, N_CTX_Q, N_CTX_K, R, scale, HEAD_DIM_REAL,
                       POS_KIND: tl.constexpr, CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr,
                       BIDIRECTIONAL: tl.constexpr, NBX: tl.constexpr, MAX_EXACT: tl.constexpr,
                       BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr, UPCAST: tl.constexpr,
                       INPUT_PRECISION: tl.constexpr, PART: tl.constexpr):
    """One program per (key block, b, kv head): loops over its GQA group's query heads and query blocks.
    PART: DKDV_BOTH, or DK_ONLY / DV_ONLY (one accumulator per launch: the split pass, `_split`)."""
    start_n = tl.program_id(0) * BLOCK
    off_bhk = tl.program_id(1).to(tl.int64)
    off_z = off_bhk // (H // GROUPS)
    OFF = N_CTX_K - N_CTX_Q
    offs_n = start_n + tl.arange(0, BLOCK)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_base = off_bhk * N_CTX_K * HEAD_DIM_REAL
    k = _load_rows(K + kv_base, offs_n, N_CTX_K, offs_d, HEAD_DIM_REAL, UPCAST)  # (BLOCK, D)
    v = _load_rows(V + kv_base, offs_n, N_CTX_K, offs_d, HEAD_DIM_REAL, UPCAST)
    KPM += off_z * N_CTX_K
    dk = tl.zeros((BLOCK, HEAD_DIM), tl.float32)
    dv = tl.zeros((BLOCK, HEAD_DIM), tl.float32)
    lo = 0
    if CAUSAL:  # first query block with a row that sees this key block
        lo = (tl.maximum(start_n - OFF, 0) // BLOCK) * BLOCK
    for g in range(0, GROUPS):
        off_h = (off_bhk % (H // GROUPS)) * GROUPS + g
        off_bh = off_z * H + off_h
        Qh = Q + off_bh * N_CTX_Q * HEAD_DIM_REAL
        DOh = DO + off_bh * N_CTX_Q * HEAD_DIM_REAL
        Posh, slope = _head(Pos, off_h * stride_ph, POS_KIND)
        for start_m in range(lo, N_CTX_Q, BLOCK):
            offs_m = start_m + tl.arange(0, BLOCK)
            q = _load_rows(Qh, offs_m, N_CTX_Q, offs_d, HEAD_DIM_REAL, UPCAST)
            do = _load_rows(DOh, offs_m, N_CTX_Q, offs_d, HEAD_DIM_REAL, UPCAST)
            lse = tl.load(LSE + off_bh * N_CTX_Q + offs_m, mask=offs_m < N_CTX_Q, other=float("inf"))
            delta = tl.load(Delta + off_bh * N_CTX_Q + offs_m, mask=offs_m < N_CTX_Q, other=0.0)
            p, dz = _tile_dz(q, k, v, do, lse, delta, Posh, Thr, KPM, offs_m, offs_n, start_m, start_n, OFF, R,
                             slope, scale, stride_pr, offs_d, HEAD_DIM_REAL, N_CTX_Q, N_CTX_K, POS_KIND, CAUSAL,
                             HAS_KPM, BIDIRECTIONAL, NBX, MAX_EXACT, BLOCK, UPCAST, INPUT_PRECISION)
            if PART != DK_ONLY:
                dv = tl.dot(tl.trans(p).to(do.dtype), do, dv, input_precision=INPUT_PRECISION)
            if PART != DV_ONLY:  # (a DV_ONLY pass never uses dz: dP and its V loads are dead code)
                dk = tl.dot(tl.trans(dz).to(q.dtype), q, dk, input_precision=INPUT_PRECISION)
    if PART != DV_ONLY:
        _store_rows(DK + kv_base, dk * scale, offs_n, N_CTX_K, offs_d, HEAD_DIM_REAL)
    if PART != DK_ONLY:
        _store_rows(DV + kv_base, dv, offs_n, N_CTX_K, offs_d, HEAD_DIM_REAL)


@triton.jit
def _pos_attn_bwd_dq(Q, K, V, DO, DQ, Pos, Thr, KPM, LSE, Delta, DPos, stride_ph, stride_pr,
                     H, GROUPS, N_CTX_Q, N_CTX_K, R, scale, HEAD_DIM_REAL,
                     POS_KIND: tl.constexpr, CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr,
                     BIDIRECTIONAL: tl.constexpr, NBX: tl.constexpr, MAX_EXACT: tl.constexpr,
                     NB_PAD: tl.constexpr, BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr, UPCAST: tl.constexpr,
                     INPUT_PRECISION: tl.constexpr, DQ_CHUNKS: tl.constexpr):
    """One program per (query block, dQ column chunk, b, h), looping over key blocks. DQ_CHUNKS > 1 (relative
    only, `_split`): each program recomputes the tile's dZ in full but accumulates HEAD_DIM / DQ_CHUNKS columns of
    dQ. Also reduces the T5 / ALiBi parameter gradient of its rows into DPos[b, h, query block, :]."""
    pid_m = tl.program_id(0) // DQ_CHUNKS
    start_m = pid_m * BLOCK
    offs_c = (tl.program_id(0) % DQ_CHUNKS) * (HEAD_DIM // DQ_CHUNKS) + tl.arange(0, HEAD_DIM // DQ_CHUNKS)
    off_bh = tl.program_id(1).to(tl.int64)
    off_bhk = (off_bh // H) * (H // GROUPS) + (off_bh % H) // GROUPS
    OFF = N_CTX_K - N_CTX_Q
    offs_m = start_m + tl.arange(0, BLOCK)
    offs_d = tl.arange(0, HEAD_DIM)
    q_base = off_bh * N_CTX_Q * HEAD_DIM_REAL
    q = _load_rows(Q + q_base, offs_m, N_CTX_Q, offs_d, HEAD_DIM_REAL, UPCAST)
    do = _load_rows(DO + q_base, offs_m, N_CTX_Q, offs_d, HEAD_DIM_REAL, UPCAST)
    lse = tl.load(LSE + off_bh * N_CTX_Q + offs_m, mask=offs_m < N_CTX_Q, other=float("inf"))
    delta = tl.load(Delta + off_bh * N_CTX_Q + offs_m, mask=offs_m < N_CTX_Q, other=0.0)
    K += off_bhk * N_CTX_K * HEAD_DIM_REAL
    V += off_bhk * N_CTX_K * HEAD_DIM_REAL
    Pos, slope = _head(Pos, (off_bh % H) * stride_ph, POS_KIND)
    KPM += (off_bh // H) * N_CTX_K
    dq = tl.zeros((BLOCK, HEAD_DIM // DQ_CHUNKS), tl.float32)  # columns offs_c
    dpos = tl.zeros((NB_PAD,), tl.float32)  # T5: per bucket; ALiBi: entry 0
    bucket_ids = tl.arange(0, NB_PAD)
    hi = N_CTX_K
    if CAUSAL:
        hi = tl.minimum(N_CTX_K, start_m + BLOCK + OFF)
    for start_n in range(0, hi, BLOCK):
        offs_n = start_n + tl.arange(0, BLOCK)
        if DQ_CHUNKS > 1:  # reload q and dO per tile (from L2) rather than hold them: under Triton 3.6, holding
            # them spilled 16–24 B at D = 128 even with `_unskew` (BENCHMARKS.md). The opaque zero keeps the loads'
            # addresses and masks from being hoisted back out of the loop.
            zero = _opaque_zero(start_n)
            q = _load_rows(Q + q_base, offs_m + zero, N_CTX_Q, offs_d + zero, HEAD_DIM_REAL, UPCAST)
            do = _load_rows(DO + q_base, offs_m + zero, N_CTX_Q, offs_d + zero, HEAD_DIM_REAL, UPCAST)
        k = _load_rows(K, offs_n, N_CTX_K, offs_d, HEAD_DIM_REAL, UPCAST)
        v = _load_rows(V, offs_n, N_CTX_K, offs_d, HEAD_DIM_REAL, UPCAST)
        p, dz = _tile_dz(q, k, v, do, lse, delta, Pos, Thr, KPM, offs_m, offs_n, start_m, start_n, OFF, R,
                         slope, scale, stride_pr, offs_d, HEAD_DIM_REAL, N_CTX_Q, N_CTX_K, POS_KIND, CAUSAL,
                         HAS_KPM, BIDIRECTIONAL, NBX, MAX_EXACT, BLOCK, UPCAST, INPUT_PRECISION)
        dmin = start_m + OFF - start_n - (BLOCK - 1)
        dmax = start_m + OFF - start_n + (BLOCK - 1)
        if POS_KIND == 0:
            # logits = scale·q·(k_j + e_idx): dq gets scale·dZ @ k and scale·Σ_j dZ_ij e_idx(i,j).
            if DQ_CHUNKS == 1:
                dq = tl.dot(dz.to(k.dtype), k, dq, input_precision=INPUT_PRECISION)
            else:
                k_c = _load_rows(K, offs_n, N_CTX_K, offs_c, HEAD_DIM_REAL, UPCAST)  # (BLOCK, D / DQ_CHUNKS)
                dq = tl.dot(dz.to(k_c.dtype), k_c, dq, input_precision=INPUT_PRECISION)
            r_lo = _rel_index(dmin, R, CAUSAL)
            r_hi = _rel_index(dmax, R, CAUSAL)
            if r_lo == r_hi:
                e = tl.load(Pos + r_lo * stride_pr + offs_c, mask=offs_c < HEAD_DIM_REAL, other=0.0).to(tl.float32)
                dq += tl.sum(dz, 1)[:, None] * e[None, :]
            else:
                dzu, low = _unskew(dz, BLOCK, _opaque_zero(dmin))
                for half in tl.static_range(2):
                    band_e = _band_half(Pos, dmin, half, R, stride_pr, offs_c, HEAD_DIM_REAL, CAUSAL, BLOCK,
                                        UPCAST)
                    dq = tl.dot(_band_share(dzu, low, half).to(band_e.dtype), band_e, dq,
                                input_precision=INPUT_PRECISION)
        else:
            # logits = scale·q·k + bias(δ): dq gets scale·dZ @ k; the bias parameter gets Σ dZ per bucket / slope.
            dq = tl.dot(dz.to(k.dtype), k, dq, input_precision=INPUT_PRECISION)
            if POS_KIND == 1:
                b_lo = _t5_bucket(dmin, Thr, NBX, MAX_EXACT, BIDIRECTIONAL)
                b_hi = _t5_bucket(dmax, Thr, NBX, MAX_EXACT, BIDIRECTIONAL)
                uniform = b_lo == b_hi
                if BIDIRECTIONAL:
                    uniform = uniform & ((dmin >= 0) | (dmax < 0))
                if uniform:
                    dpos += tl.where(bucket_ids == b_lo, tl.sum(dz), 0.0)
                else:
                    dzu, low = _unskew(dz, BLOCK, _opaque_zero(dmin))
                    for half in tl.static_range(2):  # band rows t = half·BLOCK + s, distance dmin + t
                        diag = tl.sum(_band_share(dzu, low, half), 0)  # (BLOCK,): Σ dZ along each distance
                        t = half * BLOCK + tl.arange(0, BLOCK)
                        onehot = _t5_bucket(dmin + t, Thr, NBX, MAX_EXACT, BIDIRECTIONAL)[:, None] == bucket_ids[None, :]
                        dpos += tl.sum(tl.where(onehot, diag[:, None], 0.0), 0)  # onehot: (BLOCK, NB_PAD)
            else:
                dist = tl.abs(offs_m[:, None] + OFF - offs_n[None, :]).to(tl.float32)
                dpos += tl.where(bucket_ids == 0, -tl.sum(dz * dist), 0.0)
    dq = dq * scale
    _store_rows(DQ + q_base, dq, offs_m, N_CTX_Q, offs_c, HEAD_DIM_REAL)
    if POS_KIND != 0:  # (DQ_CHUNKS = 1)
        tl.store(DPos + (off_bh * tl.num_programs(0) + pid_m) * NB_PAD + bucket_ids, dpos)


@triton.jit
def _rel_attn_bwd_drel(Q, K, V, DO, Pos, KPM, LSE, Delta, DBand, stride_ph, stride_pr,
                       H, GROUPS, N_CTX_Q, N_CTX_K, R, scale, HEAD_DIM_REAL,
                       CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr, BLOCK: tl.constexpr,
                       HEAD_DIM: tl.constexpr, UPCAST: tl.constexpr, INPUT_PRECISION: tl.constexpr,
                       BAND_SPLIT: tl.constexpr):
    """One program per (block diagonal u, b, h): walks the tiles (m, n) with m − n = u − (n_key_blocks − 1),
    which all touch the same 2·BLOCK distances, and writes scale·Σ skew⁻¹(dZ)ᵀ @ q as DBand[b, h, u].
    BAND_SPLIT = 2 (`_split`): two programs per diagonal, each recomputing dZ and owning one band half."""
    u = tl.program_id(0) // BAND_SPLIT
    half0 = tl.program_id(0) % BAND_SPLIT  # the first band half this program owns
    off_bh = tl.program_id(1).to(tl.int64)
    off_bhk = (off_bh // H) * (H // GROUPS) + (off_bh % H) // GROUPS
    OFF = N_CTX_K - N_CTX_Q
    n_kblocks = tl.cdiv(N_CTX_K, BLOCK)
    n_qblocks = tl.cdiv(N_CTX_Q, BLOCK)
    diag = u - (n_kblocks - 1)  # m − n in blocks
    offs_d = tl.arange(0, HEAD_DIM)
    t = tl.arange(0, BLOCK)
    Q += off_bh * N_CTX_Q * HEAD_DIM_REAL
    DO += off_bh * N_CTX_Q * HEAD_DIM_REAL
    K += off_bhk * N_CTX_K * HEAD_DIM_REAL
    V += off_bhk * N_CTX_K * HEAD_DIM_REAL
    Pos += (off_bh % H) * stride_ph
    KPM += (off_bh // H) * N_CTX_K
    acc_a = tl.zeros((BLOCK, HEAD_DIM), tl.float32)  # band rows half0·BLOCK + t
    acc_b = tl.zeros((BLOCK, HEAD_DIM), tl.float32)  # band rows BLOCK + t (BAND_SPLIT = 1)
    first = tl.maximum(diag, 0)
    last = tl.minimum(n_qblocks, n_kblocks + diag)
    if CAUSAL:  # a diagonal entirely above the causal boundary has nothing visible
        if diag * BLOCK + OFF + BLOCK - 1 < 0:
            last = first
    for mb in range(first, last):
        start_m = mb * BLOCK
        start_n = (mb - diag) * BLOCK
        offs_m = start_m + tl.arange(0, BLOCK)
        offs_n = start_n + tl.arange(0, BLOCK)
        q = _load_rows(Q, offs_m, N_CTX_Q, offs_d, HEAD_DIM_REAL, UPCAST)
        do = _load_rows(DO, offs_m, N_CTX_Q, offs_d, HEAD_DIM_REAL, UPCAST)
        k = _load_rows(K, offs_n, N_CTX_K, offs_d, HEAD_DIM_REAL, UPCAST)
        v = _load_rows(V, offs_n, N_CTX_K, offs_d, HEAD_DIM_REAL, UPCAST)
        lse = tl.load(LSE + off_bh * N_CTX_Q + offs_m, mask=offs_m < N_CTX_Q, other=float("inf"))
        delta = tl.load(Delta + off_bh * N_CTX_Q + offs_m, mask=offs_m < N_CTX_Q, other=0.0)
        p, dz = _tile_dz(q, k, v, do, lse, delta, Pos, Pos, KPM, offs_m, offs_n, start_m, start_n, OFF, R,
                         0.0, scale, stride_pr, offs_d, HEAD_DIM_REAL, N_CTX_Q, N_CTX_K, 0, CAUSAL,
                         HAS_KPM, False, 2, 1, BLOCK, UPCAST, INPUT_PRECISION)
        dmin = start_m + OFF - start_n - (BLOCK - 1)
        dmax = start_m + OFF - start_n + (BLOCK - 1)
        if _rel_index(dmin, R, CAUSAL) == _rel_index(dmax, R, CAUSAL):
            # one embedding for the whole tile: put Σ_r (Σ_c dZ_rc) q_r on band row 0 (whose index it is)
            if half0 == 0:
                g = tl.sum(tl.sum(dz, 1)[:, None] * q.to(tl.float32), 0)  # (D,)
                acc_a += tl.where(t[:, None] == 0, g[None, :], 0.0)
        else:
            dzu, low = _unskew(dz, BLOCK, _opaque_zero(dmin))
            acc_a = tl.dot(tl.trans(_band_share(dzu, low, half0)).to(q.dtype), q, acc_a,
                           input_precision=INPUT_PRECISION)
            if BAND_SPLIT == 1:
                acc_b = tl.dot(tl.trans(_band_share(dzu, low, 1)).to(q.dtype), q, acc_b,
                               input_precision=INPUT_PRECISION)
    U = tl.num_programs(0) // BAND_SPLIT
    DBand += ((off_bh * U + u) * 2 * BLOCK + t[:, None]) * HEAD_DIM + offs_d[None, :]
    tl.store(DBand + half0 * BLOCK * HEAD_DIM, acc_a * scale)
    if BAND_SPLIT == 1:
        tl.store(DBand + BLOCK * HEAD_DIM, acc_b * scale)


# --------------------------------------------------------------------------------------------
# Host side: launchers and the fixed-order folds (autograd is `attnkit.ops`: the registered ops)
# --------------------------------------------------------------------------------------------

def t5_thresholds(num_buckets: int, max_distance: int, bidirectional: bool) -> tuple[torch.Tensor, int, int]:
    """(thresholds, NBX, MAX_EXACT): bucket MAX_EXACT + t starts at distance thresholds[t − 1],
    t = 1 … NBX − MAX_EXACT − 1, read off the reference bucket function (T5's float32 formula) so the kernel agrees with it exactly."""
    nbx = num_buckets // 2 if bidirectional else num_buckets
    max_exact = nbx // 2
    n = torch.arange(0, max_distance + 2)
    buckets = t5_bucket(-n, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance)
    if bool((buckets[1:] < buckets[:-1]).any()):
        raise ValueError("t5 bucket function is not monotone for these num_buckets / max_distance")
    thr = []
    for b in range(max_exact + 1, nbx):
        hit = (buckets >= b).nonzero()
        thr.append(int(hit[0]) if len(hit) else 2 ** 30)
    return torch.tensor(thr or [0], dtype=torch.int32), nbx, max_exact


def _fold_bands(dband: torch.Tensor, shared: bool, R: int, D: int, Lq: int, Lk: int, causal: bool) -> torch.Tensor:
    """(B, H, U, 2·BLOCK, HEAD_DIM) per-diagonal partials → (Hr, R, D), in a fixed order.

    Band row t of diagonal u is distance δ = δ0 + u·BLOCK + t (δ0 = distance of row 0 of diagonal 0); the upper
    half of diagonal u covers the same distances as the lower half of diagonal u + 1.
    """
    Bz, H, U, _, _ = dband.shape
    lower = dband[:, :, :, :BLOCK, :D].reshape(Bz, H, U * BLOCK, D)
    upper = dband[:, :, :, BLOCK:, :D].reshape(Bz, H, U * BLOCK, D)
    dense = torch.zeros(Bz, H, (U + 1) * BLOCK, D, dtype=torch.float32, device=dband.device)
    dense[:, :, :U * BLOCK] += lower
    dense[:, :, BLOCK:] += upper
    dense = dense.sum(0)  # (H, G, D)
    if shared:
        dense = dense.sum(0, keepdim=True)  # (1, G, D)
    n_kblocks = triton.cdiv(Lk, BLOCK)
    d0 = -(n_kblocks - 1) * BLOCK + (Lk - Lq) - (BLOCK - 1)
    dist = torch.arange(dense.shape[1], device=dband.device) + d0
    if causal:
        idx = dist.clamp(0, R - 1)
    else:
        P = (R - 1) // 2
        idx = P - dist.clamp(-P, P)
    # idx is monotone: only its two ends repeat (clipped distances); sum those, copy the rest one to one.
    out = torch.zeros(dense.shape[0], R, D, dtype=torch.float32, device=dband.device)
    G = idx.shape[0]
    first, last = int(idx[0]), int(idx[-1])
    if first == last:
        out[:, first] = dense.sum(1)
        return out
    n_first, n_last = int((idx == first).sum()), int((idx == last).sum())
    out[:, first] = dense[:, :n_first].sum(1)
    out[:, last] = dense[:, G - n_last:].sum(1)
    out[:, idx[n_first:G - n_last]] = dense[:, n_first:G - n_last]
    return out


class _Meta:
    """Everything about one call that is not a tensor."""

    def __init__(self, kind, q, k, pos, causal, scale, key_padding_mask, t5_args=None):
        self.kind, self.causal = kind, causal
        B, H, Lq, D = q.shape
        self.B, self.H, self.Lq, self.D = B, H, Lq, D
        self.Hkv, self.Lk = k.shape[1], k.shape[2]
        self.scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
        self.head_dim = max(16, triton.next_power_of_2(D))
        self.has_kpm = key_padding_mask is not None
        self.bidirectional, self.nbx, self.max_exact, self.nb_pad = False, 2, 1, 1
        self.R = 1
        if kind == POS_RELATIVE:
            self.R = pos.shape[1]
            self.shared = pos.shape[0] == 1
        if kind == POS_T5:
            bidirectional, num_buckets, max_distance = t5_args
            self.bidirectional, self.num_buckets = bidirectional, num_buckets
            self.thr, self.nbx, self.max_exact = t5_thresholds(num_buckets, max_distance, bidirectional)
            self.nb_pad = triton.next_power_of_2(num_buckets)
        self.upcast = INTERPRET and q.dtype == torch.bfloat16
        self.precision = input_precision(q.dtype)

    def sizes(self):
        """The scalar arguments every position kernel takes after its tensors and the Pos strides."""
        return self.H, self.H // self.Hkv, self.Lq, self.Lk, self.R, self.scale, self.D

    def consts(self):
        return dict(POS_KIND=self.kind, CAUSAL=self.causal, HAS_KPM=self.has_kpm,
                    BIDIRECTIONAL=self.bidirectional, NBX=self.nbx, MAX_EXACT=self.max_exact, BLOCK=BLOCK,
                    HEAD_DIM=self.head_dim, UPCAST=self.upcast, INPUT_PRECISION=self.precision,
                    **dict(zip(("num_warps", "num_stages"), _launch_shape(self.kind, self.head_dim))))


def _pos_args(meta, pos, kpm):
    """(Pos, Thr, KPM) tensors and (stride_ph, stride_pr); KPM contiguous (B, Lk) int8, or pos as a placeholder."""
    if meta.kind == POS_RELATIVE:
        pos_strides = (0 if meta.shared else pos.stride(0), pos.stride(1))
    elif meta.kind == POS_T5:
        pos_strides = (pos.stride(0), pos.stride(1))
    else:
        pos_strides = (pos.stride(0), 0)
    thr = meta.thr.to(pos.device) if meta.kind == POS_T5 else pos
    if kpm is None:
        return (pos, thr, pos), pos_strides
    return (pos, thr, kpm.to(torch.int8).contiguous()), pos_strides


def _forward(meta, q, k, v, pos, kpm):
    o = torch.empty_like(q)
    lse = torch.empty((meta.B, meta.H, meta.Lq), device=q.device, dtype=torch.float32)
    (pos, thr, kpm_x), extra = _pos_args(meta, pos, kpm)
    grid = (triton.cdiv(meta.Lq, BLOCK), meta.B * meta.H)
    _pos_attn_fwd[grid](q, k, v, pos, thr, kpm_x, o, lse, *extra, *meta.sizes(), **meta.consts())
    return o, lse


def _backward(meta, do, q, k, v, pos, kpm, o, lse):
    do = do.contiguous()
    delta = (o.float() * do.float()).sum(-1)  # (B, H, Lq): rowsum(dO ∘ O)
    (pos_x, thr, kpm_x), extra = _pos_args(meta, pos, kpm)
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    shared = (*extra, *meta.sizes())
    consts = meta.consts()
    parts, dq_chunks, band_split = _split(meta.kind, meta.head_dim)
    for part in parts:
        _pos_attn_bwd_dkdv[(triton.cdiv(meta.Lk, BLOCK), meta.B * meta.Hkv)](
            q, k, v, do, dk, dv, pos_x, thr, kpm_x, lse, delta, *shared, PART=part, **consts)
    n_qblocks = triton.cdiv(meta.Lq, BLOCK)
    dpos_partial = torch.empty((meta.B, meta.H, n_qblocks, meta.nb_pad), device=q.device, dtype=torch.float32)
    _pos_attn_bwd_dq[(n_qblocks * dq_chunks, meta.B * meta.H)](
        q, k, v, do, dq, pos_x, thr, kpm_x, lse, delta, dpos_partial, *shared, NB_PAD=meta.nb_pad,
        DQ_CHUNKS=dq_chunks, **consts)
    if meta.kind == POS_RELATIVE:
        U = n_qblocks + triton.cdiv(meta.Lk, BLOCK) - 1
        dband = torch.empty((meta.B, meta.H, U, 2 * BLOCK, meta.head_dim), device=q.device, dtype=torch.float32)
        consts.pop("POS_KIND"), consts.pop("BIDIRECTIONAL"), consts.pop("NBX"), consts.pop("MAX_EXACT")
        _rel_attn_bwd_drel[(U * band_split, meta.B * meta.H)](q, k, v, do, pos_x, kpm_x, lse, delta, dband, *shared,
                                                              BAND_SPLIT=band_split, **consts)
        dpos = _fold_bands(dband, meta.shared, meta.R, meta.D, meta.Lq, meta.Lk, meta.causal)
    elif meta.kind == POS_T5:
        dpos = dpos_partial.sum(dim=(0, 2))[:, :meta.num_buckets]  # (H, num_buckets)
    else:
        dpos = dpos_partial[..., 0].sum(dim=(0, 2))  # (H,)
    return dq, dk, dv, dpos.to(pos.dtype)


POS_KINDS = {"relative": POS_RELATIVE, "t5": POS_T5, "alibi": POS_ALIBI}


def position_attention_fwd(kind, q, k, v, pos, *, causal, key_padding_mask=None, scale=None, t5_args=None):
    """Forward launcher, outside autograd, for kind "relative" (pos = rel in q's dtype), "t5" (pos = table,
    t5_args = (bidirectional, num_buckets, max_distance)) or "alibi" (pos = slopes). Returns (out, lse).
    A stable entry point for wrappers (torch.library ops); inputs already validated."""
    meta = _Meta(POS_KINDS[kind], q, k, pos, causal, scale, key_padding_mask, t5_args)
    q, k, v, pos = q.contiguous(), k.contiguous(), v.contiguous(), pos.contiguous()
    return _forward(meta, q, k, v, pos, key_padding_mask)


def position_attention_bwd(kind, do, q, k, v, pos, out, lse, *, causal, key_padding_mask=None, scale=None,
                           t5_args=None):
    """Backward launcher, outside autograd: (dq, dk, dv, dpos) from `position_attention_fwd`'s out and lse."""
    meta = _Meta(POS_KINDS[kind], q, k, pos, causal, scale, key_padding_mask, t5_args)
    q, k, v, pos = q.contiguous(), k.contiguous(), v.contiguous(), pos.contiguous()
    return _backward(meta, do, q, k, v, pos, key_padding_mask, out, lse)
