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
