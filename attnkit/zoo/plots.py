"""PNG plots (matplotlib, Agg backend: no display needed): training curves, piano rolls, attention heatmaps."""
from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch



def can_plot() -> bool:
    """Whether matplotlib (the zoo extra) is installed; without it the trainer skips loss.png."""
    return importlib.util.find_spec("matplotlib") is not None


def save_figure(fig, path: str | Path, dpi: int | None = None) -> Path:
    """Save `fig` through a temporary file in the same folder, then rename, so a reader never sees half a PNG;
    closes the figure and returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, path)
    return path

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
    return save_figure(fig, out)


def plot_piano_roll(grid: np.ndarray, path: Path, primer_steps: int = 0, title: str = "") -> Path:
    """Notes as bars (x: 16th-note steps, y: MIDI pitch), one colour per voice; the primer is shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnkit.zoo.data.chorales import VOICES, pitch_range, voice_events

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


def plot_cls_attention(maps: torch.Tensor, images: torch.Tensor, pred: torch.Tensor, patch: int, levels: int,
                       path: Path) -> str:
    """ViT attention maps (layers, B, H, N+1, N+1) of digits (B, S, S) → one row per digit: the digit, then
    CLS → patch attention (mean over heads) for each layer.

    Each heat map is normalised on its own and shaded by the digit's ink, so you can see which
    strokes the CLS token reads at each depth.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnkit.zoo.data.digits import mosaic

    n_layer, B = maps.shape[:2]
    S, p = images.shape[-1], patch
    g = S // p
    heat = maps[:, :, :, 0, 1:].mean(2).reshape(n_layer, B, g, g)  # (layers, B, g, g): CLS row, patches
    heat = heat.repeat_interleave(p, -2).repeat_interleave(p, -1)  # (layers, B, S, S)
    lo, hi = heat.amin((-2, -1), keepdim=True), heat.amax((-2, -1), keepdim=True)
    heat = (heat - lo) / (hi - lo).clamp_min(1e-12)
    ink = images.float() / (levels - 1)  # (B, S, S)
    heat_rgb = torch.from_numpy(matplotlib.colormaps["viridis"](heat.numpy())[..., :3]).float()
    heat_rgb = heat_rgb * (0.55 + 0.45 * ink[None, :, :, :, None])  # (layers, B, S, S, 3)
    digit_rgb = (1 - ink)[:, :, :, None].expand(B, S, S, 3)  # black ink on white
    panels = torch.cat((digit_rgb[:, None], heat_rgb.transpose(0, 1)), dim=1)  # (B, 1 + layers, S, S, 3)
    canvas = mosaic(panels, gap=(1, 1), fill=1.0)
    fig, ax = plt.subplots(figsize=(max(3.5, 0.9 * (n_layer + 1) + 1.0), 0.9 * B + 0.8))
    ax.imshow(canvas.numpy(), interpolation="nearest")
    ax.set_axis_off()
    for col, name in enumerate(["digit"] + [f"layer {i + 1}" for i in range(n_layer)]):
        ax.text(col * (S + 1) + S / 2 - 0.5, -1.0, name, ha="center", va="bottom", fontsize=8)
    for b in range(B):
        ax.text(-1.0, b * (S + 1) + S / 2 - 0.5, f"pred {pred[b].item()}", ha="right", va="center", fontsize=8)
    ax.set_title("CLS → patch attention\n(mean over heads)", fontsize=9, pad=14)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
