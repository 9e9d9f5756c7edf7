"""One arm of the Decision Transformer's return-tracking ablation (issue 28): the DT alone, trained and rolled out.

The DT of `attnkit train --model dt` without its two baselines, so an arm costs a third of the command: the
same generator (`attnkit.zoo.data.rl.generate`), contexts (`Windows`), network, AdamW with linear warmup and
cosine decay to lr/10, and seeded rollouts (`attnkit.zoo.eval.rl.rollout`), with each recipe knob a flag:

    nice -n 19 .venv/bin/python benchmarks/dt_ablation.py --context 5 --return-embedding symlog --end-share 0.5

It prints the achieved return per target (mean ± std and standard error over --eval-episodes) and the worst
|achieved − target| / 500 over the targets, and returns them from main().
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from attnkit.engine.optim import lr_at, param_groups
from attnkit.zoo.data.rl import generate, get_env_spec
from attnkit.zoo.data.trajectory_windows import Windows
from attnkit.zoo.eval.rl import rollout, standard_error
from attnkit.zoo.models.dt import DecisionTransformer, DTConfig

ENV, EVAL_SEED = "CartPole-v1", 10_000


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-epsilon", type=float, default=None, help="default: the env's (0.25)")
    ap.add_argument("--quit", type=int, default=None, help="1 or 0; default: the env's (1)")
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--context", type=int, default=20)
    ap.add_argument("--return-embedding", default="linear")
    ap.add_argument("--end-share", type=float, default=0.0)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--targets", default="50,100,150,200,250,300,350,400,450,500")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    a = parse(argv)
    torch.set_num_threads(1)
    spec = get_env_spec(ENV)
    data = generate(ENV, a.episodes, 0, max_epsilon=a.max_epsilon, quit=None if a.quit is None else bool(a.quit))
    torch.manual_seed(a.seed)
    model = DecisionTransformer(DTConfig(
        state_dim=4, act_dim=2, context=a.context, max_timestep=spec.max_episode_steps, n_layer=a.layers, n_head=1,
        d_model=a.d_model, dropout=a.dropout, return_scale=spec.return_scale, return_embedding=a.return_embedding,
        state_mean=data.observations.mean(0).tolist(), state_std=data.observations.std(0).tolist()))
    opt = torch.optim.AdamW(param_groups(model, 1e-4), lr=a.lr, betas=(0.9, 0.95))
    windows, g = Windows(data), torch.Generator().manual_seed(a.seed)
    start = time.time()
    for step in range(a.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, schedule="cosine", lr=a.lr, min_lr=a.lr / 10,
                                warmup_steps=max(1, a.steps // 10), max_steps=a.steps)
        b = windows.batch(a.batch_size, a.context, g, end_share=a.end_share)
        pred = model(b["states"], b["actions"], b["returns_to_go"], b["timesteps"], b["mask"])
        loss = model.action_loss(pred, b["actions"], b["mask"])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    train_s = time.time() - start
    model.eval()
    targets = [float(t) for t in a.targets.split(",")]
    achieved = rollout(model, ENV, targets, a.eval_episodes, EVAL_SEED)  # (targets, episodes)
    rows = [{"target": t, "mean": float(r.mean()), "std": float(r.std()), "se": standard_error(r)}
            for t, r in zip(targets, achieved)]
    worst = max(abs(r["mean"] - r["target"]) for r in rows) / spec.max_episode_steps
    for r in rows:
        print(f"target {r['target']:5.0f}: {r['mean']:6.1f} ± {r['std']:5.1f} (se {r['se']:4.1f})")
    print(f"worst gap {worst:.3f} × 500 · data mean return {np.mean(data.returns()):.1f} · train {train_s:.0f} s")
    return {"rows": rows, "worst_gap": worst, "final_loss": loss.item()}


if __name__ == "__main__":
    main()
