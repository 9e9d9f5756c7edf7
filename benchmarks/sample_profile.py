"""Where an eager decode step's time goes: torch.profiler over one-token steps of the demo GPT (what
`benchmarks/sample_speed.py` times) on the static and the concatenating KV cache, after a prompt of `--context`
tokens; then one SDPA call repeated in a tight loop on a static cache's view and on a contiguous copy of it.

    OMP_NUM_THREADS=1 python benchmarks/sample_profile.py [--context 2048] [--steps 64] [--rows 12]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from attnkit.zoo.models.gpt import GPT, GPTConfig, PRESETS


def profile_steps(model: GPT, prompt: torch.Tensor, steps: int, static: bool) -> tuple[profile, float]:
    """(the profile of `steps` greedy one-token steps after the prefill, ms per step without the profiler)."""
    max_len = prompt.shape[1] + 2 * steps + 8

    def decode(prof=None):
        caches = model.make_caches(max_len if static else None)
        tok = model(prompt, caches=caches)[0].argmax(-1)  # (B, 1)
        start = time.perf_counter()
        if prof is not None:
            prof.start()
        for _ in range(steps):
            tok = model(tok, caches=caches)[0].argmax(-1)  # (B, 1)
        if prof is not None:
            prof.stop()
        return (time.perf_counter() - start) / steps * 1e3
    with torch.inference_mode():
        decode()  # warm-up
        ms = decode()
        prof = profile(activities=[ProfilerActivity.CPU])
        decode(prof)
    return prof, ms


def sdpa_us(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, calls: int = 300) -> float:
    with torch.inference_mode():
        for _ in range(20):
            F.scaled_dot_product_attention(q, k, v)
        start = time.perf_counter()
        for _ in range(calls):
            F.scaled_dot_product_attention(q, k, v)
    return (time.perf_counter() - start) / calls * 1e6


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--rows", type=int, default=12, help="profiler rows per cache")
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    a = p.parse_args(argv)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=67, block_size=a.context + 2 * a.steps + 8, **PRESETS[a.preset])
    model = GPT(cfg).eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, a.context), generator=torch.Generator().manual_seed(1))
    results = {}
    for static in (True, False):
        prof, ms = profile_steps(model, prompt, a.steps, static)
        results["static" if static else "cat"] = {
            "ms_per_step": ms, "self_us": {e.key: e.self_cpu_time_total for e in prof.key_averages()}}
        print(f"{'StaticKVCache' if static else 'KVCache (cat)'}: {ms:.3f} ms per step without the profiler; "
              f"{a.steps} steps after a {a.context}-token prompt, self CPU time per op:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows))
    caches = model.make_caches(cfg.block_size)
    with torch.inference_mode():
        model(prompt, caches=caches)
    k, v = caches[0].k, caches[0].v  # (1, H, context, D) views of the static buffers
    q = torch.randn(1, cfg.n_head, 1, cfg.n_embd // cfg.n_head)  # (1, H, 1, D)
    results["sdpa_us"] = {"static view": sdpa_us(q, k, v), "contiguous": sdpa_us(q, k.contiguous(), v.contiguous())}
    print(f"one SDPA call, {a.context} keys, repeated: " + ", ".join(f"{name} {us:.1f} us"
                                                                     for name, us in results["sdpa_us"].items()))
    return results


if __name__ == "__main__":
    main()
