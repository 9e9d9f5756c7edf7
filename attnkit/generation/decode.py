"""The zoo's one autoregressive decode loop (gpt-fast's prefill / decode_one_token / decode_n_tokens), with hooks.

A model plugs in with a `step` function, so the loop knows nothing about embeddings or positions:

    step(tokens, caches, offset) -> logits (B, V) for the last position of `tokens`
        tokens: (B, T) ids, the first of them at position `offset` of the sequence being decoded;
        caches: what `new_caches()` returned (tokens are then only the new ones), or None when decoding
        without a cache (tokens are then the whole visible window, starting at `offset`).

Everything else is a hook:

    processors  [proc(logits (B, V), seq (B, T)) -> logits]  applied in order before choosing a token:
                `temperature`, `top_k`, `top_p` (use `sampling(...)` for the usual three), `ban` (tokens never
                chosen, e.g. music's BOS/EOS/PAD), `force_at_length` (only EOS at the last step),
                `log_softmax`; any callable with that signature works (grammar constraints, ...).
    choose      logits (B, V) -> (B, 1) ids: `greedy` or `multinomial(generator)`.
    stop        stop(tokens (B, 1)) -> (B,) bool: the row has finished (e.g. `stop_at(eos_id)`); finished
                rows then emit `pad_id`, and decoding ends when every row has finished.
    window      a context policy when the model's context is bounded: `SlidingWindow(block_size)` (GPT:
                restart from the last half) or `SlidingWindow(window, align=4, restart_at_full=True)`
                (music: restart on a time-step boundary). A restart is one fresh prefill.
    on_token    on_token(tokens (B, 1), logits (B, V) as processed): streaming, progress bars, scores.

Beam search (`attnkit.generation.beam`) is built on the same `step`, `prefill` and processors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

Step = Callable[[torch.Tensor, object, int], torch.Tensor]
Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---- logits processors -------------------------------------------------------------------------------------
def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """logits (B, V) with everything outside the top-k / nucleus set to -inf (at least one kept)."""
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p  # mass before this token already ≥ p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def temperature(t: float) -> Processor:
    return lambda logits, seq: logits.float() / t


def top_k(k: int) -> Processor:
    return lambda logits, seq: filter_logits(logits, top_k=k)


def top_p(p: float) -> Processor:
    return lambda logits, seq: filter_logits(logits, top_p=p)


def ban(ids: Sequence[int]) -> Processor:
    """Tokens that are never chosen (their logits become -inf)."""
    def proc(logits, seq):
        return logits.float().index_fill(-1, torch.tensor(list(ids), device=logits.device), float("-inf"))
    return proc


def force_at_length(token: int, length: int) -> Processor:
    """Only `token` may follow a sequence of `length` tokens (the prompt counted): EOS at the last step."""
    def proc(logits, seq):
        if seq.shape[1] != length:
            return logits
        return torch.full_like(logits, float("-inf")).index_copy(-1, torch.tensor([token], device=logits.device),
                                                                 logits[:, [token]])
    return proc


def log_softmax(logits: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
    """Processor: logits → float log-probabilities (for scores and beam search)."""
    return logits.float().log_softmax(-1)


def process(logits: torch.Tensor, seq: torch.Tensor, processors: Sequence[Processor]) -> torch.Tensor:
    for proc in processors:
        logits = proc(logits, seq)
    return logits


# ---- choosing a token ---------------------------------------------------------------------------------------
def greedy(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(dim=-1, keepdim=True)  # (B, 1)


def multinomial(generator: torch.Generator | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Draw from softmax(logits). On the generator's device, so a seed gives the same text on CPU and GPU."""
    def choose(logits):
        probs = torch.softmax(logits, dim=-1)  # (B, V)
        if generator is not None and generator.device != probs.device:
            return torch.multinomial(probs.to(generator.device), 1, generator=generator).to(probs.device)
        return torch.multinomial(probs, 1, generator=generator)  # (B, 1)
    return choose


