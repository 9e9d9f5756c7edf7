"""How far the static KV cache's lead over the concatenating one can go on CPU when a decode step does less.

Per-step time of the demo GPT (random weights) after a `--context`-token prompt, greedy one-token steps, on the
static cache (`StaticKVCache`) and the concatenating one (`KVCache`, torch.cat per token), through two steps:
- `model`: the model's forward, what `attnkit sample` runs (under `direct_calls`, as `generate` does);
- `lean`: the same arithmetic with fewer ops: q, k and v from one addmm on the concatenated weights,
  every Linear as one addmm on a weight transposed once, and on the static cache one write into a joint
  (2, B, H, max_len, D) key/value buffer. Its logits are checked bit for bit against the model's (the script
  stops if they differ), so it is the same computation with less per-op overhead.
And the two parts only the caches differ by or both pay in full: the step's SDPA calls alone (over the static
cache's views) and the concatenating cache's torch.cat calls alone (the copy the static cache removes).

The cache's own ratio is cat / static with the same step on both; `1 + cat copies / SDPA` is what it would be if
a step were nothing but its attention. Arms alternate for `--rounds` rounds; min and median per arm.

    OMP_NUM_THREADS=1 python benchmarks/decode_step_floor.py [--context 2048] [--steps 128] [--rounds 12] [--preset demo]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from attnkit.nn.layers import StaticKVCache
from attnkit.nn.modes import direct_calls
from attnkit.zoo.models.gpt import GPT, GPTConfig, PRESETS


class LeanCache:
    """Keys and values for the lean step: one joint (2, B, H, max_len, D) buffer written in place (static), or
    k and v grown by torch.cat (concatenating)."""

    def __init__(self, static: bool):
        self.static, self.pos = static, 0
        self.kv = self.k = self.v = None

    def fill(self, cache: StaticKVCache) -> None:
        """Take over the keys and values a model forward wrote into `cache` (the prefill)."""
        self.pos = cache.pos
        if self.static:
            self.kv = torch.stack([cache._k, cache._v])  # (2, B, H, max_len, D)
        else:
            self.k, self.v = cache.k.clone(), cache.v.clone()  # (B, H, pos, D)

    def append(self, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """kv: (2, B, H, 1, D) → k, v (B, H, pos + 1, D)."""
        if self.static:
            self.kv.narrow(3, self.pos, 1).copy_(kv)
            self.pos += 1
            return self.kv[0].narrow(2, 0, self.pos), self.kv[1].narrow(2, 0, self.pos)
        self.k, self.v = torch.cat((self.k, kv[0]), dim=2), torch.cat((self.v, kv[1]), dim=2)
        self.pos += 1
        return self.k, self.v


def lean_weights(model: GPT) -> list[dict]:
    """Per layer: norms, and each Linear's weight transposed once (q, k, v concatenated)."""
    layers = []
    for block in model.blocks:
        attn, mlp = block.attn, block.mlp
        layers.append(dict(
            ln_1=block.ln_1, ln_2=block.ln_2, heads=attn.n_head, head_dim=attn.head_dim,
            w_qkv=torch.cat([attn.q_proj.weight, attn.kv_proj.weight]).t(),
            b_qkv=torch.cat([attn.q_proj.bias, attn.kv_proj.bias]),
            w_out=attn.out_proj.weight.t(), b_out=attn.out_proj.bias,
            w_fc=mlp.fc.weight.t(), b_fc=mlp.fc.bias, w_proj=mlp.proj.weight.t(), b_proj=mlp.proj.bias))
    return layers


def lean_step(model: GPT, layers: list[dict], tok: torch.Tensor, caches: list[LeanCache]) -> torch.Tensor:
    """The demo GPT's one-token step (learned positions, pre-LN, GELU, biases, tied head): tok (B, 1) → (B, 1, V)."""
    B, C, pos = tok.shape[0], model.config.n_embd, caches[0].pos
    x = F.embedding(tok, model.wte.weight) + model.wpe.weight.narrow(0, pos, 1)  # (B, 1, C)
    for w, cache in zip(layers, caches):
        ln = w["ln_1"]
        h = F.layer_norm(x, (C,), ln.weight, ln.bias, ln.eps).view(B, C)
        qkv = torch.addmm(w["b_qkv"], h, w["w_qkv"])  # (B, 3C)
        q = qkv[:, :C].view(B, 1, w["heads"], w["head_dim"]).transpose(1, 2)  # (B, H, 1, hd)
        k, v = cache.append(qkv[:, C:].view(B, 1, 2, w["heads"], w["head_dim"]).permute(2, 0, 3, 1, 4))
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, C)  # (B, C)
        x = x + torch.addmm(w["b_out"], y, w["w_out"]).view(B, 1, C)
        ln = w["ln_2"]
        h = F.layer_norm(x, (C,), ln.weight, ln.bias, ln.eps).view(B, C)
        x = x + torch.addmm(w["b_proj"], F.gelu(torch.addmm(w["b_fc"], h, w["w_fc"])), w["w_proj"]).view(B, 1, C)
    ln = model.ln_f
    return F.linear(F.layer_norm(x, (C,), ln.weight, ln.bias, ln.eps), model.lm_head.weight)  # (B, 1, V)


