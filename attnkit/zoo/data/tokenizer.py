"""Tokenizers with one small interface: encode / decode / vocab_size / save / load.

    CharTokenizer           one id per distinct character of the training text (saved as JSON).
    SentencePieceTokenizer  a sentencepiece BPE / unigram / char model (saved as its .model file).

Both round-trip exactly: decode(encode(x)) == x for text made of the training text's characters. For
sentencepiece that takes identity normalisation (no NFKC), no dummy prefix, no whitespace squeezing and full
character coverage. "\n" is a piece of its own (sentencepiece trains on lines, so it would otherwise always be
the byte piece <0x0A>).

Byte fallback (256 pieces <0x00>..<0xFF>) spells any other character as UTF-8 bytes. It is on when the
vocabulary has room for it and off otherwise (a 300-piece vocabulary on a text of 82 characters), unless
chosen explicitly; sentencepiece records the choice in the model file (trainer_spec.byte_fallback). Without
it, encoding a character that has no piece is refused with one line naming the characters (`attnkit sample`
with such a prompt character says so and exits 1), rather than silently becoming <unk>.

`train_sentencepiece(text, vocab_size, model_type, out, special_tokens=("[MASK]",))` reserves special
tokens as user-defined symbols (never split); `tok.token_id("[MASK]")` finds them. `load_tokenizer(path)`
picks the class from the file's content (JSON → char, else a sentencepiece proto), whatever its suffix.

sentencepiece always keeps an <unk> piece, so its smallest vocabulary is one more than the text's distinct
characters. `attnkit tokenize` asked for less than that, but not less than the distinct characters, writes a
CharTokenizer instead (one id per character, nothing unknown) and says so in one line.
"""
from __future__ import annotations

import io
import re
import json
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

from attnkit.errors import UserError
from attnkit.fsio import atomic_write, make_dirs

MODEL_TYPES = ("bpe", "unigram", "char")
N_BYTE_PIECES = 256  # byte fallback adds <0x00>..<0xFF>


@runtime_checkable
class Tokenizer(Protocol):
    """The one vocabulary interface of the zoo: text ↔ ids. CharTokenizer and SentencePieceTokenizer (language
    models), and the translation and transcript vocabularies (data/numbers.WordVocab, data/parallel.ShiftedTokenizer,
    data/speech.CharVocab, whose ids 0–2 are <pad>, <s>, </s>) all follow it; each class saves itself its own way."""
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...


class CharTokenizer:
    """Characters ↔ ids, sorted by code point. `suffix` is the file suffix `save` uses."""
    suffix = ".json"

    def __init__(self, chars: Sequence[str]):
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars)

    @classmethod
    def fit(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            missing = "".join(sorted({c for c in text if c not in self.stoi}))
            raise UserError(f"characters not in the tokenizer's vocabulary: {missing!r}") from None

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def token_id(self, token: str) -> int | None:
        return self.stoi.get(token)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write(path, json.dumps({"type": "char", "chars": self.chars}).encode())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CharTokenizer":
        return cls(json.loads(Path(path).read_text(encoding="utf-8"))["chars"])


class SentencePieceTokenizer:
    """A trained sentencepiece model; the serialized proto is kept so `save` can write it anywhere."""
    suffix = ".model"

    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.vocab_size = self.sp.get_piece_size()
        self.byte_fallback = any(self.sp.is_byte(i) for i in range(self.vocab_size))

    def encode(self, text: str) -> list[int]:
        ids = self.sp.encode(text)
        unk = self.sp.unk_id()
        if not self.byte_fallback and unk in ids:  # with byte fallback every character has a spelling
            missing = "".join(sorted({c for c in set(text) if unk in self.sp.encode(c)}))
            raise UserError(f"characters not in the tokenizer's vocabulary: {missing!r} (it was trained "
                            f"without byte fallback)")
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.decode([int(i) for i in ids])

    def token_id(self, token: str) -> int | None:
        i = self.sp.piece_to_id(token)
        return None if i == self.sp.unk_id() and token != self.sp.id_to_piece(i) else i

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write(path, self.proto)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SentencePieceTokenizer":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"tokenizer model not found: {path}")
        if _is_char_file(path):
            raise UserError(f"{path} is a character tokenizer (one id per character), not a sentencepiece model; "
                            f"this model needs sentencepiece: pass a larger --vocab-size to `attnkit tokenize`")
        return cls(path.read_bytes())


def train_sentencepiece(text: str, vocab_size: int, model_type: str = "bpe", out: str | Path | None = None,
                        special_tokens: Sequence[str] = (), byte_fallback: bool | None = None) -> SentencePieceTokenizer:
    """Train sentencepiece on `text` with exact round-trip settings; write it to `out` if given.

    special_tokens become user-defined symbols: always one piece each, never split or merged.
    byte_fallback: None turns it on when vocab_size has room for its 256 pieces.
    """
    import sentencepiece as spm

    if model_type not in MODEL_TYPES:
        raise UserError(f"unknown model type {model_type!r}; choose from {', '.join(MODEL_TYPES)}")
    if not text.strip():
        raise UserError("cannot train a tokenizer on empty text")
    # sentencepiece trains on lines, so "\n" would only ever be a byte piece; make it a symbol of its own.
    symbols = ["\n", *[t for t in special_tokens if t != "\n"]]
    # character_coverage=1.0: every distinct character is a piece of its own, on top of <unk> and the symbols.
    chars = len(set(text) - set(symbols))
    minimum = sentencepiece_minimum(text, special_tokens)
    if byte_fallback is None:
        byte_fallback = vocab_size >= minimum + N_BYTE_PIECES
    if byte_fallback:
        minimum += N_BYTE_PIECES
    if vocab_size < minimum:
        raise _too_small(vocab_size, minimum, chars, len(symbols), byte_fallback)
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(text.splitlines()), model_writer=buf,
            vocab_size=vocab_size, model_type=model_type,
            byte_fallback=byte_fallback, normalization_rule_name="identity", add_dummy_prefix=False,
            remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, split_digits=True,
            character_coverage=1.0, hard_vocab_limit=False, user_defined_symbols=symbols,
            unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, num_threads=1, minloglevel=2,
            max_sentence_length=1 << 16,
        )
    except RuntimeError as e:
        found = re.search(r"required_chars\. (\d+) vs (\d+)", str(e))
        if found:  # our count above missed a case: still one line, with sentencepiece's number
            raise _too_small(vocab_size, int(found.group(2)), chars, len(symbols), byte_fallback) from None
        raise UserError(f"sentencepiece: {str(e).strip().splitlines()[-1]}") from None
    tok = SentencePieceTokenizer(buf.getvalue())
    if out is not None:
        tok.save(out)
    return tok


