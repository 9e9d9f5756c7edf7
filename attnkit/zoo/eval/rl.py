"""Evaluation of return-conditioned policies: seeded rollouts, rank correlation, and the paper's two plots.

`rollout` plays one policy in many environments at once (one per target return and seed), so every
target and every baseline meets the same seeded start states. All environments start together, so at each
step they share one context length and no padding is needed: the model sees the last K steps only.
"""
from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from attnkit.zoo.plots import save_figure
from attnkit.zoo.data.rl import get_env_spec, make_env
from attnkit.generation.decode import multinomial
from attnkit.nn.modes import model_device
from attnkit.zoo.report import Progress


@torch.no_grad()
def rollout(policy, env_name: str, targets: Sequence[float | None], episodes: int, seed: int,
            on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Returns (len(targets), episodes) achieved by `policy` asked for each target (None: no conditioning).

    on_step(t, T) is called after each of the at most T time steps, and with (T, T) when every episode ended.

    Episode j of every target starts from `env.reset(seed=seed + j)` and samples its actions from the
    policy's distribution (as the paper's Atari rollouts) with its own generator, seeded `seed + j` too. So
    an episode's return does not depend on which other targets or how many episodes run beside it.
    """
    spec = get_env_spec(env_name)
    K, T = policy.cfg.context, spec.max_episode_steps
    device = model_device(policy)
    n = len(targets) * episodes
    envs = [make_env(env_name) for _ in range(n)]
    first = [env.reset(seed=seed + i % episodes)[0] for i, env in enumerate(envs)]
    states = torch.zeros(n, T, len(first[0]), device=device)  # (n, T, S)
    actions = torch.zeros(n, T, dtype=torch.long, device=device)  # (n, T)
    rtg = torch.zeros(n, T, device=device)  # (n, T)
    rtg[:, 0] = torch.tensor([0.0 if t is None else float(t) for t in targets for _ in range(episodes)])
    timesteps = torch.arange(T, device=device).expand(n, T)  # (n, T)
    states[:, 0] = torch.from_numpy(np.stack(first)).to(device)
    achieved = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    # The zoo's sampler, one CPU generator per episode.
    chooses = [multinomial(torch.Generator().manual_seed(seed + i % episodes)) for i in range(n)]
    for t in range(T):
        idx = torch.from_numpy(np.flatnonzero(alive)).to(device)
        lo = max(0, t - K + 1)
        logits = policy(states[idx, lo:t + 1], actions[idx, lo:t + 1], rtg[idx, lo:t + 1],
                        timesteps[idx, lo:t + 1])[:, -1]  # (n_alive, act_dim)
        chosen = [int(chooses[i](row[None].float())) for i, row in zip(idx.tolist(), logits)]  # (n_alive,)
        actions[idx, t] = torch.tensor(chosen, device=device)
        for i, a in zip(idx.tolist(), chosen):
            obs, reward, terminated, truncated, _ = envs[i].step(a)
            achieved[i] += reward
            if terminated or truncated:
                alive[i] = False
            elif t + 1 < T:
                states[i, t + 1] = torch.from_numpy(obs)
                rtg[i, t + 1] = rtg[i, t] - reward
        if on_step:
            on_step(t + 1, T)
        if not alive.any():
            break
    if on_step:
        on_step(T, T)  # episodes that end early finish the bar
    for env in envs:
        env.close()
    return achieved.reshape(len(targets), episodes)


def evaluate_policies(model, env_name: str, targets: list[float], episodes: int, seed: int,
                      dataset: dict[str, float], progress: Progress | None = None) -> dict[str, Any]:
    """Roll out a PolicySet (attnkit.zoo.models.dt) on the same seeded episodes: the DT once per target, BC and
    %BC unconditioned. dataset: the offline data's "max_return" and "mean_return". The rank correlation of
    target and achieved return is over the targets below the dataset's max (None when those all gave the same).
    progress(what, t, T): each policy's rollout, one time step at a time (the engine draws a bar per policy)."""
    def steps(what: str) -> Callable[[int, int], None] | None:
        return None if progress is None else partial(progress, what)

    dt = rollout(model.dt, env_name, targets, episodes, seed,
                 steps(f"DT rollouts ({len(targets)} targets × {episodes} episodes)"))
    bc = rollout(model.bc, env_name, [None], episodes, seed, steps(f"BC rollouts ({episodes} episodes)"))[0]
    pct = rollout(model.pct_bc, env_name, [None], episodes, seed, steps(f"%BC rollouts ({episodes} episodes)"))[0]
    by_target = [{"target": float(t), "mean": float(r.mean()), "std": float(r.std()), "se": standard_error(r)}
                 for t, r in zip(targets, dt)]
    below = [r for r in by_target if r["target"] < dataset["max_return"]]
    rho = rank_correlation([r["target"] for r in below], [r["mean"] for r in below])
    return {"env": env_name, "return_by_target": by_target,
            "bc_return": float(bc.mean()), "bc_return_std": float(bc.std()),
            "pct_bc_return": float(pct.mean()), "pct_bc_return_std": float(pct.std()),
            "dataset_max_return": dataset["max_return"], "dataset_mean_return": dataset["mean_return"],
            "return_rank_correlation": rho if math.isfinite(rho) else None,  # None: all returns equal
            "eval_episodes": episodes}


