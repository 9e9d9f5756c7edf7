"""CTC decoding and scoring (Graves et al. 2006) for the hybrid CTC/attention recogniser (Watanabe et al. 2017).

Pure functions over log-probabilities (B, T, V) from `ASR.ctc_log_probs`; `blank` is the vocabulary's pad id.
`joint_scores` is the N-best form of joint decoding: each candidate transcript is scored by
λ · log P_ctc + (1 − λ) · log P_att, so a hypothesis the attention decoder likes but the frames do not support
(an invented digit, a looped word) loses to one both agree on.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int) -> list[list[int]]:
    """Best path: the argmax at each real position, repeats merged, blanks dropped.
    log_probs (B, T, V), lengths (B,) real positions per row → token ids per row."""
    best = log_probs.argmax(-1).tolist()                     # (B, T)
    out = []
    for row, n in zip(best, lengths.tolist()):
        ids, prev = [], blank
        for tok in row[:n]:
            if tok != prev and tok != blank:
                ids.append(tok)
            prev = tok
        out.append(ids)
    return out


def ctc_logprob(log_probs: torch.Tensor, lengths: torch.Tensor, targets: Sequence[Sequence[int]],
                blank: int) -> torch.Tensor:
    """log P_ctc(target | frames) summed over all alignments, one per row: (B,). A target that cannot be
    aligned (longer than its frames allow) scores -inf."""
    B = log_probs.shape[0]
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    flat = torch.tensor([tok for t in targets for tok in t], dtype=torch.long)
    nll = F.ctc_loss(log_probs.float().transpose(0, 1), flat, lengths.cpu(), target_lengths, blank=blank,
                     reduction="none", zero_infinity=False)  # (B,)
    return -nll.reshape(B)


def joint_scores(ctc: torch.Tensor, att: torch.Tensor, ctc_weight: float) -> torch.Tensor:
    """λ · log P_ctc + (1 − λ) · log P_att, elementwise; -inf CTC scores (unalignable) stay -inf."""
    return ctc_weight * ctc + (1 - ctc_weight) * att





@torch.no_grad()
def attention_logprob(model, memory: torch.Tensor, mem_mask: torch.Tensor,
                      candidates: Sequence[Sequence[int]]) -> torch.Tensor:
    """log P_att(candidate + EOS | clip) by teacher forcing, one per candidate: (N,). memory (N, T', d) and
    mem_mask (N, T') are the encoder outputs of each candidate's clip (rows repeated as needed)."""
    cfg = model.cfg
    N, L = len(candidates), max(len(c) for c in candidates) + 1
    tgt_in = torch.full((N, L), cfg.pad_id, dtype=torch.long, device=memory.device)
    tgt_out = torch.full((N, L), cfg.pad_id, dtype=torch.long, device=memory.device)
    for n, c in enumerate(candidates):
        tgt_in[n, :len(c) + 1] = torch.tensor([cfg.bos_id, *c])
        tgt_out[n, :len(c) + 1] = torch.tensor([*c, cfg.eos_id])
    logp = model.decode(tgt_in, memory, mem_mask).float().log_softmax(-1)      # (N, L, V)
    tok = logp.gather(2, tgt_out[..., None])[..., 0]                           # (N, L)
    return tok.masked_fill(tgt_out == cfg.pad_id, 0.0).sum(1)


@torch.no_grad()
def joint_rescore(model, mel: torch.Tensor, nbest: Sequence[Sequence[Sequence[int]]],
                  ctc_weight: float) -> list[list[int]]:
    """Hybrid CTC/attention N-best rescoring. mel (B, n_mels, T); nbest[b]: the attention beam's
    candidates for clip b. The CTC best path joins each list, then every candidate is scored by
    `joint_scores` and the best one is returned per clip."""
    memory, mask = model.encode(mel)                                          # (B, T', d), (B, T')
    log_probs = model.ctc_log_probs(memory)                                   # (B, T', V)
    lengths = mask.sum(1)                                                     # (B,)
    blank = model.cfg.pad_id
    greedy = ctc_greedy(log_probs, lengths, blank)
    rows, cands = [], []
    for b, hyps in enumerate(nbest):
        unique = list(dict.fromkeys(tuple(h) for h in [*hyps, greedy[b]]))
        rows += [b] * len(unique)
        cands += [list(h) for h in unique]
    idx = torch.tensor(rows, device=mel.device)
    att = attention_logprob(model, memory[idx], mask[idx], cands)
    ctc = ctc_logprob(log_probs[idx], lengths[idx], cands, blank).to(att.device)
    score = joint_scores(ctc, att, ctc_weight)
    best: dict[int, tuple[float, list[int]]] = {}
    for b, s, c in zip(rows, score.tolist(), cands):
        if b not in best or s > best[b][0]:
            best[b] = (s, c)
    return [best[b][1] for b in range(len(nbest))]
__all__ = ["attention_logprob", "ctc_greedy", "ctc_logprob", "joint_rescore", "joint_scores"]
