"""Whisper's log-mel spectrogram (Radford et al. 2022, `whisper/audio.py`), in torch.

    16 kHz audio → |STFT|² (n_fft 400 = 25 ms Hann window, hop 160 = 10 ms, last frame dropped)
                 → 80 Slaney mel filters → log10 (floor 1e-10) → clamp at max − 8 → (x + 4) / 4

The filterbank is librosa's default (`librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)`: Slaney's mel
scale, linear below 1 kHz and logarithmic above, each triangle area-normalised), written out here so that
librosa is only a test dependency; `tests/models/test_asr_features.py` checks the two agree.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

SAMPLE_RATE, N_FFT, HOP_LENGTH, N_MELS = 16_000, 400, 160, 80

# Slaney's mel scale (the Auditory Toolbox): 200/3 Hz per mel up to 1 kHz, then log steps of 6.4^(1/27).
_F_SP, _MIN_LOG_HZ = 200.0 / 3, 1000.0
_MIN_LOG_MEL, _LOGSTEP = _MIN_LOG_HZ / _F_SP, math.log(6.4) / 27.0


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    return np.where(f >= _MIN_LOG_HZ, _MIN_LOG_MEL + np.log(np.maximum(f, 1e-10) / _MIN_LOG_HZ) / _LOGSTEP, f / _F_SP)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)


@lru_cache(maxsize=4)
def mel_edges_hz(sr: int = SAMPLE_RATE, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels + 2,) the filters' corners in Hz, evenly spaced in mel from 0 to sr / 2: filter i rises from
    corner i, peaks at corner i + 1 (its centre) and falls to corner i + 2. Read-only (it is cached)."""
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    edges.flags.writeable = False
    return edges


@lru_cache(maxsize=4)
def mel_filters(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters on Slaney's mel scale, Slaney-normalised (area 1 in Hz)."""
    fft_hz = np.linspace(0, sr / 2, n_fft // 2 + 1)                                # (F,)
    edges = mel_edges_hz(sr, n_mels)                                               # (n_mels + 2,)
    widths = np.diff(edges)                                                       # (n_mels + 1,)
    ramps = edges[:, None] - fft_hz[None, :]                                       # (n_mels + 2, F)
    rising, falling = -ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(rising, falling))                          # (n_mels, F)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def log_mel(audio: torch.Tensor | np.ndarray) -> torch.Tensor:
    """audio: (T,) or (B, T) float at 16 kHz → (n_mels, T // 160) or (B, n_mels, T // 160), Whisper-scaled.

    The max − 8 clamp is taken per clip (Whisper takes it over its one 30-second clip).
    """
    audio = torch.as_tensor(audio, dtype=torch.float32)
    single = audio.dim() == 1
    audio = audio[None] if single else audio                                       # (B, T)
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, return_complex=True)  # (B, F, frames + 1)
    power = stft[..., :-1].abs() ** 2                                              # (B, F, frames)
    mel = mel_filters().to(audio.device) @ power                                   # (B, n_mels, frames)
    log_spec = mel.clamp(min=1e-10).log10()
    peak = log_spec.amax(dim=(1, 2), keepdim=True)                                 # (B, 1, 1)
    log_spec = torch.maximum(log_spec, peak - 8.0)
    log_spec = (log_spec + 4.0) / 4.0
    return log_spec[0] if single else log_spec
