"""Run directories that never lose data.

Rules (`attnkit train`):
  * everything is validated before anything is written: the config, the model against the saved run,
    the checkpoint's weights and state;
  * a directory that already holds a run is refused unless --resume (continue it) or --overwrite;
  * a fresh run is prepared in a staging directory beside RUN and moved into place in one rename, so a
    failure before the first step leaves RUN as it was (or absent); --overwrite swaps the old run out
    only then;
  * `latest` beside the run (runs/latest for runs/NAME) is a symlink to the newest run started or resumed:
    the default of `attnkit sample` and `attnkit average`.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from attnkit.errors import UserError
from attnkit.fsio import make_dirs, os_fault

CONFIG = "config.json"
LATEST = "latest"


def read_json(path: Path, what: str = "") -> Any:
    """Parsed JSON of `path`, or one UserError naming the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found{what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is corrupt (not JSON: {e})") from None


def read_saved_config(run: str | Path) -> dict[str, Any]:
    """RUN/config.json, checked for the keys the trainer and sampler read."""
    run_dir = Path(run)
    if not run_dir.is_dir():
        raise UserError(f"nothing to resume: {run_dir} does not exist; drop --resume to start a new run there")
    path = run_dir / CONFIG
    if not path.is_file():
        raise UserError(f"nothing to resume: {run_dir} has no {CONFIG}; drop --resume to start a new run "
                        f"(in an empty or new --out)")
    saved = read_json(path)
    for key, kind in (("task", str), ("train", dict), ("model", dict)):
        if not isinstance(saved, dict) or not isinstance(saved.get(key), kind):
            what = "an object" if kind is dict else "a string"
            raise UserError(f"{path} is corrupt: field {key!r} is missing or not {what}")
    return saved


def real_run_dir(out: str | Path) -> Path:
    """`runs/latest` and other links name the run they point at."""
    path = Path(out)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def check_target(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse, before anything is written, to train into a directory that would lose a run."""
    if resume or not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise UserError(f"--out {run_dir} is a file, not a run directory")
    if (run_dir / CONFIG).is_file():
        if overwrite:
            return
        saved = read_json(run_dir / CONFIG)
        task = saved.get("task", "an attnkit") if isinstance(saved, dict) else "an attnkit"
        if not (run_dir / "checkpoints").is_dir():  # killed before its first checkpoint
            raise UserError(f"{run_dir} already holds a {task} run that stopped before its first checkpoint; "
                            f"pass --resume to start it again with its saved config or --overwrite to replace it")
        raise UserError(f"{run_dir} already holds a {task} run; pass --resume to continue it or --overwrite "
                        f"to replace it")
    if any(run_dir.iterdir()):
        raise UserError(f"{run_dir} is not empty and holds no attnkit run; choose another --out")


@contextlib.contextmanager
def staging_dir(run_dir: Path) -> Iterator[Path]:
    """A fresh directory beside run_dir (same file system, so publishing is a rename); removed on exit,
    with the parent directories it had to create if nothing was published."""
    parent = run_dir.parent.absolute()
    created = [p for p in (parent, *parent.parents) if not p.exists()]
    make_dirs(parent)
    try:
        path = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.staging-", dir=parent))
    except OSError as e:
        raise os_fault(parent, e, "cannot create a run directory in") from None
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o777 & ~umask)  # mkdtemp makes it private; the published run gets the usual mode
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        for p in created:  # deepest first; a published run keeps its parents
            with contextlib.suppress(OSError):
                p.rmdir()


def publish(staged: Path, run_dir: Path) -> None:
    """Move a staged run into run_dir; an old run there (--overwrite) is swapped out, then deleted."""
    old = None
    try:
        if run_dir.exists():
            old = run_dir.with_name(f".{run_dir.name}.replaced-{os.getpid()}")
            os.replace(run_dir, old)
        os.replace(staged, run_dir)
        staged.mkdir()  # staging_dir removes it again on exit
    except OSError as e:
        if old is not None and not run_dir.exists():
            os.replace(old, run_dir)  # put the old run back
        raise os_fault(run_dir, e, "cannot publish the run") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def point_latest(run_dir: Path) -> None:
    """Make `latest` beside run_dir a link to it (atomically); a real file or directory named latest is kept."""
    link = run_dir.parent / LATEST
    if run_dir.name == LATEST or (link.exists() and not link.is_symlink()):
        return
    tmp = link.with_name(f".{LATEST}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:  # a file system without symlinks: sample then needs --run
        tmp.unlink(missing_ok=True)
