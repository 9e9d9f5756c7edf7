"""The one training loop every model in the zoo uses; the model family plugs in through a `Task`.

    cfg → Task.resolve (flavor defaults) → trainer defaults → checks → Task.prepare → build_model
    → AdamW (decay on matrices) → for each step: lr schedule, grad_accum micro-batches (autocast on CUDA),
      clip, step → every eval_interval: evaluate, metrics.jsonl, loss.png, checkpoint → summary.json

Exact resume: a checkpoint holds the weights, optimizer and grad-scaler state, and every rank's RNG
states (torch, CUDA, and the data generator), so `--resume` from step k replays steps k+1.. exactly as an
uninterrupted run would (on CPU, same seed). Several processes (`torchrun`) run DDP: gloo on CPU, NCCL on
GPU; each rank draws its own batches; rank 0 writes the run directory.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from attnkit.checkpoint import (atomic_write_json, atomic_write_text, clear_run, latest_step, load_checkpoint,
                                save_checkpoint)
from attnkit.config import TrainConfig
from attnkit.optim import SCHEDULES, lr_at, make_optimizer
from attnkit.plots import plot_losses
from attnkit.tasks import get_task
from attnkit.errors import UserError
from attnkit.tasks.base import Task

# Defaults for the trainer's own fields when neither the flag nor the task's flavor set them.
TRAINER_DEFAULTS: dict[str, Any] = dict(max_steps=1000, batch_size=16, lr=3e-4, schedule="cosine", beta2=0.95,
                                        weight_decay=0.1, keep_last=1, eval_batches=10)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class TrainResult:
    model: nn.Module           # the trained model (unwrapped from DDP / compile)
    summary: dict[str, Any]    # what summary.json holds
    metrics: list[dict]        # what metrics.jsonl holds
    run_dir: Path


# ---- configuration ---------------------------------------------------------------------------
def _merge_resumed(cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    """On --resume, start from the saved config; fields the user set away from their defaults win."""
    path = run_dir / "config.json"
    if not path.is_file():
        raise UserError(f"nothing to resume: {run_dir} has no config.json")
    saved = TrainConfig(**json.loads(path.read_text())["train"])
    default = TrainConfig()
    changed = {f.name: getattr(cfg, f.name) for f in fields(TrainConfig)
               if f.name != "resume" and getattr(cfg, f.name) != getattr(default, f.name)}
    return dataclasses.replace(saved, **changed, resume=True)


def fill_defaults(cfg: TrainConfig) -> TrainConfig:
    filled = {k: v for k, v in TRAINER_DEFAULTS.items() if getattr(cfg, k) is None}
    cfg = dataclasses.replace(cfg, **filled)
    if cfg.min_lr is None:
        cfg.min_lr = cfg.lr / 10
    if cfg.warmup_steps is None:
        cfg.warmup_steps = min(100, cfg.max_steps // 10)
    if cfg.eval_interval is None:
        cfg.eval_interval = max(cfg.max_steps // 10, 1)
    return cfg


def _check(cfg: TrainConfig) -> None:
    def positive(name: str) -> None:
        v = getattr(cfg, name)
        if v is not None and v <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {v}")

    for name in ("max_steps", "batch_size", "block_size", "lr", "grad_accum", "eval_interval",
                 "eval_batches", "keep_last"):
        positive(name)
    for name in ("min_lr", "warmup_steps", "weight_decay", "grad_clip", "label_smoothing", "dropout"):
        v = getattr(cfg, name)
        if v is not None and v < 0:
            raise UserError(f"--{name.replace('_', '-')} must not be negative, got {v}")
    if cfg.dropout is not None and cfg.dropout >= 1:
        raise UserError(f"--dropout must be below 1, got {cfg.dropout}")
    if cfg.schedule is not None and cfg.schedule not in SCHEDULES:
        raise UserError(f"unknown --schedule {cfg.schedule!r}; choose from {', '.join(SCHEDULES)}")
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        raise UserError(f"--device must be auto, cpu or cuda, got {cfg.device!r}")
    if cfg.dtype not in ("auto", *DTYPES):
        raise UserError(f"--dtype must be auto, {', '.join(DTYPES)}, got {cfg.dtype!r}")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda requested but CUDA is not available")
        return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    return torch.device("cpu")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto: bfloat16 on CUDA where supported, else float16 on CUDA, else float32 (no autocast)."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name == "float16" and device.type != "cuda":
        raise UserError("--dtype float16 needs CUDA; use bfloat16 or float32 on CPU")
    return DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# ---- distributed -----------------------------------------------------------------------------
def _init_distributed(device_name: str) -> tuple[int, int, int, bool]:
    """(rank, world_size, local_rank, we_initialized) from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0, False
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return rank, world, local_rank, False
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return rank, world, local_rank, True


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "data": generator.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["data"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- the loop --------------------------------------------------------------------------------
def run_training(cfg: TrainConfig, *, console: Console | None = None, stop_after: int | None = None) -> TrainResult:
    """Train cfg.model per cfg and write the run directory. Raises UserError for anything the user can fix.

    stop_after: stop (as if killed) after that many optimizer steps, past the last checkpoint; for tests
    of --resume.
    """
    console = console or Console()
    task_cls = get_task(cfg.model)
    run_dir = Path(cfg.out)
    if cfg.resume:
        cfg = _merge_resumed(cfg, run_dir)
    cfg = _check_and_fill(task_cls, cfg)
    rank, world, local_rank, owns_group = _init_distributed(cfg.device)
    try:
        return _train(task_cls, cfg, run_dir, console, rank, world, local_rank, stop_after)
    finally:
        if owns_group:
            dist.destroy_process_group()


def _check_and_fill(task_cls: type[Task], cfg: TrainConfig) -> TrainConfig:
    _check(cfg)  # user values first, so the message names the flag the user typed
    cfg = fill_defaults(task_cls.resolve(cfg))
    _check(cfg)
    return cfg


def _train(task_cls, cfg, run_dir, console, rank, world, local_rank, stop_after) -> TrainResult:
    is_main = rank == 0
    device = resolve_device(cfg.device, local_rank)
    dtype = resolve_dtype(cfg.dtype, device)
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    random.seed(cfg.seed + rank)
    generator = torch.Generator().manual_seed(cfg.seed + rank)  # each rank draws its own batches

    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if world > 1:
        dist.barrier()
    task = task_cls(cfg)
    task.prepare(run_dir)
    model_config = task.model_config()
    model = task_cls.build_model(model_config).to(device)
    if is_main:
        atomic_write_json(run_dir / "config.json", {"task": cfg.model, "train": asdict(cfg), "model": model_config})

    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, (0.9, cfg.beta2), device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    start_step, metrics = 0, []
    if cfg.resume and latest_step(run_dir) is not None:
        state = load_checkpoint(run_dir, model)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        if len(rng) != world:
            raise UserError(f"checkpoint was written by {len(rng)} processes, resuming with {world}")
        _set_rng_state(rng[rank], generator)
        start_step, metrics = state["step"], state["metrics"]
    elif cfg.resume:
        raise UserError(f"nothing to resume: no checkpoint in {run_dir}")
    elif is_main:
        clear_run(run_dir)
    if is_main:
        _write_metrics(run_dir, metrics, cfg)

    train_model: nn.Module = model
    if cfg.compile:
        train_model = torch.compile(model)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        train_model = DDP(train_model, device_ids=[device.index] if device.type == "cuda" else None)

    n_params = sum(p.numel() for p in model.parameters())
    if is_main and start_step < cfg.max_steps:
        console.print(f"[bold]{cfg.model}[/] flavor [bold]{cfg.flavor}[/]: {n_params / 1e6:.2f} M params · "
                      f"{device.type} {str(dtype).replace('torch.', '')} · {world} process(es) · "
                      f"steps {start_step}→{cfg.max_steps} · run dir {run_dir}")

    last_good = start_step if start_step else None
    t_start = time.perf_counter()
    interval_losses: list[float] = []
    interval_tokens, interval_time = 0, 0.0
    progress = Progress(TextColumn("[bold blue]train"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
                        TimeRemainingColumn(), console=console, disable=not is_main, transient=False,
                        refresh_per_second=4)  # rendering runs in a thread; keep it off the hot path
    done = start_step
    with progress:
        bar = progress.add_task("train", total=cfg.max_steps, completed=start_step, loss="-", tps="-")
        for step in range(start_step, cfg.max_steps):
            t0 = time.perf_counter()
            lr = lr_at(step, schedule=cfg.schedule, lr=cfg.lr, min_lr=cfg.min_lr,
                       warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            step_loss = torch.zeros((), device=device)
            for micro in range(cfg.grad_accum):
                batch = {k: v.to(device, non_blocking=True) for k, v in task.get_batch(
                    "train", cfg.batch_size, generator).items()}
                interval_tokens += task.batch_tokens(batch) * world
                last_micro = micro == cfg.grad_accum - 1
                sync = train_model.no_sync() if world > 1 and not last_micro else contextlib.nullcontext()
                with sync:
                    with autocast(device, dtype):
                        loss = task.loss(train_model, batch) / cfg.grad_accum
                    scaler.scale(loss).backward()
                step_loss += loss.detach()
            if world > 1:
                dist.all_reduce(step_loss)
                step_loss /= world
            loss_value = step_loss.item()
            if not math.isfinite(loss_value):
                where = (f"the last good checkpoint (step {last_good}) is in {run_dir}" if last_good
                         else "no checkpoint was written yet")
                raise UserError(f"loss is {loss_value} at step {step + 1}; training stopped, {where}. "
                                f"Try a lower --lr or --dtype float32")
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            interval_losses.append(loss_value)
            interval_time += time.perf_counter() - t0
            done = step + 1
            tps = interval_tokens / max(interval_time, 1e-9)
            progress.update(bar, completed=done, loss=f"{loss_value:.4f}", tps=f"{tps:,.0f}")

            if done % cfg.eval_interval == 0 or done == cfg.max_steps:
                record = _evaluate(task, model, cfg, device, dtype, done, lr, interval_losses, tps, world)
                metrics.append(record)
                if is_main:
                    _write_metrics(run_dir, metrics, cfg)
                    state = {"step": done, "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                             "metrics": metrics, "config": asdict(cfg)}
                rng = _gather(_rng_state(generator), world)
                if is_main:
                    state["rng"] = rng
                    save_checkpoint(run_dir, done, model, state, keep_last=cfg.keep_last)
                    progress.console.print(_format_record(record))
                if world > 1:
                    dist.barrier()
                last_good = done
                interval_losses, interval_tokens, interval_time = [], 0, 0.0
            if stop_after is not None and done >= stop_after:
                break

    summary: dict[str, Any] = {}
    if is_main and (stop_after is None or done >= cfg.max_steps):
        summary = _summary(metrics, n_params, time.perf_counter() - t_start, cfg)
        summary.update(task.report(model, run_dir, console) or {})
        atomic_write_json(run_dir / "summary.json", summary)
        _print_summary(console, summary, run_dir)
    return TrainResult(model=model, summary=summary, metrics=metrics, run_dir=run_dir)


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def _evaluate(task, model, cfg, device, dtype, step, lr, interval_losses, tps, world) -> dict[str, Any]:
    model.eval()
    with autocast(device, dtype):
        result = task.evaluate(model, "val", cfg.eval_batches, device)
    model.train()
    train_loss = sum(interval_losses) / max(len(interval_losses), 1)
    return {"step": step, "train_loss": train_loss, **{k: float(v) for k, v in result.items()},
            "lr": lr, "tokens_per_s": tps}


def _write_metrics(run_dir: Path, metrics: list[dict], cfg: TrainConfig) -> None:
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics))
    if metrics:
        plot_losses(metrics, run_dir / "loss.png", title=f"{cfg.model} ({cfg.flavor})")


def _format_record(r: dict[str, Any]) -> str:
    extra = " ".join(f"{k} {v:.4g}" for k, v in r.items()
                     if k not in ("step", "train_loss", "lr", "tokens_per_s") and isinstance(v, float))
    return (f"step {r['step']:>6}  train {r['train_loss']:.4f}  {extra}  lr {r['lr']:.2e}  "
            f"{r['tokens_per_s']:,.0f} tok/s")


def _summary(metrics: list[dict], n_params: int, wall: float, cfg: TrainConfig) -> dict[str, Any]:
    last = metrics[-1] if metrics else {}
    vals = [m["val_loss"] for m in metrics if "val_loss" in m]
    return {"model": cfg.model, "flavor": cfg.flavor, "steps": last.get("step"), "params": n_params,
            "train_loss": last.get("train_loss"), "val_loss": last.get("val_loss"),
            "best_val_loss": min(vals) if vals else None,
            "tokens_per_s": last.get("tokens_per_s"), "wall_s": round(wall, 2),
            **{k: v for k, v in last.items() if k not in ("step", "train_loss", "val_loss", "lr", "tokens_per_s")}}


def _print_summary(console: Console, summary: dict[str, Any], run_dir: Path) -> None:
    table = Table(title=f"summary · {run_dir}", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in summary.items():
        if isinstance(v, float):
            v = f"{v:.4f}" if abs(v) < 100 else f"{v:,.0f}"
        elif isinstance(v, int) and not isinstance(v, bool):
            v = f"{v:,}"
        elif isinstance(v, (dict, list)):
            continue
        table.add_row(k, str(v))
    console.print(table)
