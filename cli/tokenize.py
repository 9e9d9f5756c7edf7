"""`attnkit tokenize`: train a sentencepiece model; the work lives in `attnkit.zoo.data.tokenizer`."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

Opt = typer.Option


def tokenize(
    input: Annotated[Optional[str], Opt(help="Text file or folder of text files; default: the embedded corpus.")] = None,
    vocab_size: Annotated[int, Opt(help="Vocabulary size.")] = 2000,
    model_type: Annotated[str, Opt(help="bpe, unigram or char.")] = "bpe",
    out: Annotated[str, Opt(help="Output model file (FILE.model).")] = "tokenizer.model",
    byte_fallback: Annotated[Optional[bool], Opt("--byte-fallback/--no-byte-fallback", help="Spell characters without a piece as UTF-8 bytes (256 pieces); default: on when the vocabulary has room.")] = None,
) -> None:
    """Train a sentencepiece tokenizer with exact round-trip (identity normalisation, byte fallback when it fits)."""
    from attnkit.zoo.data.tokenizer import run_tokenize

    run_tokenize(input=input, vocab_size=vocab_size, model_type=model_type, out=out, byte_fallback=byte_fallback)
