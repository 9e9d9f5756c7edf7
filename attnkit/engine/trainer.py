"""The one training loop every model in the zoo uses; the model family plugs in through a `Task`.

    run_training(cfg) = resolve_config → setup → restore (on --resume) → train_step × N, with
                        evaluate_and_checkpoint at step 0, every eval_interval and at the end → finish

Weight EMA (--ema-decay d): after each optimizer step the trainer updates a moving average of the weights,
ema = d·ema + (1−d)·weights (torch's AveragedModel; the first step copies). The average is what validation,
the final report and RUN/model.safetensors use (summary.json says "weights": "ema"); the step checkpoints keep
the trained weights, and their state holds the average, so --resume continues it exactly.

Exact resume: a checkpoint holds the weights, optimizer and grad-scaler state, every rank's RNG states
(torch, CUDA, Python and the data generator), the task's data state (Task.data_state: GPT's packing pool) and
the losses of the unfinished log interval, so `--resume` from step k replays steps k+1.. exactly as an
uninterrupted run would (on CPU, same seed). SIGINT/SIGTERM finish the current step, write such a checkpoint
and raise `Interrupted` (the CLI exits 130).
Several processes (`torchrun`) run DDP or, with --fsdp, FSDP2 (see attnkit.engine.distributed); rank 0 writes
the run directory (see attnkit.engine.rundir for its rules).
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from attnkit.engine import distributed as D
from attnkit.engine.checkpoint import (atomic_write_json, atomic_write_text, average_checkpoints, latest_step,
                                       load_checkpoint, load_weights, save_checkpoint, step_checkpoints)
from attnkit.config import MODES, TrainConfig
from attnkit.engine.device import autocast, resolve_device, resolve_dtype
from attnkit.errors import Interrupted, UserError
from attnkit.engine.optim import lr_at, make_optimizer
from attnkit.engine.render import ProgressBars, format_cell, render
from attnkit.nn.modes import mode
from attnkit.zoo.plots import can_plot, plot_losses
from attnkit.engine.resolve import describe, resolve_config
from attnkit.engine.lock import note, owner_lock
from attnkit.engine.rundir import CONFIG, check_target, point_latest, publish, real_run_dir, staging_dir
from attnkit.zoo.report import Report
from attnkit.zoo.tasks import task_for
from attnkit.zoo.tasks.base import Task


__all__ = ["StepCheckpoints", "TrainResult", "Trainer", "run_training"]


def build_model(task_cls, model_config: dict[str, Any]) -> nn.Module:
    """The task's model. A model config's own check (ValueError from its __post_init__: a size that does not
    divide, an unknown position scheme) comes from the user's flags and options, so it becomes one line."""
    try:
        return task_cls.build_model(model_config)
    except ValueError as e:
        raise UserError(f"these settings build no valid {task_cls.name} model: {e}") from e


def weight_ema(model: nn.Module, decay: float) -> AveragedModel:
    """A moving average of model's parameters, in eval mode: `ema.update_parameters(model)` after each step
    copies them the first time, then sets ema = decay·ema + (1−decay)·param; `ema.module` is the averaged
    model. Buffers follow the model (none of the zoo's are learned)."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay)).eval()


class StepCheckpoints:
    """A run's step checkpoints as a task sees them (`Task.checkpoints`): steps, and their averaged weights."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def steps(self) -> list[int]:
        return [step for step, _ in step_checkpoints(self.run_dir)]

    def load_average(self, model: nn.Module, steps: list[int]) -> None:
        paths = dict(step_checkpoints(self.run_dir))
        with tempfile.TemporaryDirectory() as tmp:
            load_weights(model, average_checkpoints([paths[s] for s in steps], Path(tmp) / "avg.safetensors"))


@dataclass
class TrainResult:
    model: nn.Module           # the trained model (unwrapped from DDP / compile; unsharded on rank 0); with
                               # --ema-decay, the moving average of its weights
    summary: dict[str, Any]    # what summary.json holds
    metrics: list[dict]        # what metrics.jsonl holds
    run_dir: Path


