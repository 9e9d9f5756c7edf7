"""End-to-end sampling speed: `attnkit sample`'s decode loop (GPT.generate, temperature 0) on the static KV cache
(`StaticKVCache`, written in place) against the concatenating `KVCache` (torch.cat per token), and the static
cache with the one-token step compiled (torch.compile), at several prompt lengths. CPU by default.

Each arm decodes the same prompt with the same model; all arms must give the same tokens (checked). Decode
tokens/s is timed from the first new token to the last (prefill excluded, as it is the same work in every arm);
end-to-end seconds include the prefill. Arms alternate for `--rounds` rounds after one untimed warm-up each
(the compiled arm compiles there; its compile time is reported). The model is the GPT demo preset (what
`attnkit train --model gpt` trains: learned positions by default) with random weights, its block size just above
the context, so the window never restarts.

    OMP_NUM_THREADS=1 python benchmarks/sample_speed.py [--contexts 256,2048,8192] [--tokens 128] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from attnkit.zoo.models.gpt import GPT, GPTConfig, PRESETS

ARMS = {"cat": dict(static_cache=False), "static": dict(static_cache=True),
        "static+compile": dict(static_cache=True, compile=True)}


def run_arm(model: GPT, prompt: torch.Tensor, tokens: int, arm: dict) -> tuple[torch.Tensor, float, float]:
    """(tokens (1, T + tokens), decode tokens/s from the first new token to the last, end-to-end seconds)."""
    stamps = []
    start = time.perf_counter()
    out = model.generate(prompt, tokens, temperature=0.0, on_token=lambda t: stamps.append(time.perf_counter()),
                         **arm)
    end = time.perf_counter()
    return out, (tokens - 1) / (stamps[-1] - stamps[0]), end - start


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contexts", default="256,2048,8192", help="prompt lengths, comma-separated")
    p.add_argument("--tokens", type=int, default=128, help="new tokens per run (at least 2)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--position", default="learned", choices=("learned", "rotary"))
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)}")
    p.add_argument("--vocab-size", type=int, default=67)
    a = p.parse_args(argv)
    arms = a.arms.split(",")
    if a.tokens < 2 or not set(arms) <= set(ARMS):
        p.error(f"--tokens must be >= 2 and --arms a subset of {','.join(ARMS)}")
    results = {}
    for context in (int(c) for c in a.contexts.split(",")):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=a.vocab_size, block_size=context + a.tokens, position=a.position,
                              **PRESETS[a.preset])).eval()
        prompt = torch.randint(0, a.vocab_size, (1, context), generator=torch.Generator().manual_seed(1))
        rec = {arm: {"tokens_per_s": [], "seconds": []} for arm in arms}
        outs = {}
        for arm in arms:  # warm-up: allocators, and the compiled arm's compile
            t0 = time.perf_counter()
            run_arm(model, prompt, 2, ARMS[arm])
            rec[arm]["warmup_s"] = time.perf_counter() - t0
        for _ in range(a.rounds):
            for arm in arms:
                outs[arm], tps, secs = run_arm(model, prompt, a.tokens, ARMS[arm])
                rec[arm]["tokens_per_s"].append(tps)
                rec[arm]["seconds"].append(secs)
        same = all(torch.equal(outs[arm], outs[arms[0]]) for arm in arms)
        results[context] = {"arms": rec, "same_tokens": same}
        base = statistics.median(rec[arms[0]]["tokens_per_s"])
        print(f"context {context}, {a.tokens} new tokens, {a.preset} GPT ({a.position} positions), "
              f"{torch.get_num_threads()} thread(s); "
              f"same tokens in every arm: {'yes' if same else 'NO'}")
        for arm in arms:
            tps = rec[arm]["tokens_per_s"]
            print(f"  {arm:15s} decode tokens/s {statistics.median(tps):8.1f} ({', '.join(f'{x:.1f}' for x in tps)})"
                  f"  {statistics.median(tps) / base:5.2f}x {arms[0]}"
                  f"  end-to-end {statistics.median(rec[arm]['seconds']):6.2f} s  warm-up {rec[arm]['warmup_s']:.1f} s")
    return results


if __name__ == "__main__":
    main()
