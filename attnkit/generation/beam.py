"""Greedy decoding and batched beam search for `attnkit.zoo.models.encdec.EncDec`, both on the KV cache and on
the zoo's decode loop (`attnkit.generation.decode`): greedy is `decode_n_tokens` with an EOS stop; beam search reuses
its step, prefill and logits processors and adds the hypothesis bookkeeping.

Beam search keeps K hypotheses per source in one (B·K)-row batch; after each step the decoder's
self-attention caches are reordered to follow the surviving hypotheses (`KVCache.reorder`), so each
step feeds the decoder one token per row. Finished hypotheses are ranked by the GNMT length penalty
(Wu et al. 2016, eq. 14):

    score(Y) = log P(Y | X) / lp(Y),   lp(Y) = ((5 + |Y|) / 6) ** alpha

with |Y| counting the end-of-sequence token. alpha = 0 ranks by log-probability alone. A source stops
when it has K finished hypotheses and no live one can still beat the worst of them (with alpha ≥ 0, a live
hypothesis's best reachable score is its log-probability / lp(max_len), as log-probabilities only fall).
Every hypothesis ends by max_len: at the last step only EOS may be chosen.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from attnkit.generation.decode import ban, decode_n_tokens, force_at_length, greedy, log_softmax, prefill, process, stop_at
from attnkit.nn.modes import direct_calls


@dataclass
class Hypothesis:
    tokens: list[int]   # target ids, without BOS and EOS
    logprob: float      # log P(tokens + EOS | source)
    score: float        # logprob / length_penalty(len(tokens) + 1, alpha)


def length_penalty(length: int | torch.Tensor, alpha: float):
    """GNMT: ((5 + |Y|) / 6) ** alpha."""
    return ((5 + length) / 6) ** alpha


def seq2seq_step(model, memory: torch.Tensor, src_mask: torch.Tensor):
    """The `attnkit.generation.decode` step of an encoder-decoder: new target ids (N, t) → next-token logits (N, V)."""
    return lambda ids, caches, offset: model.decode(ids, memory, src_mask, caches)[:, -1]


def seq2seq_processors(cfg, max_len: int) -> list:
    """Log-probabilities; PAD and BOS never chosen; only EOS at the last of max_len steps (BOS + max_len − 1)."""
    return [log_softmax, ban([cfg.pad_id, cfg.bos_id]), force_at_length(cfg.eos_id, max_len)]


@torch.no_grad()
def greedy_decode(model, src: torch.Tensor, max_len: int, alpha: float = 0.0) -> list[Hypothesis]:
    """src: (B, Ls) padded ids → one Hypothesis per row, at most max_len tokens including EOS."""
    cfg = model.cfg
    B = src.shape[0]
    memory, src_mask = model.encode(src)
    logprob = torch.zeros(B, device=src.device)

    def score(tok: torch.Tensor, logp: torch.Tensor) -> None:  # finished rows emit PAD, which is never chosen
        logprob.add_(torch.where(tok[:, 0] == cfg.pad_id, 0.0, logp.gather(1, tok)[:, 0]))

    bos = torch.full((B, 1), cfg.bos_id, dtype=torch.long, device=src.device)
    with direct_calls(model):  # a token per step: skip nn.Module's per-call overhead
        out = decode_n_tokens(seq2seq_step(model, memory, src_mask), bos, max_len,
                              new_caches=lambda: model.new_caches(max_len),
                              processors=seq2seq_processors(cfg, max_len), choose=greedy, stop=stop_at(cfg.eos_id),
                              pad_id=cfg.pad_id, on_token=score)[:, 1:]
    hyps = []
    for b in range(B):
        row = out[b].tolist()
        tokens = row[: row.index(cfg.eos_id)] if cfg.eos_id in row else row
        lp = logprob[b].item()
        hyps.append(Hypothesis(tokens, lp, lp / length_penalty(len(tokens) + 1, alpha)))
    return hyps


@torch.no_grad()
def beam_search(model, src: torch.Tensor, beam: int, max_len: int, alpha: float = 0.6,
                n_best: int | None = None) -> list[list[Hypothesis]]:
    """src: (B, Ls) → for each source its n_best (default: beam) finished hypotheses, best score first."""
    cfg = model.cfg
    B, K, dev = src.shape[0], beam, src.device
    n_best = n_best or K
    if K < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    memory, src_mask = model.encode(src)
    memory, src_mask = memory.repeat_interleave(K, 0), src_mask.repeat_interleave(K, 0)  # (B·K, Ls, d), (B·K, Ls)
    step, processors = seq2seq_step(model, memory, src_mask), seq2seq_processors(cfg, max_len)
    alive = torch.zeros(B * K, 0, dtype=torch.long, device=dev)                # (B·K, t) tokens so far
    alive_logp = torch.full((B, K), float("-inf"), device=dev)
    alive_logp[:, 0] = 0.0  # all K rows start identical; expanding one of them avoids K duplicate hypotheses
    ids = torch.full((B * K, 1), cfg.bos_id, dtype=torch.long, device=dev)
    caches, logits = prefill(step, ids, 0, lambda: model.new_caches(max_len))  # BOS + at most max_len − 1 tokens
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B
    rank = torch.arange(2 * K, device=dev)
    for t in range(max_len):
        logp = process(logits, torch.cat((ids, alive), dim=1), processors)  # (B·K, V) log-probabilities
        V = logp.shape[-1]
        cand = (alive_logp[:, :, None] + logp.view(B, K, V)).view(B, K * V)   # (B, K·V)
        # 2K candidates always leave K that do not end, however many of the best ones are EOS.
        top_logp, top_idx = cand.topk(min(2 * K, K * V), dim=-1)              # (B, 2K)
        top_beam, top_tok = top_idx // V, top_idx % V                          # (B, 2K)
        is_eos = top_tok == cfg.eos_id
        # An EOS among the K best candidates finishes a hypothesis.
        for b, j in (is_eos & (rank[: top_tok.shape[1]] < K) & top_logp.isfinite()).nonzero().tolist():
            if not done[b]:
                lp = top_logp[b, j].item()
                tokens = alive[b * K + top_beam[b, j].item()].tolist()
                finished[b].append(Hypothesis(tokens, lp, lp / length_penalty(len(tokens) + 1, alpha)))
        # The K best candidates that do not end stay alive (stable sort keeps their rank order).
        order = (is_eos.long() * 2 * K + rank[: top_tok.shape[1]]).argsort(dim=-1)[:, :K]  # (B, K)
        keep_logp = top_logp.gather(1, order).masked_fill(is_eos.gather(1, order), float("-inf"))
        keep_beam, keep_tok = top_beam.gather(1, order), top_tok.gather(1, order)  # (B, K)
        for b in range(B):
            if not done[b] and len(finished[b]) >= n_best:
                worst = sorted(h.score for h in finished[b])[-n_best]
                best_reachable = keep_logp[b].max().item() / length_penalty(max_len, alpha)
                done[b] = best_reachable <= worst
        if all(done) or t == max_len - 1:
            break
        index = (torch.arange(B, device=dev)[:, None] * K + keep_beam).view(-1)  # (B·K,) rows to keep
        for cache in caches:
            cache.reorder(index)
        alive = torch.cat((alive[index], keep_tok.view(-1, 1)), dim=1)
        alive_logp = keep_logp.masked_fill(torch.tensor(done, device=dev)[:, None], float("-inf"))
        logits = step(keep_tok.view(-1, 1), caches, t + 1)
    return [sorted(f, key=lambda h: h.score, reverse=True)[:n_best] for f in finished]


@torch.no_grad()
def sequence_logprob(model, src: torch.Tensor, tokens: list[int]) -> float:
    """log P(tokens + EOS | src) by teacher forcing, without the cache; src: (1, Ls). For checks and rescoring."""
    cfg = model.cfg
    tgt = torch.tensor([[cfg.bos_id, *tokens, cfg.eos_id]], device=src.device)
    logp = model(src, tgt[:, :-1]).float().log_softmax(-1)  # (1, T, V)
    return logp[0].gather(1, tgt[0, 1:, None]).sum().item()
