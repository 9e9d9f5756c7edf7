"""The GPT speedrun's measure: nanoGPT's own train.py against `attnkit train`, each a fresh timed process, every
checkpoint re-scored the same way afterwards. `attnkit reproduce --model gpt` (its arms with a "runner") and
benchmarks/speedrun.py (with its ablations) both run through here.

nanoGPT's train.py is karpathy/nanoGPT at commit 3adf61e, vendored unmodified in vendor/nanogpt/ (package data,
MIT). It runs with its README's CPU command (config/train_shakespeare_char.py, 4 layers × 4 heads × 128, block
64, batch 12, 2000 iterations, eval every 250 on 20 batches) on our GPT task's own train/val split, written as its
char-level train.bin/val.bin/meta.pkl (like its data/shakespeare_char/prepare.py). It has no seed knob
(torch.manual_seed(1337)): every run follows the same curve; only its time varies.

Every arm runs with OMP_NUM_THREADS=threads (1 by default) and is timed the same way: seconds since its process
started, read when it prints an eval line (imports and start-up count). Two losses per eval row:

    val_loss        the arm's own eval as it printed it (nanoGPT: 20 random batches of 12 × 64; ours: the
                    flavor's fixed eval batches at its block size)
    common_loss     the checkpoint re-evaluated afterwards on the same text: the whole val split cut into
                    consecutive COMMON_BLOCK-token windows (nanoGPT's block; the model's context where that is
                    shorter, the debug flavors), each token predicted from the tokens before it in its window

The speedup of an arm over the baseline: the baseline's wall at its final eval / the arm's time to the
baseline's final loss, read at eval rows (an upper bound on the time by at most one eval interval, so the
speedup is a lower bound).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import pickle
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from attnkit.errors import UserError

if TYPE_CHECKING:
    from attnkit.results.reproduce import Job

NANOGPT = Path(__file__).resolve().parent / "vendor" / "nanogpt"
# nanoGPT's README, "I only have a macbook": its CPU command, run from its folder.
NANOGPT_RECIPE = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
                  "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
                  "--n_embd=128", "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0"]
# Later arguments win (its configurator applies them in order): the same recipe in seconds, for tests.
NANOGPT_DEBUG = ["--max_iters=4", "--lr_decay_iters=4", "--eval_interval=2", "--eval_iters=2", "--block_size=32",
                 "--batch_size=4", "--n_layer=1", "--n_embd=32"]
NANOGPT_STEPS, NANOGPT_EVAL_INTERVAL = 2000, 250
NANOGPT_EVAL = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")
OURS_EVAL = re.compile(r"^step\s+\d+\s")  # attnkit train's eval row
COMMON_BLOCK = 64  # the common eval's windows: nanoGPT's block size
THREADS = 1  # OMP_NUM_THREADS of every arm (on a busy shared machine two threads spin and run far slower)


def run_timed(args: list[str], log: Path, threads: int, cwd: Path | None = None,
              unset: tuple[str, ...] = ()) -> list[tuple[float, str]]:
    """Run a process (its output into `log`, without the environment variables `unset`); each line it printed,
    with the seconds since it started."""
    unset = ("TRITON_INTERPRET", *unset)  # the CPU path is torch
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", COLUMNS="200")
    lines = []
    t0 = time.perf_counter()
    with log.open("w") as f, subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))
            f.write(line)
    if proc.returncode:
        raise UserError(f"{args[1]} exited with status {proc.returncode}; its output is in {log}")
    return lines


@torch.no_grad()
def common_loss(model: torch.nn.Module, val: torch.Tensor, block: int) -> float:
    """Mean next-token loss over the whole val split in consecutive windows of min(COMMON_BLOCK, block) tokens
    (model(x, y) → (logits, loss), as nanoGPT's GPT and ours both are)."""
    T = min(COMMON_BLOCK, block)
    n = (len(val) - 1) // T
    x = val[: n * T].view(n, T)  # (N, T)
    y = val[1: n * T + 1].view(n, T)  # (N, T)
    return float(model(x, y)[1])


def gpt_split(out: Path):
    """Our GPT task's tokenizer and train/val token ids (what `attnkit train --model gpt` trains and evaluates on)."""
    from attnkit.config import TrainConfig
    from attnkit.engine.resolve import resolve_config
    from attnkit.zoo.tasks.gpt import GPTTask

    task = GPTTask(resolve_config(TrainConfig(model="gpt", flavor="demo", out=str(out))))
    out.mkdir(parents=True, exist_ok=True)
    task.prepare(out)
    return task.tokenizer, task.data


def attnkit_command(args: list[str], out: Path, seed: int) -> list[str]:
    """`attnkit train --model gpt ARGS` into `out`, keeping every step checkpoint for the re-scoring."""
    return ["-m", "attnkit.cli", "train", "--model", "gpt", *args, "--out", str(out), "--overwrite", "--seed",
            str(seed), "--device", "cpu", "--keep-last", "1000000"]


def train_ours(args: list[str], out: Path, seed: int, threads: int, log: Path, val: torch.Tensor) -> list[dict]:
    """One `attnkit train` arm: its eval rows (step, val_loss, wall_s since the process started, common_loss)."""
    from attnkit.engine.checkpoint import load_weights, step_checkpoints
    from attnkit.engine.sample import load_run

    lines = run_timed([sys.executable, *attnkit_command(args, out, seed)], log, threads)
    rows = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "val_loss" in r]
    # wall_s counts from the trainer's start; shift it to the process's start, as nanoGPT's is timed.
    startup = next(t for t, line in lines if OURS_EVAL.match(line)) - rows[0]["wall_s"]
    run = load_run(out)
    common = {}
    for step, weights in step_checkpoints(out):
        load_weights(run.model, weights)
        common[step] = common_loss(run.model, val, run.config.block_size)
    return [dict(step=r["step"], val_loss=r["val_loss"], wall_s=round(r["wall_s"] + startup, 3),
                 common_loss=common.get(r["step"])) for r in rows]


