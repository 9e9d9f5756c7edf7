"""Which source files a model's results depend on, and one hash of them.

A model's own modules are found by following the imports of its task (`attnkit.zoo.tasks.NAME`) through
`attnkit.zoo`, imports inside functions included (tasks import their data modules lazily). The shared layers
every model runs on (engine, nn, generation, the op layer and the kernels) count for every model, whole. A model
with an arm that runs outside the trainer (a "runner": nanoGPT's train.py for GPT) also depends on the runners'
code and on what they run (attnkit.results.speedrun.SOURCES).
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
from pathlib import Path

import attnkit
from attnkit.results import speedrun
from attnkit.results.claims import SPECS
from attnkit.zoo.tasks import TASKS

PACKAGE = Path(attnkit.__file__).resolve().parent
SHARED = ("engine", "nn", "generation", "ops.py", "library.py", "errors.py", "extras.py", "fsio.py")


def _module_file(name: str) -> Path | None:
    """attnkit.zoo.data.text -> .../attnkit/zoo/data/text.py, without importing it; None if not a module."""
    base = PACKAGE.joinpath(*name.split(".")[1:])
    return next((f for f in (base.with_suffix(".py"), base / "__init__.py") if f.is_file()), None)


def _zoo_imports(path: Path) -> set[str]:
    """Names of the attnkit.zoo modules `path` imports (anywhere in the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        # `from attnkit.zoo.data import chorales` names a module; `from attnkit.zoo.eval.bert import X` a symbol.
        found.update(n for n in names if n.startswith("attnkit.zoo") and _module_file(n) is not None)
    return found


def model_sources(model: str) -> list[Path]:
    """Every file the model's results depend on, sorted: its zoo modules (transitively) and the shared layers."""
    todo, seen = [TASKS[model].split(":")[0]], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_zoo_imports(_module_file(name)) - seen)
    files = {_module_file(n) for n in seen}
    kernels = Path(importlib.util.find_spec("attnkit.kernels").origin).resolve().parent
    for shared in (*(PACKAGE / s for s in SHARED), kernels):
        files.update(shared.rglob("*.py") if shared.is_dir() else [shared])
    if model in SPECS and any("runner" in arm for arm in SPECS[model].arms.values()):
        files.update(speedrun.SOURCES)
    return sorted(f for f in files if f is not None and "__pycache__" not in f.parts)


def code_hash(model: str) -> str:
    """sha256 over the model's source files (path relative to its package root, then content)."""
    h = hashlib.sha256()
    for f in model_sources(model):
        root = PACKAGE if f.is_relative_to(PACKAGE) else f.parent
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]
