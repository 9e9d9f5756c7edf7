"""Text sampling for decoder-only language models (GPT, Music), on the zoo's decode loop (`attnkit.generation.decode`).

Works with any decoder that follows this small protocol (GPT and the Music Transformer do):
    model.make_caches(max_len) -> list of caches               one empty cache per layer; StaticKVCache(max_len)
                                                               with max_len, KVCache (concatenating) without
    model(idx, caches=caches) -> logits (B, T, V) or (logits, ...)   idx holds only the new tokens
    model.config.block_size (or pass block_size=)              longest context the model accepts

Context window: the model sees tokens[start:], at most block_size of them. When the window is full it
restarts from the last block_size // 2 tokens (one prefill, then cheap cached steps again), and the
uncached path (`use_cache=False`, which recomputes the whole window for every token) follows exactly the
same rule, so both produce the same tokens; that is what the tests check.

Cache: by default a `StaticKVCache` per layer sized to the window (gpt-fast's static cache, written at the
write position), so a decode step copies only its new keys; `static_cache=False` uses the concatenating
`KVCache`, which copies the whole cache every token (same tokens, slower on long contexts). `compile=True`
runs the one-token steps through torch.compile (prefills stay eager).
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn as nn

from attnkit.generation.decode import (SlidingWindow, compile_decode_step, decode_n_tokens, filter_logits, process,
                                       sampling)
from attnkit.nn.modes import direct_calls

__all__ = ["filter_logits", "generate", "lm_step", "sample_next"]


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from logits (B, V) → (B, 1). temperature 0 is greedy."""
    processors, choose = sampling(temperature, top_k, top_p, generator)
    return choose(process(logits, logits, processors))


def lm_step(model: nn.Module):
    """The `attnkit.generation.decode` step of a language model that follows the protocol above."""
    def step(tokens: torch.Tensor, caches, offset: int) -> torch.Tensor:
        out = model(tokens, caches=caches) if caches is not None else model(tokens)
        logits = out[0] if isinstance(out, tuple) else out
        return logits[:, -1, :]  # (B, V)
    return step


def generate(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
             use_cache: bool = True, static_cache: bool = True, compile: bool = False,
             block_size: int | None = None,
             on_token: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
    """Continue idx (B, T) by max_new_tokens tokens; returns (B, T + max_new_tokens).

    on_token(tokens (B, 1)) is called after each new token (for streaming). static_cache and compile: see the
    module docstring.
    """
    processors, choose = sampling(temperature, top_k, top_p, generator)
    window = SlidingWindow(block_size or model.config.block_size)
    max_len = min(window.size, idx.shape[1] + max_new_tokens)  # the most tokens a window holds
    new_caches = None if not use_cache else (lambda: model.make_caches(max_len)) if static_cache else model.make_caches
    step = compile_decode_step(lm_step(model)) if compile else lm_step(model)
    was_training = model.training
    model.eval()
    # inference_mode is lighter than no_grad (no version counters or view tracking: ~10% per token here);
    # the clone outside it returns an ordinary tensor that later autograd code may use. direct_calls skips
    # nn.Module's per-call overhead, which a one-token eager step pays some forty times; a compiled step
    # does not run that Python, so compile traces the model as it is.
    with torch.inference_mode(), direct_calls(model) if not compile else contextlib.nullcontext():
        out = decode_n_tokens(step, idx, max_new_tokens, new_caches=new_caches, processors=processors,
                              choose=choose, window=window,
                              on_token=None if on_token is None else lambda tok, logits: on_token(tok))
    model.train(was_training)
    return out.clone()