def run_training(cfg: TrainConfig, *, console: Console | None = None, stop_after: int | None = None,
                 config_file: str | None = None) -> TrainResult:
    """Train cfg.model per cfg and write the run directory. Raises UserError for anything the user can fix.

    cfg may be partial: it is resolved (see attnkit.engine.resolve) with `config_file` as the --config TOML.
    stop_after: stop (as if killed) after that many optimizer steps, past the last checkpoint; for tests.
    """
    cfg = resolve_config(cfg, config_file=config_file)
    with D.process_group(cfg.device) as world, owner_lock(real_run_dir(cfg.out), world.is_main):
        trainer = Trainer(cfg, console or Console(), world)
        try:
            trainer.setup()
            with stop_requests() as stop:
                trainer.train(stop, stop_after)
            return trainer.finish(stop_after)
        finally:
            trainer.train_model = None  # the DDP wrapper goes before its process group does


@contextlib.contextmanager
def stop_requests() -> Iterator[list[str]]:
    """A list that SIGINT/SIGTERM append their name to (the loop checks it after each step)."""
    requested: list[str] = []
    previous = {}

    def handler(signum, frame):
        if requested:  # a second Ctrl-C: stop now; the last checkpoint is still intact (atomic writes)
            raise KeyboardInterrupt
        requested.append(signal.Signals(signum).name)

    with contextlib.suppress(ValueError):  # not the main thread: no handlers, Ctrl-C raises as usual
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield requested
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _resume_hint(run_dir: Path) -> int:
    """The step a resumed run's task may prepare for; restore() picks (and reports) the step really loaded,
    falling back past a damaged newest checkpoint, so a corrupt latest.json is not an error here."""
    try:
        return latest_step(run_dir) or 0
    except UserError:
        return max((step for step, _ in step_checkpoints(run_dir)), default=0)


