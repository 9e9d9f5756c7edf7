"""GPT model: shapes, tying, init, positions, and KV-cached sampling equal to recomputing the prefix."""
import math

import pytest
import torch

from attnkit.generation.generate import filter_logits, generate, sample_next
from attnkit.zoo.models.gpt import GPT, PRESETS, GPTConfig


def tiny(position="learned", block_size=16, vocab_size=11, dropout=0.0):
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, position=position, dropout=dropout,
                         **PRESETS["debug"]))


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_forward_shapes_and_initial_loss(position):
    torch.manual_seed(0)
    model = tiny(position)
    x, y = torch.randint(0, 11, (2, 3, 16))
    logits, loss = model(x, y)
    assert logits.shape == (3, 16, 11)
    # Init std 0.02 makes the first prediction nearly uniform: loss ≈ ln(V).
    assert abs(loss.item() - math.log(11)) < 0.1
    last, none = model(x)
    assert last.shape == (3, 1, 11) and none is None
    torch.testing.assert_close(last[:, 0], logits[:, -1])
    assert (model.wpe is None) == (position == "rotary")


def test_weight_tying_and_init_std():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_embd=256))
    assert model.lm_head.weight is model.wte.weight
    assert abs(model.wte.weight.std().item() - 0.02) < 0.002
    proj = model.blocks[0].mlp.proj.weight
    assert abs(proj.std().item() - 0.02 / math.sqrt(4)) < 0.002  # GPT-2 residual scaling
    # Tied weights count once.
    assert model.num_params(non_embedding=False) == sum(p.numel() for p in model.parameters())


def test_block_size_and_config_errors():
    model = tiny(block_size=8)
    with pytest.raises(ValueError, match="exceeds block_size"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="position"):
        GPTConfig(position="sinusoidal")


def test_dropout_is_active_only_in_training():
    torch.manual_seed(0)
    model = tiny(dropout=0.5)
    x = torch.randint(0, 11, (2, 16))
    model.train()
    assert not torch.equal(model(x, x)[0], model(x, x)[0])
    model.eval()
    assert torch.equal(model(x, x)[0], model(x, x)[0])


def test_learned_positions_read_in_place_match_the_position_ids_path():
    """Without position ids the table's rows start..start+T are added as a view; the explicit ids (the packed
    path, an embedding lookup) give the same logits, the prefill's and a cached step's, and the same gradients,
    bit for bit."""
    torch.manual_seed(0)
    model = tiny()
    idx = torch.randint(0, 11, (2, 6))
    caches = [model.make_caches(8), model.make_caches(8)]
    ids = [None, torch.arange(5).expand(2, 5)]
    with torch.inference_mode():
        prefill = [model(idx[:, :5], caches=c, positions=p)[0] for c, p in zip(caches, ids)]
        step = [model(idx[:, 5:], caches=c, positions=p)[0] for c, p in zip(caches, [None, torch.full((2, 1), 5)])]
    assert torch.equal(*prefill) and torch.equal(*step)
    grads = []
    for p in (None, torch.arange(6).expand(2, 6)):
        model.zero_grad()
        model(idx, idx, positions=p)[1].backward()
        grads.append(model.wpe.weight.grad.clone())
    assert torch.equal(*grads) and grads[0][:6].abs().sum() > 0 and not grads[0][6:].any()


@pytest.mark.parametrize("position", ["learned", "rotary"])
@pytest.mark.parametrize("temperature,top_k,top_p", [(0.0, None, None), (1.0, None, None), (0.8, 5, 0.9)])
def test_cached_generation_equals_uncached(position, temperature, top_k, top_p):
    """Same tokens with and without the KV cache, also past block_size (the window restarts)."""
    torch.manual_seed(0)
    model = tiny(position, block_size=12).double()
    prompt = torch.randint(0, 11, (2, 5))
    runs = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(7)
        runs.append(generate(model, prompt, 30, temperature=temperature, top_k=top_k, top_p=top_p,
                             generator=g, use_cache=use_cache))
    assert runs[0].shape == (2, 35)
    assert torch.equal(runs[0][:, :5], prompt)
    assert torch.equal(runs[0], runs[1])


def test_same_seed_same_tokens_and_streaming():
    model = tiny().eval()
    prompt = torch.zeros(1, 1, dtype=torch.long)
    streamed = []
    a = model.generate(prompt, 20, generator=torch.Generator().manual_seed(3), on_token=streamed.append)
    b = model.generate(prompt, 20, generator=torch.Generator().manual_seed(3))
    c = model.generate(prompt, 20, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.cat(streamed, dim=1), a[:, 1:])


def test_filters_and_greedy():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[True, False, False, True]]
    probs = torch.softmax(logits, -1)[0]  # 0.09, 0.64, 0.24, 0.03
    assert probs[1] < 0.7 < probs[1] + probs[2]
    kept = ~torch.isinf(filter_logits(logits, top_p=0.7))
    assert kept.tolist() == [[False, True, True, False]]  # smallest set with mass ≥ 0.7
    assert sample_next(logits, temperature=0).item() == 1
    g = torch.Generator().manual_seed(0)
    assert all(sample_next(logits, top_k=1, generator=g).item() == 1 for _ in range(5))
