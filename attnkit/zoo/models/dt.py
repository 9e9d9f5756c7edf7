"""Decision Transformer (Chen et al. 2021, "Decision Transformer: Reinforcement Learning via Sequence Modeling").

A trajectory is read as a sequence of (return-to-go, state, action) tokens, one triple per step,

    R̂_1 s_1 a_1  R̂_2 s_2 a_2  ...  R̂_K s_K a_K        (R̂_t = the reward still to come from step t)

and a causal GPT predicts each action from the token of its state, so a_t sees R̂_≤t, s_≤t and a_<t. Each
token is a linear embedding of its value plus a learned embedding of the step's timestep within the
episode (the only position signal: the paper drops GPT-2's token positions). Conditioning on a high R̂_1
at test time asks for an expert; a low one asks for a poor player.

Behaviour cloning is the same network without the return tokens (`returns=False`): (s, a) pairs only.
Contexts shorter than K are left-padded and the padding is masked out of attention through
`key_padding_mask`; a padded query row sees no key and gets zeros from `attnkit.attention`.
Defaults are the paper's: K = 20, 3 layers, 1 head, width 128, dropout 0.1.

Built bottom-up: interleave → DTConfig → DecisionTransformer → PolicySet (the DT and its two baselines,
trained side by side in one loop). The layers are the zoo's shared pre-norm causal `Stack`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit.nn.blocks import Stack
from attnkit.nn.init import init_weights


def interleave(*streams: torch.Tensor) -> torch.Tensor:
    """n streams of (B, K, d) -> (B, n·K, d) ordered step by step: x1_1, x2_1, ..., xn_1, x1_2, ..."""
    B, K, d = streams[0].shape
    return torch.stack(streams, dim=2).reshape(B, len(streams) * K, d)  # (B, n·K, d)


RETURN_EMBEDDINGS = ("linear", "symlog")


@dataclass
class DTConfig:
    state_dim: int = 4
    act_dim: int = 2                    # discrete: number of actions; continuous: action dimension
    discrete: bool = True               # cross-entropy on action logits; else MSE on tanh outputs
    context: int = 20                   # K: steps (token triples) the model sees
    max_timestep: int = 500             # size of the timestep embedding (the episode time limit)
    n_layer: int = 3
    n_head: int = 1
    d_model: int = 128
    dropout: float = 0.1
    returns: bool = True                # False: behaviour cloning on (s, a) tokens
    return_scale: float = 1.0           # "linear": returns-to-go are divided by this before embedding
    return_embedding: str = "linear"    # "linear" (the paper): R̂ / return_scale; "symlog": sign(R̂)·log(1 + |R̂|)
    state_mean: list[float] | None = None  # states are standardised with the dataset's statistics
    state_std: list[float] | None = None

    def __post_init__(self):
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if self.return_embedding not in RETURN_EMBEDDINGS:
            raise ValueError(f"return_embedding must be one of {RETURN_EMBEDDINGS}, got {self.return_embedding!r}")
        for name in ("state_mean", "state_std"):
            v = getattr(self, name)
            if v is not None and len(v) != self.state_dim:
                raise ValueError(f"{name} has {len(v)} entries for state_dim {self.state_dim}")


class DecisionTransformer(nn.Module):
    def __init__(self, cfg: DTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        mean = torch.tensor(cfg.state_mean) if cfg.state_mean is not None else torch.zeros(cfg.state_dim)
        std = torch.tensor(cfg.state_std) if cfg.state_std is not None else torch.ones(cfg.state_dim)
        self.register_buffer("state_mean", mean.float(), persistent=False)  # (S,): from the config
        self.register_buffer("state_std", std.float().clamp_min(1e-6), persistent=False)
        self.embed_timestep = nn.Embedding(cfg.max_timestep, d)
        self.embed_return = nn.Linear(1, d) if cfg.returns else None
        self.embed_state = nn.Linear(cfg.state_dim, d)
        self.embed_action = nn.Embedding(cfg.act_dim, d) if cfg.discrete else nn.Linear(cfg.act_dim, d)
        self.embed_ln = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = Stack(cfg.n_layer, d, cfg.n_head, causal=True, dropout=cfg.dropout)
        self.ln_f = nn.LayerNorm(d)
        self.predict_action = nn.Linear(d, cfg.act_dim)
        self.apply(init_weights)

    def return_feature(self, returns_to_go: torch.Tensor) -> torch.Tensor:
        """What the return token embeds: R̂ / return_scale, or symlog(R̂), which resolves the last few steps of
        reward to come as finely as a linear scale resolves the whole range."""
        if self.cfg.return_embedding == "symlog":
            return torch.sign(returns_to_go) * torch.log1p(returns_to_go.abs())
        return returns_to_go / self.cfg.return_scale

    @property
    def tokens_per_step(self) -> int:
        return 3 if self.cfg.returns else 2

    def forward(self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor | None,
                timesteps: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Action predictions (B, K, act_dim), the one at step t read from the token of s_t.

        states (B, K, S) raw; actions (B, K) long (discrete) or (B, K, A); returns_to_go (B, K) unscaled
        (ignored when cfg.returns is False); timesteps (B, K) long; mask (B, K) bool, True on real steps
        (contexts are left-padded). a_t is never seen by its own prediction, so its value at the last
        step of a rollout does not matter.
        """
        B, K = timesteps.shape
        if K > self.cfg.context:
            raise ValueError(f"context of {K} steps exceeds the model's {self.cfg.context}")
        time = self.embed_timestep(timesteps.clamp(0, self.cfg.max_timestep - 1))  # (B, K, d)
        s = self.embed_state((states - self.state_mean) / self.state_std) + time  # (B, K, d)
        a = self.embed_action(actions if self.cfg.discrete else actions.to(s.dtype)) + time  # (B, K, d)
        streams = [s, a]
        if self.cfg.returns:
            r = self.embed_return(self.return_feature(returns_to_go)[..., None].to(s.dtype)) + time
            streams = [r, s, a]  # (B, K, d) each
        x = self.drop(self.embed_ln(interleave(*streams)))  # (B, n·K, d)
        key_mask = None if mask is None else mask.repeat_interleave(len(streams), dim=1)  # (B, n·K)
        x = self.blocks(x, key_padding_mask=key_mask)  # (B, n·K, d)
        x = self.ln_f(x)
        state_tokens = x[:, len(streams) - 2::len(streams)]  # (B, K, d): the s_t tokens
        pred = self.predict_action(state_tokens)  # (B, K, act_dim)
        return pred if self.cfg.discrete else torch.tanh(pred)

    def action_loss(self, pred: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over real steps: cross-entropy on discrete actions, squared error on continuous ones."""
        if self.cfg.discrete:
            per_step = F.cross_entropy(pred.float().flatten(0, 1), actions.flatten(), reduction="none")  # (B·K,)
        else:
            per_step = (pred.float() - actions.float()).pow(2).mean(-1).flatten()  # (B·K,)
        m = mask.flatten().float()
        return (per_step * m).sum() / m.sum().clamp_min(1.0)


class PolicySet(nn.Module):
    """The Decision Transformer beside its baselines, trained in the same loop on the same data.

    dt: return-conditioned; bc: the same network without returns, on all episodes; pct_bc: that network on
    the best 10% of episodes (%BC, the paper's Table 3). Their parameters are disjoint, so summing the three
    losses trains each as if alone (up to the shared gradient-norm clip).
    """

    NAMES = ("dt", "bc", "pct_bc")

    def __init__(self, cfg: DTConfig):
        super().__init__()
        self.dt = DecisionTransformer(cfg)
        self.bc = DecisionTransformer(replace(cfg, returns=False))
        self.pct_bc = DecisionTransformer(replace(cfg, returns=False))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{name: action loss} given a batch of "states", "actions", "returns_to_go", "timesteps", "mask"
        for dt and bc, and the same keys prefixed "top_" for pct_bc."""
        def loss(policy: DecisionTransformer, prefix: str) -> torch.Tensor:
            b = {k: batch[prefix + k] for k in ("states", "actions", "returns_to_go", "timesteps", "mask")}
            return policy.action_loss(policy(**b), b["actions"], b["mask"])

        return {"dt": loss(self.dt, ""), "bc": loss(self.bc, ""), "pct_bc": loss(self.pct_bc, "top_")}
