"""PNG plots (matplotlib, Agg backend: no display needed): training curves, piano rolls, attention heatmaps."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch


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


def plot_piano_roll(grid: np.ndarray, path: Path, primer_steps: int = 0, title: str = "") -> Path:
    """Notes as bars (x: 16th-note steps, y: MIDI pitch), one colour per voice; the primer is shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnkit.data.chorales import VOICES, pitch_range, voice_events

    colours = ("tab:red", "tab:orange", "tab:green", "tab:blue")
    T = len(grid)
    fig, ax = plt.subplots(figsize=(min(max(8, 4 + T / 16), 24), 4.8), dpi=110)
    for v, name in enumerate(VOICES):
        bars = [(s, n) for s, n, p in voice_events(grid[:, v]) if p is not None]
        pitches = [p for _, _, p in voice_events(grid[:, v]) if p is not None]
        for (s, n), p in zip(bars, pitches):
            ax.broken_barh([(s, n)], (p - 0.4, 0.8), facecolors=colours[v], edgecolors="black", linewidth=0.3)
        ax.plot([], [], color=colours[v], linewidth=6, label=name)
    if primer_steps:
        ax.axvspan(0, primer_steps, color="grey", alpha=0.15, label="primer")
    for bar in range(0, T + 1, 16):
        ax.axvline(bar, color="grey", linewidth=0.3)
    rng = pitch_range(grid)
    if rng:
        ax.set_ylim(rng[0] - 2, rng[1] + 2)
    ax.set_xlim(0, max(T, 1))
    ax.set_xlabel("16th-note step (grey lines: every 4 quarters)")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7, ncol=5)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_attention(maps: torch.Tensor, path: Path, layer: int, offset: int = 0, title: str = "") -> Path:
    """maps (H, L, L) of one layer -> one heatmap per head (square root colour scale: weak links visible)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    H, L, _ = maps.shape
    cols = min(H, 4)
    rows = math.ceil(H / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows + 0.4), dpi=110, squeeze=False)
    extent = (offset - 0.5, offset + L - 0.5, offset + L - 0.5, offset - 0.5)
    for h in range(rows * cols):
        ax = axes[h // cols][h % cols]
        if h >= H:
            ax.axis("off")
            continue
        weights = maps[h].float().cpu().numpy()
        future = np.triu(np.ones_like(weights, dtype=bool), 1)  # masked by causality: drawn blank
        cmap = plt.get_cmap("magma").with_extremes(bad="white")
        ax.imshow(np.ma.masked_where(future, weights), cmap=cmap, norm=PowerNorm(0.5, vmin=0, vmax=1),
                  extent=extent, interpolation="nearest")
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xlabel("key token", fontsize=8)
        ax.set_ylabel("query token", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title or f"layer {layer} attention", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
