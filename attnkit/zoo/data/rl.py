"""Offline trajectories for the Decision Transformer, generated here from seeded policies of mixed quality.

Nothing is downloaded: each episode runs a hand-written controller in a gymnasium environment and replaces
its action by a uniformly random one with probability ε, with ε drawn per episode from U(0, 1). So the
dataset spans experts (ε ≈ 0), random play (ε ≈ 1) and everything between, which return-conditioning needs:
the model can only be asked for a return that some episodes in the data reached.

    Trajectories: observations float32 (N, S), actions int64 (N,), rewards float32 (N,) for N steps in all,
    starts int64 (E + 1,) episode offsets into them, epsilons float32 (E,); returns(), lengths() per episode.

The dataset is cached in the run directory (`trajectories.npz`, plus its meta data) and reused when an
identical one is asked for again (e.g. on --resume).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from attnkit.errors import UserError
from attnkit.fsio import atomic_write
from attnkit.zoo.report import Progress

DATA_FILE = "trajectories.npz"
VERSION = 1  # bump when the generator changes, so cached datasets are regenerated


def cartpole_controller(obs: np.ndarray) -> int:
    """Push toward the side the pole falls to (angle, angular velocity), nudged back to the centre."""
    x, x_dot, theta, theta_dot = obs
    return int(theta + 0.5 * theta_dot + 0.05 * x + 0.1 * x_dot > 0)


def acrobot_controller(obs: np.ndarray) -> int:
    """Pump energy: torque the elbow in the direction it already turns (actions 0/1/2 = torque -1/0/+1)."""
    return 2 if obs[5] > 0 else 0


@dataclass(frozen=True)
class EnvSpec:
    name: str
    controller: Callable[[np.ndarray], int]
    return_scale: float          # returns-to-go are divided by this (the paper: 1000 on MuJoCo)
    max_episode_steps: int       # gymnasium's time limit: the size of the timestep embedding
    targets: tuple[float, ...]   # default target returns for `attnkit sample`
    about: str


ENVS: dict[str, EnvSpec] = {
    "CartPole-v1": EnvSpec(
        "CartPole-v1", cartpole_controller, return_scale=500.0, max_episode_steps=500,
        targets=(50, 100, 150, 200, 250, 300, 350, 400, 450, 500),
        about="+1 per step the pole stays up, at most 500; 2 actions"),
    "Acrobot-v1": EnvSpec(
        "Acrobot-v1", acrobot_controller, return_scale=500.0, max_episode_steps=500,
        targets=(-400, -300, -250, -200, -150, -120, -100, -80),
        about="-1 per step until the tip swings above the bar, at least -500; 3 actions"),
}


def get_env_spec(name: str) -> EnvSpec:
    if name not in ENVS:
        raise UserError(f"unknown environment {name!r} for the Decision Transformer; "
                        f"choose from {', '.join(ENVS)} (each needs a data-generating controller)")
    return ENVS[name]


def make_env(name: str):
    import gymnasium as gym

    return gym.make(get_env_spec(name).name)


@dataclass
class Trajectories:
    observations: np.ndarray  # float32 (N, S)
    actions: np.ndarray       # int64 (N,)
    rewards: np.ndarray       # float32 (N,)
    starts: np.ndarray        # int64 (E + 1,): episode e is steps starts[e]:starts[e+1]
    epsilons: np.ndarray      # float32 (E,): the share of random actions the episode was played with

    def __len__(self) -> int:
        return len(self.starts) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.starts)  # (E,)

    def returns(self) -> np.ndarray:
        return np.add.reduceat(self.rewards, self.starts[:-1]).astype(np.float64)  # (E,)

    def returns_to_go(self) -> np.ndarray:
        """(N,) float32: the reward still to come from each step to the end of its episode (inclusive)."""
        rtg = np.empty_like(self.rewards)
        for a, b in zip(self.starts[:-1], self.starts[1:]):
            rtg[a:b] = np.cumsum(self.rewards[a:b][::-1])[::-1]
        return rtg

    def timesteps(self) -> np.ndarray:
        """(N,) int64: the step index of each step within its episode."""
        return np.arange(len(self.actions)) - np.repeat(self.starts[:-1], self.lengths())

    def subset(self, episodes: np.ndarray) -> "Trajectories":
        """The episodes with these indices, in this order."""
        pieces = [np.arange(self.starts[e], self.starts[e + 1]) for e in episodes]
        steps = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum([len(p) for p in pieces])]).astype(np.int64)
        return Trajectories(self.observations[steps], self.actions[steps], self.rewards[steps], starts,
                            self.epsilons[episodes])


def generate(env_name: str, episodes: int, seed: int, progress: Progress | None = None) -> Trajectories:
    """Play `episodes` seeded episodes, each with its own ε ~ U(0, 1) of random actions; deterministic in seed.

    progress(what, done, total) is called after each episode (the engine draws it as a bar)."""
    spec = get_env_spec(env_name)
    env = make_env(env_name)
    rng = np.random.default_rng(seed)
    epsilons = rng.uniform(0.0, 1.0, episodes).astype(np.float32)
    n_actions = env.action_space.n
    obs_list, act_list, rew_list, starts = [], [], [], [0]
    for e in range(episodes):
        obs, _ = env.reset(seed=seed * 100_003 + e)
        done = False
        while not done:
            a = int(rng.integers(n_actions)) if rng.random() < epsilons[e] else spec.controller(obs)
            obs_list.append(obs)
            act_list.append(a)
            obs, reward, terminated, truncated, _ = env.step(a)
            rew_list.append(reward)
            done = terminated or truncated
        starts.append(len(act_list))
        if progress:
            progress(f"playing {episodes} {env_name} episodes", e + 1, episodes)
    env.close()
    return Trajectories(np.asarray(obs_list, dtype=np.float32), np.asarray(act_list, dtype=np.int64),
                        np.asarray(rew_list, dtype=np.float32), np.asarray(starts, dtype=np.int64), epsilons)


def load_or_generate(run_dir: Path, env_name: str, episodes: int, seed: int, progress: Progress | None = None,
                     cached_in: Path | None = None) -> Trajectories:
    """The dataset cached in run_dir (or in `cached_in`) if it was made with the same settings, else a fresh
    one; either way it ends up cached in run_dir."""
    path = Path(run_dir) / DATA_FILE
    meta = {"env": env_name, "episodes": episodes, "seed": seed, "version": VERSION}
    for cache in (path, Path(cached_in) / DATA_FILE if cached_in is not None else None):
        if cache is not None and cache.is_file() and (data := _read_cache(cache, meta)) is not None:
            if cache != path:
                atomic_write(path, cache.read_bytes())
            return data
    data = generate(env_name, episodes, seed, progress)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=json.dumps(meta), observations=data.observations, actions=data.actions,
                        rewards=data.rewards, starts=data.starts, epsilons=data.epsilons)
    atomic_write(path, buffer.getvalue())
    return data


def _read_cache(path: Path, meta: dict) -> Trajectories | None:
    """The trajectories cached in path if they were made with `meta`; None for other settings or a damaged
    (cut short) file, which is then generated again."""
    try:
        with np.load(path) as f:
            if json.loads(str(f["meta"])) != meta:
                return None
            return Trajectories(*(f[k] for k in ("observations", "actions", "rewards", "starts", "epsilons")))
    except Exception:  # noqa: BLE001 - zip, key and JSON errors of a damaged file come in many types
        return None
