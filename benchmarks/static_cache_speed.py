"""Decoding tokens/s through one attention layer at a 2k-token context: StaticKVCache (written in place) vs
KVCache (torch.cat per token), measured side by side, alternating, in one process. CPU by default.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/static_cache_speed.py [--context 2048] [--tokens 64] [--rounds 3]
"""
import argparse
import time

import torch

from attnkit.nn.layers import KVCache, MultiHeadAttention, StaticKVCache


def tokens_per_s(mha, make_cache, context, tokens, d_model):
    cache = make_cache()
    with torch.no_grad():
        mha(torch.randn(1, context, d_model), cache=cache)  # the prompt
        steps = torch.randn(tokens, 1, 1, d_model)
        start = time.perf_counter()
        for t in steps:
            mha(t, cache=cache)
        return tokens / (time.perf_counter() - start)


def main(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--d-model", type=int, default=512)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    mha = MultiHeadAttention(a.d_model, 8, causal=True, position="rotary").eval()
    results = {"static": [], "cat": []}
    for _ in range(a.rounds):
        results["cat"].append(tokens_per_s(mha, KVCache, a.context, a.tokens, a.d_model))
        results["static"].append(tokens_per_s(mha, lambda: StaticKVCache(a.context + a.tokens), a.context,
                                              a.tokens, a.d_model))
    for name, xs in results.items():
        print(f"{name:6s} tokens/s per round: {', '.join(f'{x:.0f}' for x in xs)}  (median {sorted(xs)[len(xs) // 2]:.0f})")
    med = {n: sorted(xs)[len(xs) // 2] for n, xs in results.items()}
    print(f"static / cat = {med['static'] / med['cat']:.2f}x")
    return results


if __name__ == "__main__":
    main()
