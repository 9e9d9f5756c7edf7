"""NPT on tables: masked-cell training, k-fold cross-validation beside scikit-learn baselines, and probes.

How a k-fold CV fits the generic trainer: the model is `NPTFolds`, K independent NPTs (one per fold) whose
losses are averaged, so the trainer's one loop (optimizer, schedule, checkpoints) trains every fold at once
and `attnkit sample` reloads all of them. Each fold's input is the whole table: its training rows with
targets (stochastically masked), its test rows with targets always masked (never trained on).
`evaluate("val")` scores the test folds; `report()` adds the baselines on the same splits, the probes, a
rich table, predictions.csv and cv_metrics.json. Metrics, baselines and the corruption are in attnkit.zoo.eval.npt.

Objective (Kossen et al. 2021, section 3): every feature cell is selected with probability `feature_mask`
and corrupted BERT-style (80 % mask token, 10 % a random value of that column, 10 % unchanged); every
training target is masked with probability `target_mask`, the other training targets are inputs. The loss
is taken only on selected cells: (1 − λ)·mean feature loss + λ·mean target loss, λ = `target_weight`.

Probes (`--probe`):
  corruption  predict each test row alone while every other row has each attribute permuted independently
              across rows: what is left is the row itself, so the drop measures how much NPT uses other rows.
  lookup      every row gets a duplicate whose target is always visible (plus `target_shift`: added to a
              numeric target, added modulo C to a class); the model can look the answer up (and undo the
              shift). Without `--data` this is the paper's semi-synthetic experiment (§4.1, flavor "lookup"):
              10k duplicated Friedman #1 rows (attnkit.zoo.data.lookup), one train/test split, training batches
              of row pairs whose original's target is masked; the report intervenes on the test rows'
              duplicates and reports the lookup correlation, the corruption probe and the datapoint-attention
              picture (attnkit.zoo.eval.npt_lookup). With `--data`, the table's own rows are duplicated under
              k-fold CV and the correlation with the true target is reported (on small tables the small
              flavor memorizes instead: on diabetes it stays at the features-only correlation, 0.61–0.68).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from rich.console import Console
from rich.table import Table as RichTable

from attnkit.config import SampleConfig, TrainConfig
from attnkit.zoo.data.lookup import LOOKUP_TEST_SHARE, friedman_table, lookup_batch
from attnkit.zoo.data.tables import Table, cv_splits, load_table, target_stats
from attnkit.zoo.eval.npt import (classification_metrics, corrupt_other_rows, mean_std, metrics_table,
                              regression_metrics, sklearn_baselines, write_predictions)
from attnkit.zoo.eval.npt_lookup import correlation, lookup_report, predict_pairs
from attnkit.zoo.models.npt import NPTConfig, NPTFolds, cell_losses
from attnkit.errors import UserError
from attnkit.zoo.tasks.base import Task

PROBES = ("corruption", "lookup")
TRAIN, TEST, CONTEXT = 0, 1, 2   # row roles within one fold (CONTEXT: lookup duplicates, target visible)


@dataclass
class NPTOptions:
    target: str | None = field(default=None, metadata={"help": "target column (default: the data set's own)"})
    folds: int = field(default=10, metadata={"help": "cross-validation splits"})
    probe: str | None = field(default=None, metadata={"help": "corruption or lookup"})
    target_shift: float | None = field(default=None, metadata={
        "help": "lookup probe: shift added to the duplicated rows' targets"})
    column_types: str | None = field(default=None, metadata={
        "help": "override detected column kinds, 'a=categorical,b=numeric'"})


class NPTTask(Task):
    name = "npt"
    default_flavor = "small"
    # "objective" holds the masking probabilities and λ (not TrainConfig fields: they belong to NPT alone).
    flavors = {
        "debug": {
            "model": dict(embed_dim=4, n_layer=2, n_head_abd=2, n_head_aba=1, ff_mult=2, dropout=0.0, head_scale=5.0),
            "train": dict(max_steps=12, batch_size=4096, lr=3e-3, warmup_steps=2, schedule="cosine",
                          eval_interval=6, eval_batches=1, dropout=0.0),
            "options": dict(folds=2),
            "objective": dict(feature_mask=0.15, target_mask=0.3, target_weight=0.5),
        },
        # The CPU reproduction on Breast Cancer: 0.25 M params per fold; 10 folds × 100 steps ≈ 100 s of one core.
        "small": {
            "model": dict(embed_dim=4, n_layer=4, n_head_abd=2, n_head_aba=1, ff_mult=2, dropout=0.1, head_scale=5.0),
            "train": dict(max_steps=100, batch_size=4096, lr=2e-3, warmup_steps=10, schedule="cosine",
                          eval_interval=25, eval_batches=1, dropout=0.1),
            "objective": dict(feature_mask=0.15, target_mask=0.3, target_weight=0.5),
        },
        # The semi-synthetic lookup experiment (Kossen et al. §4.1) on 10k duplicated Friedman #1 rows. batch_size
        # counts rows: 32 originals and their 32 duplicates. In small batches the duplicate is easy to find
        # early: with 32 pairs lookup appeared after ~400 steps, with 256 pairs after ~1,000 (CPU probes).
        "lookup": {
            "model": dict(embed_dim=16, n_layer=4, n_head_abd=4, n_head_aba=1, ff_mult=2, dropout=0.0, head_scale=5.0),
            "train": dict(max_steps=5000, batch_size=64, lr=3e-3, warmup_steps=50, schedule="cosine", beta2=0.99,
                          weight_decay=0.0, eval_interval=500, eval_batches=1, dropout=0.0),
            "options": dict(probe="lookup"),
        },
        # The paper's Breast Cancer setup (ANCHORS.md): 47 M params per fold on Breast Cancer, GPU-sized.
        "paper": {
            "model": dict(embed_dim=32, n_layer=8, n_head_abd=8, n_head_aba=8, ff_mult=4, dropout=0.1, head_scale=1.0),
            "train": dict(max_steps=2000, batch_size=4096, lr=5e-4, warmup_steps=100, schedule="cosine",
                          eval_interval=200, eval_batches=1, dropout=0.1),
            "objective": dict(feature_mask=0.15, target_mask=0.1, target_weight=0.5),
        },
    }

    Options = NPTOptions

    @classmethod
    def default_flavor_for(cls, options: dict[str, Any], data: str | None) -> str:
        # `--opt probe=lookup` alone is the paper's semi-synthetic experiment, which needs its own recipe.
        return "lookup" if options.get("probe") == "lookup" and data is None else cls.default_flavor

    def __init__(self, cfg: TrainConfig, opts=None):
        super().__init__(cfg, opts)
        if self.opts.probe is not None and self.opts.probe not in PROBES:
            raise UserError(f"unknown probe {self.opts.probe!r}; choose from {', '.join(PROBES)}")
        if self.opts.target_shift is not None and self.opts.probe != "lookup":
            raise UserError("target_shift applies to the duplicated rows of probe=lookup only")
        self.objective = dict(self.flavors[cfg.flavor].get("objective", {}))
        # The paper's semi-synthetic lookup experiment: probe=lookup without a data set of the user's.
        self.synthetic = self.opts.probe == "lookup" and cfg.data is None
        if not self.synthetic and not self.objective:  # e.g. --flavor lookup --data iris
            table_flavors = ", ".join(f for f, preset in self.flavors.items() if preset.get("objective"))
            raise UserError(f"flavor {cfg.flavor!r} is the semi-synthetic lookup experiment and takes no --data; "
                            f"for a table of your own choose a flavor from {table_flavors} "
                            f"(with --opt probe=lookup to duplicate its rows)")
        self.table: Table | None = None
        self.splits: list[tuple[np.ndarray, np.ndarray]] = []

    # ---- data ----------------------------------------------------------------------------
    def prepare(self, run_dir: Path) -> None:
        if self.synthetic:  # one train/test split: the probe needs no CV, and one model trains faster
            table = friedman_table()
            order = np.random.default_rng(self.cfg.seed).permutation(table.n)
            n_test = int(round(LOOKUP_TEST_SHARE * table.n))
            splits = [(np.sort(order[n_test:]), np.sort(order[:n_test]))]
        else:
            table = load_table(self.cfg.data, self.opts.target, self.opts.column_types)
            splits = cv_splits(table, self.opts.folds, self.cfg.seed)
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        table.save(run_dir / "table")
        (run_dir / "splits.json").write_text(json.dumps([te.tolist() for _, te in splits]))
        self._setup(table, splits)

    @classmethod
    def load(cls, run_dir: Path, cfg: TrainConfig) -> "NPTTask":
        run_dir = Path(run_dir)
        if not (run_dir / "table.npz").is_file():
            raise UserError(f"{run_dir} has no table.npz: not an NPT run directory")
        task = cls(cfg)
        table = Table.load(run_dir / "table")
        tests = [np.asarray(t, dtype=np.int64) for t in json.loads((run_dir / "splits.json").read_text())]
        everything = np.arange(table.n)
        task._setup(table, [(np.setdiff1d(everything, te), te) for te in tests])
        return task

    def _setup(self, table: Table, splits: list[tuple[np.ndarray, np.ndarray]]) -> None:
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

    def model_config(self) -> dict[str, Any]:
        return dict(super().model_config(), cardinalities=self.table.cardinalities, n_folds=len(self.splits))

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        config = dict(model_config)
        n_folds = config.pop("n_folds")
        return NPTFolds(NPTConfig(**config), n_folds)

    # ---- training --------------------------------------------------------------------------
    def _rows(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """(K, B) row indices: every row when the table fits in a batch, else a random subset per fold."""
        K, n_all = self.roles.shape
        if batch_size >= n_all:
            return torch.arange(n_all).expand(K, n_all)
        return torch.stack([torch.randperm(n_all, generator=generator)[:batch_size] for _ in range(K)])

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A masked-cell training batch for all folds: values, mask, labels, weight, each (K, B, d)."""
        if self.synthetic:  # B/2 training rows, targets masked, and their duplicates, targets shown
            pool = torch.as_tensor(self.splits[0][0])
            return lookup_batch(self.values[0], pool, self.table.n, self.table.target, max(batch_size // 2, 1),
                                generator)
        rows = self._rows(batch_size, generator)                                  # (K, B)
        K, B = rows.shape
        d, t = self.values.shape[2], self.table.target
        labels = torch.gather(self.values, 1, rows[..., None].expand(K, B, d))    # (K, B, d)
        missing = self.missing[rows]                                              # (K, B, d)
        role = torch.gather(self.roles, 1, rows)                                  # (K, B)
        is_target = torch.zeros(d, dtype=torch.bool)
        is_target[t] = True

        # Features: select cells, then BERT-style corruption of the selected ones.
        p_feat, p_tgt = self.objective["feature_mask"], self.objective["target_mask"]
        chosen = (torch.rand(K, B, d, generator=generator) < p_feat) & ~missing & ~is_target
        r = torch.rand(K, B, d, generator=generator)
        as_token = chosen & (r < 0.8)
        as_random = chosen & (r >= 0.8) & (r < 0.9)
        donors = torch.randint(0, B, (K, B, d), generator=generator)              # same column, random row
        values = torch.where(as_random, torch.gather(labels, 1, donors), labels)

        # Targets: training rows masked with p_tgt (and trained on), test rows always masked, context never.
        target_chosen = (torch.rand(K, B, generator=generator) < p_tgt) & (role == TRAIN) & ~missing[..., t]
        target_hidden = target_chosen | (role == TEST)
        mask = missing | as_token
        mask[..., t] |= target_hidden

        # Loss weights: mean over selected feature cells and over selected targets, traded off by λ.
        lam = self.objective["target_weight"]
        weight = torch.zeros(K, B, d)
        n_feat = chosen.sum((1, 2)).clamp(min=1)[:, None, None]
        n_tgt = target_chosen.sum(1).clamp(min=1)[:, None]
        weight = torch.where(chosen, (1 - lam) / n_feat, weight)
        weight[..., t] = torch.where(target_chosen, lam / n_tgt, 0.0)
        return {"values": values, "mask": mask, "labels": labels, "weight": weight}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        numeric, logits = model(batch["values"], batch["mask"])                  # (K, B, d), (K, B, d, C)
        is_cat = torch.tensor([c > 0 for c in self.table.cardinalities], device=numeric.device)
        cells = cell_losses(numeric, logits, batch["labels"], is_cat)            # (K, B, d)
        return (cells * batch["weight"]).sum() / cells.shape[0]                  # mean over folds

    # ---- prediction --------------------------------------------------------------------------
    def _clean_input(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fold k's test-time input (n_all, d): every training target visible, test targets masked."""
        values = self.values[k].clone()
        mask = self.missing.clone()
        mask[:, self.table.target] |= self.roles[k] == TEST
        return values, mask

    @torch.no_grad()
    def _predict_rows(self, fold_model: nn.Module, values: torch.Tensor, mask: torch.Tensor,
                      rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Target outputs for `rows`: class probabilities (R, C) or standardized values (R,).

        When the table does not fit in one batch, each chunk of the rows goes in with a random sample of
        the other rows as context (a fixed generator, so predictions are deterministic).
        """
        t, n_all = self.table.target, values.shape[0]
        batch_size = self.cfg.batch_size or n_all
        chunks = [rows] if batch_size >= n_all else list(rows.split(max(batch_size // 2, 1)))
        g = torch.Generator().manual_seed(0)
        outs = []
        for chunk in chunks:
            if len(chunks) == 1:
                index, pos = torch.arange(n_all), chunk
            else:
                others = torch.ones(n_all, dtype=torch.bool)
                others[chunk] = False
                pool = others.nonzero().squeeze(1)
                context = pool[torch.randperm(len(pool), generator=g)[:batch_size - len(chunk)]]
                index, pos = torch.cat([chunk, context]), torch.arange(len(chunk))
            numeric, logits = fold_model(values[index].to(device), mask[index].to(device))
            if self.table.target_is_categorical:
                outs.append(logits[pos, t, :self.table.n_classes].float().softmax(-1).cpu())
            else:
                outs.append(numeric[pos, t].float().cpu())
        return torch.cat(outs)

    def _unstandardize(self, k: int, pred: np.ndarray) -> np.ndarray:
        return pred * self.target_std[k] + self.target_mean[k]

    def _fold_metrics(self, k: int, out: torch.Tensor) -> dict[str, float]:
        y = self.table.raw_target[self.splits[k][1]]
        if self.table.target_is_categorical:
            return classification_metrics(y.astype(int), out.numpy(), self.table.n_classes)
        return regression_metrics(y, self._unstandardize(k, out.numpy()))

    def _device(self, model: nn.Module) -> torch.device:
        return next(model.parameters()).device

    def predict(self, model: NPTFolds) -> list[torch.Tensor]:
        """Per fold, the outputs for its test rows (in the order of its split)."""
        device, outs = self._device(model), []
        was_training = model.training
        model.eval()
        for k, fold_model in enumerate(model.folds):
            values, mask = self._clean_input(k)
            outs.append(self._predict_rows(fold_model, values, mask, torch.as_tensor(self.splits[k][1]), device))
        model.train(was_training)
        return outs

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, batches: int, device: torch.device) -> dict[str, float]:
        """"train": the masked-cell objective on fixed batches. Otherwise: the test folds' target loss
        (NLL, or MSE in standardized units) and accuracy / RMSE, averaged over folds."""
        if split == "train":
            return super().evaluate(model, split, batches, device)
        if self.synthetic:
            return self._lookup_eval(model, split, device)
        per_fold = [self._fold_metrics(k, out) for k, out in enumerate(self.predict(model))]
        if self.table.target_is_categorical:
            return {f"{split}_loss": float(np.mean([m["nll"] for m in per_fold])),
                    f"{split}_acc": float(np.mean([m["accuracy"] for m in per_fold]))}
        mse = [(m["rmse"] / self.target_std[k]) ** 2 for k, m in enumerate(per_fold)]
        return {f"{split}_loss": float(np.mean(mse)), f"{split}_rmse": float(np.mean([m["rmse"] for m in per_fold]))}

    # ---- the semi-synthetic lookup experiment ----------------------------------------------------
    def _pairs(self) -> int:
        return max((self.cfg.batch_size or 64) // 2, 1)

    def _lookup_eval(self, model: nn.Module, split: str, device: torch.device) -> dict[str, float]:
        """Clean target MSE (standardized) and the lookup correlation on the first 256 test rows."""
        values, n, t = self.values[0], self.table.n, self.table.target
        rows = torch.as_tensor(self.splits[0][1][:256])
        was_training = model.training
        model.eval()
        fold = model.folds[0]
        y = values[rows, t]
        clean = predict_pairs(fold, values, rows, n, t, self._pairs(), device)
        new = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
        moved = predict_pairs(fold, values, rows, n, t, self._pairs(), device, duplicate_targets=new)
        model.train(was_training)
        return {f"{split}_loss": float(((clean - y) ** 2).mean()), f"{split}_lookup_corr": correlation(moved, new)}

    def _lookup_report(self, model: nn.Module, out_dir: Path, console: Console) -> dict[str, Any]:
        train_rows, test_rows = (torch.as_tensor(r) for r in self.splits[0])
        result = lookup_report(model.folds[0], self.values[0], self.table.n, self.table.target, train_rows, test_rows,
                               self._pairs(), self._device(model), self.table.features(), self.table.raw_target,
                               out_dir, self.cfg.seed, console)
        return {"data": self.table.name, "rows": self.table.n, "attributes": self.table.d, **result}

    # ---- probes --------------------------------------------------------------------------------
    @torch.no_grad()
    def corruption_probe(self, model: NPTFolds, console: Console | None = None) -> list[torch.Tensor]:
        """Per fold, test outputs when each test row is predicted alone among corrupted rows: every other
        row has each attribute (its value, mask bit and missing flag together) permuted independently.
        One forward pass per test row, so every row of the table costs one pass."""
        from rich.progress import Progress

        device, outs = self._device(model), []
        g = torch.Generator().manual_seed(self.cfg.seed)
        model.eval()
        with Progress(console=console or Console(), transient=True) as progress:
            bar = progress.add_task("corruption probe", total=sum(len(te) for _, te in self.splits))
            for k, fold_model in enumerate(model.folds):
                values, mask = self._clean_input(k)
                fold_out = []
                for i in self.splits[k][1].tolist():
                    v, m = corrupt_other_rows(values, mask, i, g)
                    fold_out.append(self._predict_rows(fold_model, v, m, torch.tensor([i]), device))
                    progress.advance(bar)
                outs.append(torch.cat(fold_out))
        return outs

    def _correlation(self, k: int, out: torch.Tensor) -> float:
        """Pearson correlation of prediction and true target: of the predicted value for a numeric target;
        of the predicted class probabilities and the one-hot true class (all classes pooled) for a class."""
        y = self.table.raw_target[self.splits[k][1]]
        if self.table.target_is_categorical:
            pred = out.numpy().ravel()
            y = np.eye(self.table.n_classes)[y.astype(int)].ravel()
        else:
            pred = self._unstandardize(k, out.numpy())
        if np.std(pred) < 1e-12 or np.std(y) < 1e-12:
            return float("nan")
        return float(np.corrcoef(pred, y)[0, 1])

    # ---- baselines ----------------------------------------------------------------------------
    def baselines(self, console: Console | None = None) -> dict[str, list[dict[str, float]]]:
        """scikit-learn models on the same splits (attnkit.zoo.eval.npt.sklearn_baselines)."""
        return sklearn_baselines(self.table, self.splits, self.cfg.seed, console)

    # ---- report ---------------------------------------------------------------------------------
    def _metric_names(self) -> list[str]:
        return ["accuracy", "auroc", "nll"] if self.table.target_is_categorical else ["rmse", "r2"]

    def metrics_table(self, rows: dict[str, dict[str, dict[str, Any]]], title: str) -> RichTable:
        return metrics_table(rows, self._metric_names(), title)

    def report(self, model: nn.Module, run_dir: Path, console: Console) -> dict[str, Any]:
        start = time.time()
        run_dir = Path(run_dir)
        if self.synthetic:
            summary = self._lookup_report(model, run_dir, console)
            summary["report_s"] = round(time.time() - start, 1)
            (run_dir / "lookup_metrics.json").write_text(json.dumps(summary, indent=1))
            return summary
        outs = self.predict(model)
        npt_folds = [self._fold_metrics(k, out) for k, out in enumerate(outs)]
        rows = {f"NPT ({self.cfg.flavor})": mean_std(npt_folds)}
        summary: dict[str, Any] = {"data": self.table.name, "target": self.table.columns[self.table.target],
                                   "rows": self.table.n, "attributes": self.table.d, "folds": len(self.splits),
                                   "npt": rows[f"NPT ({self.cfg.flavor})"]}
        if self.opts.probe == "lookup":
            corr = [self._correlation(k, out) for k, out in enumerate(outs)]
            summary["lookup"] = {"target_shift": self.opts.target_shift or 0.0,
                                 "correlation": mean_std([{"c": c} for c in corr])["c"]}
        baseline = {name: mean_std(folds) for name, folds in self.baselines(console).items()}
        rows.update(baseline)
        summary["baselines"] = baseline
        title = (f"{self.table.name}: {len(self.splits)}-fold CV, target {self.table.columns[self.table.target]!r}"
                 + (" (NPT with lookup duplicates)" if self.opts.probe == "lookup" else ""))
        console.print(self.metrics_table(rows, title))
        if self.opts.probe == "lookup":
            c = summary["lookup"]["correlation"]
            console.print(f"lookup probe (target shift {summary['lookup']['target_shift']:g}): correlation of "
                          f"prediction and true target {c['mean']:.4f} ± {c['std']:.4f}")
        if self.opts.probe == "corruption":
            corrupted = [self._fold_metrics(k, out) for k, out in enumerate(self.corruption_probe(model, console))]
            clean, bad = rows[f"NPT ({self.cfg.flavor})"], mean_std(corrupted)
            summary["corruption"] = {"corrupted": bad,
                                     "drop": {n: clean[n]["mean"] - bad[n]["mean"] for n in self._metric_names()}}
            console.print(self.metrics_table({"NPT, clean": clean, "NPT, other rows corrupted": bad},
                                             "corruption probe: each test row predicted among corrupted rows"))
            drop = summary["corruption"]["drop"]
            console.print("drop (clean − corrupted): " + ", ".join(f"{n} {v:+.4f}" for n, v in drop.items()))
        self.write_predictions(outs, run_dir / "predictions.csv")
        summary["report_s"] = round(time.time() - start, 1)
        (run_dir / "cv_metrics.json").write_text(json.dumps(summary, indent=1))
        return summary

    def write_predictions(self, outs: list[torch.Tensor], path: Path) -> None:
        """Every row once, predicted by the fold that held it out (attnkit.zoo.eval.npt.write_predictions)."""
        write_predictions(path, self.table, self.splits, outs, self._decode, self._decode_output)

    def _decode(self, k: int, raw: float) -> str:
        t = self.table
        return t.categories[t.target][int(raw)] if t.target_is_categorical else f"{raw:.4g}"

    def _decode_output(self, k: int, out: torch.Tensor) -> str:
        t = self.table
        if t.target_is_categorical:
            return t.categories[t.target][int(out.argmax())]
        return f"{float(self._unstandardize(k, out.numpy())):.4g}"

    # ---- sampling ---------------------------------------------------------------------------------
    sample_flags = ()  # the model-specific flags `sample` reads
    def sample(self, model: nn.Module, cfg: SampleConfig, console: Console) -> dict[str, Any]:
        """Print fold 0's test-row predictions (`--num-samples` rows, at least 10) and the CV metrics table;
        for the semi-synthetic lookup run, the lookup probes and the datapoint-attention picture again."""
        if self.synthetic:
            out = Path(cfg.out or cfg.run)
            out.mkdir(parents=True, exist_ok=True)
            return self._lookup_report(model, out, console)
        t = self.table
        outs = self.predict(model)
        shown = RichTable(title=f"{t.name}: predictions for fold 0's test rows (trained without their targets)")
        for col in ("row", "true", "predicted", "confidence" if t.target_is_categorical else "error"):
            shown.add_column(col, justify="right")
        limit = max(cfg.num_samples, 10)
        for row, o in list(zip(self.splits[0][1].tolist(), outs[0]))[:limit]:
            true, pred = self._decode(0, t.raw_target[row]), self._decode_output(0, o)
            last = (f"{float(o.max()):.3f}" if t.target_is_categorical
                    else f"{float(self._unstandardize(0, o.numpy())) - t.raw_target[row]:+.4g}")
            style = "red" if t.target_is_categorical and true != pred else None
            shown.add_row(str(row), true, pred, last, style=style)
        console.print(shown)
        n_test = len(self.splits[0][1])
        if n_test > limit:
            console.print(f"… {n_test - limit} more rows in fold 0; every row's out-of-fold prediction: "
                          f"predictions.csv in the run directory")
        npt = mean_std([self._fold_metrics(k, out) for k, out in enumerate(outs)])
        rows = {f"NPT ({self.cfg.flavor})": npt}
        saved = Path(cfg.run) / "cv_metrics.json"
        if saved.is_file():
            rows.update(json.loads(saved.read_text()).get("baselines", {}))
        console.print(self.metrics_table(rows, f"{t.name}: {len(self.splits)}-fold CV"))
        return {"npt": npt}
