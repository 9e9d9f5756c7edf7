"""Prompts for in-context regression (Garg et al. 2022, "What Can Transformers Learn In-Context?").

A prompt is one random function f drawn from a class, and points x_1..x_n ~ N(0, I_d) with y_i = f(x_i).
Function classes:
  linear         f(x) = w·x, w ~ N(0, I_d)
  sparse_linear  the same with all but `sparsity` coordinates of w set to zero (Lasso is the baseline)
The curriculum (Garg et al. §3) trains on the first `d_active` coordinates only (the others are zero in x
and w) and on the first `n_active` points, both growing during training; evaluation uses the full d and n.
Out-of-distribution variants of the test prompts (Garg et al. §4): scaled queries, one-orthant prompts,
noisy in-context outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from attnkit.errors import UserError

FUNCTIONS = ("linear", "sparse_linear")
PROBES = ("scaled_query", "one_orthant", "noisy_y")


def check_function(name: str) -> str:
    if name not in FUNCTIONS:
        raise UserError(f"unknown function class {name!r}; choose from {', '.join(FUNCTIONS)}")
    return name


LOSS_WEIGHTS = ("uniform", "inverse_ls", "inverse_optimal")
LOSS_WEIGHT_EPS = 0.25


def check_loss_weight(name: str) -> str:
    if name not in LOSS_WEIGHTS:
        raise UserError(f"unknown loss_weight {name!r}; choose from {', '.join(LOSS_WEIGHTS)}")
    return name


def position_weights(kind: str, d_active: float, n: int, eps: float = LOSS_WEIGHT_EPS,
                     exact_from: int | None = None) -> torch.Tensor:
    """(n,) loss weights, mean 1, over the prediction made after k = 0 … n − 1 points.

    inverse_ls weighs it by 1 / (least squares' expected error there + eps): for x, w ~ N(0, I) that error, divided
    by the live dimension, is (d_active − k)⁺ / d_active, so the loss scores each prediction relative to what
    least squares can do, the ratio issue 25 states its goal in, instead of being dominated by the first few
    points' unavoidable error. eps caps the weight from k = d_active on, where least squares is exact.
    inverse_optimal is the same with the error taken as 0 from k = exact_from on, where the Bayes-optimal
    predictor is exact: for s-sparse weights k = s + 1 (the s-sparse solution is then unique almost surely), so
    the points between s + 1 and d, where only a predictor that uses the sparsity gains, weigh as much as those
    past d (1 / eps). Without exact_from it is inverse_ls."""
    if check_loss_weight(kind) == "uniform":
        return torch.ones(n)
    k = torch.arange(n, dtype=torch.float32)
    err = (d_active - k).clamp(min=0) / d_active
    if kind == "inverse_optimal" and exact_from is not None:
        err = torch.where(k >= exact_from, 0.0, err)
    w = 1.0 / (err + eps)
    return w / w.mean()


def exact_from(function: str, sparsity: int, d_active: int) -> int:
    """The number of points from which the Bayes-optimal predictor is exact: d_active for linear functions,
    sparsity + 1 for sparse ones (the s-sparse solution is then unique almost surely), never above d_active."""
    return min(sparsity + 1, d_active) if function == "sparse_linear" else d_active


def sample_weights(function: str, batch: int, d: int, d_active: int, sparsity: int,
                   generator: torch.Generator) -> torch.Tensor:
    """(B, d) weights: N(0, 1) on the first d_active coordinates, zero beyond; sparse keeps `sparsity` of them."""
    w = torch.randn(batch, d, generator=generator)
    w[:, d_active:] = 0
    if function == "sparse_linear":
        keep = torch.rand(batch, d_active, generator=generator).argsort(1)[:, :min(sparsity, d_active)]
        mask = torch.zeros(batch, d, dtype=torch.bool).scatter_(1, keep, True)
        w = w * mask
    return w


@dataclass
class Prompts:
    """B prompts. Prediction i answers `queries[:, i]` from the pairs (xs, ys)[:, :i] and is scored
    against `targets[:, i]`; by default the query is the next point itself (queries = xs)."""
    xs: torch.Tensor                      # (B, n, d)
    ys: torch.Tensor                      # (B, n) what the model sees (noisy for the noisy_y probe)
    targets: torch.Tensor                 # (B, n) noiseless f(query_i)
    queries: torch.Tensor | None = None   # (B, n, d) when a query is not the next in-context point

    @property
    def query_xs(self) -> torch.Tensor:
        return self.xs if self.queries is None else self.queries


def sample_prompts(function: str, batch: int, d: int, n: int, generator: torch.Generator, *,
                   d_active: int | None = None, sparsity: int = 3) -> Prompts:
    """B prompts of n points in R^d, the first d_active coordinates live (default all)."""
    d_active = d if d_active is None else d_active
    xs = torch.randn(batch, n, d, generator=generator)  # (B, n, d)
    xs[..., d_active:] = 0
    w = sample_weights(function, batch, d, d_active, sparsity, generator)  # (B, d)
    ys = torch.einsum("bnd,bd->bn", xs, w)  # (B, n)
    return Prompts(xs, ys, ys)


def ood_prompts(probe: str, function: str, batch: int, d: int, n: int, generator: torch.Generator, *,
                sparsity: int = 3, scale: float = 2.0, noise: float = 0.5) -> Prompts:
    """Test prompts shifted away from training: `scaled_query` multiplies every x by `scale` (so each query
    is out of range; the in-context points too, as in Garg et al.'s scaled-input probe); `one_orthant` puts
    every in-context x in one random orthant (the queries stay N(0, I)); `noisy_y` adds N(0, noise²) to the
    in-context outputs (the target stays the noiseless f(x))."""
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    xs = torch.randn(batch, n, d, generator=generator)  # (B, n, d)
    if probe == "scaled_query":
        xs = xs * scale
    w = sample_weights(function, batch, d, d, sparsity, generator)  # (B, d)
    if probe == "one_orthant":
        signs = torch.randint(0, 2, (batch, 1, d), generator=generator) * 2 - 1  # (B, 1, d)
        xs = xs.abs() * signs
    ys = torch.einsum("bnd,bd->bn", xs, w)  # (B, n)
    if probe == "noisy_y":
        return Prompts(xs, ys + noise * torch.randn(batch, n, generator=generator), ys)
    if probe == "one_orthant":  # the queries stay N(0, I), outside the prompt's orthant
        queries = torch.randn(batch, n, d, generator=generator)
        return Prompts(xs, ys, torch.einsum("bnd,bd->bn", queries, w), queries)
    return Prompts(xs, ys, ys)


@dataclass
class Curriculum:
    """Garg et al.'s curriculum: every `interval` steps one more live dimension and `points_step` more
    points, from (d_start, n_start) up to the model's (d, n)."""
    d_start: int
    n_start: int
    interval: int
    points_step: int = 2

    def at(self, step: int, d: int, n: int) -> tuple[int, int]:
        stage = step // max(self.interval, 1)
        return min(d, self.d_start + stage), min(n, self.n_start + self.points_step * stage)


def parse_prompt(text: str, d: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """"x=y; x=y; …; x_query" (x as d comma-separated numbers) -> xs (1, k, d), ys (1, k), query (1, d)."""
    parts = [s.strip() for s in text.split(";") if s.strip()]
    if not parts or "=" in parts[-1]:
        raise UserError("prompt must end with a query point without '=': \"x=y; x=y; ...; x_query\"")
    if len(parts) > n:
        raise UserError(f"prompt has {len(parts)} points; this model reads at most {n}")
    xs, ys = [], []
    for i, part in enumerate(parts):
        x_text, _, y_text = part.partition("=")
        try:
            x = [float(v) for v in x_text.split(",")]
            y = float(y_text) if i < len(parts) - 1 else 0.0
        except ValueError:
            raise UserError(f"prompt point {i + 1} ({part!r}) is not 'x1,...,xd=y' with numbers") from None
        if len(x) != d:
            raise UserError(f"prompt point {i + 1} has {len(x)} coordinates; this model reads d = {d}")
        if i < len(parts) - 1 and not y_text.strip():
            raise UserError(f"prompt point {i + 1} ({part!r}) has no y: write 'x1,...,xd=y'")
        xs.append(x)
        ys.append(y)
    return torch.tensor([xs]), torch.tensor([ys]), torch.tensor(xs[-1:])
