"""NPT's semi-synthetic lookup experiment (Kossen et al. 2021, §4.1): can the model look a row's answer up
in its duplicate?

`--model npt --opt probe=lookup` without `--data` (flavor "lookup" by default). Data: 10k Friedman #1 rows,
each with a duplicate (attnkit.zoo.data.lookup), one train/test split (the probe needs no CV, and one
model trains faster). Training batches hold row pairs: the original's target is masked and scored, the
duplicate shows it. Evaluation: the clean target MSE (standardized) and the lookup correlation after an
intervention on the duplicates' targets. The report adds the corruption probe, a features-only
gradient-boosting baseline, the datapoint-attention picture (attnkit.zoo.eval.npt_lookup) and the
evaluation at which lookup first appeared; `sample` shows the same again.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from attnkit.config import SampleConfig
from attnkit.errors import UserError
from attnkit.fsio import atomic_write
from attnkit.nn.modes import model_device
from attnkit.zoo.data.lookup import LOOKUP_NOISE, LOOKUP_TEST_SHARE, friedman_table, lookup_batch
from attnkit.zoo.eval.npt_lookup import lookup_onset, lookup_report, lookup_validation
from attnkit.zoo.report import Echo, Report
from attnkit.zoo.tasks.npt_base import NPTBase

VALIDATION_ROWS = 256  # test rows scored at every evaluation during training


class NPTLookupTask(NPTBase):
    def __init__(self, cfg, opts=None):
        super().__init__(cfg, opts)
        if self.opts.noise is not None and self.opts.noise < 0:
            raise UserError(f"noise must be ≥ 0, got {self.opts.noise:g}")

    def prepare(self, run_dir: Path) -> None:
        # Unset in runs saved before the option existed: they were trained at noise 3.
        table = friedman_table(noise=LOOKUP_NOISE if self.opts.noise is None else self.opts.noise)
        order = np.random.default_rng(self.cfg.seed).permutation(table.n)
        n_test = int(round(LOOKUP_TEST_SHARE * table.n))
        self.save_data(table, [(np.sort(order[n_test:]), np.sort(order[:n_test]))], run_dir)

    def _pairs(self) -> int:
        """Originals per batch (each comes with its duplicate)."""
        return max((self.cfg.batch_size or 64) // 2, 1)

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """B/2 training rows, targets masked, and their duplicates, targets shown; each (1, B, d)."""
        pool = torch.as_tensor(self.splits[0][0])
        return lookup_batch(self.values[0], pool, self.table.n, self.table.target, max(batch_size // 2, 1),
                            generator)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, batches: int, device: torch.device) -> dict[str, float]:
        """"train": the objective on fixed batches. Otherwise: the clean target MSE (standardized) and the
        lookup correlation on the first 256 test rows."""
        if split == "train":
            return super().evaluate(model, split, batches, device)
        rows = torch.as_tensor(self.splits[0][1][:VALIDATION_ROWS])
        mse, corr = lookup_validation(model.folds[0], self.values[0], rows, self.table.n, self.table.target,
                                      self._pairs(), device)
        return {f"{split}_loss": mse, f"{split}_lookup_corr": corr}

    def _probe(self, model: nn.Module, out_dir: Path) -> Report:
        train_rows, test_rows = (torch.as_tensor(r) for r in self.splits[0])
        t = self.table
        probe = lookup_report(model.folds[0], self.values[0], t.n, t.target, train_rows, test_rows, self._pairs(),
                              model_device(model), t.features(), t.raw_target, out_dir, self.cfg.seed)
        history = Path(out_dir) / "metrics.jsonl"  # the run's evaluations: when did lookup appear?
        if history.is_file():
            metrics = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
            probe.metrics["lookup_onset_step"] = lookup_onset(metrics)
        return Report(metrics={"data": t.name, "rows": t.n, "attributes": t.d}).extend(probe)

    def report(self, model: nn.Module, run_dir: Path) -> Report:
        """The lookup, corruption and baseline table and the attention picture; lookup_metrics.json."""
        start = time.time()
        report = self._probe(model, Path(run_dir))
        report.metrics["report_s"] = round(time.time() - start, 1)
        atomic_write(Path(run_dir) / "lookup_metrics.json", json.dumps(report.metrics, indent=1))
        return report

    def sample(self, model: nn.Module, cfg: SampleConfig, echo: Echo) -> Report:
        """The lookup probes and the datapoint-attention picture again (the picture into --out, default the run)."""
        out = Path(cfg.out or cfg.run)
        out.mkdir(parents=True, exist_ok=True)
        return self._probe(model, out)
