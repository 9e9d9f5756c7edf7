"""The WAV files a user hands `attnkit sample --audio`: globs expanded, any common format read as 16 kHz mono."""
from __future__ import annotations

import glob
import io
from pathlib import Path

import numpy as np

from attnkit.errors import UserError
from attnkit.zoo.data import speech

MIN_RATE, MAX_RATE = 8_000, 48_000
MIN_SECONDS = 0.1


def audio_paths(audio: str | Path | list[str]) -> list[Path]:
    """--audio values → paths in order; a value with glob characters that names no file is expanded
    (sorted), and one that matches nothing stays as it is, to fail as 'not found'."""
    out = []
    for value in [audio] if isinstance(audio, (str, Path)) else audio:
        value = str(value)
        matches = sorted(glob.glob(value)) if any(c in value for c in "*?[") and not Path(value).exists() else []
        out += [Path(m) for m in matches] or [Path(value)]
    return out


def read_wav(path: str | Path) -> np.ndarray:
    """A WAV file (8–48 kHz, mono or multi-channel, integer or float samples) → mono float32 at 16 kHz;
    anything else is a UserError naming the file. Below 16 kHz the band above rate / 2 stays empty (telephone
    speech), which the training's band-limiting augmentation prepares the model for."""
    from scipy.io import wavfile

    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file not found: {path}")
    try:
        rate, data = wavfile.read(io.BytesIO(path.read_bytes()))
    except (ValueError, EOFError, OSError) as e:
        raise UserError(f"{path} is not a readable WAV file ({e})") from None
    if data.size == 0:
        raise UserError(f"{path} holds no audio samples")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise UserError(f"{path} is sampled at {rate} Hz; the model takes {MIN_RATE}–{MAX_RATE} Hz")
    if data.dtype.kind in "iu":
        info = np.iinfo(data.dtype)
        data = (data.astype(np.float32) - (info.max + info.min + 1) / 2) / (info.max - info.min + 1) * 2
    data = data.astype(np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1)
    if not np.isfinite(data).all():
        raise UserError(f"{path} holds samples that are not finite numbers")
    if len(data) < MIN_SECONDS * rate:
        raise UserError(f"{path} is {1000 * len(data) / rate:.0f} ms long; the model needs at least "
                        f"{1000 * MIN_SECONDS:.0f} ms")
    return speech.to_16k(data, rate)


def read_wavs(paths: list[Path]) -> tuple[list[Path], list[np.ndarray], UserError | None]:
    """The files `read_wav` can read and their waves, in order, and one UserError naming every file it cannot
    (None when it read them all), so a caller can finish the readable ones before failing."""
    good, waves, errors = [], [], []
    for path in paths:
        try:
            waves.append(read_wav(path))
            good.append(path)
        except UserError as e:
            errors.append(e)
    if len(errors) > 1:
        return good, waves, UserError(f"{len(errors)} of {len(paths)} audio files were not transcribed: "
                                      + "; ".join(map(str, errors)))
    return good, waves, errors[0] if errors else None


__all__ = ["audio_paths", "read_wav", "read_wavs"]