def sampling(temperature_: float = 1.0, top_k_: int | None = None, top_p_: float | None = None,
             generator: torch.Generator | None = None) -> tuple[list[Processor], Callable]:
    """(processors, choose) for the usual sampler; temperature ≤ 0 is greedy on the raw logits."""
    if temperature_ <= 0:
        return [], greedy
    procs = [temperature(temperature_)]
    if top_k_ is not None:
        procs.append(top_k(top_k_))
    if top_p_ is not None:
        procs.append(top_p(top_p_))
    return procs, multinomial(generator)


def stop_at(token: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A row has finished once it emits `token` (EOS)."""
    return lambda tokens: tokens[:, 0] == token


# ---- the context window ---------------------------------------------------------------------------------------
@dataclass
class SlidingWindow:
    """What the model sees of a sequence of n tokens: tokens[start:], at most `size` of them.

    When the window overflows (n − start > size; or ≥ size with restart_at_full) it restarts with the last
    `keep` tokens (default size // 2), its start rounded up to a multiple of `align`. The uncached path
    follows the same rule, so cached and uncached decoding give the same tokens.
    """
    size: int
    keep: int | None = None
    align: int = 1
    restart_at_full: bool = False

    def _start(self, n: int, keep: int) -> int:
        return max(0, math.ceil((n - keep) / self.align) * self.align)

    def first(self, n: int) -> int:
        return self._start(n, self.size)

    def restart(self, n: int, start: int) -> int | None:
        full = n - start >= self.size if self.restart_at_full else n - start > self.size
        return self._start(n, max(self.keep if self.keep is not None else self.size // 2, 1)) if full else None


# ---- the loop ---------------------------------------------------------------------------------------------------
def compile_decode_step(step: Step) -> Step:
    """The step with its one-token cached calls (the decode steps) through torch.compile; prefills and uncached
    calls stay eager. With a StaticKVCache the graph is reused from token to token (one dynamic cache length)."""
    compiled = torch.compile(step, dynamic=True)

    def decode_step(tokens: torch.Tensor, caches, offset: int) -> torch.Tensor:
        one = tokens.shape[1] == 1 and caches is not None
        return (compiled if one else step)(tokens, caches, offset)
    return decode_step


def prefill(step: Step, seq: torch.Tensor, start: int, new_caches: Callable | None):
    """Fresh caches (or None) and the logits after seq[:, start:]."""
    caches = new_caches() if new_caches is not None else None
    return caches, step(seq[:, start:], caches, start)


def decode_one_token(logits: torch.Tensor, seq: torch.Tensor, processors: Sequence[Processor],
                     choose: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """(next tokens (B, 1), the processed logits (B, V)) from the logits after seq."""
    logits = process(logits, seq, processors)
    return choose(logits), logits


def decode_n_tokens(step: Step, prompt: torch.Tensor, n: int, *, new_caches: Callable | None = None,
                    processors: Sequence[Processor] = (), choose: Callable = greedy,
                    stop: Callable | None = None, pad_id: int = 0, window: SlidingWindow | None = None,
                    on_token: Callable | None = None) -> torch.Tensor:
    """Continue prompt (B, T) by up to n tokens; returns (B, T + n') with n' ≤ n (fewer if every row stopped).

    new_caches=None decodes without a cache: every step recomputes the visible window.
    """
    seq = prompt
    start = window.first(seq.shape[1]) if window is not None else 0
    caches, logits = prefill(step, seq, start, new_caches)
    finished = torch.zeros(seq.shape[0], dtype=torch.bool, device=seq.device)
    for i in range(n):
        tok, processed = decode_one_token(logits, seq, processors, choose)  # (B, 1)
        if stop is not None:
            tok = tok.masked_fill(finished[:, None], pad_id)
        seq = torch.cat((seq, tok), dim=1)
        if on_token is not None:
            on_token(tok, processed)
        if stop is not None:
            finished |= stop(tok)
            if finished.all():
                break
        if i == n - 1:
            break
        restart = window.restart(seq.shape[1], start) if window is not None else None
        if restart is not None:
            start = restart
            caches, logits = prefill(step, seq, start, new_caches)
        elif caches is not None:
            logits = step(tok, caches, seq.shape[1] - 1)
        else:
            logits = step(seq[:, start:], None, start)
    return seq