def sentencepiece_minimum(text: str, special_tokens: Sequence[str] = ()) -> int:
    """The smallest vocabulary sentencepiece trains on text without byte fallback: <unk>, the symbols, the characters."""
    symbols = {"\n", *special_tokens}
    return 1 + len(symbols) + len(set(text) - symbols)


def _too_small(vocab_size: int, needed: int, chars: int, symbols: int, byte_fallback: bool) -> UserError:
    parts = "1 unknown + " + (f"{N_BYTE_PIECES} byte-fallback pieces + " if byte_fallback else "")
    return UserError(f"vocab size {vocab_size} is too small for this text: the minimum is {needed} "
                     f"({parts}{symbols} symbol(s) + {chars} distinct characters); pass --vocab-size {needed} "
                     f"or more")


def _is_char_file(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(1) == b"{"  # a sentencepiece proto starts with field tag 0x0a, never "{"


def load_tokenizer(path: str | Path) -> CharTokenizer | SentencePieceTokenizer:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"tokenizer not found: {path}")
    return CharTokenizer.load(path) if _is_char_file(path) else SentencePieceTokenizer.load(path)


def tokenizer_stats(tok, text: str) -> dict[str, float]:
    """vocab size, characters per token, and coverage (share of characters that need no byte fallback)."""
    from collections import Counter

    ids = tok.encode(text)
    fallback_chars = 0
    if isinstance(tok, SentencePieceTokenizer):
        # A character with no piece of its own is spelled as 1–4 byte pieces (byte fallback).
        unk = tok.sp.unk_id()
        fallback_chars = sum(n for c, n in Counter(text).items() if tok.sp.piece_to_id(c.replace(" ", "\u2581")) == unk)
    return {
        "vocab_size": tok.vocab_size,
        "tokens": len(ids),
        "chars_per_token": len(text) / max(len(ids), 1),
        "coverage": 1.0 - fallback_chars / max(len(text), 1),
        "round_trip": tok.decode(ids) == text,
    }


def run_tokenize(input: str | None, vocab_size: int, model_type: str, out: str,
                 byte_fallback: bool | None = None) -> dict[str, float]:
    """`attnkit tokenize`: train on the file/folder (default: the embedded corpus), save, print a table."""
    from rich.console import Console
    from rich.table import Table

    from attnkit.zoo.data.text import load_text

    text = load_text(input)
    out_path = Path(out)
    if out_path.suffix != ".model":
        raise UserError(f"--out must end in .model (a sentencepiece model file), got {out}")
    make_dirs(out_path.parent)
    console = Console()
    distinct, minimum = len(set(text)), sentencepiece_minimum(text)
    if vocab_size < distinct and not byte_fallback:
        raise UserError(f"vocab size {vocab_size} is too small for this text: the minimum is {distinct} (one id per "
                        f"distinct character); pass --vocab-size {distinct} or more")
    if vocab_size < minimum and not byte_fallback:
        tok = CharTokenizer.fit(text)
        tok.save(out_path)
        console.print(f"note: sentencepiece needs {minimum} pieces here (its <unk> piece and the "
                      f"{distinct} characters); wrote a character tokenizer of {distinct} ids instead")
        title = f"character tokenizer → {out_path}"
    else:
        tok = train_sentencepiece(text, vocab_size, model_type, out_path, byte_fallback=byte_fallback)
        title = f"sentencepiece {model_type}, byte fallback {'on' if tok.byte_fallback else 'off'} → {out_path}"
    stats = tokenizer_stats(tok, text)
    table = Table(title=title)
    for col in ("vocab size", "tokens", "chars / token", "coverage", "exact round-trip"):
        table.add_column(col, justify="right")
    table.add_row(f"{stats['vocab_size']:,}", f"{stats['tokens']:,}", f"{stats['chars_per_token']:.2f}",
                  f"{100 * stats['coverage']:.2f}%", "yes" if stats["round_trip"] else "NO")
    console.print(table)
    return stats
