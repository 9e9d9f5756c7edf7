"""Sampling on the static KV cache: every decoder that samples token by token (GPT, Music, Image, the
encoder-decoder's greedy and beam search, ASR's joint beam search) builds `StaticKVCache`s sized to its context
and emits exactly the tokens of the concatenating `KVCache` at temperature 0; and the split-KV kernel, which
decodes on CUDA, must read a static cache's view without copying it."""
from __future__ import annotations

import pytest
import torch

import attnkit
import attnkit.kernels.attention as kernel
import attnkit.nn.blocks as blocks
import attnkit.zoo.models.gpt as gpt
from attnkit.generation.beam import beam_search, greedy_decode
from attnkit.kernels.reference import attention_reference
from attnkit.kernels.runtime import INTERPRET
from attnkit.nn.layers import KVCache, StaticKVCache, new_kv_cache
from attnkit.zoo.eval.ctc import joint_beam_search
from attnkit.zoo.models.encdec import EncDec, EncDecConfig
from attnkit.zoo.models.gpt import GPT, GPTConfig
from attnkit.zoo.models.image import ImageTransformer, ImageTransformerConfig
from attnkit.zoo.models.music import MusicConfig, MusicTransformer
from attnkit.zoo.tasks.music import sample_tokens
from asr_tiny import padded, tiny_asr


def _gpt(position: str):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=12, n_layer=2, n_head=2, n_embd=32, position=position)).eval()
    prompt = torch.randint(0, 40, (2, 5), generator=torch.Generator().manual_seed(1))
    return lambda: model.generate(prompt, 30, temperature=0.0)  # 35 tokens through a 12-token window: restarts


def _music():
    torch.manual_seed(0)
    model = MusicTransformer(MusicConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, d_model=32, dropout=0.0,
                                         max_relative=8)).eval()
    return lambda: sample_tokens(model, [1, 7, 9, 12, 20], 30, window=16, temperature=0.0, top_k=None, top_p=None,
                                 generator=torch.Generator().manual_seed(0))


def _image():
    torch.manual_seed(0)
    model = ImageTransformer(ImageTransformerConfig(image_size=4, n_layer=2, n_head=2, d_model=32, dropout=0.0,
                                                    attention="full")).eval()
    return lambda: model.generate(torch.tensor([0, 3]), temperature=0.0)


def _encdec(search: str):
    torch.manual_seed(0)
    model = EncDec(EncDecConfig(src_vocab_size=24, tgt_vocab_size=24, shared_vocab=True, n_enc_layer=2, n_dec_layer=2,
                                n_head=2, d_model=32, d_ff=64, dropout=0.0, max_len=32)).eval()
    src = torch.randint(4, 24, (3, 7), generator=torch.Generator().manual_seed(1))
    if search == "greedy":
        return lambda: [h.tokens for h in greedy_decode(model, src, max_len=12)]
    return lambda: [[h.tokens for h in hyps] for hyps in beam_search(model, src, beam=3, max_len=12)]


def _asr():
    model = tiny_asr(subsample=4, ctc_head=True)
    mel = padded(torch.randn(80, 37, generator=torch.Generator().manual_seed(2)),
                 torch.randn(80, 61, generator=torch.Generator().manual_seed(3)))
    return lambda: joint_beam_search(model, mel, beam=3, max_len=10, ctc_weight=0.3)


DECODERS = {"gpt-learned": lambda: _gpt("learned"), "gpt-rotary": lambda: _gpt("rotary"), "music": _music,
            "image": _image, "encdec-greedy": lambda: _encdec("greedy"), "encdec-beam": lambda: _encdec("beam"),
            "asr-joint-beam": _asr}


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_sampling_on_the_static_cache_gives_the_concatenating_caches_tokens(name, monkeypatch):
    decode = DECODERS[name]()
    built = []

    def spy(max_len=None):
        built.append(cache := new_kv_cache(max_len))
        return cache
    for module in (blocks, gpt):  # every model's caches come from Stack.make_caches or GPT.make_caches
        monkeypatch.setattr(module, "new_kv_cache", spy)
    static = decode()
    assert built and all(isinstance(c, StaticKVCache) for c in built)
    assert max(c.length for c in built) > 1  # the caches were written, not bypassed
    for module in (blocks, gpt):
        monkeypatch.setattr(module, "new_kv_cache", lambda max_len=None: KVCache())
    assert static == decode() if not isinstance(static, torch.Tensor) else torch.equal(static, decode())


