"""Run-directory checkpoints: atomic writes, exact-resume state, step checkpoints and their average.

Layout written by `attnkit.engine.trainer` (every file is written to a temp file, then os.replace'd):
    RUN/config.json                          {"task", "train": TrainConfig, "model": model kwargs}
    RUN/model.safetensors                    latest weights (what `attnkit sample` loads; their moving
                                             average when the run keeps one, --ema-decay)
    RUN/checkpoints/step_0000500.safetensors weights at step 500
    RUN/checkpoints/step_0000500.state.pt    optimizer, scaler, RNG states, step, metrics so far
    RUN/checkpoints/latest.json              {"step": 500}: written last, so it always names a complete pair

A `kill -9` at any moment leaves latest.json pointing at a complete checkpoint; resume loses at most the
steps since it (Ctrl-C / SIGTERM lose nothing: the trainer checkpoints the current step first).
`keep_last` N keeps the N newest step checkpoints (for `average_checkpoints`).
Weights go through safetensors' save_model/load_model, which store tied tensors once.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import _remove_duplicate_names, load_file, load_model
from safetensors.torch import save as safetensors_bytes

from attnkit.errors import UserError
from attnkit.fsio import atomic_write, make_dirs

CKPT_DIR = "checkpoints"
WEIGHTS = "model.safetensors"
_STEP_RE = re.compile(r"step_(\d+)\.safetensors$")


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save through memory, so a full disk is an OSError of ours, not a RuntimeError of torch's writer."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def weights_bytes(model: nn.Module, metadata: dict[str, str] | None = None) -> bytes:
    """What safetensors' save_model writes (tied tensors stored once, their names in the metadata), as bytes."""
    state_dict = model.state_dict()
    metadata = dict(metadata or {})
    for kept, removed in _remove_duplicate_names(state_dict).items():
        for name in removed:
            metadata.setdefault(name, kept)
            del state_dict[name]
    return safetensors_bytes({k: v.contiguous() for k, v in state_dict.items()}, metadata=metadata)


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Model weights as safetensors (tied tensors stored once), atomically."""
    atomic_write(path, weights_bytes(model, metadata))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load safetensors weights into model; a missing, truncated or mismatched file is one UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights not found: {path}")
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path} is corrupt or truncated ({str(e).strip().splitlines()[0]})") from None
    except RuntimeError as e:  # a tensor of the wrong shape
        raise UserError(f"{path} does not match the model: {str(e).strip().splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise UserError(f"{path} does not match the model: missing {sorted(missing)[:5]}, "
                        f"unexpected {sorted(unexpected)[:5]}")


def step_paths(run_dir: Path, step: int) -> tuple[Path, Path]:
    d = Path(run_dir) / CKPT_DIR
    return d / f"step_{step:07d}.safetensors", d / f"step_{step:07d}.state.pt"


def step_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, weights path) of every step checkpoint in the run, oldest first."""
    d = Path(run_dir) / CKPT_DIR
    found = [(int(m.group(1)), p) for p in d.glob("step_*.safetensors") if (m := _STEP_RE.search(p.name))]
    return sorted(found)


def save_checkpoint(run_dir: str | Path, step: int, model: nn.Module, state: dict[str, Any],
                    keep_last: int = 1, published: nn.Module | None = None) -> None:
    """Write step weights + state, then latest.json, then RUN/model.safetensors (`published`'s weights if
    given: the moving average of `model`'s); prune old steps."""
    run_dir = Path(run_dir)
    make_dirs(run_dir / CKPT_DIR)
    weights, state_path = step_paths(run_dir, step)
    save_weights(model, weights, metadata={"step": str(step)})
    atomic_torch_save(state, state_path)
    atomic_write_json(run_dir / CKPT_DIR / "latest.json", {"step": step})
    save_weights(published or model, run_dir / WEIGHTS, metadata={"step": str(step)})
    for old_step, old in step_checkpoints(run_dir)[:-max(keep_last, 1)]:
        old.unlink(missing_ok=True)
        step_paths(run_dir, old_step)[1].unlink(missing_ok=True)


def latest_step(run_dir: str | Path) -> int | None:
    from attnkit.engine.rundir import read_json

    path = Path(run_dir) / CKPT_DIR / "latest.json"
    if not path.is_file():
        return None
    step = read_json(path)
    if not isinstance(step, dict) or not isinstance(step.get("step"), int):
        raise UserError(f"{path} is corrupt: field 'step' is missing or not an integer")
    return step["step"]


