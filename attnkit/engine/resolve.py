"""The one path from what the user said to the final `TrainConfig` (CLI, trainer, benchmarks and tests).

Each field, trainer field or model option alike, takes the first value set in:
    1. flags (the fields set on the TrainConfig passed in; `options` from repeated `--opt name=value`)
    2. the `--config` TOML file ([train] table, or top-level keys, plus an [options] table)
    3. the saved RUN/config.json, on --resume
    4. the flavor (`Task.flavors[flavor].train` and `.options`, a `attnkit.zoo.tasks.base.Flavor`)
    5. TRAINER_DEFAULTS (options: the `Task.Options` dataclass defaults), then the derived defaults
       min_lr = lr/10, warmup_steps = min(100, max_steps/10), eval_interval = max_steps/10, out = runs/MODEL.
Values are type-checked where they come from, so an error names the flag, the file and the field.
Resolving a resolved config gives it back unchanged.
"""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from attnkit.config import MODES, TrainConfig, coerce, field_types
from attnkit.engine.device import DTYPES
from attnkit.errors import UserError
from attnkit.engine.optim import SCHEDULES
from attnkit.zoo.tasks import get_task

# Trainer fields neither the user nor the flavor set. block_size, dropout, label_smoothing and data stay None
# unless the flavor sets them (the task decides what None means).
TRAINER_DEFAULTS: dict[str, Any] = dict(
    tokenizer="char", max_steps=1000, batch_size=16, lr=3e-4, grad_clip=1.0, grad_accum=1, schedule="cosine",
    beta2=0.95, weight_decay=0.1, keep_last=1, ema_decay=0.0, eval_batches=10, seed=1337, device="auto", dtype="auto",
    compile=False, fsdp=False)
TRAIN_FIELDS = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("options", *MODES)]


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def resolve_config(cfg: TrainConfig | None = None, *, config_file: str | Path | None = None) -> TrainConfig:
    """The final TrainConfig: every trainer field set, `options` complete and valid for the model."""
    cfg = cfg or TrainConfig()
    flags = _typed({k: getattr(cfg, k) for k in TRAIN_FIELDS if getattr(cfg, k) is not None}, flag_name)
    flag_opts = dict(cfg.options or {})
    toml, toml_opts = read_toml(config_file) if config_file else ({}, {})
    layers: list[dict[str, Any]] = [flags, toml]
    opt_layers: list[tuple[dict[str, Any], str]] = [(flag_opts, "--opt {}"),
                                                     (toml_opts, f"{config_file}: options.{{}}")]

    saved: dict[str, Any] = {}
    if cfg.resume:
        from attnkit.engine.rundir import read_saved_config

        out = _first(layers, "out") or f"runs/{_first(layers, 'model') or 'gpt'}"
        saved_all = read_saved_config(out)
        flags["out"] = str(out)  # where the run was found, even if it moved since it was saved
        saved, saved_opts = _saved_layer(saved_all, Path(out) / "config.json")
        layers.append(saved)
        opt_layers.append((saved_opts, f"{Path(out) / 'config.json'}: train.options.{{}}"))

    model = _first(layers, "model") or "gpt"
    task_cls = get_task(model)
    user_opts = {k: v for layer, _ in reversed(opt_layers) for k, v in layer.items()}
    flavor = _first(layers, "flavor") or task_cls.default_flavor_for(user_opts, _first(layers, "data"))
    if flavor not in task_cls.flavors:
        raise UserError(f"unknown flavor {flavor!r} for model {model!r}; choose from {', '.join(task_cls.flavors)}")
    for name, value in (("model", model), ("flavor", flavor)):
        if saved and saved.get(name) != value:
            raise UserError(f"{flags['out']} holds a {saved.get('model')} run (flavor {saved.get('flavor')}); "
                            f"--resume cannot change --{name} to {value} (train a new run into another --out)")

    option_types = field_types(task_cls.Options)
    preset = task_cls.flavors[flavor]
    layers += [preset.train, TRAINER_DEFAULTS]
    values = {name: _first(layers, name) for name in TRAIN_FIELDS}
    values.update(model=model, flavor=flavor)
    _derive(values)

    options: dict[str, Any] = {}
    for layer, where in reversed([*opt_layers, (preset.options, "flavor option {}")]):
        options.update(typed_options(layer, option_types, where, task_cls))
    options = dataclasses.asdict(task_cls.Options(**options))
    out = TrainConfig(**values, options=options, resume=cfg.resume, overwrite=cfg.overwrite)
    check(out)
    return out


def _first(layers: list[dict[str, Any]], name: str) -> Any:
    return next((layer[name] for layer in layers if layer.get(name) is not None), None)


