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
        train_sentencepiece(corpus, 20, "bpe")
    with pytest.raises(UserError, match="unknown model type"):
        train_sentencepiece(corpus, 400, "wordpiece")


def test_too_small_vocab_says_the_minimum_in_one_line():
    text = "the quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJ\n" * 20
    for byte_fallback, extra in ((None, 0), (True, 256)):
        with pytest.raises(UserError) as e:
            train_sentencepiece(text, 20, byte_fallback=byte_fallback)
        need = int(str(e.value).split("the minimum is ")[1].split()[0])
        assert need == 1 + len(set(text)) + extra  # <unk>, every character ("\n" too), the byte pieces
        assert "trainer_interface" not in str(e.value) and "\n" not in str(e.value)
        tok = train_sentencepiece(text, need, byte_fallback=byte_fallback)  # the stated minimum really trains
        assert tok.vocab_size == need and tok.decode(tok.encode(text)) == text


def _text_of(n_chars: int, seed: int = 0) -> str:
    """Words over n_chars distinct characters ("\n" and " " among them), every character used."""
    import random

    rng = random.Random(seed)
    alphabet = [chr(c) for c in range(0x21, 0x7F)] + [chr(c) for c in range(0xC0, 0xC0 + n_chars)]
    alphabet = alphabet[:n_chars - 2]
    words = ["".join(rng.choices(alphabet, k=rng.randint(1, 6))) for _ in range(3000)]
    return " ".join(alphabet) + "\n" + "\n".join(" ".join(words[i:i + 12]) for i in range(0, len(words), 12))


@pytest.mark.parametrize("n_chars", [82, 200, 299])
def test_vocab_300_trains_on_any_text_it_can_hold(tmp_path, n_chars):
    """300 pieces fit <unk> + 299 characters: byte fallback (256 pieces) is then off, and recorded."""
    text = _text_of(n_chars)
    assert len(set(text)) == n_chars
    tok = train_sentencepiece(text, 300, "bpe", tmp_path / "sp.model")
    assert tok.vocab_size == 300 and not tok.byte_fallback
    assert tok.decode(tok.encode(text)) == text
    again = load_tokenizer(tmp_path / "sp.model")  # the file says so: no byte pieces
    assert not again.byte_fallback and again.encode(text) == tok.encode(text)


def test_byte_fallback_on_when_it_fits_and_overridable(tmp_path):
    text = _text_of(82)
    assert train_sentencepiece(text, 1 + 82 + 256).byte_fallback  # room for the byte pieces: on by default
    assert not train_sentencepiece(text, 400, byte_fallback=False).byte_fallback
    with pytest.raises(UserError, match=r"the minimum is 339 \(1 unknown \+ 256 byte-fallback pieces"):
        train_sentencepiece(text, 300, byte_fallback=True)


def test_a_character_without_a_piece_is_refused_in_one_line():
    tok = train_sentencepiece(_text_of(82), 300)
    with pytest.raises(UserError) as e:
        tok.encode("ok 中 🙂")
    assert str(e.value) == ("characters not in the tokenizer's vocabulary: '中🙂' (it was trained without byte "
                            "fallback)")
    with_bytes = train_sentencepiece(_text_of(82), 400)
    assert with_bytes.decode(with_bytes.encode("ok 中 🙂")) == "ok 中 🙂"  # spelled as UTF-8 bytes


def test_cli_tokenize_vocab_300(tmp_path, capsys):
    from attnkit.cli.main import main

    (tmp_path / "t.txt").write_text(_text_of(82))
    argv = ["tokenize", "--input", str(tmp_path / "t.txt"), "--vocab-size", "300", "--out", str(tmp_path / "t.model")]
    main(argv)
    out = capsys.readouterr().out
    assert "byte fallback off" in out and "yes" in out
    main(argv[:-2] + ["--out", str(tmp_path / "b.model"), "--vocab-size", "400", "--no-byte-fallback"])
    assert not load_tokenizer(tmp_path / "b.model").byte_fallback
    with pytest.raises(SystemExit) as e:
        main(argv + ["--byte-fallback"])
    assert e.value.code == 1
    assert capsys.readouterr().err.startswith("error: vocab size 300 is too small for this text: the minimum is 339")


@pytest.mark.parametrize("distinct", [82, 299, 300])
def test_cli_tokenize_vocab_300_on_up_to_300_distinct_characters(tmp_path, capsys, distinct):
    from attnkit.cli.main import main

    text = _text_of(distinct)
    assert len(set(text)) == distinct
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "t.model"
    main(["tokenize", "--input", str(tmp_path / "t.txt"), "--vocab-size", "300", "--out", str(out)])
    printed = capsys.readouterr().out
    tok = load_tokenizer(out)
    assert tok.decode(tok.encode(text)) == text
    # sentencepiece needs <unk> + "\n" is one of the characters: distinct + 1 pieces; below that, characters.
    assert isinstance(tok, CharTokenizer) == (distinct == 300)
    assert tok.vocab_size == (300 if distinct < 300 else distinct)
    assert ("wrote a character tokenizer of 300 ids" in printed) == (distinct == 300)


def test_cli_tokenize_below_the_distinct_characters_states_the_minimum(tmp_path, capsys):
    from attnkit.cli.main import main

    (tmp_path / "t.txt").write_text(_text_of(300), encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        main(["tokenize", "--input", str(tmp_path / "t.txt"), "--vocab-size", "299", "--out", str(tmp_path / "t.model")])
    assert e.value.code == 1 and not (tmp_path / "t.model").exists()
    assert capsys.readouterr().err == ("error: vocab size 299 is too small for this text: the minimum is 300 (one id "
                                       "per distinct character); pass --vocab-size 300 or more\n")


def test_a_character_tokenizer_file_loads_by_content_and_bert_refuses_it(tmp_path):
    from attnkit.zoo.data.tokenizer import SentencePieceTokenizer

    path = CharTokenizer.fit("abc\n").save(tmp_path / "c.model")
    assert isinstance(load_tokenizer(path), CharTokenizer)
    with pytest.raises(UserError, match="is a character tokenizer .*not a sentencepiece model"):
        SentencePieceTokenizer.load(path)


def test_every_vocabulary_of_the_zoo_follows_the_one_protocol():
    from attnkit.zoo.data.numbers import WordVocab, all_words
    from attnkit.zoo.data.parallel import ShiftedTokenizer
    from attnkit.zoo.data.speech import CharVocab
    from attnkit.zoo.data.tokenizer import Tokenizer

    char = CharTokenizer.fit("one two\n")
    vocabs = [char, train_sentencepiece("one two three\n" * 50, 20), WordVocab(all_words()), ShiftedTokenizer(char), CharVocab()]
    for vocab in vocabs:
        assert isinstance(vocab, Tokenizer), type(vocab).__name__
        assert vocab.decode(vocab.encode("one two")) == "one two"
        assert max(vocab.encode("one two")) < vocab.vocab_size
    assert ShiftedTokenizer(char).vocab_size == char.vocab_size + 4