def load_checkpoint(run_dir: str | Path, model: nn.Module, note=None) -> dict[str, Any] | None:
    """Load the newest intact checkpoint into model and return its training state; None if the run has none.

    The newest is the step latest.json names. If its weights or state are unreadable (or latest.json is), the
    older step checkpoints kept (--keep-last) are tried, newest first, and `note` gets one line saying which
    step the run resumes from instead. Refuses (UserError) only when none is intact."""
    run_dir = Path(run_dir)
    damaged: list[str] = []
    try:
        named = latest_step(run_dir)
    except UserError as e:
        named, damaged = None, [str(e)]
    kept = sorted((s for s, _ in step_checkpoints(run_dir)), reverse=True)
    steps = [named] + [s for s in kept if s < named] if named is not None else kept
    if not steps and not damaged:
        return None
    for step in steps:
        weights, state_path = step_paths(run_dir, step)
        try:
            load_weights(model, weights)
            state = load_state(state_path)
        except UserError as e:
            damaged.append(str(e))
            continue
        if damaged and note is not None:
            note(f"{damaged[0]}; resuming from step {step}, the newest intact checkpoint")
        return state
    older = "and no older intact checkpoint is kept" if len(steps) > 1 else "and no older checkpoint is kept"
    raise UserError(f"{damaged[0]}, {older}; start again with --overwrite")


def load_state(path: Path) -> dict[str, Any]:
    """A step's training state (optimizer, RNG, metrics); a missing or damaged file is one UserError."""
    if not path.is_file():
        raise UserError(f"checkpoint state not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - pickle/zip errors of a damaged file come in many types
        raise UserError(f"{path} is corrupt or truncated ({type(e).__name__})") from None
    for key in ("step", "optimizer", "rng", "metrics"):
        if not isinstance(state, dict) or key not in state:
            raise UserError(f"{path} is corrupt: field {key!r} is missing")
    return state


def average_checkpoints(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Element-wise mean of several safetensors weight files (Vaswani et al. averaged the last 5–20).

    Floating tensors are averaged in float64 and cast back; integer tensors are taken from the last file.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("no checkpoints to average")
    for p in paths:
        if not p.is_file():
            raise UserError(f"checkpoint not found: {p}")
    first = load_file(str(paths[0]))
    sums = {k: v.double() if v.is_floating_point() else v for k, v in first.items()}
    for p in paths[1:]:
        sd = load_file(str(p))
        if sd.keys() != sums.keys():
            raise UserError(f"{p} has different tensors from {paths[0]}; cannot average")
        for k, v in sd.items():
            sums[k] = sums[k] + v.double() if v.is_floating_point() else v
    avg = {k: (v / len(paths)).to(first[k].dtype) if first[k].is_floating_point() else v
           for k, v in sums.items()}
    return atomic_write(out, safetensors_bytes(avg, metadata={"averaged": ",".join(p.name for p in paths)}))


def run_average(run: str | Path, last: int, out: str | Path | None = None) -> Path:
    """`attnkit average`: mean of the run's last N step checkpoints, written to RUN/model.safetensors
    (what `attnkit sample` loads) unless `out` is given. The step checkpoints themselves are untouched."""
    from rich.console import Console
    from rich.table import Table

    from attnkit.engine.lock import owner_lock
    from attnkit.engine.rundir import real_run_dir

    run_dir = Path(run)
    if not (run_dir / "config.json").is_file():
        raise UserError(f"{run} is not a run directory: no config.json")
    if last < 1:
        raise UserError(f"--last must be at least 1, got {last}")
    with owner_lock(real_run_dir(run_dir)):  # a train writing this run would prune what we average
        found = step_checkpoints(run_dir)
        if len(found) < last:
            raise UserError(f"{run} has {len(found)} step checkpoint(s), fewer than --last {last} "
                            f"(train with --keep-last {last} to keep them)")
        chosen = [p for _, p in found[-last:]]
        out_path = average_checkpoints(chosen, Path(out) if out else run_dir / WEIGHTS)
    table = Table(title=f"averaged {last} checkpoints → {out_path}")
    table.add_column("step", justify="right")
    table.add_column("file")
    for step, p in found[-last:]:
        table.add_row(str(step), p.name)
    Console().print(table)
    return out_path
