"""Every file attnkit writes goes through `atomic_write`: the content is written to a temp file beside the
target, flushed to disk, then renamed over it, so a reader (or a crash, or a full disk) never sees half a file.
On failure the temp file is removed and the target is left as it was.

The one primitive for checkpoints, configs, metrics, tokenizers, data caches and plots.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Union

Content = Union[bytes, str, Callable[[Path], None]]


def temp_path(path: Path) -> Path:
    """A hidden sibling of path, unique to this process."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write(path: str | Path, content: Content) -> Path:
    """Write content to path atomically. content is bytes, text (UTF-8), or a function that writes the file
    at the path it is given (torch.save, safetensors, savefig...). Returns path."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        if callable(content):
            content(tmp)
        else:
            data = content.encode("utf-8") if isinstance(content, str) else content
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