def standard_error(returns: np.ndarray) -> float:
    """The standard error of the mean return: the sample std (n − 1) over √n; 0 for a single episode."""
    return float(returns.std(ddof=1) / math.sqrt(len(returns))) if len(returns) > 1 else 0.0


def return_rows(r: dict[str, Any]) -> list[list[str]]:
    """Rows (policy, target, achieved) of the achieved-return table, from evaluate_policies' result."""
    return [*(["DT", f"{row['target']:g}", f"{row['mean']:.1f} ± {row['std']:.1f} (se {row['se']:.1f})"]
              for row in r["return_by_target"]),
            ["BC (all episodes)", "-", f"{r['bc_return']:.1f} ± {r['bc_return_std']:.1f}"],
            ["%BC (best 10%)", "-", f"{r['pct_bc_return']:.1f} ± {r['pct_bc_return_std']:.1f}"],
            ["dataset", "-", f"mean {r['dataset_mean_return']:.1f}, max {r['dataset_max_return']:g}"]]


def rank_correlation(targets: Sequence[float], achieved: Sequence[float]) -> float:
    """Spearman's rank correlation between targets and mean achieved returns (nan if either is constant)."""
    from scipy.stats import spearmanr

    if len(targets) < 2 or np.ptp(achieved) == 0:
        return float("nan")
    return float(spearmanr(targets, achieved).statistic)


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    return str(save_figure(fig, path, dpi=110))


def plot_return_tracking(path: Path, env_name: str, return_by_target: list[dict], baselines: dict[str, tuple],
                         dataset_max: float, dataset_mean: float) -> str:
    """Achieved vs target return (mean ± std), the y = x line, the dataset's max and mean, and the baselines.

    baselines: {label: (mean, std)}, drawn as horizontal bands.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.array([r["target"] for r in return_by_target])
    y = np.array([r["mean"] for r in return_by_target])
    e = np.array([r["std"] for r in return_by_target])
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    lo, hi = min(x.min(), (y - e).min()), max(x.max(), (y + e).max(), dataset_max)
    ax.plot([lo, hi], [lo, hi], ":", color="gray", label="achieved = target")
    ax.errorbar(x, y, yerr=e, fmt="-o", color="tab:blue", capsize=3, label="Decision Transformer")
    ax.axhline(dataset_max, color="black", ls="--", lw=1.2, zorder=5, label=f"dataset max ({dataset_max:g})")
    ax.axhline(dataset_mean, color="gray", ls="--", lw=1, label=f"dataset mean ({dataset_mean:.0f})")
    for (label, (mean, std)), color in zip(baselines.items(), ("tab:orange", "tab:green", "tab:red")):
        ax.axhline(mean, color=color, lw=1.5, label=f"{label} ({mean:.0f} ± {std:.0f})")
        ax.axhspan(mean - std, mean + std, color=color, alpha=0.07)
    ax.set_xlabel("target return (conditioning)")
    ax.set_ylabel("achieved return")
    ax.set_title(f"Decision Transformer on {env_name}: return tracking")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_return_histogram(path: Path, env_name: str, returns: np.ndarray, recipe: str) -> str:
    """Histogram of the dataset's episode returns, with its mean and max marked; recipe: how they were played."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.hist(returns, bins=40, color="tab:blue", alpha=0.8)
    ax.axvline(returns.mean(), color="gray", ls="--", label=f"mean {returns.mean():.0f}")
    ax.axvline(returns.max(), color="black", ls="--", label=f"max {returns.max():g}")
    ax.set_xlabel("episode return")
    ax.set_ylabel("episodes")
    ax.set_title(f"{env_name}: {len(returns)} generated episodes\n({recipe})", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)
