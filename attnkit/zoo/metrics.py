"""Sequence metrics shared by the text tasks: exact match and corpus BLEU (sacrebleu, computed locally)."""
from __future__ import annotations


def exact_match(hyps: list[str], refs: list[str]) -> float:
    """Share of hypotheses equal to their reference after whitespace normalisation, in [0, 1]."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    return sum(" ".join(h.split()) == " ".join(r.split()) for h, r in zip(hyps, refs)) / max(len(refs), 1)


def bleu(hyps: list[str], refs: list[str]) -> float:
    """Corpus BLEU (0-100) with sacrebleu's default 13a tokenisation, one reference per sentence."""
    import sacrebleu

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    return sacrebleu.corpus_bleu(hyps, [refs]).score
