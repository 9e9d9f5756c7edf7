"""Decoding speed: KV-cached sampling against recomputing the whole prefix for every new token.

Same model, same prompt, same seed; both paths must produce the same tokens (checked), and the ratio of
their wall times is the cache's speedup. Default: the demo-sized GPT (4 layers × 4 heads × 128) with a
1024 context, 512 new tokens, on CPU.

    OMP_NUM_THREADS=1 python benchmarks/decode_speed.py          # CPU time of one thread
    python benchmarks/decode_speed.py --device cuda --n-layer 12 --n-head 12 --n-embd 768
"""
from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from attnkit.generation.generate import generate
from attnkit.zoo.models.gpt import GPT, GPTConfig


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--new-tokens", type=int, default=512)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=67)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--clock", choices=("cpu", "wall"), default=None,
                   help="cpu: process CPU time, robust on a shared machine (default on CPU); wall: default on CUDA")
    args = p.parse_args(argv)
    use_cpu_clock = (args.clock or ("wall" if args.device == "cuda" else "cpu")) == "cpu"
    clock = time.process_time if use_cpu_clock else time.perf_counter

    torch.manual_seed(0)
    block = args.prompt_len + args.new_tokens
    model = GPT(GPTConfig(vocab_size=args.vocab_size, block_size=block, n_layer=args.n_layer, n_head=args.n_head,
                          n_embd=args.n_embd)).to(args.device).eval()
    prompt = torch.randint(0, args.vocab_size, (args.batch, args.prompt_len), device=args.device)
    times, outs = {}, {}
    for name, use_cache in (("kv cache", True), ("recompute prefix", False)):
        generate(model, prompt, 8, generator=torch.Generator().manual_seed(0), use_cache=use_cache)  # warm up
        if args.device == "cuda":
            torch.cuda.synchronize()
        t0 = clock()
        outs[name] = generate(model, prompt, args.new_tokens, temperature=1.0, top_k=50,
                              generator=torch.Generator().manual_seed(0), use_cache=use_cache)
        if args.device == "cuda":
            torch.cuda.synchronize()
        times[name] = clock() - t0
    same = torch.equal(outs["kv cache"], outs["recompute prefix"])
    table = Table(title=f"decoding {args.new_tokens} tokens · {args.n_layer}×{args.n_head}×{args.n_embd} · "
                        f"{args.device} · {torch.get_num_threads()} thread(s) · {'CPU' if use_cpu_clock else 'wall'} time")
    for col in ("path", "seconds", "tokens/s", "speedup"):
        table.add_column(col, justify="right")
    for name, t in times.items():
        table.add_row(name, f"{t:.2f}", f"{args.new_tokens * args.batch / t:,.0f}",
                      f"{times['recompute prefix'] / t:.1f}×")
    Console().print(table)
    Console().print(f"same tokens from both paths: {'yes' if same else 'NO'}")
    return {"seconds": times, "same_tokens": same}


if __name__ == "__main__":
    main()
