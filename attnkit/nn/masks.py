"""Attention-pattern builders: small functions that return bool masks (Lq, Lk), True = may attend.

In the spirit of attention-gym, each pattern is one small function and patterns are composed, not
switched by flags: ``and_masks(local_1d_mask(L, 32, 64), causal_mask(L))``. The result goes straight
into ``attnkit.attention(..., attn_mask=mask)``; the Triton kernel skips every (BLOCK_M, BLOCK_N) tile
of the mask that is entirely False, so a local pattern is a block-sparse one (`tile_occupancy`).

Local attention follows the Image Transformer (Parmar et al. 2018, section 3.2):

* 1D: the sequence is cut into query blocks of `query_block` positions; a query block sees itself and
  the `memory` positions before it.
* 2D: the h×w image is cut into query blocks of bh×bw pixels. A query block sees a memory block that
  extends it by fh rows above and fw columns to the left and to the right (never below). Positions are
  in *block-raster* order (`block_raster_order`): blocks in raster order, pixels in raster order inside
  a block, which is how the paper generates images with 2D local attention. Each query block is then a
  contiguous run of bh·bw positions, so kernel tiles line up with query blocks.

Both local masks are meant to be combined with causality (`causal_mask`) for generation.
"""
from __future__ import annotations

import torch

from attnkit.kernels.occupancy import tile_occupancy  # the kernel's own builder, so both agree


def causal_mask(L: int, device=None) -> torch.Tensor:
    """(L, L): query i sees key j iff j ≤ i."""
    i = torch.arange(L, device=device)
    return i[None, :] <= i[:, None]


def full_mask(Lq: int, Lk: int | None = None, device=None) -> torch.Tensor:
    """(Lq, Lk): everything visible."""
    return torch.ones(Lq, Lq if Lk is None else Lk, dtype=torch.bool, device=device)


def and_masks(*masks: torch.Tensor) -> torch.Tensor:
    """Visible where every mask is visible."""
    out = masks[0]
    for m in masks[1:]:
        out = out & m
    return out


def or_masks(*masks: torch.Tensor) -> torch.Tensor:
    """Visible where any mask is visible."""
    out = masks[0]
    for m in masks[1:]:
        out = out | m
    return out


def local_1d_mask(L: int, query_block: int, memory: int, device=None) -> torch.Tensor:
    """(L, L): query i, in block b = i // query_block, sees keys j with b·query_block − memory ≤ j < (b+1)·query_block.

    Not causal by itself (a query sees the later positions of its own block); and it with `causal_mask`.
    For L = 6, query_block = 2, memory = 1 (■ = visible)::

             k0 k1 k2 k3 k4 k5
         q0  ■  ■  ·  ·  ·  ·
         q1  ■  ■  ·  ·  ·  ·
         q2  ·  ■  ■  ■  ·  ·
         q3  ·  ■  ■  ■  ·  ·
         q4  ·  ·  ·  ■  ■  ■
         q5  ·  ·  ·  ■  ■  ■
    """
    if query_block < 1 or memory < 0:
        raise ValueError(f"local_1d_mask needs query_block >= 1 and memory >= 0, got {query_block}, {memory}")
    i = torch.arange(L, device=device)
    start = (i // query_block) * query_block  # (L,): first position of each query's block
    j = i[None, :]  # (1, L)
    return (j >= (start - memory)[:, None]) & (j < (start + query_block)[:, None])


def _check_blocks(h: int, w: int, query_block: tuple[int, int]) -> tuple[int, int]:
    bh, bw = query_block
    if bh < 1 or bw < 1 or h % bh or w % bw:
        raise ValueError(f"query block {bh}×{bw} must tile the {h}×{w} image exactly")
    return bh, bw


def block_raster_order(h: int, w: int, query_block: tuple[int, int], device=None) -> torch.Tensor:
    """(h·w,) long: the raster index (r·w + c) of the pixel at each sequence position in block-raster order.

    `image.flatten(-2)[..., order]` turns an image into its sequence; `seq[..., argsort(order)]` inverts it.
    For a 4×4 image and 2×2 blocks the sequence visits pixels 0 1 4 5 | 2 3 6 7 | 8 9 12 13 | 10 11 14 15.
    """
    bh, bw = _check_blocks(h, w, query_block)
    r = torch.arange(h, device=device)[:, None].expand(h, w)
    c = torch.arange(w, device=device)[None, :].expand(h, w)
    block = (r // bh) * (w // bw) + (c // bw)  # (h, w): which query block each pixel is in
    within = (r % bh) * bw + (c % bw)  # (h, w): raster index inside its block
    position = block * (bh * bw) + within  # (h, w): sequence position of each pixel
    return torch.argsort(position.flatten())


def local_2d_mask(h: int, w: int, query_block: tuple[int, int] = (4, 8),
                  memory_flange: tuple[int, int] = (4, 4), device=None) -> torch.Tensor:
    """(h·w, h·w) over block-raster positions: query pixel (r, c) sees key pixel (r', c') iff (r', c') is in
    the memory block of the query block of (r, c):

        R·bh − fh ≤ r' < (R+1)·bh   and   C·bw − fw ≤ c' < (C+1)·bw + fw,   (R, C) = (r // bh, c // bw).

    Not causal by itself; and it with `causal_mask(h·w)`, which in block-raster order hides the rest of
    the query's own block and the right flange of the blocks still to come. For an 8×8 image with 4×4
    query blocks and a (4, 4) flange, the block-level pattern (■ = some visible pixel) is::

                  k-blk0 k-blk1 k-blk2 k-blk3
        q-blk0      ■      ■      ·      ·          (and with causal_mask: the lower triangle of it)
        q-blk1      ■      ■      ·      ·
        q-blk2      ■      ■      ■      ■
        q-blk3      ■      ■      ■      ■
    """
    bh, bw = _check_blocks(h, w, query_block)
    fh, fw = memory_flange
    if fh < 0 or fw < 0:
        raise ValueError(f"memory flange must be >= 0, got {memory_flange}")
    order = block_raster_order(h, w, query_block, device=device)  # (L,) raster index per position
    r, c = order // w, order % w  # (L,) pixel coordinates of each sequence position
    R, C = r // bh, c // bw  # (L,) query block coordinates
    top, bottom = (R * bh - fh)[:, None], ((R + 1) * bh)[:, None]  # (L, 1)
    left, right = (C * bw - fw)[:, None], ((C + 1) * bw + fw)[:, None]  # (L, 1)
    rk, ck = r[None, :], c[None, :]  # (1, L)
    return (rk >= top) & (rk < bottom) & (ck >= left) & (ck < right)


def pattern_stats(mask: torch.Tensor, block_m: int, block_n: int | None = None) -> dict[str, float]:
    """How sparse a pattern is: the visible fraction of entries, and the block_m × block_n tiles a block-sparse
    kernel computes (block_n defaults to block_m)."""
    union = mask.reshape(-1, *mask.shape[-2:]).any(0)  # (Lq, Lk): a tile counts if any broadcast row uses it
    tiles = tile_occupancy(union, block_m, block_m if block_n is None else block_n)
    return {"entries": mask.float().mean().item(), "tiles": tiles.float().mean().item(),
            "tiles_computed": int(tiles.sum()), "tiles_total": tiles.numel()}
