"""CTC decoding and scoring (Graves et al. 2006) for the hybrid CTC/attention recogniser (Watanabe et al. 2017).

Pure functions over log-probabilities (B, T, V) from `ASR.ctc_log_probs`; `blank` is the vocabulary's pad id.
Joint decoding scores a transcript by λ · log P_ctc + (1 − λ) · log P_att, so a hypothesis the attention
decoder likes but the frames do not support (an invented digit, a looped word) loses to one both agree on.
Two forms: `joint_rescore` rescores a finished N-best list (plus the CTC best path); `joint_beam_search`
scores every prefix during the search with CTC prefix probabilities (Watanabe et al. 2017, Algorithm 2), so
unsupported prefixes leave the beam as soon as they appear.
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
def ctc_best_path(model, mel: torch.Tensor) -> list[list[int]]:
    """The CTC head's best path (`ctc_greedy`) for each clip of mel (B, n_mels, T): token ids per clip."""
    memory, mask = model.encode(mel)                                          # (B, T', d), (B, T')
    return ctc_greedy(model.ctc_log_probs(memory), mask.sum(1), model.cfg.pad_id)


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


class CTCPrefixScorer:
    """log P_ctc(prefix ...) — the CTC probability of all label sequences that start with a prefix — for N
    prefixes at once and every one-token extension, by the forward variables r_n (paths ending in the
    prefix's last token) and r_b (ending in blank) over time (Watanabe et al. 2017, Algorithm 2).

    log_probs (N, T, V), lengths (N,) real positions. The prefix score of prefix + EOS is the probability of
    exactly the prefix, log(r_n + r_b) at the last real position."""

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor, blank: int, eos: int):
        self.x, self.lengths, self.blank, self.eos = log_probs.float(), lengths, blank, eos
        N, T, V = self.x.shape
        # The empty prefix: no label yet, every frame so far blank.
        self.r_n = torch.full((N, T), float("-inf"), device=self.x.device)             # (N, T)
        self.r_b = self.x[:, :, blank].cumsum(1)                                        # (N, T)
        self.last = torch.full((N,), -1, dtype=torch.long, device=self.x.device)       # (N,) -1 = empty prefix

    def extend(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prefix scores of every extension (N, V) and the forward variables of each, (N, T, V) twice.
        Blank scores -inf; EOS scores the prefix itself as a complete transcript."""
        x, N, T, V = self.x, *self.x.shape
        r_sum = torch.logaddexp(self.r_n, self.r_b)                                    # (N, T)
        phi = r_sum[:, :, None].expand(N, T, V).clone()                                 # (N, T, V)
        repeat = self.last >= 0
        # After the prefix's own last token, a repeat needs a blank in between: only r_b may continue.
        phi[repeat, :, self.last[repeat]] = self.r_b[repeat]
        new_n = torch.full((N, T, V), float("-inf"), device=x.device)
        new_b = torch.full((N, T, V), float("-inf"), device=x.device)
        new_n[~repeat, 0] = x[~repeat, 0]                                                # only the empty prefix starts at t=0
        psi = new_n[:, 0].clone()                                                         # (N, V)
        for t in range(1, T):
            new_n[:, t] = torch.logaddexp(new_n[:, t - 1], phi[:, t - 1]) + x[:, t]
            new_b[:, t] = torch.logaddexp(new_n[:, t - 1], new_b[:, t - 1]) + x[:, t, self.blank, None]
            real = (t < self.lengths)[:, None]                                           # (N, 1)
            psi = torch.where(real, torch.logaddexp(psi, phi[:, t - 1] + x[:, t]), psi)
        psi[:, self.blank] = float("-inf")
        psi[:, self.eos] = r_sum.gather(1, (self.lengths - 1)[:, None])[:, 0]
        return psi, new_n, new_b

    def select(self, rows: torch.Tensor, tokens: torch.Tensor, new_n: torch.Tensor, new_b: torch.Tensor) -> None:
        """Keep prefix `rows[i]` extended by `tokens[i]` as the new prefix i."""
        self.r_n, self.r_b = new_n[rows, :, tokens], new_b[rows, :, tokens]               # (N, T)
        self.x, self.lengths, self.last = self.x[rows], self.lengths[rows], tokens


@torch.no_grad()
def joint_beam_search(model, mel: torch.Tensor, beam: int, max_len: int,
                      ctc_weight: float) -> list[tuple[list[int], float]]:
    """Label-synchronous beam search over λ · log P_ctc(prefix) + (1 − λ) · log P_att(prefix); mel (B, n_mels, T)
    → per clip the best finished transcript's token ids and its joint score. Both terms only fall as a prefix grows, so a clip is done once
    its best finished score beats every live one."""
    from attnkit.generation.beam import seq2seq_processors, seq2seq_step
    from attnkit.generation.decode import prefill, process

    cfg = model.cfg
    B, K, dev = mel.shape[0], beam, mel.device
    memory, mask = model.encode(mel)                                                  # (B, T', d), (B, T')
    ctc = CTCPrefixScorer(model.ctc_log_probs(memory).repeat_interleave(K, 0), mask.sum(1).repeat_interleave(K, 0),
                          cfg.pad_id, cfg.eos_id)
    memory, mask = memory.repeat_interleave(K, 0), mask.repeat_interleave(K, 0)      # (B·K, T', d)
    step, processors = seq2seq_step(model, memory, mask), seq2seq_processors(cfg, max_len)
    ids = torch.full((B * K, 1), cfg.bos_id, dtype=torch.long, device=dev)
    caches, logits = prefill(step, ids, 0, lambda: model.new_caches(max_len))  # BOS + at most max_len − 1 tokens
    alive = torch.zeros(B * K, 0, dtype=torch.long, device=dev)
    att = torch.zeros(B, K, device=dev)                                                # cumulative log P_att
    score = torch.full((B, K), float("-inf"), device=dev)
    score[:, 0] = 0.0  # all K rows start identical: expand only the first
    best: list[tuple[float, list[int]]] = [(float("-inf"), []) for _ in range(B)]
    for t in range(max_len):
        att_step = process(logits, torch.cat((ids, alive), 1), processors)            # (B·K, V)
        ctc_prefix, new_n, new_b = ctc.extend()                                          # (B·K, V)
        V = att_step.shape[-1]
        att_cand = att[:, :, None] + att_step.view(B, K, V)                              # (B, K, V)
        joint = (1 - ctc_weight) * att_cand + ctc_weight * ctc_prefix.view(B, K, V)
        joint = joint.masked_fill(~score.isfinite()[:, :, None], float("-inf")).view(B, K * V)
        top, idx = joint.topk(min(2 * K, K * V), dim=-1)                                 # (B, 2K)
        top_beam, top_tok = idx // V, idx % V
        for b, j in ((top_tok == cfg.eos_id) & top.isfinite()).nonzero().tolist():
            if top[b, j].item() > best[b][0]:
                best[b] = (top[b, j].item(), alive[b * K + top_beam[b, j].item()].tolist())
        # The K best that do not end stay alive.
        live = top.masked_fill(top_tok == cfg.eos_id, float("-inf"))
        keep_score, order = live.topk(K, dim=-1)                                          # (B, K)
        keep_beam, keep_tok = top_beam.gather(1, order), top_tok.gather(1, order)
        done = keep_score.max(1).values <= torch.tensor([s for s, _ in best], device=dev)
        if bool(done.all()) or t == max_len - 1:
            break
        rows = (torch.arange(B, device=dev)[:, None] * K + keep_beam).view(-1)          # (B·K,)
        att = att_cand.view(B, K * V).gather(1, keep_beam * V + keep_tok)
        score = keep_score.masked_fill(done[:, None], float("-inf"))
        ctc.select(rows, keep_tok.view(-1), new_n, new_b)
        for cache in caches:
            cache.reorder(rows)
        alive = torch.cat((alive[rows], keep_tok.view(-1, 1)), 1)
        logits = step(keep_tok.view(-1, 1), caches, t + 1)
    return [(tokens, score) for score, tokens in best]


__all__ = ["CTCPrefixScorer", "attention_logprob", "ctc_best_path", "ctc_greedy", "ctc_logprob", "joint_beam_search",
           "joint_rescore", "joint_scores"]
