"""Tabular data for the Non-Parametric Transformer: built-in scikit-learn sets or a CSV, typed and encoded.

A `Table` holds every row of one dataset as a float matrix `values` (n, d) in which a numeric column is
standardized and a categorical column holds its class code (0..C-1) as a float; `missing` (n, d) marks
empty cells, which the model sees as masked and never trains on. The target is one of the d columns.

Column types are detected (text → categorical; integers with at most `MAX_CATEGORIES_DETECTED` distinct
values → categorical; anything else → numeric) and can be overridden with `"name=categorical,other=numeric"`.
Numeric features are standardized with all rows (NPT is transductive: test features are inputs too, and
no label is used); a numeric target is standardized per fold from its training rows only (`target_stats`).
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from attnkit.errors import UserError
from attnkit.fsio import atomic_write, npz_bytes

BUILTIN = ("breast_cancer", "wine", "iris", "digits", "diabetes")
MAX_CATEGORIES_DETECTED = 10
KINDS = ("numeric", "categorical")


@dataclass
class Table:
    name: str
    columns: list[str]                  # d column names, target included
    kinds: list[str]                    # "numeric" | "categorical" per column
    categories: list[list[str]]         # class names per categorical column ([] for numeric)
    target: int                         # index of the target column
    values: np.ndarray                  # (n, d) float32: standardized numeric or class code
    missing: np.ndarray                 # (n, d) bool: empty cells
    raw_target: np.ndarray              # (n,) float64: the target before standardization (numeric) or its code
    feature_mean: list[float] = field(default_factory=list)  # per column (numeric features), for reference
    feature_std: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.values.shape[0]

    @property
    def d(self) -> int:
        return self.values.shape[1]

    @property
    def cardinalities(self) -> list[int]:
        """0 for a numeric column, C for a categorical one with C classes."""
        return [len(c) if k == "categorical" else 0 for k, c in zip(self.kinds, self.categories)]

    @property
    def target_is_categorical(self) -> bool:
        return self.kinds[self.target] == "categorical"

    @property
    def n_classes(self) -> int:
        return len(self.categories[self.target])

    def features(self) -> np.ndarray:
        """(n, d-1) features for scikit-learn: numeric standardized, categorical one-hot, missing → 0."""
        parts = []
        for j, (kind, cats) in enumerate(zip(self.kinds, self.categories)):
            if j == self.target:
                continue
            col = np.where(self.missing[:, j], 0.0, self.values[:, j])
            if kind == "numeric":
                parts.append(col[:, None])
            else:
                onehot = np.zeros((self.n, len(cats)), dtype=np.float32)
                rows = np.flatnonzero(~self.missing[:, j])
                onehot[rows, col[rows].astype(int)] = 1.0
                parts.append(onehot)
        return np.concatenate(parts, axis=1).astype(np.float32)

    # ---- persistence (the run directory keeps the encoded table, so sampling never re-reads the source)
    def save(self, path: Path) -> None:
        meta = {k: v for k, v in asdict(self).items() if k not in ("values", "missing", "raw_target")}
        atomic_write(path.with_suffix(".npz"), npz_bytes(True, values=self.values, missing=self.missing,
                                                          raw_target=self.raw_target))
        atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: Path) -> "Table":
        meta = json.loads(path.with_suffix(".json").read_text())
        arrays = np.load(path.with_suffix(".npz"))
        return cls(values=arrays["values"], missing=arrays["missing"], raw_target=arrays["raw_target"], **meta)


def target_stats(table: Table, train_rows: np.ndarray) -> tuple[float, float]:
    """(mean, std) that standardize a numeric target from training rows only; (0, 1) for a categorical one."""
    if table.target_is_categorical:
        return 0.0, 1.0
    y = table.raw_target[train_rows]
    return float(y.mean()), float(y.std() + 1e-8)


def cv_splits(table: Table, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train_rows, test_rows) pairs: stratified by class for a categorical target, shuffled k-fold otherwise."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if folds < 2:
        raise UserError(f"--folds must be at least 2, got {folds}")
    if folds > table.n:
        raise UserError(f"--folds {folds} is more than the {table.n} rows of {table.name}")
    index = np.arange(table.n)
    if table.target_is_categorical:
        counts = np.bincount(table.raw_target.astype(int), minlength=table.n_classes)
        if counts[counts > 0].min() >= folds:
            splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
            return [(tr, te) for tr, te in splitter.split(index, table.raw_target.astype(int))]
    return [(tr, te) for tr, te in KFold(folds, shuffle=True, random_state=seed).split(index)]


# ---- loading ----------------------------------------------------------------------------------

def parse_overrides(spec: str | None) -> dict[str, str]:
    """"a=categorical,b=numeric" → {"a": "categorical", "b": "numeric"} (also accepts cat / num)."""
    out: dict[str, str] = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        name, _, kind = item.partition("=")
        kind = {"cat": "categorical", "num": "numeric"}.get(kind.strip(), kind.strip())
        if kind not in KINDS:
            raise UserError(f"column type override {item.strip()!r}: expected NAME=numeric or NAME=categorical")
        out[name.strip()] = kind
    return out


def _read_builtin(name: str) -> tuple[list[str], list[list[str]], str]:
    import sklearn.datasets as skd

    loader = {"breast_cancer": skd.load_breast_cancer, "wine": skd.load_wine, "iris": skd.load_iris,
              "digits": skd.load_digits, "diabetes": skd.load_diabetes}[name]
    bunch = loader()
    names = [str(c) for c in getattr(bunch, "feature_names", [f"x{i}" for i in range(bunch.data.shape[1])])]
    if name == "digits":
        names = [f"pixel_{i // 8}_{i % 8}" for i in range(bunch.data.shape[1])]
    target_names = getattr(bunch, "target_names", None)
    if target_names is not None and name != "diabetes":
        target = [str(target_names[int(t)]) for t in bunch.target]
    else:
        target = [repr(float(t)) for t in bunch.target]
    rows = [[repr(float(v)) for v in row] + [t] for row, t in zip(bunch.data, target)]
    return names + ["target"], rows, "target"


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise UserError(f"--data {path}: no such file (built-in tables: {', '.join(BUILTIN)})")
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f) if any(cell.strip() for cell in r)]
    if len(rows) < 3:
        raise UserError(f"{path}: need a header row and at least two data rows")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    bad = [i + 2 for i, r in enumerate(body) if len(r) != len(header)]
    if bad:
        raise UserError(f"{path}: row {bad[0]} has a different number of cells than the header ({len(header)})")
    return header, [[c.strip() for c in r] for r in body]


def _is_missing(cell: str) -> bool:
    return cell == "" or cell.lower() in ("na", "nan", "null", "none", "?")


def _as_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _detect_kind(cells: list[str]) -> str:
    present = [c for c in cells if not _is_missing(c)]
    numbers = [_as_float(c) for c in present]
    if any(x is None for x in numbers):
        return "categorical"
    if all(float(x).is_integer() for x in numbers) and len(set(numbers)) <= MAX_CATEGORIES_DETECTED:
        return "categorical"
    return "numeric"


def load_table(data: str | None, target: str | None = None, column_types: str | None = None) -> Table:
    """Load a built-in table by name (default breast_cancer) or a CSV file with a header row.

    target: the target column's name (default: "target" for built-ins, the last column of a CSV).
    column_types: overrides of the detected kinds, "name=categorical,other=numeric".
    Rows whose target is empty are dropped (they can be neither trained on nor scored).
    """
    data = data or "breast_cancer"
    if data in BUILTIN:
        header, rows, default_target = _read_builtin(data)
        name = data
    else:
        path = Path(data)
        if path.suffix.lower() != ".csv" and not path.exists():
            raise UserError(f"--data {data!r}: not a built-in table ({', '.join(BUILTIN)}) nor a CSV file")
        header, rows = _read_csv(path)
        default_target, name = header[-1], path.stem
    target = target or default_target
    if target not in header:
        raise UserError(f"target column {target!r} is not in {name}; columns: {', '.join(header)}")
    if len(set(header)) != len(header):
        raise UserError(f"{name}: duplicate column names in the header")
    t = header.index(target)
    rows = [r for r in rows if not _is_missing(r[t])]
    if len(rows) < 2:
        raise UserError(f"{name}: fewer than two rows have a value in the target column {target!r}")

    overrides = parse_overrides(column_types)
    unknown = sorted(set(overrides) - set(header))
    if unknown:
        raise UserError(f"column type override for unknown column(s) {', '.join(unknown)}")
    columns = list(zip(*rows))
    n, d = len(rows), len(header)
    values = np.zeros((n, d), dtype=np.float32)
    missing = np.zeros((n, d), dtype=bool)
    kinds, categories, means, stds = [], [], [], []
    for j, cells in enumerate(columns):
        kind = overrides.get(header[j]) or ("numeric" if data in BUILTIN and j != t else _detect_kind(cells))
        missing[:, j] = [_is_missing(c) for c in cells]
        if kind == "numeric":
            numbers = [_as_float(c) if not m else 0.0 for c, m in zip(cells, missing[:, j])]
            if any(x is None for x in numbers):
                raise UserError(f"column {header[j]!r} is declared numeric but holds text")
            col = np.asarray(numbers, dtype=np.float64)
            present = col[~missing[:, j]]
            mean, std = (float(present.mean()), float(present.std() + 1e-8)) if present.size else (0.0, 1.0)
            values[:, j] = np.where(missing[:, j], 0.0, (col - mean) / std) if j != t else col
            cats: list[str] = []
        else:
            present = sorted({c for c, m in zip(cells, missing[:, j]) if not m},
                             key=lambda c: (_as_float(c) is None, _as_float(c) or 0.0, c))
            code = {c: i for i, c in enumerate(present)}
            values[:, j] = [code.get(c, 0) for c in cells]
            mean, std, cats = 0.0, 1.0, present
        kinds.append(kind)
        categories.append(cats)
        means.append(mean)
        stds.append(std)
    if kinds[t] == "categorical" and len(categories[t]) < 2:
        raise UserError(f"target column {target!r} has a single class; nothing to predict")
    raw_target = values[:, t].astype(np.float64)
    return Table(name=name, columns=list(header), kinds=kinds, categories=categories, target=t,
                 values=values, missing=missing, raw_target=raw_target, feature_mean=means, feature_std=stds)
