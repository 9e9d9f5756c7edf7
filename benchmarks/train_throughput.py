"""Training throughput: attnkit's trainer (`attnkit.engine.trainer.run_training`) against a plain PyTorch loop
written here the way nanoGPT's train.py does it, on the same machine in the same run.

Three contenders, same data (the embedded corpus, char-level), same sizes (the `demo` flavor by default),
same AdamW settings, grad clipping and cosine schedule:
    attnkit   run_training: the whole trainer (progress bar, NaN check, checkpoint bookkeeping)
    plain     nanoGPT-style loop over attnkit's GPT model
    nanogpt   nanoGPT-style loop over a nanoGPT-style model defined below (fused c_attn, F.sdpa)

Each contender runs `--warmup` steps that are not timed, then `--steps` timed steps; the contenders are
interleaved `--repeats` times. The best run of each is compared (as timeit does: on a shared machine the
best run is the one least disturbed by others); medians are shown too.

Clock: on CPU the default is process CPU time (`--clock cpu`), which other jobs on a shared machine barely
disturb (run with OMP_NUM_THREADS=1 so compute stays on one thread). On CUDA, or with `--clock wall`, wall
time is used. attnkit is timed from the first batch of its first timed step to the first validation batch
after its last step (a wrapper around GPTTask.get_batch marks both), so it pays for everything its loop does.

    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py                 # CPU, demo flavor
    python benchmarks/train_throughput.py --device cuda --flavor small      # GPU
"""
from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from attnkit.config import TrainConfig
from attnkit.zoo.data.text import load_text
from attnkit.zoo.data.tokenizer import CharTokenizer
from attnkit.zoo.models.gpt import GPT, GPTConfig
from attnkit.engine.optim import lr_at
from attnkit.zoo.tasks.gpt import GPTTask
from attnkit.engine.device import resolve_dtype
from attnkit.engine.resolve import resolve_config
from attnkit.engine.trainer import run_training


# ---- a nanoGPT-style model (model.py, trimmed) -----------------------------------------------
class NanoAttention(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.n_head, self.dropout = c.n_head, c.dropout

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class NanoBlock(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(c.n_embd), nn.LayerNorm(c.n_embd)
        self.attn = NanoAttention(c)
        self.mlp = nn.Sequential(nn.Linear(c.n_embd, 4 * c.n_embd), nn.GELU(), nn.Linear(4 * c.n_embd, c.n_embd))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(c.vocab_size, c.n_embd), nn.Embedding(c.block_size, c.n_embd)
        self.h = nn.ModuleList(NanoBlock(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


# ---- the plain loop (train.py, trimmed) ------------------------------------------------------
def plain_loop(model: nn.Module, data: torch.Tensor, cfg: TrainConfig, device: torch.device, warmup: int,
               steps: int) -> float:
    """tokens/s over `steps` timed steps after `warmup` untimed ones."""
    dtype = resolve_dtype(cfg.dtype, device)
    ctx = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else torch.autocast("cpu", enabled=False)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, cfg.beta2),
                            fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    g = torch.Generator().manual_seed(0)
    B, T = cfg.batch_size, cfg.block_size

    def get_batch():
        ix = torch.randint(len(data) - T, (B,), generator=g)
        x = torch.stack([data[i:i + T] for i in ix])
        y = torch.stack([data[i + 1:i + 1 + T] for i in ix])
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    total = warmup + steps
    t0 = None
    for it in range(total):
        if it == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = clock()
        lr = lr_at(it, schedule="cosine", lr=cfg.lr, min_lr=cfg.min_lr, warmup_steps=cfg.warmup_steps,
                   max_steps=total)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = get_batch()
        with ctx:
            _, loss = model(x, y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        loss.item()  # nanoGPT reads the loss every log_interval; attnkit every step (NaN check)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * B * T / (clock() - t0)


def attnkit_loop(cfg: TrainConfig, warmup: int, steps: int) -> float:
    """run_training for warmup + steps steps; timed from the start of step warmup + 1 (its first batch) to the
    end of the last step (the first validation batch), so it covers everything the loop does per step."""
    marks: list[float] = []
    calls = {"train": 0}
    real_get_batch = GPTTask.get_batch

    def timed_get_batch(self, split, batch_size, generator):
        if split == "train":
            calls["train"] += 1
            if calls["train"] == warmup + 1:
                if cfg.device == "cuda":
                    torch.cuda.synchronize()
                marks.append(clock())
        elif len(marks) == 1:
            if cfg.device == "cuda":
                torch.cuda.synchronize()
            marks.append(clock())
        return real_get_batch(self, split, batch_size, generator)

    GPTTask.get_batch = timed_get_batch
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run_cfg = TrainConfig(**{**cfg.__dict__, "out": tmp, "max_steps": warmup + steps,
                                     "eval_interval": warmup + steps, "eval_batches": 1})
            run_training(run_cfg, console=Console(file=io.StringIO()))
    finally:
        GPTTask.get_batch = real_get_batch
    return steps * cfg.batch_size * cfg.block_size / (marks[1] - marks[0])


clock = time.process_time


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flavor", default="demo")
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clock", choices=("cpu", "wall"), default=None, help="default: cpu on CPU, wall on CUDA")
    args = p.parse_args(argv)
    global clock
    clock = time.process_time if (args.clock or ("wall" if args.device == "cuda" else "cpu")) == "cpu" \
        else time.perf_counter

    cfg = resolve_config(TrainConfig(model="gpt", flavor=args.flavor, device=args.device))
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    text = load_text(None)
    tok = CharTokenizer.fit(text)
    data = torch.tensor(tok.encode(text), dtype=torch.long)
    mcfg = GPTConfig(**GPTTask.flavors[args.flavor].model, vocab_size=tok.vocab_size, block_size=cfg.block_size,
                     dropout=cfg.dropout or 0.0)
    results: dict[str, list[float]] = {"attnkit": [], "plain": [], "nanogpt": []}
    attnkit_loop(cfg, 1, 1)  # untimed: first-call imports and allocations would otherwise land in one measurement
    for r in range(args.repeats):
        results["attnkit"].append(attnkit_loop(cfg, args.warmup, args.steps))
        torch.manual_seed(0)
        results["plain"].append(plain_loop(GPT(mcfg).to(device), data, cfg, device, args.warmup, args.steps))
        torch.manual_seed(0)
        results["nanogpt"].append(plain_loop(NanoGPT(mcfg).to(device), data, cfg, device, args.warmup, args.steps))
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in results.items()), flush=True)

    best = {k: max(v) for k, v in results.items()}
    med = {k: statistics.median(v) for k, v in results.items()}
    table = Table(title=f"training throughput · {args.flavor} flavor · {device.type} · "
                        f"{torch.get_num_threads()} thread(s) · batch {cfg.batch_size}×{cfg.block_size} · "
                        f"{'CPU' if clock is time.process_time else 'wall'} time")
    for col in ("loop", "tok/s best", "attnkit ÷", "tok/s median", "attnkit ÷"):
        table.add_column(col, justify="right")
    for k in results:
        table.add_row(k, f"{best[k]:,.0f}", f"{best['attnkit'] / best[k]:.2f}×", f"{med[k]:,.0f}",
                      f"{med['attnkit'] / med[k]:.2f}×")
    Console().print(table)
    return results


if __name__ == "__main__":
    main()
