"""Offline trajectories for the Decision Transformer, generated here from seeded policies of graded quality.

Nothing is downloaded: each episode runs a hand-written controller in a gymnasium environment and replaces
its action by a uniformly random one with probability ε, with ε drawn per episode from U(0, max_epsilon).
Return-conditioning can only be asked for a return that some episodes in the data reached, and it can only
*follow* a target if the data shows how to reach each one. With ε alone, CartPole's returns are bimodal (ε ≤
0.3 nearly always reaches the cap of 500, ε ≥ 0.6 falls within about 100 steps: a third of the episodes
below 50 and a third at 500, 2% between 400 and 500) and a return is luck, not a choice. So on CartPole each
episode also *quits* at a step drawn uniformly from [0, 1.2 × the time limit): from there it plays the
quitter, which pushes the pole over within 8 to 10 steps. Returns then spread evenly over [9, 500] (a sixth
of the episodes never quit and reach 500), and a return-to-go of about 9 is where the data stops balancing:
the signal a policy needs to end its episode at the return it was asked for.

    Trajectories: observations float32 (N, S), actions int64 (N,), rewards float32 (N,) for N steps in all,
    starts int64 (E + 1,) episode offsets into them, epsilons float32 (E,) and quit_steps int64 (E,);
    returns(), lengths() per episode.

The dataset is cached in the run directory (`trajectories.npz`, plus its meta data) and reused when an
identical one is asked for again (e.g. on --resume).
"""
from __future__ import annotations

import dataclasses
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
VERSION = 2  # bump when the generator changes, so cached datasets are regenerated
QUIT_HORIZON = 1.2  # quit steps are uniform over [0, 1.2 × the time limit): a sixth of the episodes never quit


def cartpole_controller(obs: np.ndarray) -> int:
    """Push toward the side the pole falls to (angle, angular velocity), nudged back to the centre."""
    x, x_dot, theta, theta_dot = obs
    return int(theta + 0.5 * theta_dot + 0.05 * x + 0.1 * x_dot > 0)


def cartpole_quitter(obs: np.ndarray) -> int:
    """Push the pole over: the controller's opposite action. From a state the controller keeps, the pole falls
    about 9 steps later, so an episode that quits at step g ends near step g + 9."""
    return 1 - cartpole_controller(obs)


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
    max_epsilon: float = 1.0     # each episode's share of random actions is drawn from U(0, max_epsilon)
    quitter: Callable[[np.ndarray], int] | None = None  # played from an episode's quit step on; None: no quitting


ENVS: dict[str, EnvSpec] = {
    "CartPole-v1": EnvSpec(
        "CartPole-v1", cartpole_controller, return_scale=500.0, max_episode_steps=500,
        targets=(50, 100, 150, 200, 250, 300, 350, 400, 450, 500),
        about="+1 per step the pole stays up, at most 500; 2 actions", max_epsilon=0.25, quitter=cartpole_quitter),
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


def describe_recipe(env_name: str, max_epsilon: float | None = None, quit: bool | None = None) -> str:
    """How generate() plays the episodes with these settings, in a few words (for tables and plots)."""
    spec = get_env_spec(env_name)
    max_epsilon = spec.max_epsilon if max_epsilon is None else max_epsilon
    quit = spec.quitter is not None if quit is None else quit
    text = f"ε ~ U(0, {max_epsilon:g}) random actions"
    return text + f", quitting from a step ~ U(0, {int(QUIT_HORIZON * spec.max_episode_steps)})" if quit else text


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
    quit_steps: np.ndarray    # int64 (E,): the step from which the episode plays the quitter (≥ the time limit: never)

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
                            self.epsilons[episodes], self.quit_steps[episodes])


def generate(env_name: str, episodes: int, seed: int, progress: Progress | None = None, *,
             max_epsilon: float | None = None, quit: bool | None = None) -> Trajectories:
    """Play `episodes` seeded episodes; deterministic in seed. Each plays the env's controller with its own
    ε ~ U(0, max_epsilon) of random actions and, with `quit`, the env's quitter from a quit step drawn
    uniformly from [0, QUIT_HORIZON × the time limit). None: the env's own recipe (its EnvSpec).

    progress(what, done, total) is called after each episode (the engine draws it as a bar)."""
    spec = get_env_spec(env_name)
    max_epsilon = spec.max_epsilon if max_epsilon is None else max_epsilon
    quit = spec.quitter is not None if quit is None else quit
    if quit and spec.quitter is None:
        raise ValueError(f"{env_name} has no quitter to play from a quit step")
    env = make_env(env_name)
    T = spec.max_episode_steps
    rng = np.random.default_rng(seed)
    epsilons = rng.uniform(0.0, max_epsilon, episodes).astype(np.float32)
    # Their own stream, so that without quitting the episodes are those of the ε-only generator.
    quit_steps = (np.random.default_rng([seed, 1]).integers(0, int(QUIT_HORIZON * T), episodes) if quit
                  else np.full(episodes, T)).astype(np.int64)
    n_actions = env.action_space.n
    obs_list, act_list, rew_list, starts = [], [], [], [0]
    for e in range(episodes):
        obs, _ = env.reset(seed=seed * 100_003 + e)
        done, t = False, 0
        while not done:
            policy = spec.controller if t < quit_steps[e] else spec.quitter
            a = int(rng.integers(n_actions)) if rng.random() < epsilons[e] else policy(obs)
            t += 1
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
                        np.asarray(rew_list, dtype=np.float32), np.asarray(starts, dtype=np.int64), epsilons,
                        quit_steps)


def load_or_generate(run_dir: Path, env_name: str, episodes: int, seed: int, progress: Progress | None = None,
                     cached_in: Path | None = None, *, max_epsilon: float | None = None,
                     quit: bool | None = None) -> Trajectories:
    """The dataset cached in run_dir (or in `cached_in`) if it was made with the same settings, else a fresh
    one; either way it ends up cached in run_dir."""
    path = Path(run_dir) / DATA_FILE
    meta = {"env": env_name, "episodes": episodes, "seed": seed, "version": VERSION,
            "max_epsilon": max_epsilon, "quit": quit}
    for cache in (path, Path(cached_in) / DATA_FILE if cached_in is not None else None):
        if cache is not None and cache.is_file() and (data := _read_cache(cache, meta)) is not None:
            if cache != path:
                atomic_write(path, cache.read_bytes())
            return data
    data = generate(env_name, episodes, seed, progress, max_epsilon=max_epsilon, quit=quit)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=json.dumps(meta), **dataclasses.asdict(data))
    atomic_write(path, buffer.getvalue())
    return data


def _read_cache(path: Path, meta: dict) -> Trajectories | None:
    """The trajectories cached in path if they were made with `meta`; None for other settings or a damaged
    (cut short) file, which is then generated again."""
    try:
        with np.load(path) as f:
            if json.loads(str(f["meta"])) != meta:
                return None
            return Trajectories(*(f[field.name] for field in dataclasses.fields(Trajectories)))
    except Exception:  # noqa: BLE001 - zip, key and JSON errors of a damaged file come in many types
        return None
