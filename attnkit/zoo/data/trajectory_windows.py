"""The Decision Transformer's training contexts: K-step windows of offline episodes, and the best episodes (%BC)."""
from __future__ import annotations

import math

import numpy as np
import torch

from attnkit.zoo.data.rl import Trajectories


def top_episodes(returns: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the best ceil(fraction·E) episodes by return (ties broken by index)."""
    k = max(1, math.ceil(fraction * len(returns)))
    return np.sort(np.argsort(-returns, kind="stable")[:k])


END_STEPS = 16  # "the end of an episode": its last 16 steps, where a return-to-go of at most 16 is left


class Windows:
    """Training contexts from a set of episodes: K-step windows ending at a uniformly drawn step.

    Drawing the last step uniformly over all steps weights episodes by length (as the paper samples), and
    windows that would start before their episode are left-padded, as the first K-1 steps of a rollout are.
    A share `end_share` of each batch instead ends in the last END_STEPS steps of a uniformly drawn episode:
    where an episode ends is what return conditioning controls, and it is a few steps in hundreds. Drawing
    those contexts more often changes which contexts the loss sees, not the action each context should get.
    """

    def __init__(self, data: Trajectories):
        self.states = torch.from_numpy(data.observations)  # (N, S)
        self.actions = torch.from_numpy(data.actions)  # (N,)
        self.rtg = torch.from_numpy(data.returns_to_go())  # (N,)
        self.timesteps = torch.from_numpy(data.timesteps())  # (N,)
        self.first = torch.from_numpy(np.repeat(data.starts[:-1], data.lengths()))  # (N,): episode start
        self.ends = torch.from_numpy(data.starts[1:])  # (E,): one past each episode's last step
        self.lengths = torch.from_numpy(data.lengths())  # (E,)

    def batch(self, batch_size: int, K: int, generator: torch.Generator, end_share: float = 0.0
              ) -> dict[str, torch.Tensor]:
        n_end = round(end_share * batch_size)
        last = torch.randint(len(self.actions), (batch_size - n_end,), generator=generator)  # (B - n_end,)
        episode = torch.randint(len(self.ends), (n_end,), generator=generator)  # (n_end,)
        back = (torch.rand(n_end, generator=generator) * self.lengths[episode].clamp(max=END_STEPS)).long()
        last = torch.cat((last, self.ends[episode] - 1 - back))  # (B,)
        idx = last[:, None] - (K - 1) + torch.arange(K)  # (B, K)
        mask = idx >= self.first[last][:, None]  # (B, K): False on the left padding
        idx = torch.where(mask, idx, last[:, None])  # any valid row; zeroed below
        m = mask.to(self.rtg.dtype)
        return {"states": self.states[idx] * m[..., None], "actions": self.actions[idx] * mask,
                "returns_to_go": self.rtg[idx] * m, "timesteps": self.timesteps[idx] * mask, "mask": mask}
