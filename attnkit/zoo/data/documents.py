"""Language-model batches of variable-length documents: packed into full rows, or one document per row, padded.

A document d of n tokens gives n − 1 predictions, inputs d[:-1] and targets d[1:], in both layouts:

    padded   one document per row, cut to T + 1 tokens; the rest of the row is `pad_id` inputs with target
             IGNORE, so a fraction of every row is wasted (the mean document length over T is what is used).
    packed   documents fill each row end to end, whole: from a pool of `pool` drawn documents, the longest that
             fits the row's remaining space goes next (best fit); only when none fits does the oldest one fill
             the gap, cut there (a gap shorter than every pooled document, so little of any row is cut; cutting
             every row's last document instead would under-train the ends of long documents). Every position is
             a real prediction (no padding), `document_ids` (B, T) number the documents of a row, so attention
             (`attnkit.ops.attention(document_ids=...)`) never crosses one, and `positions` (B, T) restart at 0
             in each document.

        row 0   x: a0 a1 a2 b0 b1 c0 c1 c2 …      document_ids: 0 0 0 1 1 2 2 2 …   positions: 0 1 2 0 1 0 1 2 …
                y: a1 a2 a3 b1 b2 c1 c2 c3 …
"""
from __future__ import annotations

import torch

IGNORE = -1  # the target of a padding position (GPT's cross-entropy ignore_index)


def _check(docs: list[torch.Tensor]) -> None:
    if not docs or min(len(d) for d in docs) < 2:
        raise ValueError("documents must be a non-empty list of 1-D token tensors of at least 2 tokens each")


def pad_rows(docs: list[torch.Tensor], index: torch.Tensor, T: int, pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Documents docs[index[r]] one per row: {"x": (B, T) inputs, "y": (B, T) targets, IGNORE after the document}."""
    _check(docs)
    x = torch.full((len(index), T), pad_id, dtype=torch.long)  # (B, T)
    y = torch.full((len(index), T), IGNORE, dtype=torch.long)  # (B, T)
    for r, i in enumerate(index.tolist()):
        d = docs[i][:T + 1]
        x[r, :len(d) - 1], y[r, :len(d) - 1] = d[:-1], d[1:]
    return {"x": x, "y": y}


def pack_rows(docs: list[torch.Tensor], B: int, T: int, generator: torch.Generator,
              pool: int = 32) -> dict[str, torch.Tensor]:
    """B full rows of documents drawn uniformly (with replacement) from docs, best fit from a pool: {"x", "y",
    "document_ids", "positions"}, each (B, T); see the module docstring."""
    _check(docs)
    x, y = torch.empty(B, T, dtype=torch.long), torch.empty(B, T, dtype=torch.long)
    document_ids, positions = torch.empty(B, T, dtype=torch.int32), torch.empty(B, T, dtype=torch.long)
    draws = iter(torch.randint(len(docs), (B * T + pool,), generator=generator).tolist())  # ≥ 1 token per document
    waiting = [next(draws) for _ in range(pool)]  # drawn, not yet placed; oldest first
    for r in range(B):
        fill, k = 0, 0
        while fill < T:
            fits = [i for i in waiting if len(docs[i]) - 1 <= T - fill]
            i = max(fits, key=lambda i: len(docs[i])) if fits else waiting[0]
            waiting.remove(i)
            waiting.append(next(draws))
            d = docs[i]
            m = min(len(d) - 1, T - fill)  # predictions of this document that fit in the row
            x[r, fill:fill + m], y[r, fill:fill + m] = d[:m], d[1:m + 1]
            document_ids[r, fill:fill + m] = k
            positions[r, fill:fill + m] = torch.arange(m)
            fill, k = fill + m, k + 1
    return {"x": x, "y": y, "document_ids": document_ids, "positions": positions}
