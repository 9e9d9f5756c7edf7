"""The Whisper-style model (attnkit.zoo.models.asr) and its decoding: padding, KV cache, greedy and beam, attention."""
import pytest
import torch

from attnkit.generation.beam import beam_search, greedy_decode, sequence_logprob
from attnkit.zoo.eval.asr import cross_attention, wer, cer
from attnkit.zoo.models.asr import PAD_FRAME
from asr_tiny import padded, tiny_asr


def tiny(**kw):
    return tiny_asr(**dict(dict(n_dec_layer=2), **kw))


def test_stem_halves_frames_and_padding_does_not_change_the_real_frames():
    model = tiny()
    a, b = torch.randn(80, 37), torch.randn(80, 60)
    alone, mask_alone = model.encode(a[None])
    assert alone.shape == (1, 19, 32) and mask_alone.all()
    batch, mask = model.encode(padded(a, b))
    assert batch.shape == (2, 30, 32) and mask[0].sum() == 19 and mask[1].all()
    torch.testing.assert_close(batch[0, :19], alone[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="mel must be"):
        model.encode(torch.randn(1, 40, 10))
    with pytest.raises(ValueError, match="max_frames"):
        model.encode(torch.randn(1, 80, 201))


def test_cached_decoding_gives_the_teacher_forced_logits():
    model = tiny()
    mel = padded(torch.randn(80, 41), torch.randn(80, 25))
    tokens = torch.tensor([[1, 5, 6, 7, 8, 3], [1, 9, 4, 3, 3, 10]])
    full = model(mel, tokens)                                       # (2, 6, V)
    memory, mask = model.encode(mel)
    caches = model.new_caches()
    steps = [model.decode(tokens[:, t:t + 1], memory, mask, caches) for t in range(tokens.shape[1])]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="max_len"):
        model.decode(torch.ones(1, 25, dtype=torch.long), memory[:1], mask[:1])


def test_greedy_is_the_argmax_path_and_beam_finds_no_worse_a_sequence():
    model = tiny()
    mel = padded(torch.randn(80, 30), torch.randn(80, 50), torch.randn(80, 44))
    greedy = greedy_decode(model, mel, 12)
    beams = beam_search(model, mel, 4, 12, alpha=0.0)
    for b, hyp in enumerate(greedy):
        one = mel[b:b + 1, :, : int((mel[b, 0] != PAD_FRAME).sum())]
        # every greedy token is the argmax of the teacher-forced logits of its prefix
        ids = torch.tensor([[1, *hyp.tokens]])
        logits = model(one, ids)[0]
        expect = logits.clone()
        expect[:, [0, 1]] = float("-inf")
        picked = expect.argmax(-1).tolist()
        assert picked[:len(hyp.tokens)] == hyp.tokens
        assert abs(sequence_logprob(model, one, hyp.tokens) - hyp.logprob) < 1e-4 or len(hyp.tokens) == 11
        best = beams[b][0]
        assert best.logprob >= hyp.logprob - 1e-5
        assert [h.score for h in beams[b]] == sorted((h.score for h in beams[b]), reverse=True)
        assert abs(sequence_logprob(model, one, best.tokens) - best.logprob) < 1e-4


def test_cross_attention_probabilities_reproduce_the_layer_and_skip_padding():
    model = tiny()
    mel = padded(torch.randn(80, 20), torch.randn(80, 34))[:1]         # one clip padded to 34 frames
    probs = cross_attention(model, mel, [1, 4, 5, 6])
    assert probs.shape == (2, 2, 4, 17)                               # (layers, heads, Lt, frames / 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 4))
    assert (probs[..., 10:] == 0).all()                               # padded frames get no attention
    # Rebuild the first layer's cross-attention output from the probabilities: same as the module's.
    layer = model.decoder[0]
    seen = {}
    layer.cross_attn.register_forward_hook(
        lambda m, args, kwargs, out: seen.update(ctx=kwargs["context"] if "context" in kwargs else args[1], out=out),
        with_kwargs=True)
    model(mel, torch.tensor([[1, 4, 5, 6]]))
    v = layer.cross_attn.kv_proj(seen["ctx"]).chunk(2, -1)[1].unflatten(-1, (2, -1)).transpose(1, 2)  # (1, H, Lk, hd)
    y = (probs[0][None] @ v).transpose(1, 2).flatten(2)
    torch.testing.assert_close(layer.cross_attn.out_proj(y), seen["out"], atol=1e-5, rtol=1e-5)


def test_wer_and_cer():
    assert wer(["one two three"], ["one two three"]) == 0.0
    assert wer(["one two three four"], ["one too three"]) == pytest.approx(0.5)  # 1 sub + 1 deletion
    assert wer(["one two"], [""]) == 1.0
    assert cer(["abcd"], ["abed"]) == pytest.approx(0.25)
