"""The layers hold (import-linter's contracts in pyproject.toml) and ruff is clean.

attnkit.cli and attnkit.kernels live in cli/ and kernels/ (pyproject's package-dir), where import-linter,
which walks the root package's folder, cannot see them; so the check runs on a copy of the installed
layout: attnkit/ with cli/ and kernels/ placed inside it.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]


def _installed_layout(tmp_path: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "attnkit", tmp_path / "attnkit", ignore=ignore)
    shutil.copytree(ROOT / "cli", tmp_path / "attnkit" / "cli", ignore=ignore, dirs_exist_ok=True)
    shutil.copytree(ROOT / "kernels", tmp_path / "attnkit" / "kernels", ignore=ignore, dirs_exist_ok=True)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(tree))  # the copy, not the editable install, is `attnkit`
    return subprocess.run([*LINT_IMPORTS, "--no-cache"], cwd=tree, env=env, capture_output=True, text=True)


def test_import_contracts_hold(tmp_path):
    tree = _installed_layout(tmp_path)
    run = _lint_imports(tree)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_import_contracts_catch_an_upward_import(tmp_path):
    """The check can fail: a zoo module importing the engine breaks the layers contract."""
    tree = _installed_layout(tmp_path)
    with open(tree / "attnkit" / "zoo" / "metrics.py", "a") as f:
        f.write("\nimport attnkit.engine.trainer  # noqa: E402\n")
    run = _lint_imports(tree)
    assert run.returncode != 0
    assert "attnkit.zoo.metrics -> attnkit.engine.trainer" in run.stdout


def test_ruff_is_clean():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "attnkit", "cli", "kernels", "tests", "benchmarks"], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
