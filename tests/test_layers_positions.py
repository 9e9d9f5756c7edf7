"""MultiHeadAttention's positional schemes: each one runs, trains, and decodes with a KV cache exactly as
it computes the full sequence (bottom-right aligned positions)."""
import pytest
import torch

from attnkit.kernels.reference import alibi_slopes
from attnkit.nn.layers import POSITIONS, KVCache, MultiHeadAttention


@pytest.mark.parametrize("position", POSITIONS)
def test_cached_decoding_matches_full_sequence(position):
    layer = MultiHeadAttention(32, 4, 2, causal=True, position=position, max_relative=6).double().eval()
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    full = layer(x)  # (B, L, C)
    cache = KVCache()
    steps = [layer(x[:, :4], cache=cache)]  # a prompt, then one token at a time
    for t in range(4, 11):
        steps.append(layer(x[:, t:t + 1], cache=cache))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("position", ["relative", "alibi", "t5"])
def test_position_changes_the_output_and_learns(position):
    torch.manual_seed(0)
    layer = MultiHeadAttention(32, 4, causal=False, position=position, max_relative=4).double()
    plain = MultiHeadAttention(32, 4, causal=False, position="none").double()
    plain.load_state_dict(layer.state_dict(), strict=False)
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    y = layer(x)
    # Without positions attention is permutation-equivariant; with them it is not.
    assert not torch.allclose(y, plain(x), atol=1e-6)
    perm = torch.randperm(9)
    assert not torch.allclose(layer(x[:, perm]), y[:, perm], atol=1e-6)
    y.square().sum().backward()
    learned = {"relative": "rel", "t5": "t5_table"}.get(position)
    if learned is not None:
        grad = getattr(layer, learned).grad
        assert grad is not None and grad.abs().sum() > 0


def test_alibi_uses_standard_slopes():
    layer = MultiHeadAttention(48, 6, causal=True, position="alibi")
    torch.testing.assert_close(layer.alibi_slopes, alibi_slopes(6))
    # Press et al.: 8 heads → 1/2, 1/4, ..., 1/256.
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))


def test_t5_table_shape_and_bad_position():
    layer = MultiHeadAttention(32, 4, position="t5", t5_num_buckets=16, t5_max_distance=64)
    assert layer.t5_table.shape == (4, 16)
    with pytest.raises(ValueError, match="position"):
        MultiHeadAttention(32, 4, position="sinusoid")


@pytest.mark.parametrize("position", ["none", "rotary", "relative", "alibi", "t5"])
@pytest.mark.parametrize("causal", [True, False])
def test_need_weights_returns_the_probabilities_the_layer_used(position, causal):
    """probs @ v, through the output projection, is the layer's own output: the picture is the real one."""
    torch.manual_seed(0)
    layer = MultiHeadAttention(32, 4, 2, causal=causal, position=position, max_relative=8).eval()
    x = torch.randn(2, 7, 32)
    y, probs = layer(x, need_weights=True)
    assert probs.shape == (2, 4, 7, 7) and torch.allclose(probs.sum(-1), torch.ones(2, 4, 7), atol=1e-5)
    v = layer.kv_proj(x)[..., 2 * 8:].view(2, 7, 2, 8).transpose(1, 2).repeat_interleave(2, dim=1)  # (B, H, L, hd)
    rebuilt = layer.out_proj((probs @ v).transpose(1, 2).reshape(2, 7, 32))
    assert torch.allclose(rebuilt, y, atol=1e-5)
