"""MultiHeadAttention + KVCache: incremental decoding gives the same outputs as the full causal pass."""
import pytest
import torch

from attnkit.nn.layers import KVCache, MultiHeadAttention


@pytest.mark.parametrize("position", ["none", "rotary"])
@pytest.mark.parametrize("n_kv_head", [4, 1])
def test_kv_cache_matches_full_pass(position, n_kv_head):
    torch.manual_seed(0)
    layer = MultiHeadAttention(32, 4, n_kv_head, causal=True, position=position).double().eval()
    x = torch.randn(2, 10, 32, dtype=torch.float64)
    full = layer(x)  # (B, L, C)
    cache = KVCache()
    parts = [layer(x[:, :3], cache=cache), layer(x[:, 3:7], cache=cache)]  # prompt, then a chunk
    parts += [layer(x[:, t:t + 1], cache=cache) for t in range(7, 10)]  # then single tokens
    assert cache.length == 10 and cache.k.shape == (2, n_kv_head, 10, 8)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-12, atol=1e-12)


def test_causal_layer_ignores_the_future():
    torch.manual_seed(0)
    layer = MultiHeadAttention(16, 2, causal=True).double().eval()
    x = torch.randn(1, 6, 16, dtype=torch.float64)
    y = x.clone()
    y[:, 4:] += 1.0
    torch.testing.assert_close(layer(x)[:, :4], layer(y)[:, :4])
    assert not torch.allclose(layer(x)[:, 4:], layer(y)[:, 4:])


def test_cache_reorder_selects_rows():
    cache = KVCache()
    k = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 4)
    cache.append(k, k + 10)
    cache.reorder(torch.tensor([2, 0]))
    assert cache.k[:, 0, 0, 0].tolist() == [2.0, 0.0] and cache.v[:, 0, 0, 0].tolist() == [12.0, 10.0]



@pytest.mark.parametrize("position", ["none", "rotary"])
@pytest.mark.parametrize("n_kv_head", [4, 2])
def test_keys_and_values_are_views_of_one_projection_and_checkpoints_still_load(position, n_kv_head):
    torch.manual_seed(0)
    layer = MultiHeadAttention(32, 4, n_kv_head, causal=True, position=position).eval()
    x = torch.randn(2, 5, 32)
    cache = KVCache()  # its first append keeps the layer's own k and v
    out = layer(x, cache=cache)
    k, v = cache.k, cache.v  # (B, Hkv, L, hd); with rotary, k is the rotated copy
    n = n_kv_head * 8
    assert v._base is not None and v._base.numel() == 2 * 5 * 2 * n  # a view of kv_proj's output: no copy
    if position == "none":
        assert k._base is v._base
    assert v.stride() == (5 * 2 * n, 8, 2 * n, 1)  # what split + per-head view + transpose gave: the same layout
    # against separate k and v projections holding kv_proj's two halves: the same values, bit for bit
    k_proj, v_proj = torch.nn.Linear(32, n), torch.nn.Linear(32, n)
    with torch.no_grad():
        for proj, rows in ((k_proj, slice(0, n)), (v_proj, slice(n, 2 * n))):
            proj.weight.copy_(layer.kv_proj.weight[rows])
            proj.bias.copy_(layer.kv_proj.bias[rows])
        k_sep = k_proj(x).view(2, 5, n_kv_head, 8).transpose(1, 2)  # (B, Hkv, L, hd)
        assert torch.equal(v, v_proj(x).view(2, 5, n_kv_head, 8).transpose(1, 2))
        assert torch.equal(k, layer._rotate(k_sep, 0) if position == "rotary" else k_sep)
    # the checkpoint format is unchanged: the same names, and a copy loaded from it computes the same bits
    assert list(layer.state_dict()) == ["q_proj.weight", "q_proj.bias", "kv_proj.weight", "kv_proj.bias",
                                        "out_proj.weight", "out_proj.bias"]
    copy = MultiHeadAttention(32, 4, n_kv_head, causal=True, position=position).eval()
    copy.load_state_dict(layer.state_dict())
    assert torch.equal(copy(x, cache=KVCache()), out)
