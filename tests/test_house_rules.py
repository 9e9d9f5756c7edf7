"""Issue 23's house rules, held: tasks describe and return data, and the engine does the rest.

- no task module over 250 lines;
- tasks/ and eval/ import no Rich (the engine renders) and toggle no train/eval mode (the engine owns it,
  `attnkit.nn.modes.mode` switches a copy where a report trains one);
- one atomic file write: `attnkit.fsio.atomic_write`, the only `os.replace` of a file (rundir's renames move
  whole run directories and the runs/latest link).
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "attnkit" / "zoo"
TASKS = sorted((ZOO / "tasks").glob("*.py"))
DESCRIBING = TASKS + sorted((ZOO / "eval").glob("*.py"))


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", TASKS, ids=_name)
def test_no_task_module_is_over_250_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 250


@pytest.mark.parametrize("path", DESCRIBING, ids=_name)
def test_tasks_and_eval_neither_print_with_rich_nor_switch_modes(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [m for m in imported if m == "rich" or m.startswith("rich.")]
    toggles = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
               and isinstance(node.func, ast.Attribute) and node.func.attr in ("eval", "train")
               and len(node.args) <= 1 and not node.keywords]
    assert not toggles, f"model.eval()/.train() at lines {toggles}: use attnkit.nn.modes.mode"


def test_one_atomic_write():
    replaces = {}
    for path in sorted((ROOT / "attnkit").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Attribute) and node.func.attr == "replace"
                 and isinstance(node.func.value, ast.Name) and node.func.value.id == "os"]
        if calls:
            replaces[_name(path)] = len(calls)
    assert replaces == {"attnkit/fsio.py": 1, "attnkit/engine/rundir.py": 4}
