"""Packed against padded GPT training on a corpus of real variable-length documents: the standard library's
functions (`--data python-functions`, 32–512 characters each, char tokenizer), side by side in one process.

    padded   `--opt pack=false`: one function per row, padded to the block (the pads are computed and wasted)
    packed   `--opt pack=true`: functions packed end to end into full rows with document_ids (attention never
             crosses a function, positions restart in each), no padding

Both arms train the same model (demo GPT, block 512, the same seed and initial weights) with AdamW at a constant
learning rate after a short warmup, on the same number of real (predicted, non-pad) tokens per step: the packed
arm takes fewer rows, round(padded rows × mean fill). Each arm stops once it has seen `--tokens` real tokens.
Reported: real tokens/s (batch building, forward, backward and step, wall clock) and the validation loss at that
point: mean cross-entropy per token over every held-out function, each run alone (the same for both arms).

    OMP_NUM_THREADS=1 python benchmarks/pack_speed.py [--tokens 200000] [--rows 8] [--block-size 512]

For finding why the validation losses differ (accuracy only, run niced): `--arms padded` runs one arm,
`--data-seed` draws the batches from another generator than the one seeding the weights (how much one data
order differs from another), `--padded-loss fixed` divides each padded step's summed loss by a constant, the
mean real tokens of a step (rows × fill × block), as a packed step's is, instead of by the step's own count.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from attnkit.config import TrainConfig
from attnkit.zoo.data.documents import IGNORE, pad_rows
from attnkit.zoo.tasks.gpt import GPTOptions, GPTTask


@torch.no_grad()
def val_loss(model, docs: list[torch.Tensor], T: int, rows: int = 32) -> float:
    """Mean cross-entropy per predicted token over every document, one per row (positions from 0)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(docs), rows):
        batch = pad_rows(docs, torch.arange(i, min(i + rows, len(docs))), T)
        _, loss = model(batch["x"], batch["y"])
        n = int((batch["y"] != IGNORE).sum())
        total, count = total + loss.item() * n, count + n
    model.train()
    return total / count


def train_arm(task: GPTTask, rows: int, tokens: int, lr: float, warmup: int, seed: int, data_seed: int | None = None,
              step_tokens: float | None = None) -> dict:
    """step_tokens: divide each step's summed loss by this constant instead of by its own real tokens."""
    torch.manual_seed(seed)
    model = GPTTask.build_model(task.model_config())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    g = torch.Generator().manual_seed(seed if data_seed is None else data_seed)
    seen, steps = 0, 0
    start = time.perf_counter()
    while seen < tokens:
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (steps + 1) / warmup)
        batch = task.get_batch("train", rows, g)
        loss = task.loss(model, batch)
        if step_tokens is not None:
            loss = loss * task.batch_tokens(batch) / step_tokens
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen, steps = seen + task.batch_tokens(batch), steps + 1
    seconds = time.perf_counter() - start
    return {"rows": rows, "steps": steps, "real_tokens": seen, "seconds": seconds, "tokens_per_s": seen / seconds,
            "val_loss": val_loss(model, task.docs["val"], task.cfg.block_size)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=200_000, help="real tokens each arm trains on")
    p.add_argument("--rows", type=int, default=8, help="rows per step of the padded arm")
    p.add_argument("--block-size", type=int, default=512)
    p.add_argument("--flavor", default="demo")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-seed", type=int, default=None, help="the batches' generator seed (default: --seed)")
    p.add_argument("--arms", default="padded,packed", help="padded,packed or one of them")
    p.add_argument("--padded-loss", choices=("mean", "fixed"), default="mean",
                   help="a padded step's loss: mean over its real tokens, or summed / the mean real tokens per step")
    a = p.parse_args(argv)
    arms = a.arms.split(",")
    if not arms or not set(arms) <= {"padded", "packed"}:
        p.error(f"--arms takes padded, packed or both, got {a.arms!r}")
    tasks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pack in (False, True):
            cfg = TrainConfig(model="gpt", flavor=a.flavor, data="python-functions", tokenizer="char",
                              block_size=a.block_size, dropout=0.0)
            tasks[pack] = GPTTask(cfg, GPTOptions(pack=pack))
            tasks[pack].prepare(tmp)
    docs = tasks[False].docs["train"]
    fill = sum(min(len(d) - 1, a.block_size) for d in docs) / len(docs) / a.block_size  # of a padded row
    packed_rows = max(1, round(a.rows * fill))
    results = {"fill": fill, "documents": {s: len(d) for s, d in tasks[False].docs.items()}}
    fixed = a.rows * fill * a.block_size if a.padded_loss == "fixed" else None
    for name, pack, rows in (("padded", False, a.rows), ("packed", True, packed_rows)):
        if name in arms:
            results[name] = train_arm(tasks[pack], rows, a.tokens, a.lr, a.warmup, a.seed, a.data_seed,
                                      fixed if name == "padded" else None)
    print(f"python-functions: {results['documents']['train']} train / {results['documents']['val']} val functions; "
          f"block {a.block_size}, {a.flavor} GPT, {torch.get_num_threads()} thread(s); a padded row is "
          f"{fill:.0%} real tokens; weights seed {a.seed}, data seed {a.seed if a.data_seed is None else a.data_seed}"
          + ("; padded loss summed / a fixed count" if fixed else ""))
    for name in arms:
        r = results[name]
        print(f"  {name:7s} {r['rows']:3d} rows/step  {r['steps']:5d} steps  {r['real_tokens']:9,d} real tokens  "
              f"{r['seconds']:7.1f} s  {r['tokens_per_s']:8,.0f} real tokens/s  val loss {r['val_loss']:.4f}")
    if len(arms) < 2:
        return results
    results["speedup"] = results["packed"]["tokens_per_s"] / results["padded"]["tokens_per_s"]
    print(f"  packed / padded real tokens/s = {results['speedup']:.2f}x; "
          f"val loss {results['packed']['val_loss'] - results['padded']['val_loss']:+.4f} (packed − padded)")
    return results


if __name__ == "__main__":
    main()