def nanogpt_command(out: Path, extra: list[str] = ()) -> list[str]:
    """nanoGPT's train.py arguments: its README's CPU recipe (then `extra`) on the data in OUT/data. Two
    overrides, neither touching training: its data dir is os.path.join('data', dataset), so an absolute path picks
    ours; every eval saves ckpt.pt, so it ends as its final model."""
    return ["train.py", *NANOGPT_RECIPE, f"--dataset={out.resolve() / 'data'}", f"--out_dir={out.resolve()}",
            "--always_save_checkpoint=True", *extra]


def train_nanogpt(out: Path, threads: int, log: Path, tokenizer, data, extra: list[str] = ()) -> list[dict]:
    """nanoGPT's train.py on our split: its eval rows (step, val_loss as it printed it, wall_s since its process
    started), the last with common_loss, its final checkpoint's."""
    dataset = out / "data"
    dataset.mkdir(parents=True, exist_ok=True)
    for split, ids in data.items():  # like nanoGPT's data/shakespeare_char/prepare.py
        ids.numpy().astype(np.uint16).tofile(dataset / f"{split}.bin")
    chars = tokenizer.chars
    meta = dict(vocab_size=len(chars), itos=dict(enumerate(chars)), stoi={c: i for i, c in enumerate(chars)})
    (dataset / "meta.pkl").write_bytes(pickle.dumps(meta))
    # its train.py imports its model.py from the script's folder, which PYTHONSAFEPATH would keep off sys.path
    lines = run_timed([sys.executable, *nanogpt_command(out, extra)], log, threads, cwd=NANOGPT,
                      unset=("PYTHONSAFEPATH",))
    rows = [dict(step=int(m[1]), val_loss=float(m[3]), wall_s=round(t, 3))
            for t, line in lines if (m := NANOGPT_EVAL.match(line))]
    spec = importlib.util.spec_from_file_location("nanogpt_model", NANOGPT / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ckpt = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=True)
    model = module.GPT(module.GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    rows[-1]["common_loss"] = common_loss(model.eval(), data["val"], ckpt["model_args"]["block_size"])
    return rows


def time_to(rows: list[dict], target: float, key: str) -> float | None:
    """wall_s of the first eval row whose `key` loss is at or below target (None if never)."""
    return next((r["wall_s"] for r in rows if r.get(key) is not None and r[key] <= target), None)


def speedup(baseline: list[dict], rows: list[dict], key: str = "common_loss") -> float | None:
    """The baseline's wall at its final eval over the arm's time to the baseline's final `key` loss (None if the
    arm never reached it)."""
    reached = time_to(rows, baseline[-1][key], key)
    return baseline[-1]["wall_s"] / reached if reached else None


# ---- `attnkit reproduce`'s arms that run here ------------------------------------------------------
@dataclasses.dataclass
class Timed:
    """One arm's result as reproduce keeps it."""
    summary: dict[str, Any]
    curve: list[dict]             # its eval rows: step, wall_s, val_loss, common_loss
    command: str                  # what ran, as a shell line


def _shell(args: list[str], cwd: Path | None = None) -> str:
    line = f"OMP_NUM_THREADS={THREADS} python {shlex.join(args)}"
    return f"cd {shlex.quote(str(cwd))} && {line}" if cwd else line


def reproduce_attnkit(job: Job, log: Path) -> Timed:
    """Our trainer as the benchmark times it: `attnkit train` with the job's flavor and options, a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        _, data = gpt_split(Path(tmp))
    curve = train_ours(job.train_args, job.run_dir, job.seed, THREADS, log, data["val"])
    summary = {**json.loads((job.run_dir / "summary.json").read_text()), "common_loss": curve[-1]["common_loss"]}
    return Timed(summary, curve, _shell(attnkit_command(job.train_args, job.run_dir, job.seed)))


# nanoGPT's arguments under our flavor: the demo flavor re-implements its README's CPU recipe.
NANOGPT_FLAVORS = {"demo": [], "debug": NANOGPT_DEBUG}


def reproduce_nanogpt(job: Job, log: Path) -> Timed:
    """nanoGPT's train.py with its recipe for the job's flavor (its options are ours: none apply). It has no
    seed knob: every seed's run is the same but for its time."""
    extra = NANOGPT_FLAVORS[job.flavor]
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, data = gpt_split(Path(tmp))
    curve = train_nanogpt(job.run_dir, THREADS, log, tokenizer, data, extra)
    final = curve[-1]
    summary = dict(steps=final["step"], val_loss=final["val_loss"], common_loss=final["common_loss"],
                   wall_s=final["wall_s"])
    return Timed(summary, curve, _shell(nanogpt_command(job.run_dir, extra), cwd=NANOGPT))


@dataclasses.dataclass(frozen=True)
class Runner:
    what: str                               # what runs, in words
    run: Callable[[Job, Path], Timed]       # (job, its log) -> its result
    flavors: tuple[str, ...] | None = None  # the flavors it runs; None: every one of the model's


# name -> how such an arm runs (a ModelSpec arm names one with "runner").
RUNNERS: dict[str, Runner] = {
    "attnkit": Runner("`attnkit train` in a timed process of its own", reproduce_attnkit),
    "nanogpt": Runner("nanoGPT's own train.py", reproduce_nanogpt, tuple(NANOGPT_FLAVORS)),
}
# What a runner arm's result depends on, beyond its model's sources: this file and nanoGPT's.
SOURCES = (Path(__file__).resolve(), *sorted(p for p in NANOGPT.rglob("*") if p.is_file() and p.suffix != ".pyc"))
