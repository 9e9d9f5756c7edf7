"""What GPT's training batches hold on the python-functions corpus (no training): padded rows, packed rows with
the pool carried over between batches (`--opt pack=true`), and packed rows from a pool drawn afresh for each
batch (the first packer), each over the same number of batches at the same real tokens per step as
benchmarks/pack_speed.py. Uniform draws of whole functions (padded rows) are the target:

    predictions per function, token-weighted   how much long functions dominate the trained tokens
    mean position                              of a trained token in its function
    first 32                                   share of trained tokens at positions < 32

    python benchmarks/pack_mix.py [--batches 150] [--rows 8] [--block-size 512] [--seed 0]
"""
from __future__ import annotations

import argparse
import tempfile

import torch

from attnkit.config import TrainConfig
from attnkit.zoo.data.documents import IGNORE, DocumentPacker
from attnkit.zoo.tasks.gpt import GPTOptions, GPTTask


def mix(batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Token-weighted statistics of the real predictions in `batches` (a row without document ids is one function)."""
    lengths, positions = [], []
    for b in batches:
        real = b["y"] != IGNORE  # (B, T)
        ids = b.get("document_ids", torch.zeros_like(b["y"]))  # (B, T)
        pos = b.get("positions", torch.arange(b["y"].shape[1]).expand_as(b["y"]))  # (B, T)
        for r in range(len(real)):
            counts = torch.bincount(ids[r][real[r]].long())  # predictions per segment of row r
            lengths.append(counts[ids[r][real[r]].long()])
            positions.append(pos[r][real[r]])
    n, p = torch.cat(lengths).float(), torch.cat(positions).float()
    return {"tokens_per_step": len(n) / len(batches), "length": n.mean().item(), "position": p.mean().item(),
            "first_32": (p < 32).float().mean().item()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=150)
    p.add_argument("--rows", type=int, default=8, help="rows per padded batch")
    p.add_argument("--block-size", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    cfg = TrainConfig(model="gpt", flavor="demo", data="python-functions", tokenizer="char",
                      block_size=a.block_size, dropout=0.0)
    task = GPTTask(cfg, GPTOptions(pack=False))
    with tempfile.TemporaryDirectory() as tmp:
        task.prepare(tmp)
    docs, T = task.docs["train"], a.block_size
    fill = sum(min(len(d) - 1, T) for d in docs) / len(docs) / T
    packed_rows = max(1, round(a.rows * fill))
    g = torch.Generator().manual_seed(a.seed)
    carried = DocumentPacker(docs, T)
    arms = {"padded": [task.get_batch("train", a.rows, g) for _ in range(a.batches)],
            "packed, pool carried over": [carried.rows(packed_rows, g) for _ in range(a.batches)],
            "packed, pool drawn afresh": [DocumentPacker(docs, T).rows(packed_rows, g) for _ in range(a.batches)]}
    results = {name: mix(batches) for name, batches in arms.items()}
    print(f"python-functions, block {T}, {a.batches} batches each: padded {a.rows} rows, packed {packed_rows} rows")
    print(f"  {'':26s} {'tokens/step':>11s} {'predictions/function':>21s} {'mean position':>14s} {'first 32':>9s}")
    for name, r in results.items():
        print(f"  {name:26s} {r['tokens_per_step']:11.0f} {r['length']:21.1f} {r['position']:14.1f} "
              f"{r['first_32']:9.3f}")
    return results


if __name__ == "__main__":
    main()