@pytest.mark.parametrize("cache", ["static", "cat"])
@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_decode_steps_check_once_and_keep_the_checked_ops_bits(monkeypatch, cache, position):
    """GPT checks attention's arguments on a cache's first call only (`attnkit.ops.attention_step` afterwards),
    and its logits are those of the checked op at every step, bit for bit."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=32, position=position)).eval()
    prompt = torch.randint(0, 40, (2, 5), generator=torch.Generator().manual_seed(1))
    checks = []
    monkeypatch.setattr(attnkit.ops, "check_attention_args", lambda *a, **kw: checks.append(1))

    def logits():
        caches = model.make_caches(16 if cache == "static" else None)
        with torch.inference_mode():
            out = [model(prompt, caches=caches)[0]]
            for _ in range(8):
                out.append(model(out[-1].argmax(-1), caches=caches)[0])
        return torch.cat(out, dim=1)  # (B, 9, V)
    fast = logits()
    assert len(checks) == model.config.n_layer  # the prefill's, one per layer
    monkeypatch.setattr(gpt, "attention_step", attnkit.attention)
    assert torch.equal(fast, logits())
    assert len(checks) == model.config.n_layer * (1 + 9)


def test_compiled_decode_step_gives_the_same_tokens():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=24, n_layer=1, n_head=2, n_embd=32, position="rotary")).eval()
    prompt = torch.randint(0, 40, (1, 5), generator=torch.Generator().manual_seed(1))
    eager = model.generate(prompt, 6, temperature=0.0, static_cache=False)
    assert torch.equal(model.generate(prompt, 6, temperature=0.0, compile=True), eager)


@pytest.mark.skipif(not INTERPRET and not torch.cuda.is_available(), reason="the kernel needs CUDA or the interpreter")
@pytest.mark.parametrize("B, Hq, Hkv, Lq", [(1, 2, 2, 1), (2, 4, 2, 3)])
def test_split_kv_reads_a_static_cache_view_without_copying(monkeypatch, B, Hq, Hkv, Lq):
    """On CUDA a decode step goes through split-KV; a StaticKVCache hands it a view of a longer buffer, which
    the splits (75 or 74 keys each, not tiling the 301 cached ones) and the remainder read in place, with the float64
    definition's result."""
    monkeypatch.setattr(kernel, "SPLIT_KV_MIN_LK", 128)
    monkeypatch.setattr(kernel, "SPLIT_KV_CHUNK", 64)
    seen = []
    real = kernel.attention_fwd
    monkeypatch.setattr(kernel, "attention_fwd", lambda q, k, v, **kw: seen.append(k) or real(q, k, v, **kw))
    cache = StaticKVCache(512)
    g = torch.Generator().manual_seed(B)
    cache.append(torch.randn(B, Hkv, 301, 16, generator=g), torch.randn(B, Hkv, 301, 16, generator=g))
    q = torch.randn(B, Hq, Lq, 16, generator=g)
    with torch.no_grad():
        out = attnkit.attention(q, cache.k, cache.v, causal=True, backend="triton")
    assert len(seen) == 2, "the decode step did not take the split-KV path with a remainder"
    buffer = cache._k.untyped_storage().data_ptr()
    assert all(k.untyped_storage().data_ptr() == buffer for k in seen)
    want = attention_reference(q.double(), cache.k.double(), cache.v.double(), causal=True)
    torch.testing.assert_close(out, want.float(), atol=1e-5, rtol=1e-5)
