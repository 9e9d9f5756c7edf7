"""BERT's examples: [CLS] window [SEP] (or [CLS] A [SEP] B [SEP] with next-sentence prediction) drawn from a
token stream, prompts with [MASK]s, padded passages, and held-out sentences for fill-mask sampling."""
from __future__ import annotations

import re
from typing import Callable

import torch

from attnkit.errors import UserError


def heldout_sentences(text: str, n: int = 100, words: tuple[int, int] = (6, 30)) -> list[str]:
    """Up to n validation sentences of a readable length, for `attnkit sample` without a prompt."""
    sentences = (" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+", text))
    return [s for s in sentences if words[0] <= len(s.split()) <= words[1]][:n]


def window_examples(stream: torch.Tensor, batch_size: int, L: int, nsp: bool, cls_id: int, sep_id: int,
                    generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Unmasked examples of length L from random windows of stream (N,): "ids" (B, L); with nsp also
    "segments" (B, L) (0 for [CLS] A [SEP], 1 for B [SEP]) and "is_next" (B,) (0 = IsNext, 1 = NotNext):
    B follows A half of the time and is drawn from elsewhere otherwise."""
    n = L - 3 if nsp else L - 2  # content tokens per example
    starts = torch.randint(len(stream) - n, (batch_size,), generator=generator)
    rows = torch.stack([stream[s:s + n] for s in starts.tolist()])  # (B, n)
    cls = torch.full((batch_size, 1), cls_id)
    sep = torch.full((batch_size, 1), sep_id)
    if not nsp:
        return {"ids": torch.cat((cls, rows, sep), dim=1)}  # (B, L)
    a_len = torch.randint(1, n, (batch_size,), generator=generator)
    is_next = torch.randint(2, (batch_size,), generator=generator) == 0
    others = torch.randint(len(stream) - n, (batch_size,), generator=generator)
    ids, segs = [], []
    for b in range(batch_size):
        a, rest = rows[b, :a_len[b]], n - a_len[b].item()
        bseg = rows[b, a_len[b]:] if is_next[b] else stream[others[b]:others[b] + rest]
        ids.append(torch.cat((cls[b], a, sep[b], bseg, sep[b])))
        segs.append(torch.cat((torch.zeros(len(a) + 2, dtype=torch.long), torch.ones(rest + 1, dtype=torch.long))))
    return {"ids": torch.stack(ids), "segments": torch.stack(segs), "is_next": (~is_next).long()}


def encode_masked_prompt(encode: Callable[[str], list[int]], prompt: str, cls_id: int, sep_id: int,
                         mask_id: int) -> list[int]:
    """Text with [MASK]s → [CLS] ids [SEP]. Each [MASK] stands for one token, including the space before
    it (sentencepiece pieces carry their leading space, as '▁word'), so that space is dropped here."""
    parts = prompt.split("[MASK]")
    ids = [cls_id]
    for i, part in enumerate(parts):
        if i < len(parts) - 1:
            part = part.rstrip(" ")
        ids += encode(part) if part else []
        if i < len(parts) - 1:
            ids.append(mask_id)
    return ids + [sep_id]


def pad_rows(rows: list[list[int]], pad_id: int) -> torch.Tensor:
    """Rows of ids → (N, L) padded with pad_id to the longest."""
    ids = torch.full((len(rows), max(map(len, rows))), pad_id)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
    return ids  # (N, L)


def split_prose(text: str, train_fraction: float = 0.9) -> dict[str, str]:
    """{"train", "val"}: the first 90% of the text (cut at a line break) and the rest, hard line wraps joined.

    Hard-wrapped prose (the Gutenberg corpus) puts a line break every ~70 characters; as a token it would be
    the most frequent "word" to predict. Single breaks become spaces; blank lines stay.
    """
    text = re.sub(r"(?<!\n)\n(?!\n)", " ", text)
    cut = text.rfind("\n", 0, int(train_fraction * len(text)))
    cut = cut if cut > 0 else int(train_fraction * len(text))
    return {"train": text[:cut], "val": text[cut:]}


def split_files(files: list[str], every: int = 10) -> dict[str, str]:
    """{"train", "val"} of a corpus of separate files (source code, kept as written): every `every`-th file
    held out whole, so no validation passage comes from a file seen in pretraining or fine-tuning."""
    if len(files) < every:
        raise UserError(f"{len(files)} files are too few to hold one file in {every} out; use more files")
    held = {i for i in range(every - 1, len(files), every)}
    return {"train": "\n".join(f for i, f in enumerate(files) if i not in held),
            "val": "\n".join(f for i, f in enumerate(files) if i in held)}


def corpus_splits(data: str | None) -> dict[str, str]:
    """BERT's {"train", "val"} texts of `--data`: a corpus of files split by file (`split_files`), a running
    text by position (`split_prose`)."""
    from attnkit.zoo.data.text import load_files, load_text

    files = load_files(data)
    return split_files(files) if files is not None else split_prose(load_text(data))


SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")


TOKENIZER_CHARS = 1_000_000  # sentencepiece trains on at most this much of the training text (seconds, not minutes)


def mlm_tokenizer(spec: str, train_text: str, vocab_size: int):
    """BERT's sentencepiece tokenizer: `--tokenizer char` (the default) trains one with SPECIALS on the first
    TOKENIZER_CHARS characters of train_text, `--tokenizer FILE.model` loads one."""
    from attnkit.zoo.data.tokenizer import SentencePieceTokenizer, train_sentencepiece

    if spec == "char":
        return train_sentencepiece(train_text[:TOKENIZER_CHARS], vocab_size, "bpe", special_tokens=SPECIALS)
    if spec.endswith(".model"):
        return SentencePieceTokenizer.load(spec)
    raise UserError(f"BERT needs a sentencepiece tokenizer (.model), got {spec!r}")


def special_token_ids(tok) -> dict[str, int]:
    """{special: id} for SPECIALS; a one-line UserError if the tokenizer lacks any."""
    ids = {t: tok.token_id(t) for t in SPECIALS}
    missing = [t for t, i in ids.items() if i is None]
    if missing:
        raise UserError(f"BERT's tokenizer must define {' '.join(SPECIALS)} (missing {' '.join(missing)}); "
                        "leave --tokenizer unset to train one on the corpus")
    return ids
