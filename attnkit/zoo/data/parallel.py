"""Parallel text for `--model encdec --data SRC.txt,TGT.txt`: the line pairs, and ids that leave room for specials."""
from __future__ import annotations

from pathlib import Path

from attnkit.errors import UserError
from attnkit.zoo.data.numbers import VARIANTS

N_SPECIAL = 4  # <pad>, <s>, </s>, <unk> come first in every translation vocabulary


class ShiftedTokenizer:
    """A char or sentencepiece tokenizer with ids moved up by 4, so 0..3 are <pad>, <s>, </s>, <unk>."""

    def __init__(self, inner):
        self.inner = inner

    @property
    def vocab_size(self) -> int:
        return self.inner.vocab_size + N_SPECIAL

    def encode(self, text: str) -> list[int]:
        return [i + N_SPECIAL for i in self.inner.encode(text)]

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode([i - N_SPECIAL for i in ids if i >= N_SPECIAL])


def read_parallel(data: str) -> list[tuple[str, str]]:
    """"SRC.txt,TGT.txt" → the (source, target) line pairs in file order, stripped, empty ones dropped; a missing
    file, files of different lengths or fewer than 2 pairs are a UserError."""
    parts = data.split(",")
    if len(parts) != 2:
        raise UserError(f"--data for encdec is one of {', '.join(VARIANTS)} or SRC.txt,TGT.txt; got {data!r}")
    src_path, tgt_path = (Path(p).expanduser() for p in parts)
    for p in (src_path, tgt_path):
        if not p.is_file():
            raise UserError(f"parallel data file not found: {p}")
    src = src_path.read_text(encoding="utf-8").splitlines()
    tgt = tgt_path.read_text(encoding="utf-8").splitlines()
    if len(src) != len(tgt):
        raise UserError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; they must be parallel")
    pairs = [(s.strip(), t.strip()) for s, t in zip(src, tgt) if s.strip() and t.strip()]
    if len(pairs) < 2:
        raise UserError("parallel data needs at least 2 non-empty line pairs")
    return pairs


__all__ = ["ShiftedTokenizer", "read_parallel"]
