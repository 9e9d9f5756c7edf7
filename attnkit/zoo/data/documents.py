"""Language-model batches of variable-length documents: packed into full rows, or one document per row, padded.

A document d of n tokens gives n − 1 predictions, inputs d[:-1] and targets d[1:], in both layouts:

    padded   one document per row, cut to T + 1 tokens (as in the packed layout); the rest of the row is `pad_id`
             inputs with target IGNORE, so a fraction of every row is wasted (the mean document length over T is
             what is used).
    packed   documents fill each row end to end, whole, from a stream of uniform draws (`DocumentPacker`): of a
             pool of `pool` drawn documents, the longest that fits the row's remaining space goes next (best fit)
             and a fresh draw takes its place in the pool. The pool carries over from batch to batch, so every
             drawn document is placed whole in the end and the documents trained on are the uniform draws of the
             padded layout. (A pool drawn afresh for each batch and dropped after it keeps its short documents
             and trains on its long ones: 417 instead of 280 predictions per document, token-weighted, on
             python-functions at T = 512, benchmarks/pack_mix.py.) Only a gap shorter than every pooled document
             is cut: it takes the start of one more fresh draw, so which documents are cut does not depend on
             their length. Every position is a real prediction (no padding), `document_ids` (B, T) number the
             documents of a row, so attention (`attnkit.ops.attention(document_ids=...)`) never crosses one, and
             `positions` (B, T) restart at 0 in each document.

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


class DocumentPacker:
    """Full rows of whole documents, drawn uniformly (with replacement) from docs and placed best fit from a pool
    that carries over between calls (see the module docstring). Its state is the pool: `state_dict()` after a
    call and `load_state_dict()` before the next let a resumed run draw the rows it would have drawn."""

    def __init__(self, docs: list[torch.Tensor], T: int, pool: int = 32):
        _check(docs)
        self.docs, self.T, self.pool = docs, T, pool
        self.size = [min(len(d) - 1, T) for d in docs]  # predictions per document (cut to T + 1 tokens, as padded)
        self.waiting: list[int] = []  # drawn, not yet placed; oldest first (filled by the first call)

    def state_dict(self) -> dict[str, list[int]]:
        return {"waiting": list(self.waiting)}

    def load_state_dict(self, state: dict[str, list[int]]) -> None:
        self.waiting = list(state["waiting"])

    def rows(self, B: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """B rows: {"x", "y", "document_ids", "positions"}, each (B, T)."""
        docs, T, size = self.docs, self.T, self.size
        x, y = torch.empty(B, T, dtype=torch.long), torch.empty(B, T, dtype=torch.long)
        document_ids, positions = torch.empty(B, T, dtype=torch.int32), torch.empty(B, T, dtype=torch.long)
        # ≥ 1 prediction per placed document, each placement takes one draw (a refill or a cut)
        draws = iter(torch.randint(len(docs), (B * T + self.pool - len(self.waiting),), generator=generator).tolist())
        self.waiting += [next(draws) for _ in range(self.pool - len(self.waiting))]
        for r in range(B):
            fill, k = 0, 0
            while fill < T:
                fits = [i for i in self.waiting if size[i] <= T - fill]
                if fits:  # the longest that fits; a fresh draw refills the pool
                    i = max(fits, key=size.__getitem__)
                    self.waiting.remove(i)
                    self.waiting.append(next(draws))
                else:  # a gap no pooled document fits: the start of a fresh draw fills it
                    i = next(draws)
                d = docs[i]
                m = min(size[i], T - fill)  # predictions of this document that fit in the row
                x[r, fill:fill + m], y[r, fill:fill + m] = d[:m], d[1:m + 1]
                document_ids[r, fill:fill + m] = k
                positions[r, fill:fill + m] = torch.arange(m)
                fill, k = fill + m, k + 1
        return {"x": x, "y": y, "document_ids": document_ids, "positions": positions}
