"""Tokenizers round-trip exactly (char and sentencepiece bpe/unigram/char), keep special tokens whole,
and the embedded corpus loads without any download."""
import pytest

from attnkit.zoo.data.text import load_text
from attnkit.zoo.data.tokenizer import (CharTokenizer, load_tokenizer, tokenizer_stats, train_sentencepiece)
from attnkit.errors import UserError

TRICKY = "  Two  spaces,\ttab,\n\nblank lines, ünïcödé, 中文, emoji 🙂, digits 12345 and trailing space "


@pytest.fixture(scope="module")
def corpus():
    return load_text(None)[:40_000]


def test_embedded_corpus_is_clean_english():
    text = load_text(None)
    assert len(text) > 100_000 and text.startswith("LADY SUSAN")
    assert "Gutenberg" not in text
    assert len(load_text("python")) > 1_000_000 and "def " in load_text("python")


def test_folder_and_file_loading(tmp_path):
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / ".hidden.txt").write_text("no")
    assert load_text(str(tmp_path)) == "first\nsecond"
    assert load_text(str(tmp_path / "a.txt")) == "first"
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(UserError, match="empty"):
        load_text(str(tmp_path / "empty.txt"))
    with pytest.raises(UserError, match="not found"):
        load_text(str(tmp_path / "nope.txt"))


def test_char_tokenizer_round_trip_and_save(tmp_path):
    tok = CharTokenizer.fit(TRICKY)
    assert tok.decode(tok.encode(TRICKY)) == TRICKY
    again = load_tokenizer(tok.save(tmp_path / "tok.json"))
    assert again.encode(TRICKY) == tok.encode(TRICKY)
    with pytest.raises(UserError, match="not in the tokenizer"):
        tok.encode("Z")


@pytest.mark.parametrize("model_type", ["bpe", "unigram", "char"])
def test_sentencepiece_exact_round_trip(tmp_path, corpus, model_type):
    tok = train_sentencepiece(corpus, 400, model_type, tmp_path / "sp.model", special_tokens=("[MASK]",))
    for text in (corpus[:5000], TRICKY, "\n", " ", "a  b"):
        assert tok.decode(tok.encode(text)) == text
    mask = tok.token_id("[MASK]")
    assert mask is not None and tok.encode("a [MASK] b").count(mask) == 1
    again = load_tokenizer(tmp_path / "sp.model")
    assert again.vocab_size == tok.vocab_size and again.encode(TRICKY) == tok.encode(TRICKY)
    stats = tokenizer_stats(tok, corpus)
    assert stats["round_trip"] and stats["coverage"] > 0.99
    if model_type != "char":
        assert stats["chars_per_token"] > 1.4  # merges happen (char level is 1.0)


def test_sentencepiece_errors(corpus):
    with pytest.raises(UserError, match="too small"):
        train_sentencepiece(corpus, 100, "bpe")
    with pytest.raises(UserError, match="unknown model type"):
        train_sentencepiece(corpus, 400, "wordpiece")


def test_too_small_vocab_says_the_minimum_in_one_line():
    text = "the quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJ\n" * 20
    with pytest.raises(UserError) as e:
        train_sentencepiece(text, 300)
    need = int(str(e.value).split("at least ")[1].split()[0])
    assert "trainer_interface" not in str(e.value) and "\n" not in str(e.value)
    assert train_sentencepiece(text, need).vocab_size == need  # the stated minimum really trains
