"""One writer per run directory: `attnkit train` (fresh, --resume, --overwrite) and `attnkit average` hold an
exclusive lock on the run for their whole life; a second writer is refused with one line naming the owner.

The lock is `flock` on a file beside the run, `runs/.NAME.lock` for `runs/NAME`, not inside it: a fresh run is
staged and renamed into place, and --overwrite swaps the old directory out, so a file inside would move with
the directory. The kernel drops a flock when its process dies, so a `kill -9` never leaves the run locked: the
lock file it leaves names a pid that no longer holds it, and the next writer takes it over with a note.
Readers (`sample`, `bench-kernels`) never lock: every file they read is replaced in one rename.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterator

from attnkit.errors import UserError
from attnkit.fsio import os_fault

# flock on a file system that does not support it (some network and FUSE mounts).
_TEMP = re.compile(r"\..+\.tmp\d+")  # fsio.temp_path's names
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}


def lock_path(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name}.lock"


@contextlib.contextmanager
def run_lock(run_dir: str | Path, note: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the exclusive lock of run_dir until the block exits (however it exits). Refuses with a UserError
    when another process holds it or when the file system cannot lock; `note` hears of a stale lock taken over."""
    run_dir = Path(run_dir)
    path = lock_path(run_dir)
    parent = path.parent.absolute()
    created = [p for p in (parent, *parent.parents) if not p.exists()]
    try:
        fd = _acquire(run_dir, path)
    except UserError:
        _remove_empty(created)
        raise
    try:
        stale = _read_pid(fd)
        if stale is not None and stale != os.getpid() and note is not None:
            note(f"took over the lock of {run_dir} left by pid {stale}, which no longer holds it (killed?)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _remove_leftovers(run_dir)
        yield path
    finally:
        # Unlink while still holding the lock: a process that opened the old file finds, once it gets the
        # lock, that the path no longer names it, and starts over (see _acquire).
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
        _remove_empty(created)  # a fresh run that never got published leaves no empty parents behind


def _remove_empty(folders: list[Path]) -> None:
    for p in folders:  # deepest first
        with contextlib.suppress(OSError):
            if p.exists() and not any(p.iterdir()):
                p.rmdir()


def _acquire(run_dir: Path, path: Path) -> int:
    while True:
        created = not path.exists()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise os_fault(path, e, f"cannot lock {run_dir}: cannot create") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            owner = _read_pid(fd)
            os.close(fd)
            if created and e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                with contextlib.suppress(OSError):
                    path.unlink()
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f"process {owner}" if owner is not None else "another process"
                raise UserError(f"{run_dir} is in use by {who} (another train or average); wait for it to "
                                f"finish or stop it, or choose another --out") from None
            if e.errno in _NO_LOCKING:
                raise UserError(f"cannot lock {run_dir}: its file system does not support file locks "
                                f"({errno.errorcode.get(e.errno, e.errno)}); choose an --out on a local disk") from None
            raise os_fault(path, e, f"cannot lock {run_dir}:") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the owner we waited for unlinked it on release; lock the new file


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _remove_leftovers(run_dir: Path) -> None:
    """What a killed writer of this run left: staging directories and half-written temp files
    (fsio.temp_path). Only the lock holder writes the run, so none of them is live."""
    for p in run_dir.parent.glob(f".{run_dir.name}.staging-*"):
        shutil.rmtree(p, ignore_errors=True)
    for folder in (run_dir, run_dir / "checkpoints"):
        for p in folder.glob(".*.tmp*"):
            if _TEMP.fullmatch(p.name):
                with contextlib.suppress(OSError):
                    p.unlink()


def note(message: str) -> None:
    """A one-line notice on stderr (stdout stays the run's progress and results)."""
    print(f"note: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def owner_lock(run_dir: Path, is_main: bool = True) -> Iterator[None]:
    """run_lock on the main process only: the other ranks of one torchrun job are the same writer."""
    with run_lock(run_dir, note=note) if is_main else contextlib.nullcontext():
        yield
