"""Tile occupancy of a boolean attention mask: which block_m × block_n tiles hold any visible entry
(and, for packed sequences, the document-id range of each block of positions).

A block-sparse kernel computes exactly the occupied tiles and skips the rest, so this table is both what the
fused kernel reads (`attention.py`, at OCC_BLOCK granularity) and how `attnkit.nn.masks` reports a pattern's
sparsity. Plain torch, no triton: it must import where triton is absent.
"""
from __future__ import annotations

import torch


def tile_occupancy(mask: torch.Tensor, block_m: int, block_n: int) -> torch.Tensor:
    """(..., ceil(Lq/bm), ceil(Lk/bn)) bool for a (..., Lq, Lk) mask: True where the tile has any True entry.

    Leading dims are kept. A size-1 query or key dim (a mask that broadcasts there) stays size 1.
    """
    lead, (Lq, Lk) = mask.shape[:-2], mask.shape[-2:]
    bm = block_m if Lq > 1 else 1
    bn = block_n if Lk > 1 else 1
    pad_m, pad_n = (-Lq) % bm, (-Lk) % bn
    m = mask.bool()
    if pad_m or pad_n:
        m = torch.nn.functional.pad(m.to(torch.uint8), (0, pad_n, 0, pad_m)).bool()
    tiles = m.reshape(*lead, (Lq + pad_m) // bm, bm, (Lk + pad_n) // bn, bn)
    return tiles.any(dim=-1).any(dim=-2)


def document_ranges(document_ids: torch.Tensor, block: int) -> torch.Tensor:
    """(B, ceil(L/block), 2) int32: the smallest and largest document id in each run of `block` positions.

    A query tile and a key tile whose ranges do not overlap share no document, so a packed-sequence kernel
    skips them: with documents laid out contiguously only the tiles along the block diagonal survive."""
    ids = document_ids.to(torch.int32)
    pad = (-ids.shape[-1]) % block
    if pad:  # repeat the last id: it widens no range
        ids = torch.cat([ids, ids[:, -1:].expand(-1, pad)], dim=-1)
    runs = ids.reshape(ids.shape[0], -1, block)
    return torch.stack([runs.amin(-1), runs.amax(-1)], dim=-1).contiguous()
