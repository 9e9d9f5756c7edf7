"""`--model icl`: in-context linear regression (Garg et al. 2022) beside least squares and friends.

Each training sequence is a fresh random function (`attnkit.zoo.data.icl`); the decoder (`attnkit.zoo.models.icl`)
predicts f(x_i) after every x_i from the pairs before it, with a mean-squared loss divided by the live
dimension. A curriculum grows the live dimension and the prompt length during training. `report()` scores
the transformer and the baselines on the same 1,280 test prompts (`attnkit.zoo.eval.icl`), adds the
out-of-distribution probes and Akyürek et al.'s agreement probe (which algorithm the predictions follow),
prints the tables and writes error_by_k.png and agreement_by_k.png; `attnkit sample`
does the same from a run directory, or answers a prompt given as "x=y; x=y; …; x_query".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from attnkit.config import SampleConfig, TrainConfig
from attnkit.zoo.data.icl import (PROBES, Curriculum, Prompts, check_function, check_loss_weight, exact_from,
                                  ood_prompts, parse_prompt, position_weights, sample_prompts)
from attnkit.errors import UserError
from attnkit.zoo.eval.icl import (ALGORITHMS, agreement_by_k, agreement_crossover, agreement_rows,
                                  algorithm_predictions, baseline_predictions, baselines_for, error_by_k, error_rows,
                                  error_standard_error, evaluate_all, fit_algorithms, model_predictions,
                                  plot_agreement_by_k, plot_error_by_k, probe_rows)
from attnkit.zoo.models.icl import ICLConfig, ICLTransformer
from attnkit.nn.modes import model_device
from attnkit.zoo.report import Echo, Report, Table
from attnkit.zoo.tasks.base import Flavor, Task
from attnkit.zoo.tasks.sample_options import ICLSampleOptions

TEST_PROMPTS, VAL_PROMPTS, TEST_SEED, VAL_SEED = 1280, 256, 2022, 7
FIT_PROMPTS, FIT_SEED = 2048, 11  # training-distribution prompts that fit the agreement probe's GD step and α


@dataclass
class ICLOptions:
    function: str = field(default="linear", metadata={"help": "function class: linear or sparse_linear"})
    sparsity: int = field(default=3, metadata={"help": "sparse_linear: non-zero weights per function"})
    loss_weight: str = field(default="uniform", metadata={
        "help": "uniform; inverse_ls: each prediction's squared error over least squares' expected error there; "
                "inverse_optimal: over the Bayes-optimal predictor's (0 from sparsity + 1 points for sparse_linear)"})
    weight_from: int = field(default=0, metadata={
        "help": "optimizer step from which loss_weight applies; the loss is uniform before it"})


@dataclass(frozen=True)
class ICLSettings:
    """What a flavor fixes: the curriculum (live dims and points start small and grow every `interval` steps)
    and how many prompts the test averages over."""
    curriculum: Curriculum
    test_prompts: int = TEST_PROMPTS


class ICLTask(Task):
    name = "icl"
    default_flavor = "small"
    Options = ICLOptions
    # small: issue 25's ablation (docs/zoo/icl.md): y through its own read-in, batch 128 (64 stalled a seed in
    # three), cosine to 0. Depth sets k = 7 (1.59x least squares at 4 layers, 1.35x at 8), so 10 layers with a 2x
    # MLP, a step as long as 8 with a 4x MLP (1.14x against 1.26x on a seed). The loss weighted by least squares'
    # expected error helps further but stalls some seeds from step 0, hence weight_from; lr 2e-3 and up needs the
    # 2,000-step warmup (with 500 it stalled a seed); 3e-3 beat 1e-3, 2e-3 and 4e-3 on the seed that lagged.
    flavors = {
        "debug": Flavor(
            model=dict(n_dims=4, n_points=9, n_layer=1, n_head=2, n_embd=32, mlp_ratio=2, dropout=0.0),
            train=dict(max_steps=30, batch_size=32, lr=1e-3, warmup_steps=3, schedule="cosine", beta2=0.99,
                       weight_decay=0.0, eval_interval=15, eval_batches=1),
            fixed=ICLSettings(Curriculum(d_start=2, n_start=5, interval=5), test_prompts=64),
        ),
        "small": Flavor(
            model=dict(n_dims=8, n_points=17, n_layer=10, n_head=2, n_embd=64, mlp_ratio=2, dropout=0.0,
                       y_token="own"),
            train=dict(max_steps=10000, batch_size=128, lr=3e-3, min_lr=0.0, warmup_steps=2000, schedule="cosine",
                       beta2=0.99, weight_decay=0.0, eval_interval=1000, eval_batches=1),
            options=dict(loss_weight="inverse_ls", weight_from=2000),
            fixed=ICLSettings(Curriculum(d_start=2, n_start=5, interval=200)),
        ),
    }

    def __init__(self, cfg: TrainConfig, opts=None):
        super().__init__(cfg, opts)
        check_function(self.opts.function)
        check_loss_weight(self.opts.loss_weight)
        if self.opts.sparsity < 1:
            raise UserError(f"sparsity must be at least 1, got {self.opts.sparsity}")
        if self.opts.weight_from < 0:
            raise UserError(f"weight_from must be a step ≥ 0, got {self.opts.weight_from}")
        fixed: ICLSettings = self.flavor.fixed
        self.curriculum, self.n_test = fixed.curriculum, fixed.test_prompts
        self.d, self.n = self.flavor.model["n_dims"], self.flavor.model["n_points"]
        self._train_batches = 0  # the curriculum's clock: optimizer step = batches // grad_accum

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        return ICLTransformer(ICLConfig(**model_config))

    def _prompts(self, batch: int, seed_or_gen, d_active: int | None = None, n: int | None = None) -> Prompts:
        g = seed_or_gen if isinstance(seed_or_gen, torch.Generator) else torch.Generator().manual_seed(seed_or_gen)
        return sample_prompts(self.opts.function, batch, self.d, n or self.n, g, d_active=d_active,
                              sparsity=self.opts.sparsity)

    # ---- training ------------------------------------------------------------------------
    def prepare(self, run_dir: Path) -> None:
        """Nothing to load: prompts are drawn fresh. On --resume the curriculum resumes at the checkpoint."""
        if self.cfg.resume:
            self._train_batches = self.resume_step * self.cfg.grad_accum

    def optimizer_step(self) -> int:
        """The optimizer step the next training batch belongs to."""
        return self._train_batches // self.cfg.grad_accum

    def stage(self) -> tuple[int, int]:
        """(live dimensions, prompt points) at the current optimizer step."""
        return self.curriculum.at(self.optimizer_step(), self.d, self.n)

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Prompts and the loss weight of each position: `loss_weight` on held-out batches and from step
        `weight_from` on, uniform before it."""
        if split == "train":
            (d_active, n), weighted = self.stage(), self.optimizer_step() >= self.opts.weight_from
            self._train_batches += 1
        else:
            d_active, n, weighted = self.d, self.n, True
        p = self._prompts(batch_size, generator, d_active, n)
        # (1, n), not (n,): DDP shards every tensor whose first dim is the global batch, which n could equal
        exact = exact_from(self.opts.function, self.opts.sparsity, d_active)
        weights = position_weights(self.opts.loss_weight if weighted else "uniform", d_active, n, exact_from=exact)[None]
        return {"xs": p.xs, "ys": p.ys, "d_active": torch.tensor(float(d_active)), "weights": weights}

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["ys"].numel() * 2  # an x token and a y token per point

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pred = model(batch["xs"], batch["ys"])  # (B, n)
        return ((pred.float() - batch["ys"]).pow(2) * batch["weights"]).mean() / batch["d_active"]  # weights: (1, n)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, batches: int, device: torch.device) -> dict[str, float]:
        """Loss on fixed full-size prompts, and the error/d at k = d and k = n - 1 (the curve's tail)."""
        p = self._prompts(VAL_PROMPTS, VAL_SEED)
        err = error_by_k(model_predictions(model, p, device), p)
        return {f"{split}_loss": sum(err) / len(err), f"{split}_err_k{self.d}": err[self.d],
                f"{split}_err_k{self.n - 1}": err[-1]}

    # ---- results -------------------------------------------------------------------------
    def curves(self, model: nn.Module, device: torch.device) -> dict[str, list[float]]:
        return evaluate_all(model, self._prompts(self.n_test, TEST_SEED), device,
                            baselines_for(self.opts.function, self.opts.sparsity))

    def probes(self, model: nn.Module, device: torch.device) -> dict[str, dict[str, list[float]]]:
        """Garg et al.'s out-of-distribution prompts, the transformer beside least squares."""
        out = {}
        for i, probe in enumerate(PROBES):
            g = torch.Generator().manual_seed(TEST_SEED + 1 + i)
            p = ood_prompts(probe, self.opts.function, self.n_test, self.d, self.n, g, sparsity=self.opts.sparsity)
            out[probe] = {"transformer": error_by_k(model_predictions(model, p, device), p),
                          "least_squares": error_by_k(baseline_predictions("least_squares", p), p)}
        return out

    def agreement(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """Akyürek et al.'s probe on the test prompts: the transformer's squared difference / d to each algorithm."""
        fitted = fit_algorithms(self._prompts(FIT_PROMPTS, FIT_SEED))
        p = self._prompts(self.n_test, TEST_SEED)
        others = {name: algorithm_predictions(name, p, fitted) for name in ALGORITHMS}
        by_k = agreement_by_k(model_predictions(model, p, device), others, self.d)
        return {"by_k": by_k, "crossover_k": agreement_crossover(by_k), "ridge_alpha": fitted["ridge_alpha"],
                "gd_etas": fitted["gd_etas"]}

    def _title(self) -> str:
        fn = "linear" if self.opts.function == "linear" else f"sparse linear ({self.opts.sparsity} non-zero)"
        return f"in-context {fn} regression, d = {self.d}, {self.n_test} test prompts"

    def _curves_and_agreement(self, model: nn.Module, out: Path) -> Report:
        """The error-versus-k table and plot, then the agreement probe's table and plot (written into out)."""
        device = model_device(model)
        errors = self.curves(model, device)
        report = Report({"d": self.d, "error_by_k": errors})
        report.table(f"squared error / d against in-context examples k: {self._title()}",
                     *error_rows(errors, self.d), note="ratio: transformer / least squares "
                                                       "(where least squares is above 0.001)")
        report.metrics["error_by_k_png"] = plot_error_by_k(errors, self.d, out / "error_by_k.png", self._title())
        agreement = self.agreement(model, device)
        report.table("which algorithm? squared difference / d between the transformer and each (* closest)",
                     *agreement_rows(agreement["by_k"], self.d),
                     note=f"GD step size fitted per k, ridge α = {agreement['ridge_alpha']:g} fitted; closer to "
                          f"least squares than to one GD step from k = {agreement['crossover_k']}")
        png = plot_agreement_by_k(agreement["by_k"], self.d, out / "agreement_by_k.png",
                                  f"agreement with candidate algorithms: {self._title()}")
        report.metrics.update({"agreement_by_k": agreement["by_k"], "agreement_crossover_k": agreement["crossover_k"],
                               "agreement_by_k_png": png,
                               "agreement_fitted": {"ridge_alpha": agreement["ridge_alpha"],
                                                    "gd_etas": agreement["gd_etas"]}})
        report.file("error-versus-k plot", report.metrics["error_by_k_png"])
        report.file("agreement plot", png)
        return report

    def report(self, model: nn.Module, run_dir: Path) -> Report:
        report = self._curves_and_agreement(model, Path(run_dir))
        probes = self.probes(model, model_device(model))
        report.tables.insert(1, Table("out-of-distribution prompts: squared error / d, transformer vs least squares",
                                      *probe_rows(probes, self.d, self.n)))  # after the error table
        tf, ls = report.metrics["error_by_k"]["transformer"], report.metrics["error_by_k"]["least_squares"]
        below_d = [tf[k] / ls[k] for k in range(1, self.d)]
        k_2d, p = min(2 * self.d, self.n - 1), self._prompts(self.n_test, TEST_SEED)
        se = error_standard_error(model_predictions(model, p, model_device(model)), p, k_2d)
        report.line(f"error / d at k = {k_2d}: {tf[k_2d]:.4f} ± {se:.4f} (standard error over {self.n_test} prompts)")
        report.metrics.update({"n_points": self.n, "function": self.opts.function, "ood": probes,
                               "max_ratio_to_least_squares_below_d": max(below_d, default=float("nan")),
                               "error_at_2d": tf[k_2d], "error_at_2d_se": se})
        return report

    # ---- sampling ------------------------------------------------------------------------
    SampleOptions = ICLSampleOptions
    def sample(self, model: nn.Module, cfg: SampleConfig, echo: Echo) -> Report:
        """With --prompt, answer it; else the error-versus-k and agreement tables, error_by_k.png and
        agreement_by_k.png."""
        prompt = self.sample_options(cfg).prompt
        if prompt:
            return self._answer(model, prompt)
        out = Path(cfg.out or cfg.run)
        out.mkdir(parents=True, exist_ok=True)
        report = self._curves_and_agreement(model, out)
        del report.metrics["agreement_fitted"]  # sample's result keeps its keys of before
        return report

    def parse_prompt(self, text: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return parse_prompt(text, self.d, self.n)

    def _answer(self, model: nn.Module, text: str) -> Report:
        xs, ys, query = self.parse_prompt(text)
        k = xs.shape[1] - 1
        device = model_device(model)
        pred = model(xs.to(device), ys.to(device))[0, -1].item()
        p = Prompts(xs, ys, ys)
        ls = baseline_predictions("least_squares", p)[0, -1].item() if k else 0.0
        report = Report({"prediction": pred, "least_squares": ls, "k": k})
        report.line(f"f(query) from {k} examples: transformer {pred:.4f}, least squares {ls:.4f}")
        return report
