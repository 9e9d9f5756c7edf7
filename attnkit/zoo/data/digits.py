"""scikit-learn's 8×8 handwritten digits (1,797 images, intensities 0..16), ready for the vision models.

The data ships inside scikit-learn, so nothing is downloaded. Every vision task and every baseline uses the
same stratified split (`load_digit_splits`), so accuracies printed side by side are on the same test digits.

    images: uint8 (N, S, S) with values 0..16 (17 intensity levels); labels: int64 (N,)
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

LEVELS = 17          # intensities 0..16, as scikit-learn stores them
N_CLASSES = 10
SPLITS = ("train", "val", "test")


@lru_cache(maxsize=None)
def _split_indices(seed: int, test_fraction: float, val_fraction: float) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    val_share = val_fraction / (1.0 - test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=labels[rest], random_state=seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def load_digit_splits(size: int = 8, seed: int = 0, test_fraction: float = 0.2,
                      val_fraction: float = 0.1) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"train" | "val" | "test": (images uint8 (N, size, size) in 0..16, labels int64 (N,))}.

    A stratified 70/10/20 split (1,257 / 180 / 360 digits) fixed by `seed`. size 16 upsamples bilinearly
    and re-quantises to the same 17 levels, so neighbouring pixels are correlated and locality matters.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32))  # (1797, 8, 8) in 0..16
    images = resize_levels(images, size)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    out = {}
    for split, idx in _split_indices(seed, test_fraction, val_fraction).items():
        ix = torch.from_numpy(idx)
        out[split] = (images[ix].contiguous(), labels[ix].contiguous())
    return out


def resize_levels(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 8, 8) float/uint8 in 0..16 -> (N, size, size) uint8 in 0..16 (bilinear, then rounded)."""
    if size < 1:
        raise ValueError(f"image size must be positive, got {size}")
    x = images.float()
    if size != x.shape[-1]:
        x = F.interpolate(x[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return x.round().clamp(0, LEVELS - 1).to(torch.uint8)


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator, p: float = 1.0) -> torch.Tensor:
    """Translate each image (N, S, S), with probability p, by its own integer (dy, dx) in [-max_shift, max_shift]
    (filling with 0); the others stay put.

    Digits sit in the middle of their 8×8 box with a mostly empty border, so a one-pixel shift keeps
    the digit whole: a cheap, label-preserving augmentation.
    """
    if max_shift <= 0 or p <= 0:
        return images
    N, S, _ = images.shape
    m = max_shift
    padded = F.pad(images, (m, m, m, m))  # (N, S + 2m, S + 2m)
    moved = torch.rand(N, generator=generator) < p
    dy = torch.where(moved, torch.randint(0, 2 * m + 1, (N,), generator=generator), m)  # m = no shift
    dx = torch.where(moved, torch.randint(0, 2 * m + 1, (N,), generator=generator), m)
    rows = (dy[:, None] + torch.arange(S)[None, :])  # (N, S): source rows in the padded image
    cols = (dx[:, None] + torch.arange(S)[None, :])  # (N, S)
    n = torch.arange(N)[:, None, None]
    return padded[n, rows[:, :, None], cols[:, None, :]]  # (N, S, S)


def translate(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move every image (N, S, S) by dy rows down and dx columns right, filling with 0 (what falls off is lost)."""
    m = max(abs(dy), abs(dx))
    if m == 0:
        return images
    S = images.shape[-1]
    padded = F.pad(images, (m, m, m, m))  # (N, S + 2m, S + 2m)
    return padded[:, m - dy:m - dy + S, m - dx:m - dx + S]  # (N, S, S)


def mosaic(images: torch.Tensor, gap: tuple[int, int] = (1, 1), fill: float = float("nan")) -> torch.Tensor:
    """(rows, cols, h, w[, C]) -> one canvas (rows·(h+gy)−gy, cols·(w+gx)−gx[, C]), `fill` in the gaps."""
    rows, cols, h, w = images.shape[:4]
    gy, gx = gap
    canvas = torch.full((rows * (h + gy) - gy, cols * (w + gx) - gx, *images.shape[4:]), fill)
    for r in range(rows):
        for c in range(cols):
            canvas[r * (h + gy):r * (h + gy) + h, c * (w + gx):c * (w + gx) + w] = images[r, c].float()
    return canvas


def save_digit_grid(path, images: torch.Tensor, titles: list[list[str]] | None = None,
                    title_colors: list[list[str]] | None = None, row_labels: list[str] | None = None,
                    suptitle: str | None = None) -> str:
    """Write a PNG grid of digits. images: (rows, cols, S, S) in 0..16; titles/colors per cell (optional).

    One mosaic in one axes (not an axes per digit): a 10×8 grid renders in a fraction of a second.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols, S = images.shape[0], images.shape[1], images.shape[-1]
    gap = max(1, S // 4)
    gap_y = gap + (S // 2 if titles is not None else 0)  # room for the titles above each row
    canvas = mosaic(images.cpu(), gap=(gap_y, gap))
    title_h = 0.3 if titles is not None else 0.0
    fig, ax = plt.subplots(figsize=(0.9 * cols + (0.5 if row_labels else 0) + 0.3,
                                    (0.9 + title_h) * rows + (0.5 if suptitle else 0.2)))
    cmap = matplotlib.colormaps["gray_r"].with_extremes(bad="white")  # the gaps between digits are NaN
    ax.imshow(canvas.numpy(), cmap=cmap, vmin=0, vmax=LEVELS - 1, interpolation="nearest", aspect="equal")
    ax.set_axis_off()
    for r in range(rows):
        y0 = r * (S + gap_y) - 0.5
        if row_labels is not None:
            ax.text(-gap - 0.5, y0 + S / 2, row_labels[r], ha="right", va="center", fontsize=11)
        if titles is None:
            continue
        for c in range(cols):
            color = title_colors[r][c] if title_colors is not None else "black"
            ax.text(c * (S + gap) + S / 2 - 0.5, y0 - 0.15, titles[r][c], ha="center", va="bottom",
                    fontsize=7, color=color)
    if suptitle:
        ax.set_title(suptitle, fontsize=9, pad=12 if titles is not None else 6)
    fig.tight_layout()
    from attnkit.zoo.plots import save_figure

    return str(save_figure(fig, path, dpi=100))