class Trainer:
    def __init__(self, cfg: TrainConfig, console: Console, world: D.World):
        self.cfg, self.console, self.world = cfg, console, world
        self.task_cls = task_for(cfg)  # the model's task class for this config (Task.for_config)
        self.run_dir = real_run_dir(cfg.out)
        self.step, self.metrics = 0, []
        self.interval_losses: list[float] = []
        self.interval_tokens, self.interval_time = 0, 0.0
        self.last_good: int | None = None
        self.t_start = time.perf_counter()
        self.wall_offset = 0.0  # on --resume: the wall_s the resumed run had reached

    def wall_s(self) -> float:
        """Seconds since the run started (setup and torch.compile included; resumed runs continue)."""
        return round(self.wall_offset + time.perf_counter() - self.t_start, 3)

    # ---- setup: validate everything, then write ------------------------------------------------
    def setup(self) -> None:
        cfg, world = self.cfg, self.world
        check_target(self.run_dir, resume=cfg.resume, overwrite=cfg.overwrite)
        D.barrier(world)  # every rank has looked before rank 0 publishes the new run
        self.device = resolve_device(cfg.device, world.local_rank)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        if cfg.fsdp and cfg.compile:
            raise UserError("--fsdp with --compile is not supported yet; pass one of them")
        if cfg.fsdp and cfg.ema_decay:
            raise UserError("--fsdp with --ema-decay is not supported yet; pass one of them")
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        random.seed(cfg.seed + world.rank)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # the same global batch on every rank
        self.task = self.task_cls(cfg)
        if cfg.resume:
            self.task.resume_dir, self.task.resume_step = self.run_dir, _resume_hint(self.run_dir)
        with staging_dir(self.run_dir) as staged:
            with ProgressBars(self.console, enabled=world.is_main) as self.task.progress:
                # a resumed run keeps its own assets; the staged ones only validate
                self.prepared = self.task.prepare(staged) or Report()  # shown once the run dir is in place
            self._build()
            if world.is_main:  # everything is checked: now write
                self._write_run(staged)
        D.barrier(world)
        if world.is_main:
            self._print_start()

    def _build(self) -> None:
        """Model (restored on --resume), its DDP/FSDP wrapper, optimizer and grad scaler."""
        cfg = self.cfg
        self.model_config = self.task.model_config()
        model = build_model(self.task_cls, self.model_config)
        state = self.restore(model) if cfg.resume else None
        self.model = model.to(self.device)
        self.ema = weight_ema(self.model, cfg.ema_decay) if cfg.ema_decay else None
        if self.ema is not None and state is not None and "ema" in state:  # else it starts from these weights
            self.ema.load_state_dict(state["ema"])
        self.train_model = D.wrap(self.model, self.world, fsdp=self._fsdp, compile=cfg.compile, device=self.device)
        optimizer_options = self.task.optimizer_options()  # e.g. GPT's Muon choice
        if cfg.fsdp and optimizer_options.get("optimizer", "adamw") != "adamw":
            raise UserError("--fsdp supports the AdamW optimizer only; drop --fsdp or use AdamW")
        self.optimizer = make_optimizer(self.model, cfg.lr, cfg.weight_decay, (0.9, cfg.beta2), self.device,
                                        **optimizer_options)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        if state is not None:
            D.load_optimizer_state(self.model, self.optimizer, state["optimizer"], self._fsdp)
            self.scaler.load_state_dict(state["scaler"])

    def _write_run(self, staged: Path) -> None:
        """config.json and metrics; a fresh run is staged, then moved into place in one rename."""
        cfg = self.cfg
        saved = {"task": cfg.model, "train": {k: v for k, v in asdict(cfg).items() if k not in MODES},
                 "model": self.model_config}
        target = self.run_dir if cfg.resume else staged
        atomic_write_json(target / CONFIG, saved)
        self._write_metrics(target)
        if not cfg.resume:
            publish(staged, self.run_dir)
        point_latest(self.run_dir)

    def _print_start(self) -> None:
        cfg = self.cfg
        self.n_params = sum(p.numel() for p in self.model.parameters())  # under FSDP, DTensors: global numel
        self.console.print(f"[bold]{cfg.model}[/] flavor [bold]{cfg.flavor}[/]: {self.n_params / 1e6:.2f} M params · "
                           f"{self.device.type} {str(self.dtype).replace('torch.', '')} · {self.world.size} "
                           f"process(es){' FSDP' if self._fsdp else ''} · steps {self.step}→{cfg.max_steps} "
                           f"· run dir {self.run_dir}")
        self.console.print(f"[dim]config: {escape(describe(cfg, self.task.shown_settings()))}[/]", highlight=False)
        if cfg.fsdp and self.world.size == 1:
            self.console.print("[yellow]--fsdp shards across processes: run under torchrun to use it[/]")
        render(self.prepared, self.console)  # what the task says about its data (DT's offline dataset)

    @property
    def published(self) -> nn.Module:
        """The weights the run stands for: their moving average with --ema-decay, else the trained ones."""
        return self.model if self.ema is None else self.ema.module

    @property
    def _fsdp(self) -> bool:
        return bool(self.cfg.fsdp) and self.world.size > 1

    def restore(self, model: nn.Module) -> dict[str, Any] | None:
        """Load the newest intact checkpoint into the (unsharded) model; returns its state, or None for a run
        stopped before its first checkpoint (it starts again from step 0 with its saved config). Writes nothing."""
        saved = json.loads((self.run_dir / CONFIG).read_text())  # validated by resolve_config
        if saved["model"] != self.model_config:
            old, new = saved["model"], self.model_config
            diff = ", ".join(f"{k} {old.get(k)!r} → {new.get(k)!r}"
                             for k in sorted({*old, *new}) if old.get(k) != new.get(k))
            raise UserError(f"{self.run_dir / CONFIG}: these settings build a different model ({diff}); "
                            f"--resume needs the same model")
        say = note if self.world.is_main else (lambda message: None)  # one note per job, not per rank
        state = load_checkpoint(self.run_dir, model, note=say)
        if state is None:
            say(f"{self.run_dir} has no checkpoint yet (it stopped before its first): starting it again from "
                 f"step 0 with its saved config")
            return None
        if len(state["rng"]) != self.world.size:
            raise UserError(f"checkpoint was written by {len(state['rng'])} processes, resuming with {self.world.size}")
        rng = state["rng"][self.world.rank]
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["data"])
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step, self.metrics = state["step"], state["metrics"]
        self.wall_offset = self.metrics[-1].get("wall_s", 0.0) if self.metrics else 0.0
        self.interval_losses = list(state.get("interval_losses", []))
        self.task.load_data_state(state.get("data", {}))
        self.last_good = self.step
        return state

    # ---- the loop ------------------------------------------------------------------------------
    def train(self, stop: list[str], stop_after: int | None) -> None:
        cfg = self.cfg
        if self.step == 0:
            self.evaluate_and_checkpoint(lr=lr_at(0, schedule=cfg.schedule, lr=cfg.lr, min_lr=cfg.min_lr,
                                                  warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps))
        progress = Progress(TextColumn("[bold blue]train"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
                            TimeRemainingColumn(), console=self.console, disable=not self.world.is_main,
                            refresh_per_second=4)  # rendering runs in a thread; keep it off the hot path
        with progress:
            bar = progress.add_task("train", total=cfg.max_steps, completed=self.step, loss="-", tps="-")
            while self.step < cfg.max_steps:
                lr, loss = self.train_step()
                progress.update(bar, completed=self.step, loss=f"{loss:.4f}",
                                tps=f"{self.interval_tokens / max(self.interval_time, 1e-9):,.0f}")
                if self.step % cfg.eval_interval == 0 or self.step == cfg.max_steps:
                    self.evaluate_and_checkpoint(lr, print_to=progress.console)
                if D.any_rank(bool(stop), self.world, self.device):
                    if self.last_good != self.step:
                        self.checkpoint()
                    raise Interrupted(f"interrupted at step {self.step}; continue with --resume")
                if stop_after is not None and self.step >= stop_after:
                    break

    def train_step(self) -> tuple[float, float]:
        """One optimizer step of grad_accum micro-batches; returns (lr, loss averaged over ranks)."""
        cfg, world = self.cfg, self.world
        t0 = time.perf_counter()
        self.task.on_step(self.step)  # per-step schedules of the task's own (GPT's window warmup)
        lr = lr_at(self.step, schedule=cfg.schedule, lr=cfg.lr, min_lr=cfg.min_lr,
                   warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # Muon's groups run at their own peak
        step_loss = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum):
            batch = self.task.get_batch("train", cfg.batch_size * world.size, self.generator)
            batch = {k: v.to(self.device, non_blocking=True)
                     for k, v in D.shard_batch(batch, world, cfg.batch_size).items()}
            self.interval_tokens += self.task.batch_tokens(batch) * world.size
            with D.grad_sync(self.train_model, world, self._fsdp, last_micro=micro == cfg.grad_accum - 1):
                with autocast(self.device, self.dtype):
                    loss = self.task.loss(self.train_model, batch) / cfg.grad_accum
                self.scaler.scale(loss).backward()
            step_loss += loss.detach()
        loss_value = D.mean(step_loss, world).item()
        if not math.isfinite(loss_value):
            where = (f"the last good checkpoint (step {self.last_good}) is in {self.run_dir}" if self.last_good
                     else "no checkpoint was written yet")
            raise UserError(f"loss is {loss_value} at step {self.step + 1}; training stopped, {where}. "
                            f"Try a lower --lr or --dtype float32")
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.interval_losses.append(loss_value)
        self.interval_time += time.perf_counter() - t0
        self.step += 1
        return lr, loss_value

    @torch.no_grad()
    def evaluate_and_checkpoint(self, lr: float, print_to: Console | None = None) -> None:
        """Validation metrics into metrics.jsonl and loss.png; then a checkpoint (not at step 0)."""
        with mode(self.published, training=False), autocast(self.device, self.dtype):
            result = self.task.evaluate(self.published, "val", self.cfg.eval_batches, self.device)
        record = {"step": self.step}
        if self.interval_losses:
            record["train_loss"] = sum(self.interval_losses) / len(self.interval_losses)
        record.update({k: float(v) for k, v in result.items()}, lr=lr,
                      tokens_per_s=self.interval_tokens / max(self.interval_time, 1e-9), wall_s=self.wall_s())
        self.metrics.append(record)
        self.interval_losses, self.interval_tokens, self.interval_time = [], 0, 0.0
        if self.world.is_main:
            self._write_metrics(self.run_dir)
            (print_to or self.console).print(_format_record(record))
        if self.step > 0:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Weights, optimizer, scaler, RNG and metrics at the current step (rank 0 writes; all ranks call)."""
        weights, optim_state = D.full_state(self.model, self.optimizer, self._fsdp)
        rng = D.all_gather(_rng_state(self.generator), self.world)
        if self.world.is_main:
            state = {"step": self.step, "optimizer": optim_state, "scaler": self.scaler.state_dict(),
                     "metrics": self.metrics, "interval_losses": self.interval_losses, "rng": rng,
                     "data": self.task.data_state(), "config": asdict(self.cfg)}
            if self.ema is not None:
                state["ema"] = self.ema.state_dict()
            save_checkpoint(self.run_dir, self.step, self._unsharded(weights), state, keep_last=self.cfg.keep_last,
                            published=None if self.ema is None else self.ema.module)
        D.barrier(self.world)
        self.last_good = self.step

    def _unsharded(self, weights: dict[str, torch.Tensor]) -> nn.Module:
        """The model as one module on rank 0 (under FSDP: a CPU copy holding the gathered weights)."""
        if not self._fsdp:
            return self.model
        copy = self.task_cls.build_model(self.model_config)
        copy.load_state_dict(weights)
        return copy

    def finish(self, stop_after: int | None) -> TrainResult:
        summary: dict[str, Any] = {}
        model = self.published
        if self._fsdp:
            weights, _ = D.full_state(self.model, self.optimizer, True)
            model = self._unsharded(weights) if self.world.is_main else self.model
        if self.world.is_main and (stop_after is None or self.step >= self.cfg.max_steps):
            summary = _summary(self.metrics, self.n_params, self.wall_s(), self.cfg)
            summary["weights"] = "ema" if self.ema is not None else "last"  # what val, test and model.safetensors are
            summary.update(self.prepared.metrics)  # the final report's metrics win
            self.task.checkpoints = StepCheckpoints(self.run_dir)
            report = _final_report(self.task, model.to(self.device) if self._fsdp else model, self.run_dir,
                                   self.console)
            render(report, self.console)
            summary.update(report.metrics)
            atomic_write_json(self.run_dir / "summary.json", summary)
            _print_summary(self.console, summary, self.run_dir)
        return TrainResult(model=model, summary=summary, metrics=self.metrics, run_dir=self.run_dir)

    def _write_metrics(self, run_dir: Path) -> None:
        atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in self.metrics))
        if self.metrics and can_plot():  # matplotlib comes with the zoo extra; GPT trains without it
            plot_losses(self.metrics, run_dir / "loss.png", title=f"{self.cfg.model} ({self.cfg.flavor})")


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "data": generator.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _format_record(r: dict[str, Any]) -> str:
    extra = " ".join(f"{k} {v:.4g}" for k, v in r.items()
                     if k not in ("step", "train_loss", "lr", "tokens_per_s", "wall_s") and isinstance(v, float))
    train = f"train {r['train_loss']:.4f}" if "train_loss" in r else "train      -"
    return (f"step {r['step']:>6}  {train}  {extra}  lr {r['lr']:.2e}  {r['tokens_per_s']:,.0f} tok/s  "
            f"{r.get('wall_s', 0):.0f} s")


def _summary(metrics: list[dict], n_params: int, wall: float, cfg: TrainConfig) -> dict[str, Any]:
    last = metrics[-1] if metrics else {}
    vals = [m["val_loss"] for m in metrics if "val_loss" in m]
    return {"model": cfg.model, "flavor": cfg.flavor, "steps": last.get("step"), "params": n_params,
            "train_loss": last.get("train_loss"), "val_loss": last.get("val_loss"),
            "best_val_loss": min(vals) if vals else None, "tokens_per_s": last.get("tokens_per_s"),
            "wall_s": round(wall, 2),
            **{k: v for k, v in last.items() if k not in ("step", "train_loss", "val_loss", "lr", "tokens_per_s", "wall_s")}}


def _final_report(task: Task, model: nn.Module, run_dir: Path, console: Console) -> Report:
    """task.report in eval mode without gradients (a report that trains, e.g. a fine-tune, enables them itself)."""
    with mode(model, training=False), torch.no_grad(), ProgressBars(console) as task.progress:
        return task.report(model, run_dir)


def _print_summary(console: Console, summary: dict[str, Any], run_dir: Path) -> None:
    table = Table(title=f"summary · {run_dir}", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in summary.items():
        if isinstance(v, (dict, list)):
            continue
        numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
        table.add_row(k, format_cell(v) if numeric else str(v))  # the renderer's number format
    console.print(table)
