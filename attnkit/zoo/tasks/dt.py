"""`--model dt`: the Decision Transformer on offline trajectories generated here, beside BC and %BC.

Data: `attnkit.zoo.data.rl` plays seeded episodes of a hand-written controller with ε random actions, which on
CartPole quit (push the pole over) from a random step so that returns cover [9, 500] evenly
(CartPole-v1 by default, or Acrobot-v1: `--opt env=Acrobot-v1`), cached in the run directory and described
by a table (shown before the first step) and `dataset_returns.png`. One training loop fits three policies on
the same batches (`attnkit.zoo.models.dt.PolicySet`): the return-conditioned DT, behaviour cloning (BC) on all
episodes and BC on the best 10% (%BC). At the end, and in `attnkit sample --target-return 100,200,...`, each
is rolled out on the same seeded episodes (a progress bar per policy); the DT once per target. The paper's
return-tracking plot (`return_tracking.png`) shows achieved vs target return with the dataset's max and the
baselines.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from attnkit.config import SampleConfig, TrainConfig
from attnkit.zoo.data.rl import describe_recipe, get_env_spec, load_or_generate, make_env
from attnkit.zoo.data.trajectory_windows import END_STEPS, Windows, top_episodes
from attnkit.errors import UserError
from attnkit.fsio import atomic_write
from attnkit.zoo.eval.rl import evaluate_policies, plot_return_histogram, plot_return_tracking, return_rows
from attnkit.zoo.models.dt import RETURN_EMBEDDINGS, DTConfig, PolicySet
from attnkit.zoo.report import Echo, Report
from attnkit.zoo.tasks.base import Flavor, Task
from attnkit.zoo.tasks.sample_options import DTSampleOptions

STATS_FILE = "dataset.json"  # what sampling needs to know about the data, so it never reads the episodes
TOP_FRACTION = 0.1           # %BC trains on the best 10% of episodes (the paper's Table 3)
VAL_EVERY = 10               # every 10th episode is held out for the validation loss


@dataclass
class DTOptions:
    env: str = field(default="CartPole-v1", metadata={"help": "gymnasium environment: CartPole-v1 or Acrobot-v1"})
    episodes: int = field(default=1000, metadata={"help": "episodes in the generated dataset"})
    data_seed: int = field(default=0, metadata={"help": "seed of the dataset's episodes and their ε"})
    max_epsilon: float | None = field(default=None, metadata={
        "help": "each episode's share of random actions is drawn from U(0, max_epsilon) (default: the env's)"})
    quit: bool | None = field(default=None, metadata={
        "help": "episodes quit (push the pole over) from a random step (default: on for CartPole)"})
    end_share: float = field(default=0.5, metadata={
        "help": f"share of each batch's contexts that end in an episode's last {END_STEPS} steps (0: uniform, the paper)"})
    return_embedding: str = field(default="symlog", metadata={
        "help": "what the return token embeds: symlog (sign·log(1+|R|)) or linear (R / 500, the paper)"})
    context: int | None = field(default=None, metadata={"help": "K, steps the model sees (default: the flavor's)"})
    eval_episodes: int = field(default=30, metadata={"help": "seeded rollouts per target return and baseline"})


def parse_targets(text: str) -> list[float]:
    """'100,200,300' -> [100.0, 200.0, 300.0]; anything else is a one-line UserError."""
    try:
        targets = [float(t) for t in text.split(",")]
    except ValueError:
        targets = []
    if not targets or not all(math.isfinite(t) for t in targets):
        raise UserError(f"--target-return must be comma-separated numbers, e.g. 100,200,300; got {text!r}")
    return targets


class DTTask(Task):
    name = "dt"
    default_flavor = "paper"
    Options = DTOptions
    flavors = {
        "debug": Flavor(
            model=dict(context=5, n_layer=1, n_head=1, d_model=32, dropout=0.0),
            train=dict(max_steps=20, batch_size=16, lr=1e-3, warmup_steps=2, eval_interval=10,
                       eval_batches=1, weight_decay=1e-4),
            options=dict(episodes=40, eval_episodes=2),
        ),
        # The paper's network (3 layers, 1 head, width 128, dropout 0.1, weight decay 1e-4) on K = 5 steps (the
        # paper: 20; CartPole's state is Markov, and a forward pass reads 15 tokens instead of 60); batch 32 and
        # 600 steps (the paper: 64 and 100k) fit a few CPU minutes, and CartPole needs no more (docs/zoo/dt.md).
        "paper": Flavor(
            model=dict(context=5, n_layer=3, n_head=1, d_model=128, dropout=0.1),
            train=dict(max_steps=600, batch_size=32, lr=6e-4, min_lr=6e-5, warmup_steps=60,
                       eval_interval=150, eval_batches=4, weight_decay=1e-4),
        ),
    }

    def __init__(self, cfg: TrainConfig, opts=None):
        super().__init__(cfg, opts)
        self.spec = get_env_spec(self.opts.env)  # an unknown env fails here, before any work
        if self.opts.quit and self.spec.quitter is None:
            raise UserError(f"{self.spec.name} has no quitter to play from a quit step; use --opt quit=false")
        for name in ("max_epsilon", "end_share"):
            if (value := getattr(self.opts, name)) is not None and not 0 <= value <= 1:
                raise UserError(f"--opt {name} must be in [0, 1], got {value}")
        if self.opts.return_embedding not in RETURN_EMBEDDINGS:
            raise UserError(f"--opt return_embedding must be one of {', '.join(RETURN_EMBEDDINGS)}, "
                            f"got {self.opts.return_embedding!r}")
        if self.opts.context is not None and self.opts.context < 1:
            raise UserError(f"--opt context must be at least 1, got {self.opts.context}")

    # ---- configuration -------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        env = make_env(self.spec.name)
        return dict(super().model_config(), state_dim=env.observation_space.shape[0],
                    act_dim=int(env.action_space.n), max_timestep=self.spec.max_episode_steps,
                    return_scale=self.spec.return_scale, return_embedding=self.opts.return_embedding,
                    state_mean=self.state_mean, state_std=self.state_std,
                    **({} if self.opts.context is None else {"context": self.opts.context}))

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        return PolicySet(DTConfig(**model_config))

    # ---- training ------------------------------------------------------------------------
    def prepare(self, run_dir: Path) -> Report:
        """Generate (or reuse) the episodes; return the dataset's table for the engine to show before training."""
        opts = self.opts
        if opts.episodes < 2 * VAL_EVERY:
            raise UserError(f"--opt episodes must be at least {2 * VAL_EVERY}, got {opts.episodes}")
        if opts.eval_episodes < 1:
            raise UserError(f"--opt eval_episodes must be at least 1, got {opts.eval_episodes}")
        # run_dir is a staging directory: a resumed run's own cached episodes are in cfg.out.
        data = load_or_generate(run_dir, opts.env, opts.episodes, opts.data_seed, self.progress,
                                cached_in=Path(self.cfg.out) if self.cfg.out else None,
                                max_epsilon=opts.max_epsilon, quit=opts.quit)
        returns = data.returns()
        is_val = np.arange(len(data)) % VAL_EVERY == VAL_EVERY - 1
        train, val = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        self.state_mean = data.observations.mean(0).tolist()
        self.state_std = data.observations.std(0).tolist()
        top_train, top_val = (split[top_episodes(returns[split], TOP_FRACTION)] for split in (train, val))
        self.windows = {"train": Windows(data.subset(train)), "val": Windows(data.subset(val)),
                        "top_train": Windows(data.subset(top_train)), "top_val": Windows(data.subset(top_val))}
        self.stats = {"env": opts.env, "episodes": len(data), "steps": int(len(data.actions)),
                      "max_return": float(returns.max()), "mean_return": float(returns.mean()),
                      "min_return": float(returns.min()), "std_return": float(returns.std()),
                      "top_threshold": float(returns[top_train].min()),
                      "recipe": describe_recipe(opts.env, opts.max_epsilon, opts.quit),
                      "returns": returns.tolist()}
        atomic_write(Path(run_dir) / STATS_FILE, json.dumps(self.stats, indent=2, default=str) + "\n")
        plot_return_histogram(Path(run_dir) / "dataset_returns.png", opts.env, returns, self.stats["recipe"])
        return self._dataset_report(Path(self.cfg.out or run_dir))  # where the files are once published

    def _dataset_report(self, run_dir: Path) -> Report:
        """The offline dataset: episodes, steps and returns, and where it is cached."""
        s, report = self.stats, Report()
        report.table(f"offline dataset · {s['env']}",
                     ["episodes", "steps", "return mean ± std", "min", "max", "best 10% from"],
                     [[s["episodes"], s["steps"], f"{s['mean_return']:.1f} ± {s['std_return']:.1f}",
                       f"{s['min_return']:g}", f"{s['max_return']:g}", f"{s['top_threshold']:g}"]],
                     note=f"{self.spec.about}; each episode plays the controller with {s['recipe']}\n"
                          f"cached in {run_dir / 'trajectories.npz'}; histogram {run_dir / 'dataset_returns.png'}")
        return report

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        K, share = self.opts.context or self.flavor.model["context"], self.opts.end_share
        batch = self.windows[split].batch(batch_size, K, generator, share)
        top = self.windows[f"top_{split}"].batch(batch_size, K, generator, share)
        return {**batch, **{f"top_{k}": v for k, v in top.items()}}

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """(R, s, a) tokens the DT sees; the baselines see two per step on top."""
        return 3 * int(batch["mask"].sum())

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(model(batch).values())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, batches: int, device: torch.device) -> dict[str, float]:
        """The summed loss as `{split}_loss`, and each policy's action cross-entropy on its own."""
        g = torch.Generator().manual_seed(1234)
        totals = dict.fromkeys(PolicySet.NAMES, 0.0)
        for _ in range(batches):
            batch = {k: v.to(device) for k, v in self.get_batch(split, self.cfg.batch_size, g).items()}
            for name, value in model(batch).items():
                totals[name] += value.item() / batches
        return {f"{split}_loss": sum(totals.values()), **{f"{split}_{k}_loss": v for k, v in totals.items()}}

    def report(self, model: nn.Module, run_dir: Path) -> Report:
        """DT rolled out at the env's targets (and the dataset max), BC and %BC; table, plot, keys."""
        targets = sorted(set(self.spec.targets) | {self.stats["max_return"]})
        report = self._rollouts(model, targets, self.opts.eval_episodes, self.cfg.seed, Path(run_dir))
        report.line(f"val_loss is the sum of the {len(PolicySet.NAMES)} policies' action cross-entropies, trained "
                    f"together: {' + '.join(f'val_{n}_loss' for n in PolicySet.NAMES)} (metrics.jsonl has each)")
        return report

    def _rollouts(self, model: PolicySet, targets: list[float], episodes: int, seed: int, out: Path) -> Report:
        """The achieved-return table and rank correlation as a Report; return_tracking.png written into `out`."""
        r = evaluate_policies(model, self.opts.env, targets, episodes, seed, self.stats, self.progress)
        r["return_tracking_png"] = plot_return_tracking(
            out / "return_tracking.png", r["env"], r["return_by_target"],
            {"BC": (r["bc_return"], r["bc_return_std"]), "%BC": (r["pct_bc_return"], r["pct_bc_return_std"])},
            r["dataset_max_return"], r["dataset_mean_return"])
        rho = r["return_rank_correlation"]
        report = Report(r)
        report.table(f"achieved return on {r['env']} · mean ± std over {r['eval_episodes']} seeded episodes",
                     ["policy", "target", "achieved"], return_rows(r),
                     note="" if rho is None else f"rank correlation of target and achieved return below the "
                                                 f"dataset max: {rho:.3f} (Spearman)")
        report.file("return tracking", r["return_tracking_png"])
        return report

    # ---- sampling ------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: Path, cfg: TrainConfig) -> "DTTask":
        task = cls(cfg)
        path = Path(run_dir) / STATS_FILE
        try:
            task.stats = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path} not found: was {run_dir} written by `attnkit train --model dt`?") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path} is corrupt (not JSON: {e})") from None
        return task

    SampleOptions = DTSampleOptions
    def sample(self, model: nn.Module, cfg: SampleConfig, echo: Echo) -> Report:
        """Roll out DT for each --target-return (default: the env's list) and BC, %BC on the same seeds.

        Episodes per target: --num-samples if above 1, else the run's eval_episodes option.
        """
        target_return = self.sample_options(cfg).target_return
        targets = parse_targets(target_return) if target_return is not None else list(self.spec.targets)
        episodes = cfg.num_samples if cfg.num_samples > 1 else self.opts.eval_episodes
        out = Path(cfg.out or cfg.run)
        out.mkdir(parents=True, exist_ok=True)
        return self._rollouts(model, targets, episodes, cfg.seed, out)
