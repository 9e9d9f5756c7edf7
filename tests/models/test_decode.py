"""attnkit.generation.decode: the one decode loop. Cached equals uncached (window restarts included), and each hook
does what it says."""
from __future__ import annotations

import pytest
import torch

from attnkit.generation.decode import (SlidingWindow, ban, decode_n_tokens, force_at_length, greedy, multinomial, sampling,
                            stop_at)
from attnkit.generation.generate import lm_step
from attnkit.zoo.models.gpt import GPT, GPTConfig
from attnkit.zoo.models.music import MusicConfig, MusicTransformer


def _models():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=32, position="rotary")).eval()
    music = MusicTransformer(MusicConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, d_model=32,
                                         dropout=0.0, max_relative=8)).eval()
    return {"gpt": gpt, "music": music}


@pytest.mark.parametrize("name", ["gpt", "music"])
@pytest.mark.parametrize("window", [SlidingWindow(16), SlidingWindow(16, align=4, restart_at_full=True)])
def test_cached_equals_uncached_across_window_restarts(name, window):
    model = _models()[name]
    prompt = torch.randint(0, 40, (2, 5), generator=torch.Generator().manual_seed(1))
    runs = []
    for caches in (model.make_caches, None):
        procs, choose = sampling(0.9, 10, 0.95, torch.Generator().manual_seed(2))
        with torch.no_grad():
            runs.append(decode_n_tokens(lm_step(model), prompt, 40, new_caches=caches, processors=procs,
                                        choose=choose, window=window))
    assert runs[0].shape == (2, 45)  # 40 new tokens: the 16-token window restarted several times
    assert torch.equal(runs[0], runs[1])


def test_hooks_ban_force_and_stop():
    model = _models()["gpt"]
    prompt = torch.tensor([[0], [5], [11]])
    with torch.no_grad():
        banned = decode_n_tokens(lm_step(model), prompt, 12, new_caches=model.make_caches,
                                 processors=[ban(range(1, 39))], choose=multinomial(torch.Generator().manual_seed(0)))
        assert set(banned[:, 1:].flatten().tolist()) <= {0, 39}
        forced = decode_n_tokens(lm_step(model), prompt, 6, new_caches=model.make_caches,
                                 processors=[force_at_length(7, 4)], choose=greedy)
        assert (forced[:, 4] == 7).all()  # only token 7 may follow a sequence of 4
        free = decode_n_tokens(lm_step(model), prompt, 6, new_caches=model.make_caches, choose=greedy)
        eos = int(free[0, 1])  # row 0's first token: stop there, pad the finished rows
        stopped = decode_n_tokens(lm_step(model), prompt, 6, new_caches=model.make_caches, choose=greedy,
                                  stop=stop_at(eos), pad_id=39)
    assert (stopped == 39).any() and stopped.shape[1] <= free.shape[1]
    for r in range(3):  # every row is the free run up to its first `eos`, then padding
        toks = free[r, 1:].tolist()
        end = toks.index(eos) + 1 if eos in toks else len(toks)
        assert stopped[r, 1:1 + end].tolist() == toks[:end]
        assert all(t == 39 for t in stopped[r, 1 + end:].tolist())


def test_sliding_window_rules():
    w = SlidingWindow(16)
    assert w.first(10) == 0 and w.first(20) == 4
    assert w.restart(16, 0) is None and w.restart(17, 0) == 9  # overflow: keep the last 8
    m = SlidingWindow(16, align=4, restart_at_full=True)
    assert m.first(21) == 8 and m.restart(16, 0) == 8 and m.restart(15, 0) is None  # step-aligned
