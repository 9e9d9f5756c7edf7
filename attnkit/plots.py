"""PNG plots of training runs (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def plot_losses(metrics: Sequence[dict], out: str | Path, title: str = "") -> Path | None:
    """Train and validation loss against step, from metrics.jsonl records; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [m for m in metrics if "step" in m]
    if not records:
        return None
    out = Path(out)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for key, style in (("train_loss", "-o"), ("val_loss", "-s")):
        pts = [(m["step"], m[key]) for m in records if m.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), style, markersize=3, label=key.replace("_", " "))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return out
