"""Every file attnkit writes goes through `atomic_write`: the content is written to a temp file beside the
target, flushed to disk, then renamed over it, so a reader (or a crash, or a full disk) never sees half a file.
On failure the temp file is removed and the target is left as it was.

The one primitive for checkpoints, configs, metrics, tokenizers, data caches and plots. An OS fault while
writing (a full disk, a read-only file system, no permission, a quota) is one `UserError` naming the file and
the cause, so every caller reports it as one line. Files get the mode of a plain `open()`: they follow the umask.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Callable, Union

from attnkit.errors import UserError

Content = Union[bytes, str, Callable[[Path], None]]


def temp_path(path: Path) -> Path:
    """A hidden sibling of path, unique to this process."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def os_fault(path: str | Path, e: OSError, doing: str = "cannot write") -> UserError:
    """One line for an OS error on path: 'cannot write runs/x/model.safetensors: No space left on device (ENOSPC)'."""
    code = errno.errorcode.get(e.errno or 0, "")
    cause = e.strerror or str(e) or type(e).__name__
    return UserError(f"{doing} {path}: {cause}" + (f" ({code})" if code else ""))


def make_dirs(path: str | Path) -> Path:
    """mkdir -p, with an OS fault as one UserError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_fault(path, e, "cannot create") from None
    return path


def atomic_write(path: str | Path, content: Content) -> Path:
    """Write content to path atomically. content is bytes, text (UTF-8), or a function that writes the file
    at the path it is given (prefer bytes: a function's own error on a full disk may not be an OSError).
    Returns path; raises UserError on an OS fault."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        if callable(content):
            content(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        else:
            data = content.encode("utf-8") if isinstance(content, str) else content
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise os_fault(path, e) from None
        raise
    return path


def append_line(path: str | Path, line: str) -> Path:
    """Add one line to the end of a text file (a results .jsonl), created if missing, through atomic_write:
    a crash leaves the file with or without the line, never half of it."""
    path = Path(path)
    before = path.read_text() if path.exists() else ""
    return atomic_write(path, before + line + "\n")


def npz_bytes(compressed: bool = False, **arrays) -> bytes:
    """An .npz archive of arrays as bytes, for atomic_write (np.savez to a path is neither atomic nor one line
    on a full disk)."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()
