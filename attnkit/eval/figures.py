"""Writing a matplotlib figure atomically (a temporary file, then a rename), so a reader never sees half a PNG."""
from __future__ import annotations

import os
from pathlib import Path


def save_figure(fig, path: str | Path) -> str:
    """Save `fig` to `path` through a temporary file in the same folder, close it, and return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return str(path)
