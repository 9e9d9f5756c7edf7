"""attnkit.nn.layers.StaticKVCache: decoding token by token through a preallocated cache equals the uncached
forward for every position kind, beam reordering happens in place, and a compiled decode step does not
recompile per token."""
import pytest
import torch

from attnkit.nn.layers import KVCache, MultiHeadAttention, StaticKVCache


@pytest.mark.parametrize("position", ["none", "rotary", "relative", "alibi", "t5"])
def test_static_cache_decoding_equals_the_uncached_forward(position):
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, 2, causal=True, position=position, max_relative=16).eval()
    x = torch.randn(2, 11, 32)
    with torch.no_grad():
        full = mha(x)
        cache = StaticKVCache(16)
        steps = [mha(x[:, :5], cache=cache)]  # a prefill, then one token at a time
        steps += [mha(x[:, i:i + 1], cache=cache) for i in range(5, 11)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 11 and cache.k.shape == (2, 2, 11, 8)


def test_reorder_is_in_place_and_matches_the_cat_cache():
    torch.manual_seed(1)
    mha = MultiHeadAttention(32, 4, causal=True, position="rotary").eval()
    x = torch.randn(3, 6, 32)
    static, cat = StaticKVCache(8), KVCache()
    with torch.no_grad():
        mha(x, cache=static)
        mha(x, cache=cat)
        buffer = static._k.data_ptr()
        index = torch.tensor([2, 2, 0])
        static.reorder(index)
        cat.reorder(index)
        assert static._k.data_ptr() == buffer
        torch.testing.assert_close(static.k, cat.k)
        step = torch.randn(3, 1, 32)
        torch.testing.assert_close(mha(step, cache=static), mha(step, cache=cat))


def test_static_cache_overflow_raises():
    cache = StaticKVCache(4)
    with pytest.raises(ValueError, match="^max_len"):
        cache.append(torch.zeros(1, 1, 5, 8), torch.zeros(1, 1, 5, 8))


def test_compiled_decode_step_does_not_recompile_per_token():
    torch.manual_seed(2)
    torch._dynamo.reset()
    mha = MultiHeadAttention(32, 4, causal=True, position="rotary").eval()
    cache = StaticKVCache(32)
    frames = []

    def backend(gm, example_inputs):  # count the graphs dynamo hands over; run them eagerly
        frames.append(gm)
        return gm.forward

    step = torch.compile(lambda t: mha(t, cache=cache), backend=backend)
    with torch.no_grad():
        mha(torch.randn(1, 4, 32), cache=cache)  # prefill, eager
        for _ in range(10):
            step(torch.randn(1, 1, 32))
    assert len(frames) <= 2, f"{len(frames)} graphs for 10 tokens"  # the first, then one with a dynamic length


@pytest.mark.parametrize("bad", ["batch", "heads", "head dim", "dtype", "v"])
def test_a_write_that_does_not_match_the_cache_raises(bad):
    """Decode steps after the first skip the attention op's checks (`attnkit.ops.attention_step`), so the cache
    rejects what copy_ would otherwise cast or broadcast into its buffers."""
    cache = StaticKVCache(8)
    cache.append(torch.zeros(2, 2, 3, 8), torch.zeros(2, 2, 3, 8))
    k = {"batch": torch.zeros(1, 2, 1, 8), "heads": torch.zeros(2, 1, 1, 8), "head dim": torch.zeros(2, 2, 1, 4),
         "dtype": torch.zeros(2, 2, 1, 8, dtype=torch.float64)}.get(bad, torch.zeros(2, 2, 1, 8))
    v = torch.zeros(2, 2, 1, 8, dtype=torch.float16) if bad == "v" else k
    with pytest.raises(ValueError, match="^k and v must match the cache"):
        cache.append(k, v)
    assert cache.length == 3