def decode(model: GPT, prompt: torch.Tensor, steps: int, arm: str, max_len: int,
           keep: bool = False) -> tuple[float, list[torch.Tensor]]:
    """(µs per one-token step after the prefill, the steps' logits if keep)."""
    step_kind, cache_kind = arm.split("-")
    static = cache_kind == "static"
    with torch.inference_mode(), direct_calls(model):
        if step_kind == "model":
            caches = model.make_caches(max_len if static else None)
            logits = model(prompt, caches=caches)[0]
            step = lambda t: model(t, caches=caches)[0]  # noqa: E731
        else:  # the prefill through the model, its keys and values then handed to the lean caches
            prefill = model.make_caches(max_len)
            logits = model(prompt, caches=prefill)[0]
            caches, layers = [LeanCache(static) for _ in model.blocks], lean_weights(model)
            for lean, filled in zip(caches, prefill):
                lean.fill(filled)
            step = lambda t: lean_step(model, layers, t, caches)  # noqa: E731
        tok, kept = logits[:, -1].argmax(-1, keepdim=True), []
        start = time.perf_counter()
        for _ in range(steps):
            logits = step(tok)
            tok = logits[:, -1].argmax(-1, keepdim=True)
            if keep:
                kept.append(logits)
        return (time.perf_counter() - start) / steps * 1e6, kept


def prompt_kv(model: GPT, prompt: torch.Tensor, max_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's keys and values (B, H, context, D) after the prompt, views of static caches."""
    caches = model.make_caches(max_len)
    with torch.inference_mode():
        model(prompt, caches=caches)
    return [(c.k, c.v) for c in caches]


def parts_us(model: GPT, kv: list[tuple[torch.Tensor, torch.Tensor]], steps: int) -> dict[str, float]:
    """µs per step of the step's SDPA calls alone (over the prompt's keys and values) and of the concatenating
    cache's torch.cat calls alone (keys and values of every layer, one token appended)."""
    with torch.inference_mode():
        q = torch.randn(kv[0][0].shape[0], model.config.n_head, 1, model.config.n_embd // model.config.n_head)
        new = q.clone()
        out = {}
        for name, op in (("sdpa", lambda k, v: F.scaled_dot_product_attention(q, k, v)),
                         ("cat copies", lambda k, v: (torch.cat((k, new), dim=2), torch.cat((v, new), dim=2)))):
            start = time.perf_counter()
            for _ in range(steps):
                for k, v in kv:
                    op(k, v)
            out[name] = (time.perf_counter() - start) / steps * 1e6
    return out


ARMS = ("model-cat", "model-static", "lean-cat", "lean-static")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--steps", type=int, default=128, help="one-token steps per round")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--vocab-size", type=int, default=67)
    p.add_argument("--preset", default="demo", choices=("debug", "demo"), help="GPT preset (both GPT-2 style)")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    max_len = a.context + a.steps + 2
    model = GPT(GPTConfig(vocab_size=a.vocab_size, block_size=max_len, **PRESETS[a.preset])).eval()
    prompt = torch.randint(0, a.vocab_size, (1, a.context), generator=torch.Generator().manual_seed(1))
    reference = decode(model, prompt, min(a.steps, 32), "model-static", max_len, keep=True)[1]
    for arm in (x for x in ARMS if x != "model-static"):
        logits = decode(model, prompt, min(a.steps, 32), arm, max_len, keep=True)[1]
        if not all(torch.equal(x, y) for x, y in zip(logits, reference)):
            raise SystemExit(f"{arm}: logits differ from the model's step on the static cache")
    us, kv = {arm: [] for arm in (*ARMS, "sdpa", "cat copies")}, prompt_kv(model, prompt, max_len)
    for _ in range(a.rounds):
        for arm in ARMS:
            us[arm].append(decode(model, prompt, a.steps, arm, max_len)[0])
        for name, t in parts_us(model, kv, a.steps).items():
            us[name].append(t)
    mins = {arm: min(v) for arm, v in us.items()}
    meds = {arm: statistics.median(v) for arm, v in us.items()}
    print(f"{a.preset} GPT, {a.context}-token prompt, {a.steps} one-token steps a round, {a.rounds} rounds, "
          f"{torch.get_num_threads()} thread(s); logits of every step bit-identical across the four arms: yes")
    for arm in us:
        print(f"  {arm:13s} µs/step  min {mins[arm]:7.1f}  median {meds[arm]:7.1f}")
    ratios = {"model: static over cat": ("model-cat", "model-static"),
              "lean: static over cat": ("lean-cat", "lean-static"),
              "lean static over model static": ("model-static", "lean-static")}
    out = {"context": a.context, "steps": a.steps, "rounds": a.rounds, "threads": torch.get_num_threads(),
           "us_per_step": us, "ratios": {}}
    for name, (slow, fast) in ratios.items():
        out["ratios"][name] = {"min": mins[slow] / mins[fast], "median": meds[slow] / meds[fast]}
    out["ratios"]["bound: 1 + cat copies / sdpa"] = {stat: 1 + d["cat copies"] / d["sdpa"]
                                                    for stat, d in (("min", mins), ("median", meds))}
    for name, r in out["ratios"].items():
        print(f"  {name:32s} {r['min']:.2f}x (min)  {r['median']:.2f}x (median)")
    return out


if __name__ == "__main__":
    main()
