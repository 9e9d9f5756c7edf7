"""What NPT's two experiments share: the options and flavors, the run directory's table and splits, the
per-fold input arrays, the model and its masked-cell loss.

`--model npt` names two tasks: `attnkit.zoo.tasks.npt.NPTTask` (a table of the user's under k-fold CV,
beside scikit-learn baselines) and `attnkit.zoo.tasks.npt_lookup.NPTLookupTask` (the paper's
semi-synthetic lookup experiment, `--opt probe=lookup` without `--data`). `NPTTask.for_config(cfg)` picks
the one the config asks for (`is_lookup_experiment`), so the engine, the saved run configs and every command
keep the one model name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from attnkit.config import TrainConfig
from attnkit.errors import UserError
from attnkit.fsio import atomic_write
from attnkit.zoo.data.masked_cells import CONTEXT, TEST, TRAIN
from attnkit.zoo.data.tables import Table, target_stats
from attnkit.zoo.models.npt import NPTConfig, NPTFolds, cell_losses
from attnkit.zoo.tasks.base import Flavor, Task

PROBES = ("corruption", "lookup")
Splits = list[tuple[np.ndarray, np.ndarray]]  # per fold: (training rows, test rows)


@dataclass
class NPTOptions:
    target: str | None = field(default=None, metadata={"help": "target column (default: the data set's own)"})
    folds: int = field(default=10, metadata={"help": "cross-validation splits"})
    probe: str | None = field(default=None, metadata={"help": "corruption or lookup"})
    target_shift: float | None = field(default=None, metadata={
        "help": "lookup probe: shift added to the duplicated rows' targets"})
    noise: float | None = field(default=None, metadata={
        "help": "lookup experiment: standard deviation of Friedman #1's noise (the flavor's by default)"})
    column_types: str | None = field(default=None, metadata={
        "help": "override detected column kinds, 'a=categorical,b=numeric'"})


@dataclass(frozen=True)
class Objective:
    """A table flavor's masked-cell objective (fixed by the flavor: not options, they define the recipe)."""
    feature_mask: float   # probability of masking a feature cell
    target_mask: float    # probability of masking a training row's target
    target_weight: float  # λ: the target loss's share of the total


# A table flavor's `fixed` is its Objective; the lookup experiment's is None (it takes no --data).
FLAVORS = {
    "debug": Flavor(
        model=dict(embed_dim=4, n_layer=2, n_head_abd=2, n_head_aba=1, ff_mult=2, dropout=0.0, head_scale=5.0),
        train=dict(max_steps=12, batch_size=4096, lr=3e-3, warmup_steps=2, schedule="cosine",
                   eval_interval=6, eval_batches=1, dropout=0.0),
        options=dict(folds=2),
        fixed=Objective(feature_mask=0.15, target_mask=0.3, target_weight=0.5),
    ),
    # The CPU reproduction on Breast Cancer: 0.25 M params per fold; 10 folds × 100 steps ≈ 100 s of one core.
    "small": Flavor(
        model=dict(embed_dim=4, n_layer=4, n_head_abd=2, n_head_aba=1, ff_mult=2, dropout=0.1, head_scale=5.0),
        train=dict(max_steps=100, batch_size=4096, lr=2e-3, warmup_steps=10, schedule="cosine",
                   eval_interval=25, eval_batches=1, dropout=0.1),
        fixed=Objective(feature_mask=0.15, target_mask=0.3, target_weight=0.5),
    ),
    # The semi-synthetic lookup experiment (Kossen et al. §4.1) on 10k duplicated Friedman #1 rows. batch_size
    # counts rows: 32 originals and their 32 duplicates. In small batches the duplicate is easy to find
    # early: with 32 pairs lookup appeared after ~400 steps, with 256 pairs after ~1,000 (CPU probes).
    # Noise 6 (sklearn's σ; 3 before): the features explain less of the target, so looking the answer up pays
    # more, and lookup reached ≥ 0.995 on 3 of 3 seeds where noise 3 gave 0.986–0.998 (docs/zoo/npt.md).
    "lookup": Flavor(
        model=dict(embed_dim=16, n_layer=4, n_head_abd=4, n_head_aba=1, ff_mult=2, dropout=0.0, head_scale=5.0),
        train=dict(max_steps=5000, batch_size=64, lr=3e-3, warmup_steps=50, schedule="cosine", beta2=0.99,
                   weight_decay=0.0, eval_interval=500, eval_batches=1, dropout=0.0),
        options=dict(probe="lookup", noise=6.0),
    ),
    # The paper's Breast Cancer setup (ANCHORS.md): 47 M params per fold on Breast Cancer, GPU-sized.
    "paper": Flavor(
        model=dict(embed_dim=32, n_layer=8, n_head_abd=8, n_head_aba=8, ff_mult=4, dropout=0.1, head_scale=1.0),
        train=dict(max_steps=2000, batch_size=4096, lr=5e-4, warmup_steps=100, schedule="cosine",
                   eval_interval=200, eval_batches=1, dropout=0.1),
        fixed=Objective(feature_mask=0.15, target_mask=0.1, target_weight=0.5),
    ),
}


