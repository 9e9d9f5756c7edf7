"""Image Transformer: local attention patterns against full causal attention, side by side in one run.

For each pattern: the share of visible (query, key) entries, the kernel tiles a block-sparse kernel
computes, and the forward time of one attention call and of the whole model. The models of the different
patterns share one set of weights (the mask is a buffer, not a parameter), so only the pattern differs.
On CPU attention runs dense (torch SDPA with the boolean mask), so a sparse pattern costs about as much
as full; only the Triton kernel (CUDA) skips tiles. Report speed as the ratio in one run.

    python benchmarks/image_timing.py                      # the small flavor's sizes, random weights
    python benchmarks/image_timing.py --run runs/img       # a trained run's model
    python benchmarks/image_timing.py --device cuda --batch 64
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time

import torch
from rich.console import Console
from rich.table import Table

from attnkit.zoo.data.digits import LEVELS, N_CLASSES
from attnkit.nn.masks import causal_mask, pattern_stats
from attnkit.zoo.models.image import ATTENTION_PATTERNS, ImageTransformer, ImageTransformerConfig
from attnkit.ops import attention

# Kernel tiles (BLOCK_M, BLOCK_N): the interpreter's fixed 64×64 and a typical CUDA forward config.
TILES = ((64, 64), (128, 64))


def median_time(fn, repeats: int, cuda: bool) -> float:
    """Median seconds of fn() over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


@torch.no_grad()
def compare(model: ImageTransformer, device: torch.device, batch: int, repeats: int) -> dict[str, dict]:
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32  # as in training: bf16 autocast on CUDA
    autocast = (lambda: torch.autocast("cuda", dtype=dtype)) if cuda else contextlib.nullcontext
    cfg, L = model.cfg, model.cfg.length
    q, k, v = (torch.randn(batch, cfg.n_head, L, cfg.d_model // cfg.n_head, device=device, dtype=dtype)
               for _ in range(3))
    images = torch.randint(0, LEVELS, (batch, cfg.image_size, cfg.image_size), device=device)
    labels = torch.randint(0, N_CLASSES, (batch,), device=device)
    out = {}
    for pattern in ATTENTION_PATTERNS:
        other = ImageTransformer(dataclasses.replace(cfg, attention=pattern)).to(device).eval()
        other.load_state_dict(model.state_dict())
        mask = other.attn_mask
        dense = causal_mask(L, device=device) if mask is None else mask
        row = {"entries": dense.float().mean().item()}
        for m, n in TILES:
            s = pattern_stats(dense, m, n)
            row[f"tiles {m}×{n}"] = f"{s['tiles_computed']}/{s['tiles_total']}"
        with autocast():
            row["attention_s"] = median_time(lambda: attention(q, k, v, causal=True, attn_mask=mask), repeats, cuda)
            row["model_s"] = median_time(lambda: other(images, labels), repeats, cuda)
        out[pattern] = row
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a run directory of `attnkit train --model image` (default: random weights)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    device = torch.device(args.device)
    if args.run:
        from attnkit.engine.sample import load_run
        model = load_run(args.run, device).model
    else:
        torch.manual_seed(0)
        model = ImageTransformer(ImageTransformerConfig(image_size=16, n_layer=3, n_head=4, d_model=64)).to(device)
    model.eval()
    rows = compare(model, device, args.batch, args.repeats)
    table = Table(title=f"attention patterns on {device.type} (B={args.batch}, L={model.cfg.length}, "
                        f"{model.cfg.n_layer} layers); machine load affects absolute times, compare ratios")
    for col in ("pattern", "visible entries", *(f"tiles {m}×{n}" for m, n in TILES), "attention fwd ms",
                "× full", "model fwd ms", "× full"):
        table.add_column(col, justify="right")
    full = rows["full"]
    for name, r in rows.items():
        table.add_row(name, f"{100 * r['entries']:.1f}%", *(r[f"tiles {m}×{n}"] for m, n in TILES),
                      f"{1e3 * r['attention_s']:.2f}", f"{r['attention_s'] / full['attention_s']:.2f}",
                      f"{1e3 * r['model_s']:.1f}", f"{r['model_s'] / full['model_s']:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
