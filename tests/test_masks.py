"""Attention-pattern builders against their definitions, written as slow explicit loops."""
import pytest
import torch

from attnkit.kernels.occupancy import tile_occupancy
from attnkit.nn.masks import and_masks, block_raster_order, causal_mask, local_1d_mask, local_2d_mask, pattern_stats


def local_2d_by_loops(h, w, query_block, memory_flange):
    """Definition (Parmar et al. 2018): pixels are visited block by block, raster order inside a block;
    a query pixel sees every pixel of its query block's memory block (flange above, left and right)."""
    bh, bw = query_block
    fh, fw = memory_flange
    pixels = []  # sequence position -> (row, col)
    for R in range(h // bh):
        for C in range(w // bw):
            for r in range(R * bh, (R + 1) * bh):
                for c in range(C * bw, (C + 1) * bw):
                    pixels.append((r, c))
    rows = []
    for r, c in pixels:
        R, C = r // bh, c // bw
        row = []
        for rk, ck in pixels:
            in_rows = R * bh - fh <= rk < (R + 1) * bh
            in_cols = C * bw - fw <= ck < (C + 1) * bw + fw
            row.append(in_rows and in_cols)
        rows.append(row)
    return pixels, torch.tensor(rows, dtype=torch.bool)


@pytest.mark.parametrize("h,w,block,flange", [
    (8, 8, (4, 4), (4, 4)), (16, 16, (4, 8), (4, 4)), (6, 12, (2, 3), (1, 2)), (8, 8, (2, 4), (0, 0)),
    (4, 8, (4, 8), (3, 5)),
])
def test_local_2d_mask_equals_its_definition(h, w, block, flange):
    pixels, expected = local_2d_by_loops(h, w, block, flange)
    order = block_raster_order(h, w, block)
    assert order.tolist() == [r * w + c for r, c in pixels]
    assert torch.equal(local_2d_mask(h, w, block, flange), expected)


def test_block_raster_order_example_and_inverse():
    order = block_raster_order(4, 4, (2, 2))
    assert order.tolist() == [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]
    image = torch.arange(16).reshape(4, 4)
    seq = image.flatten()[order]
    assert torch.equal(seq[torch.argsort(order)].reshape(4, 4), image)


def test_local_1d_mask_equals_its_definition():
    L, qb, mem = 23, 4, 6
    expected = torch.tensor([[(i // qb) * qb - mem <= j < (i // qb) * qb + qb for j in range(L)] for i in range(L)])
    assert torch.equal(local_1d_mask(L, qb, mem), expected)
    causal = and_masks(local_1d_mask(L, qb, mem), causal_mask(L))
    assert not causal.triu(1).any() and causal.diagonal().all()


def test_tile_occupancy_equals_its_definition():
    mask = and_masks(local_2d_mask(16, 16, (4, 8), (4, 4)), causal_mask(256))
    for bm, bn in ((32, 32), (16, 64), (64, 16), (48, 40)):
        tiles = tile_occupancy(mask, bm, bn)
        for ti in range(tiles.shape[0]):
            for tj in range(tiles.shape[1]):
                assert tiles[ti, tj] == mask[ti * bm:(ti + 1) * bm, tj * bn:(tj + 1) * bn].any()
    # With 32-pixel query blocks and 32-wide tiles, a block sees itself, its left neighbour and up to
    # three blocks above: 24 of the 36 tiles plain causal attention computes (of 64).
    assert pattern_stats(mask, 32)["tiles_computed"] == 24
    assert pattern_stats(causal_mask(256), 32)["tiles_computed"] == 36
    # At the kernel's 64×64 tiles a tile row is one row of query blocks, which sees itself and the row above.
    causal = causal_mask(256)
    assert pattern_stats(mask, 64)["tiles_computed"] == 7 and pattern_stats(causal, 64)["tiles_computed"] == 10
    assert pattern_stats(mask, 128, 64)["tiles_computed"] == 5 and pattern_stats(causal, 128, 64)["tiles_computed"] == 6


def test_bad_blocks_are_rejected():
    with pytest.raises(ValueError, match="tile"):
        local_2d_mask(16, 16, (5, 8), (1, 1))
    with pytest.raises(ValueError, match="flange"):
        local_2d_mask(16, 16, (4, 8), (-1, 1))


def test_local_2d_mask_through_attention_matches_loop_softmax():
    """The mask reaches attnkit.attention: output equals a per-query softmax over the visible keys only."""
    from attnkit import attention

    mask = and_masks(local_2d_mask(4, 8, (2, 4), (2, 2)), causal_mask(32))
    q, k, v = (torch.randn(1, 2, 32, 16, dtype=torch.float64) for _ in range(3))
    out = attention(q, k, v, causal=True, attn_mask=mask, backend="torch")
    for i in range(32):
        keys = mask[i].nonzero().flatten()
        p = torch.softmax(torch.einsum("hd,hnd->hn", q[0, :, i], k[0, :, keys]) / 4.0, dim=-1)  # (H, n)
        torch.testing.assert_close(out[0, :, i], torch.einsum("hn,hnd->hd", p, v[0, :, keys]))


def test_block_sparse_kernel_agrees_on_the_local_2d_pattern():
    """The Triton kernel (interpreted on CPU) skips the empty tiles of local2d ∧ causal and still matches torch."""
    pytest.importorskip("attnkit.kernels.attention")
    import os

    from attnkit import attention

    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("needs CUDA or TRITON_INTERPRET=1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    mask = and_masks(local_2d_mask(16, 16, (4, 8), (4, 4)), causal_mask(256)).to(device)
    q, k, v = (torch.randn(1, 2, 256, 16, device=device) for _ in range(3))
    expected = attention(q, k, v, causal=True, attn_mask=mask, backend="torch")
    got = attention(q, k, v, causal=True, attn_mask=mask, backend="triton")
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)
