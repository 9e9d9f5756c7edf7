"""transformers models with attn_implementation="attnkit" against "sdpa": tiny random configs built here (no
downloads), logits with left padding in the batch, and greedy generate() with the KV cache."""

import pytest
import torch

transformers = pytest.importorskip("transformers")
hf = pytest.importorskip("attnkit.integrations.hf")

import attnkit  # noqa: E402

VOCAB = 101


def _pair(config_cls, model_cls, **cfg):
    """The same random weights under "sdpa" and "attnkit"."""
    torch.manual_seed(0)
    config = config_cls(**cfg)
    ref = model_cls._from_config(config, attn_implementation="sdpa").eval()
    ours = model_cls._from_config(config, attn_implementation="attnkit").eval()
    ours.load_state_dict(ref.state_dict())
    assert ours.config._attn_implementation == "attnkit"
    return ref, ours


def _batch(L=14, pad=5, left=True):
    ids = torch.randint(3, VOCAB, (2, L), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, L, dtype=torch.long)
    if left:
        mask[1, :pad] = 0
    else:
        mask[1, L - pad:] = 0
    return ids, mask


@pytest.fixture
def calls(monkeypatch):
    """Counts the attnkit.attention calls the integration makes (so a test cannot pass on sdpa by accident)."""
    seen = []
    real = attnkit.attention

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)
    monkeypatch.setattr(attnkit, "attention", spy)
    return seen


def _llama():
    return _pair(transformers.LlamaConfig, transformers.LlamaForCausalLM, vocab_size=VOCAB, hidden_size=64,
                 intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 max_position_embeddings=64)


def _mistral():
    return _pair(transformers.MistralConfig, transformers.MistralForCausalLM, vocab_size=VOCAB, hidden_size=64,
                 intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                 max_position_embeddings=64, sliding_window=4)


def _assert_logits_match(ref, ours, ids, mask):
    with torch.no_grad():
        want = ref(ids, attention_mask=mask).logits
        got = ours(ids, attention_mask=mask).logits
    real = mask.bool()  # padded positions' outputs are meaningless in both
    torch.testing.assert_close(got[real], want[real], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("build", [_llama, _mistral], ids=["llama_gqa_rotary", "mistral_sliding_window"])
def test_causal_lm_logits_and_generate_match_sdpa_with_left_padding(build, calls):
    ref, ours = build()
    ids, mask = _batch()
    _assert_logits_match(ref, ours, ids, mask)
    assert calls and all(c["causal"] and c["key_padding_mask"] is not None for c in calls)
    if build is _mistral:  # the sliding window is the op's own window, not a dense mask
        assert all(c["window"] == (3, -1) and c["attn_mask"] is None for c in calls)
    calls.clear()
    # 10 new tokens: past Mistral's window of 4, decoding one query against the cache (Lq = 1 < Lk).
    want = ref.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False)
    assert torch.equal(got, want)
    assert any(c["key_padding_mask"] is not None for c in calls)  # decoding steps passed through attnkit


def test_llama_on_the_triton_kernel_matches_sdpa(calls):
    """The same model through the Triton kernel (its interpreter on CPU), not the torch path."""
    ref, ours = _llama()
    ids, mask = _batch(L=10, pad=3)
    hf.register(backend="triton")
    try:
        _assert_logits_match(ref, ours, ids, mask)
    finally:
        hf.register()
    assert calls and all(c["backend"] == "triton" for c in calls)


def test_bert_encoder_matches_sdpa_with_padding(calls):
    ref, ours = _pair(transformers.BertConfig, transformers.BertModel, vocab_size=VOCAB, hidden_size=64,
                      intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64)
    ids, mask = _batch(left=False)
    with torch.no_grad():
        want = ref(ids, attention_mask=mask).last_hidden_state
        got = ours(ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], rtol=1e-4, atol=1e-4)
    assert calls and not any(c["causal"] for c in calls)


def test_t5_with_its_position_bias_matches_sdpa(calls):
    """T5 computes its bucketed relative bias densely before calling the attention function; attnkit takes it as
    a bias (with gradient). Encoder, causal decoder with cache, and cross-attention."""
    ref, ours = _pair(transformers.T5Config, transformers.T5ForConditionalGeneration, vocab_size=VOCAB, d_model=64,
                      d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, relative_attention_max_distance=20, decoder_start_token_id=0)
    ids, mask = _batch(left=False)
    labels = torch.randint(3, VOCAB, (2, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask, labels=labels).logits
        got = ours(input_ids=ids, attention_mask=mask, labels=labels).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert any(c["bias"] is not None for c in calls) and any(c["causal"] for c in calls)
    want = ref.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    got = ours.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    assert torch.equal(got, want)


def test_unsupported_features_raise_value_error():
    ref, ours = _llama()
    ours.train()
    ours.config.attention_dropout = 0.1
    for layer in ours.model.layers:
        layer.self_attn.attention_dropout = 0.1
    ids, mask = _batch()
    with pytest.raises(ValueError, match="^dropout"):
        ours(ids, attention_mask=mask)
    with pytest.raises(ValueError, match="^backend"):
        hf.register(backend="cuda")


def test_gemma2_softcap_and_alternating_sliding_window_match_eager():
    """Gemma 2 caps its attention logits (softcap) and alternates sliding-window and full layers. sdpa cannot cap,
    so the reference is "eager"."""
    torch.manual_seed(0)
    config = transformers.Gemma2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                       max_position_embeddings=64, sliding_window=4, attn_logit_softcapping=5.0)
    ref = transformers.Gemma2ForCausalLM._from_config(config, attn_implementation="eager").eval()
    ours = transformers.Gemma2ForCausalLM._from_config(config, attn_implementation="attnkit").eval()
    ours.load_state_dict(ref.state_dict())
    ids, mask = _batch()
    _assert_logits_match(ref, ours, ids, mask)  # the cap goes to attnkit.attention(softcap=...), no dense fallback



def test_loads_hugging_faces_kernels_package_from_the_checkout_root():
    """transformers >= 5.25 imports Hugging Face's `kernels` package; from the checkout's root (the working
    directory on sys.path, as with `python -c`) our kernels/ folder must not stand in for it."""
    import importlib.metadata
    import subprocess
    import sys
    from pathlib import Path

    try:
        importlib.metadata.version("kernels")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("Hugging Face's kernels package is not installed (transformers < 5.25)")
    root = Path(attnkit.kernels.__file__).resolve().parents[1]
    code = "import attnkit.integrations.hf, sys; print(sys.modules['kernels'].__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).resolve().parent != root / "kernels"