def is_lookup_experiment(probe: str | None, data: str | None) -> bool:
    """`--opt probe=lookup` without `--data`: the paper's semi-synthetic experiment, not a probe of a table."""
    return probe == "lookup" and data is None


class NPTBase(Task):
    name = "npt"
    default_flavor = "small"
    flavors = FLAVORS
    Options = NPTOptions

    @classmethod
    def default_flavor_for(cls, options: dict[str, Any], data: str | None) -> str:
        # `--opt probe=lookup` alone is the paper's semi-synthetic experiment, which needs its own recipe.
        return "lookup" if is_lookup_experiment(options.get("probe"), data) else cls.default_flavor

    def __init__(self, cfg: TrainConfig, opts=None):
        super().__init__(cfg, opts)
        if self.opts.probe is not None and self.opts.probe not in PROBES:
            raise UserError(f"unknown probe {self.opts.probe!r}; choose from {', '.join(PROBES)}")
        if self.opts.target_shift is not None and self.opts.probe != "lookup":
            raise UserError("target_shift applies to the duplicated rows of probe=lookup only")
        self.table: Table | None = None
        self.splits: Splits = []

    # ---- the run directory: the encoded table and the test rows of every split ----------------
    def save_data(self, table: Table, splits: Splits, run_dir: Path) -> None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        table.save(run_dir / "table")
        atomic_write(run_dir / "splits.json", json.dumps([te.tolist() for _, te in splits]))
        self._setup(table, splits)

    @classmethod
    def load(cls, run_dir: Path, cfg: TrainConfig) -> "NPTBase":
        run_dir = Path(run_dir)
        if not (run_dir / "table.npz").is_file():
            raise UserError(f"{run_dir} has no table.npz: not an NPT run directory")
        task = cls(cfg)  # the engine calls load on the class NPTTask.for_config picked
        table = Table.load(run_dir / "table")
        tests = [np.asarray(t, dtype=np.int64) for t in json.loads((run_dir / "splits.json").read_text())]
        everything = np.arange(table.n)
        task._setup(table, [(np.setdiff1d(everything, te), te) for te in tests])
        return task

    def _setup(self, table: Table, splits: Splits) -> None:
        """Per-fold input arrays. With --probe lookup, rows n..2n-1 duplicate rows 0..n-1 (role CONTEXT)."""
        self.table, self.splits = table, splits
        n, t = table.n, table.target
        lookup = self.opts.probe == "lookup"
        values = np.concatenate([table.values, table.values]) if lookup else table.values    # (n_all, d)
        missing = np.concatenate([table.missing, table.missing]) if lookup else table.missing
        fold_values, roles = [], []
        self.target_mean, self.target_std = [], []
        for train_rows, test_rows in splits:
            mean, std = target_stats(table, train_rows)
            v = values.copy()
            if table.target_is_categorical:
                if lookup:
                    shift = int(round(self.opts.target_shift or 0))
                    v[n:, t] = (v[n:, t] + shift) % table.n_classes
            else:
                v[:, t] = (v[:, t] - mean) / std
                if lookup:
                    v[n:, t] += (self.opts.target_shift or 0.0) / std
            role = np.full(len(v), CONTEXT, dtype=np.int64)
            role[train_rows], role[test_rows] = TRAIN, TEST
            fold_values.append(v)
            roles.append(role)
            self.target_mean.append(mean)
            self.target_std.append(std)
        self.values = torch.tensor(np.stack(fold_values), dtype=torch.float32)   # (K, n_all, d)
        self.missing = torch.tensor(missing, dtype=torch.bool)                    # (n_all, d)
        self.roles = torch.tensor(np.stack(roles))                                # (K, n_all)

    # ---- the model and its loss ----------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        return dict(super().model_config(), cardinalities=self.table.cardinalities, n_folds=len(self.splits))

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        config = dict(model_config)
        n_folds = config.pop("n_folds")
        return NPTFolds(NPTConfig(**config), n_folds)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        numeric, logits = model(batch["values"], batch["mask"])                  # (K, B, d), (K, B, d, C)
        is_cat = torch.tensor([c > 0 for c in self.table.cardinalities], device=numeric.device)
        cells = cell_losses(numeric, logits, batch["labels"], is_cat)            # (K, B, d)
        return (cells * batch["weight"]).sum() / cells.shape[0]                  # mean over folds
