"""Cutting long audio at its quietest moments, so a recogniser trained on short clips can transcribe it.

`split_at_silences` walks through the clip and, whenever more than `max_seconds` remain, cuts at the
quietest 100 ms (mean energy of 10 ms frames) in the second half of the next `max_seconds`, so pieces are
between max_seconds / 2 and max_seconds long and cuts fall in pauses between words when there are any.
"""
from __future__ import annotations

import numpy as np

FRAME = 160          # 10 ms at 16 kHz
SMOOTH = 10          # frames: the quietest 100 ms


def frame_energy_db(wave: np.ndarray) -> np.ndarray:
    """(samples,) → (frames,) mean power of each 10 ms frame in dB (floor −100 dB)."""
    n = wave.size // FRAME
    frames = wave[: n * FRAME].reshape(n, FRAME).astype(np.float64)
    return 10 * np.log10(np.maximum((frames ** 2).mean(1), 1e-10))


def split_at_silences(wave: np.ndarray, max_seconds: float, rate: int = 16_000) -> list[tuple[int, int]]:
    """(start, end) sample ranges that cover the wave in order, each at most max_seconds long."""
    limit = int(max_seconds * rate)
    if wave.size <= limit:
        return [(0, wave.size)]
    energy = frame_energy_db(wave)
    smooth = np.convolve(energy, np.ones(SMOOTH) / SMOOTH, mode="same")     # (frames,)
    pieces, start = [], 0
    while wave.size - start > limit:
        lo, hi = (start + limit // 2) // FRAME, (start + limit) // FRAME      # search frames
        cut = (lo + int(np.argmin(smooth[lo:hi]))) * FRAME
        pieces.append((start, cut))
        start = cut
    pieces.append((start, wave.size))
    return pieces


__all__ = ["frame_energy_db", "split_at_silences"]
