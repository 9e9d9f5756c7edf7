"""Train every arm of a model on N seeds through the trainer, keep each (arm, seed) row in
docs/results/<model>.json, and evaluate the model's claims over the seeds.

Resumable: a row is kept while the hash of the code it depends on (sources.code_hash) and its flavor are
unchanged, so `attnkit reproduce --all` after an interruption or a code change trains only what is missing
or stale. The JSON is rewritten (atomically) after every row. Nothing here prints: the CLI shows progress.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from attnkit.config import TrainConfig
from attnkit.errors import UserError
from attnkit.fsio import atomic_write
from attnkit.results.claims import SPECS, Claim, ModelSpec, value
from attnkit.results.sources import PACKAGE, code_hash
from attnkit.results.speedrun import RUNNERS
from attnkit.zoo.tasks import get_task


@dataclasses.dataclass
class Job:
    model: str
    arm: str
    seed: int
    flavor: str
    options: dict[str, Any]
    run_dir: Path
    kept: bool                    # a row with the current code and flavor exists: nothing to train
    runner: str | None = None     # None: our trainer, in this process; else a RUNNERS name (its own process)

    @property
    def train_args(self) -> list[str]:
        """The flavor and options as `attnkit train` arguments."""
        return ["--flavor", self.flavor, *(a for k, v in self.options.items() for a in ("--opt", f"{k}={v}"))]

    @property
    def command(self) -> str:
        """The in-process run as a command line (a runner's row keeps the command it ran)."""
        return shlex.join(["attnkit", "train", "--model", self.model, *self.train_args, "--seed", str(self.seed),
                           "--out", str(self.run_dir), "--overwrite"])


# What `reproduce` itself writes: a difference there does not make the measured code dirty.
GENERATED = (":(top,exclude)docs/results", ":(top,exclude)README.md")


def git_commit() -> str:
    """HEAD of the checkout attnkit runs from, "+dirty" when tracked files other than the generated results
    differ from it; "unknown" outside git."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=30)
    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode != 0:
            return "unknown"
        clean = git("diff", "--quiet", "HEAD", "--", ":(top)", *GENERATED).returncode == 0
        return head.stdout.strip() + ("" if clean else "+dirty")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, {device}, torch {torch.__version__}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


@dataclasses.dataclass
class Reproduction:
    results_dir: Path = Path("docs/results")
    runs_dir: Path = Path("runs/reproduce")
    seeds: int = 3
    flavor: str | None = None     # every arm's flavor (debug for tests); None: each arm's own / the default

    # ---- files ---------------------------------------------------------------------------------
    def stem(self, model: str) -> str:
        """docs/results/<stem>.json: the model's name for its default flavors, model-FLAVOR otherwise."""
        return model if self.flavor is None else f"{model}-{self.flavor}"

    def json_path(self, model: str) -> Path:
        return self.results_dir / f"{self.stem(model)}.json"

    def load(self, model: str) -> dict[str, Any]:
        path = self.json_path(model)
        return json.loads(path.read_text()) if path.is_file() else {"model": model, "rows": []}

    # ---- planning ------------------------------------------------------------------------------
    def arm_flavor(self, spec: ModelSpec, arm: str) -> str:
        return self.flavor or spec.arms[arm].get("flavor") or get_task(spec.model).default_flavor

    def jobs(self, model: str) -> list[Job]:
        """Every (arm, seed) of the model, each marked kept if its row is current."""
        if model not in SPECS:
            raise UserError(f"unknown model {model!r}; choose from {', '.join(SPECS)}")
        spec, current = SPECS[model], code_hash(model)
        rows = {(r["arm"], r["seed"]): r for r in self.load(model)["rows"]}
        out = []
        for seed in range(self.seeds):
            for arm, overrides in spec.arms.items():
                flavor = self.arm_flavor(spec, arm)
                if flavor not in get_task(model).flavors:
                    raise UserError(f"model {model} has no flavor {flavor!r}; choose from "
                                    f"{', '.join(get_task(model).flavors)}")
                runner = RUNNERS.get(overrides.get("runner"))
                if runner is not None and runner.flavors is not None and flavor not in runner.flavors:
                    raise UserError(f"the {arm} arm of {model} ({runner.what}) runs flavor "
                                    f"{' or '.join(runner.flavors)}, not {flavor!r}")
                row = rows.get((arm, seed))
                out.append(Job(model, arm, seed, flavor, dict(overrides.get("options", {})),
                               self.runs_dir / self.stem(model) / arm / f"seed{seed}",
                               kept=bool(row and row["code_hash"] == current and row["flavor"] == flavor),
                               runner=overrides.get("runner")))
        return out

    # ---- running -------------------------------------------------------------------------------
    def run(self, job: Job) -> dict[str, Any]:
        """Train one (arm, seed) and store its row; returns the row. The trainer's output (a runner's process's)
        goes to RUN_DIR.log."""
        job.run_dir.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        # The new log replaces the old one only with the run it describes: a failed or interrupted run
        # leaves the kept run directory and its log as they were, and its own log beside them (.log.new).
        log_path = job.run_dir.with_suffix(".log")
        new_log = log_path.with_suffix(".log.new")
        summary, curve, command = self._train(job, new_log)
        atomic_write(log_path, new_log.read_bytes())
        new_log.unlink()
        row = {"arm": job.arm, "seed": job.seed, "flavor": job.flavor, "options": job.options,
               "code_hash": code_hash(job.model), "command": command,
               "wall_s": round(time.perf_counter() - t0, 1),
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "machine": machine(), "commit": git_commit(), "run_dir": str(job.run_dir),
               "summary": summary, "curve": curve}
        data = self.load(job.model)
        data["rows"] = [r for r in data["rows"] if (r["arm"], r["seed"]) != (job.arm, job.seed)] + [row]
        data["rows"].sort(key=lambda r: (r["seed"], r["arm"]))
        self.results_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.json_path(job.model), json.dumps(data, indent=1, default=str))
        return row

    @staticmethod
    def _train(job: Job, log_path: Path) -> tuple[dict[str, Any], list[dict], str]:
        """(summary, curve: the eval rows, command) of one run: in this process through the trainer, or by the
        arm's runner (attnkit.results.speedrun: a timed process of its own, its output into log_path)."""
        if job.runner is not None:
            timed = RUNNERS[job.runner].run(job, log_path)
            return timed.summary, timed.curve, timed.command
        from attnkit.engine.trainer import run_training

        cfg = TrainConfig(model=job.model, flavor=job.flavor, seed=job.seed, options=job.options,
                          out=str(job.run_dir), overwrite=True)
        with open(log_path, "w") as log:
            result = run_training(cfg, console=Console(file=log, width=120))
        curve = [{k: m[k] for k in ("step", "wall_s", "val_loss") if k in m} for m in result.metrics if "val_loss" in m]
        return result.summary, curve, job.command

    # ---- evaluating ----------------------------------------------------------------------------
    def evaluate(self, model: str) -> dict[str, Any]:
        """The model's claims over the current rows of the requested seeds; written into its JSON."""
        spec, data = SPECS[model], self.load(model)
        current = {(j.arm, j.seed) for j in self.jobs(model) if j.kept}
        by_seed: dict[int, dict[str, dict]] = {}
        for r in data["rows"]:
            if (r["arm"], r["seed"]) in current:
                by_seed.setdefault(r["seed"], {})[r["arm"]] = {**r["summary"], "curve": r.get("curve", [])}
        complete = {s: runs for s, runs in sorted(by_seed.items()) if set(runs) == set(spec.arms)}
        data["claims"] = [evaluate_claim(c, complete) for c in spec.claims]
        data["seeds"] = sorted(complete)
        data["wall_s"] = round(sum(r["wall_s"] for r in data["rows"] if (r["arm"], r["seed"]) in current), 1)
        data["command"] = f"attnkit reproduce --model {model} --seeds {self.seeds}" + (
            f" --flavor {self.flavor}" if self.flavor else "")
        atomic_write(self.json_path(model), json.dumps(data, indent=1, default=str))
        return data

    def copy_pictures(self, model: str) -> list[Path]:
        """The main arm's first-seed pictures (PNG files of its run directory) beside the model's results."""
        data = self.load(model)
        first = next((r for r in data["rows"] if r["arm"] == "main"), None)
        if first is None or not Path(first["run_dir"]).is_dir():
            return sorted(self.results_dir.glob(f"{self.stem(model)}-*.png"))  # runs gone: keep the last copies
        out = []
        for png in sorted(Path(first["run_dir"]).glob("*.png")):
            target = self.results_dir / f"{self.stem(model)}-{png.name}"
            atomic_write(target, png.read_bytes())
            out.append(target)
        return out


def evaluate_claim(claim: Claim, runs_by_seed: dict[int, dict[str, dict]]) -> dict[str, Any]:
    """The claim over the seeds: per-seed values (in seed order), mean ± std of metric and baseline, met."""
    seeds = sorted(runs_by_seed)
    values = [value(runs_by_seed[s], claim.metric) for s in seeds]
    bases = [value(runs_by_seed[s], claim.baseline) for s in seeds] if claim.baseline else []
    mean, std = mean_std([v for v in values if v is not None])
    b_mean, b_std = mean_std([v for v in bases if v is not None])
    return {**dataclasses.asdict(claim), "per_seed": values, "mean": mean, "std": std,
            "baseline_per_seed": bases, "baseline_mean": b_mean, "baseline_std": b_std,
            "measured_seeds": sum(v is not None for v in values),
            "met": all(claim.met(v, None) for v in values) if claim.every_seed and values else claim.met(mean, b_mean)}