def _derive(v: dict[str, Any]) -> None:
    if v["min_lr"] is None:
        v["min_lr"] = v["lr"] / 10
    if v["warmup_steps"] is None:
        v["warmup_steps"] = min(100, v["max_steps"] // 10)
    if v["eval_interval"] is None:
        v["eval_interval"] = max(v["max_steps"] // 10, 1)
    if v["out"] is None:
        v["out"] = f"runs/{v['model']}"


_TYPES = field_types(TrainConfig)


def _typed(raw: dict[str, Any], where) -> dict[str, Any]:
    """raw with each value checked against its TrainConfig field; `where(name)` says where it came from."""
    return {k: coerce(v, *_TYPES[k], where(k)) for k, v in raw.items() if v is not None}


def typed_options(raw: dict[str, Any], types: dict[str, tuple[type, bool]], where: str, task_cls,
                  kind: str = "option") -> dict[str, Any]:
    """raw checked against `types` (field_types of an options dataclass): an unknown name or a value of the
    wrong type is one line naming the valid ones. `where.format(name)` says where a value came from; `kind`
    names the options ("option" of `train`, "sample option" of `sample`)."""
    unknown = sorted(set(raw) - set(types))
    if unknown:
        valid = ", ".join(types) or f"none (this model has no {kind}s)"
        raise UserError(f"unknown {kind} {unknown[0]!r} for model {task_cls.name}; valid {kind}s: {valid}")
    try:
        return {k: coerce(v, *types[k], where.format(k)) for k, v in raw.items()}
    except UserError as e:
        raise UserError(f"{e} (valid {kind}s: {', '.join(types)})") from None


def read_toml(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trainer fields, options) of a --config TOML file: a [train] table (or top-level keys) and [options]."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid TOML: {e}") from None
    options = raw.pop("options", {})
    train = raw.pop("train", None)
    if train is None:
        train = raw
    elif raw:
        raise UserError(f"{path}: unknown table or key {sorted(raw)[0]!r}; use [train] and [options]")
    if not isinstance(train, dict) or not isinstance(options, dict):
        raise UserError(f"{path}: [train] and [options] must be tables")
    unknown = sorted(set(train) - set(TRAIN_FIELDS))
    if unknown:
        hint = (" (model options go in an [options] table)" if unknown[0] not in MODES
                else f" (pass {flag_name(unknown[0])} on the command line)")
        raise UserError(f"{path}: unknown key {unknown[0]!r}{hint}; valid keys: {', '.join(TRAIN_FIELDS)}")
    return _typed(train, lambda k: f"{path}: {k}"), options


def split_saved(saved: dict[str, Any], task_cls) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trainer fields, options) of a saved RUN/config.json; runs saved before options had their own table
    keep them as flat keys of "train"."""
    train = dict(saved["train"])
    options = train.pop("options", None) or {}
    option_names = field_types(task_cls.Options)
    options = {**{k: v for k, v in train.items() if k in option_names and v is not None}, **options}
    return {k: v for k, v in train.items() if k in TRAIN_FIELDS}, options


def _saved_layer(saved: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    fields, options = split_saved(saved, get_task(saved["task"]))
    return _typed(fields, lambda k: f"{path}: train.{k}"), options


def check(cfg: TrainConfig) -> None:
    """Ranges of the trainer's fields; messages name the flag."""
    for name in ("max_steps", "batch_size", "block_size", "lr", "grad_accum", "eval_interval",
                 "eval_batches", "keep_last"):
        v = getattr(cfg, name)
        if v is not None and v <= 0:
            raise UserError(f"{flag_name(name)} must be positive, got {v}")
    for name in ("min_lr", "warmup_steps", "weight_decay", "grad_clip", "label_smoothing", "dropout"):
        v = getattr(cfg, name)
        if v is not None and v < 0:
            raise UserError(f"{flag_name(name)} must not be negative, got {v}")
    if cfg.dropout is not None and cfg.dropout >= 1:
        raise UserError(f"--dropout must be below 1, got {cfg.dropout}")
    if cfg.ema_decay is not None and not 0 <= cfg.ema_decay < 1:
        raise UserError(f"--ema-decay must be in [0, 1) (0: off), got {cfg.ema_decay}")
    if cfg.schedule not in SCHEDULES:
        raise UserError(f"unknown --schedule {cfg.schedule!r}; choose from {', '.join(SCHEDULES)}")
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        raise UserError(f"--device must be auto, cpu or cuda, got {cfg.device!r}")
    if cfg.dtype not in ("auto", *DTYPES):
        raise UserError(f"--dtype must be auto, {', '.join(DTYPES)}, got {cfg.dtype!r}")
    if cfg.resume and cfg.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pass one")


def describe(cfg: TrainConfig, shown: dict[str, str] | None = None) -> str:
    """One compact line of the resolved config: `name=value` for every set field, options last; `shown`
    replaces a field's value with what the task really uses (Task.shown_settings)."""
    def show(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    shown = shown or {}
    parts = [f"{k}={shown.get(k, show(getattr(cfg, k)))}" for k in TRAIN_FIELDS if getattr(cfg, k) is not None]
    parts += [f"{k}={show(v)}" for k, v in cfg.options.items() if v is not None]
    return " ".join(parts)


def option_rows(options_cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type, default, help) of an options dataclass (`Task.Options`, `Task.SampleOptions`), for
    `--list-options`."""
    types = field_types(options_cls)
    rows = []
    for f in dataclasses.fields(options_cls):
        kind, optional = types[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append((f.name, kind.__name__ + (" | None" if optional else ""), repr(default),
                     f.metadata.get("help", "")))
    return rows
