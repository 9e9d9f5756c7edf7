"""NPT on a table: masked-cell training, k-fold cross-validation beside scikit-learn baselines, and probes.

How a k-fold CV fits the generic trainer: the model is `NPTFolds`, K independent NPTs (one per fold) whose
losses are averaged, so the trainer's one loop (optimizer, schedule, checkpoints) trains every fold at once
and `attnkit sample` reloads all of them. Each fold's input is the whole table: its training rows with
targets (stochastically masked), its test rows with targets always masked (never trained on).
`evaluate("val")` scores the test folds; `report()` adds the baselines on the same splits, the probes, the
metrics table, predictions.csv and cv_metrics.json. Metrics, baselines, prediction and the corruption are
in attnkit.zoo.eval.npt; options, flavors, the fold arrays and the loss in attnkit.zoo.tasks.npt_base.

Objective (Kossen et al. 2021, section 3; attnkit.zoo.data.masked_cells): feature cells are selected and
corrupted BERT-style, training targets masked at random, test targets always; the loss is taken on the
selected cells only, (1 − λ)·mean feature loss + λ·mean target loss, λ = `target_weight`.

Probes (`--probe`):
  corruption  predict each test row alone while every other row has each attribute permuted independently
              across rows: what is left is the row itself, so the drop measures how much NPT uses other rows.
  lookup      every row gets a duplicate whose target is always visible (plus `target_shift`: added to a
              numeric target, added modulo C to a class); the model can look the answer up (and undo the
              shift). The correlation of prediction and true target is reported (on small tables the small
              flavor memorizes instead: on diabetes it stays at the features-only correlation, 0.61–0.68).
              Without `--data` this is the paper's semi-synthetic experiment, a task of its own
              (attnkit.zoo.tasks.npt_lookup), which `NPTTask.for_config(cfg)` picks for that config.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from attnkit.config import SampleConfig, TrainConfig
from attnkit.errors import UserError
from attnkit.fsio import atomic_write
from attnkit.nn.modes import model_device
from attnkit.zoo.data.masked_cells import TEST, masked_cell_batch, random_rows
from attnkit.zoo.data.tables import cv_splits, load_table
from attnkit.zoo.eval.npt import (classification_metrics, corrupt_other_rows, mean_std, metrics_header, metrics_rows,
                                  predict_rows, regression_metrics, sklearn_baselines, target_correlation,
                                  write_predictions)
from attnkit.zoo.models.npt import NPTFolds
from attnkit.zoo.report import Echo, Report
from attnkit.zoo.tasks.npt_base import NPTBase, is_lookup_experiment
from attnkit.zoo.tasks.npt_lookup import NPTLookupTask


class NPTTask(NPTBase):
    """A table of the user's under k-fold CV (the semi-synthetic lookup config runs an NPTLookupTask: for_config)."""

    @classmethod
    def for_config(cls, cfg: TrainConfig) -> type[NPTBase]:
        # `--model npt` is one name for two experiments; the config says which, so the engine, saved run
        # configs and `attnkit.load_run` need no second name.
        return NPTLookupTask if is_lookup_experiment(cfg.options.get("probe"), cfg.data) else cls

    def __init__(self, cfg: TrainConfig, opts=None):
        super().__init__(cfg, opts)
        if self.flavor.fixed is None:  # e.g. --flavor lookup --data iris
            table_flavors = ", ".join(f for f, preset in self.flavors.items() if preset.fixed is not None)
            raise UserError(f"flavor {cfg.flavor!r} is the semi-synthetic lookup experiment and takes no --data; "
                            f"for a table of your own choose a flavor from {table_flavors} "
                            f"(with --opt probe=lookup to duplicate its rows)")
        if self.opts.noise is not None:
            raise UserError("noise sets the lookup experiment's Friedman noise (--opt probe=lookup without --data); "
                            "a table of your own has its own")
        self.objective = dataclasses.asdict(self.flavor.fixed)  # masked_cell_batch's keyword arguments

    def prepare(self, run_dir: Path) -> None:
        table = load_table(self.cfg.data, self.opts.target, self.opts.column_types)
        self.save_data(table, cv_splits(table, self.opts.folds, self.cfg.seed), run_dir)

    # ---- training --------------------------------------------------------------------------
    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A masked-cell training batch for all folds: values, mask, labels, weight, each (K, B, d)."""
        rows = random_rows(self.roles.shape, batch_size, generator)               # (K, B)
        return masked_cell_batch(self.values, self.missing, self.roles, rows, self.table.target, generator,
                                 **self.objective)

    # ---- prediction --------------------------------------------------------------------------
    def _clean_input(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fold k's test-time input (n_all, d): every training target visible, test targets masked."""
        values = self.values[k].clone()
        mask = self.missing.clone()
        mask[:, self.table.target] |= self.roles[k] == TEST
        return values, mask

    def _predict_rows(self, fold_model: nn.Module, values: torch.Tensor, mask: torch.Tensor,
                      rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Target outputs for `rows`: class probabilities (R, C) or standardized values (R,)."""
        t = self.table
        n_classes = t.n_classes if t.target_is_categorical else 0
        return predict_rows(fold_model, values, mask, rows, t.target, n_classes, self.cfg.batch_size, device)

    def _unstandardize(self, k: int, pred: np.ndarray) -> np.ndarray:
        return pred * self.target_std[k] + self.target_mean[k]

    def _fold_metrics(self, k: int, out: torch.Tensor) -> dict[str, float]:
        y = self.table.raw_target[self.splits[k][1]]
        if self.table.target_is_categorical:
            return classification_metrics(y.astype(int), out.numpy(), self.table.n_classes)
        return regression_metrics(y, self._unstandardize(k, out.numpy()))

    def fold_predictions(self, model: NPTFolds) -> list[torch.Tensor]:
        """Per fold, the outputs for its test rows (in the order of its split), from the model as it is."""
        device, outs = model_device(model), []
        for k, fold_model in enumerate(model.folds):
            values, mask = self._clean_input(k)
            outs.append(self._predict_rows(fold_model, values, mask, torch.as_tensor(self.splits[k][1]), device))
        return outs

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, batches: int, device: torch.device) -> dict[str, float]:
        """"train": the masked-cell objective on fixed batches. Otherwise: the test folds' target loss
        (NLL, or MSE in standardized units) and accuracy / RMSE, averaged over folds."""
        if split == "train":
            return super().evaluate(model, split, batches, device)
        per_fold = [self._fold_metrics(k, out) for k, out in enumerate(self.fold_predictions(model))]
        if self.table.target_is_categorical:
            return {f"{split}_loss": float(np.mean([m["nll"] for m in per_fold])),
                    f"{split}_acc": float(np.mean([m["accuracy"] for m in per_fold]))}
        mse = [(m["rmse"] / self.target_std[k]) ** 2 for k, m in enumerate(per_fold)]
        return {f"{split}_loss": float(np.mean(mse)), f"{split}_rmse": float(np.mean([m["rmse"] for m in per_fold]))}

    # ---- probes --------------------------------------------------------------------------------
    @torch.no_grad()
    def corruption_probe(self, model: NPTFolds) -> list[torch.Tensor]:
        """Per fold, test outputs when each test row is predicted alone among corrupted rows: every other
        row has each attribute (its value, mask bit and missing flag together) permuted independently.
        One forward pass per test row, so every row of the table costs one pass."""
        device, outs = model_device(model), []
        g = torch.Generator().manual_seed(self.cfg.seed)
        for k, fold_model in enumerate(model.folds):
            values, mask = self._clean_input(k)
            fold_out = []
            for i in self.splits[k][1].tolist():
                v, m = corrupt_other_rows(values, mask, i, g)
                fold_out.append(self._predict_rows(fold_model, v, m, torch.tensor([i]), device))
            outs.append(torch.cat(fold_out))
        return outs

    def _correlation(self, k: int, out: torch.Tensor) -> float:
        """Fold k's correlation of prediction and true target (attnkit.zoo.eval.npt.target_correlation)."""
        t = self.table
        y = t.raw_target[self.splits[k][1]]
        if t.target_is_categorical:
            return target_correlation(out.numpy(), y, t.n_classes)
        return target_correlation(self._unstandardize(k, out.numpy()), y, 0)

    # ---- report ---------------------------------------------------------------------------------
    def _metric_names(self) -> list[str]:
        return ["accuracy", "auroc", "nll"] if self.table.target_is_categorical else ["rmse", "r2"]

    def _metrics_table(self, report: Report, title: str, rows: dict[str, dict[str, dict[str, Any]]]) -> None:
        names = self._metric_names()
        report.table(title, metrics_header(names), metrics_rows(rows, names))

    def report(self, model: nn.Module, run_dir: Path) -> Report:
        """NPT beside the baselines on the same folds, the probe's results; predictions.csv, cv_metrics.json."""
        start = time.time()
        run_dir, t, npt_name = Path(run_dir), self.table, f"NPT ({self.cfg.flavor})"
        outs = self.fold_predictions(model)
        rows = {npt_name: mean_std([self._fold_metrics(k, out) for k, out in enumerate(outs)])}
        report = Report(metrics={"data": t.name, "target": t.columns[t.target], "rows": t.n, "attributes": t.d,
                                 "folds": len(self.splits), "npt": rows[npt_name]})
        summary = report.metrics
        if self.opts.probe == "lookup":
            corr = mean_std([{"c": self._correlation(k, out)} for k, out in enumerate(outs)])["c"]
            summary["lookup"] = {"target_shift": self.opts.target_shift or 0.0, "correlation": corr}
            report.line(f"lookup probe (target shift {summary['lookup']['target_shift']:g}): correlation of "
                        f"prediction and true target {corr['mean']:.4f} ± {corr['std']:.4f}")
        baseline = {name: mean_std(folds) for name, folds in sklearn_baselines(t, self.splits, self.cfg.seed).items()}
        rows.update(baseline)
        summary["baselines"] = baseline
        self._metrics_table(report, f"{t.name}: {len(self.splits)}-fold CV, target {t.columns[t.target]!r}"
                            + (" (NPT with lookup duplicates)" if self.opts.probe == "lookup" else ""), rows)
        if self.opts.probe == "corruption":
            clean = rows[npt_name]
            bad = mean_std([self._fold_metrics(k, out) for k, out in enumerate(self.corruption_probe(model))])
            drop = {n: clean[n]["mean"] - bad[n]["mean"] for n in self._metric_names()}
            summary["corruption"] = {"corrupted": bad, "drop": drop}
            self._metrics_table(report, "corruption probe: each test row predicted among corrupted rows",
                                {"NPT, clean": clean, "NPT, other rows corrupted": bad})
            report.line("drop (clean − corrupted): " + ", ".join(f"{n} {v:+.4f}" for n, v in drop.items()))
        write_predictions(run_dir / "predictions.csv", t, self.splits, outs, self._decode, self._decode_output)
        report.file("every row's out-of-fold prediction", run_dir / "predictions.csv")
        summary["report_s"] = round(time.time() - start, 1)
        atomic_write(run_dir / "cv_metrics.json", json.dumps(summary, indent=1))
        return report

    def _decode(self, k: int, raw: float) -> str:
        t = self.table
        return t.categories[t.target][int(raw)] if t.target_is_categorical else f"{raw:.4g}"

    def _decode_output(self, k: int, out: torch.Tensor) -> str:
        t = self.table
        if t.target_is_categorical:
            return t.categories[t.target][int(out.argmax())]
        return f"{float(self._unstandardize(k, out.numpy())):.4g}"

    # ---- sampling ---------------------------------------------------------------------------------
    def sample(self, model: nn.Module, cfg: SampleConfig, echo: Echo) -> Report:
        """Fold 0's test-row predictions (`--num-samples` rows, at least 10) and the CV metrics table."""
        t = self.table
        outs = self.fold_predictions(model)
        limit = max(cfg.num_samples, 10)
        shown = []
        for row, o in list(zip(self.splits[0][1].tolist(), outs[0]))[:limit]:
            last = (f"{float(o.max()):.3f}" if t.target_is_categorical
                    else f"{float(self._unstandardize(0, o.numpy())) - t.raw_target[row]:+.4g}")
            shown.append([str(row), self._decode(0, t.raw_target[row]), self._decode_output(0, o), last])
        report = Report()
        report.table(f"{t.name}: predictions for fold 0's test rows (trained without their targets)",
                     ["row", "true", "predicted", "confidence" if t.target_is_categorical else "error"], shown)
        n_test = len(self.splits[0][1])
        if n_test > limit:
            report.line(f"… {n_test - limit} more rows in fold 0; every row's out-of-fold prediction: "
                        f"predictions.csv in the run directory")
        npt = mean_std([self._fold_metrics(k, out) for k, out in enumerate(outs)])
        rows = {f"NPT ({self.cfg.flavor})": npt}
        saved = Path(cfg.run) / "cv_metrics.json"
        if saved.is_file():
            rows.update(json.loads(saved.read_text()).get("baselines", {}))
        self._metrics_table(report, f"{t.name}: {len(self.splits)}-fold CV", rows)
        report.metrics["npt"] = npt
        return report
