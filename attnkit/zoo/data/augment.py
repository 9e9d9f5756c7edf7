"""Audio and log-mel augmentation for `--model asr`: speakers and rooms the synthesiser alone does not give.

Whisper's lesson is that robustness comes from diverse training audio. Two layers:

* waveform effects, applied once when the training clips are synthesised (`perturb`): speed perturbation by
  resampling (Ko et al. 2015: tempo, pitch and formants move together, like a shorter or longer vocal
  tract), reverberation by a synthetic room impulse response, band-limiting (telephone-like or a random
  low-pass), and noise of three colours (white, pink, brown) at a random SNR;
* log-mel effects, drawn afresh for every training batch (`augment_mel`): a tempo change (frames
  resampled in time), a vocal-tract-length warp (Jaitly & Hinton 2013: mel bins resampled in frequency), with
  `augment=full+vtlp` a formant warp of the spectral envelope alone (`warp_formants`: formants move, the
  harmonics of the pitch stay), and SpecAugment (Park et al. 2019) time and frequency masks.

All functions are pure: numpy arrays in, new arrays out, randomness from the generator passed in.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

from attnkit.zoo.data.logmel import hz_to_mel, mel_edges_hz

SAMPLE_RATE = 16_000


# ---- waveform effects -------------------------------------------------------------------------------
def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise whose power spectrum falls as 1/f^k: white k=0, pink k=1, brown k=2."""
    k = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0
    noise = np.fft.irfft(spectrum / f ** (k / 2), n)
    return (noise / (noise.std() + 1e-12)).astype(np.float32)


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator, colour: str = "white") -> np.ndarray:
    """Noise of a colour at the given signal-to-noise ratio (dB, relative to the clip's mean power)."""
    power = float(np.mean(wave ** 2)) if wave.size else 0.0
    noise = coloured_noise(wave.size, colour, rng) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(wave + noise, -1.0, 1.0).astype(np.float32)


def change_speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (shorter, higher pitch and formants), by resampling in steps of 1/100."""
    up = 100
    down = int(round(factor * up))
    return resample_poly(wave, up, down).astype(np.float32)


def reverberate(wave: np.ndarray, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with exponentially decaying noise (a diffuse room tail of reverberation time rt60 seconds),
    mixed `wet` : 1 − wet with the dry signal, at the dry signal's peak level."""
    n = max(int(rt60 * SAMPLE_RATE), 1)
    tail = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)   # −60 dB at rt60
    tail /= np.sqrt(np.sum(tail ** 2)) + 1e-12
    out = (1 - wet) * wave + wet * fftconvolve(wave, tail)[: wave.size]
    return (out * (np.abs(wave).max() / (np.abs(out).max() + 1e-12))).astype(np.float32)


def band_limit(wave: np.ndarray, low_hz: float | None, high_hz: float) -> np.ndarray:
    """4th-order Butterworth band-pass (or low-pass when low_hz is None)."""
    if low_hz:
        sos = butter(4, [low_hz, high_hz], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    else:
        sos = butter(4, high_hz, btype="lowpass", fs=SAMPLE_RATE, output="sos")
    return sosfilt(sos, wave).astype(np.float32)


@dataclass(frozen=True)
class WaveformPolicy:
    """How often and how strongly `perturb` applies each effect."""
    p_speed: float = 0.6
    speed: tuple[float, float] = (0.85, 1.15)
    p_reverb: float = 0.3
    rt60: tuple[float, float] = (0.15, 0.6)
    p_band: float = 0.3
    snr_db: tuple[float, float] = (5.0, 40.0)
    colours: tuple[str, ...] = ("white", "pink", "brown")


def perturb(wave: np.ndarray, rng: np.random.Generator,
            policy: WaveformPolicy = WaveformPolicy()) -> tuple[np.ndarray, str, float]:
    """One random draw of the waveform effects → (new wave, a short description of what was done, SNR in dB)."""
    done = []
    if rng.random() < policy.p_speed:
        factor = float(rng.uniform(*policy.speed))
        wave = change_speed(wave, factor)
        done.append(f"speed {factor:.2f}")
    if rng.random() < policy.p_reverb:
        rt60 = float(rng.uniform(*policy.rt60))
        wave = reverberate(wave, rt60, float(rng.uniform(0.2, 0.6)), rng)
        done.append(f"reverb {rt60:.2f}s")
    if rng.random() < policy.p_band:
        if rng.random() < 0.5:
            wave, what = band_limit(wave, 300.0, 3400.0), "telephone"
        else:
            high = float(rng.uniform(3000, 7000))
            wave, what = band_limit(wave, None, high), f"lowpass {high:.0f}Hz"
        done.append(what)
    colour = str(rng.choice(policy.colours))
    snr = float(rng.uniform(*policy.snr_db))
    wave = add_noise(wave, snr, rng, colour)
    done.append(f"{colour} noise {snr:.0f}dB")
    return wave, ", ".join(done), snr


# ---- log-mel effects ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MelPolicy:
    """Ranges of `augment_mel`. SpecAugment's LibriSpeech-double policy has 2 frequency masks of ≤ 27 of
    80 mels and time masks of ≤ 100 frames on 10-20 s utterances; our clips are 1-5 s, so time masks scale
    with the clip (adaptive masking, Park et al. 2020)."""
    tempo: tuple[float, float] = (0.85, 1.15)
    warp: tuple[float, float] = (0.9, 1.1)
    formants: tuple[float, float] | None = None   # `warp_formants` factor range; None: no formant warp (no draw)
    freq_masks: int = 2
    freq_width: int = 27
    time_masks_per_second: float = 1.0
    time_width: float = 0.05      # each time mask ≤ this fraction of the clip


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """An integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def resample_axis(x: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Linear interpolation of x to n samples along axis, end points kept."""
    old = x.shape[axis]
    pos = np.linspace(0, old - 1, n)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, old - 1)
    w = (pos - lo).astype(np.float32)
    a, b = np.take(x, lo, axis=axis), np.take(x, hi, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = n
    return a + (b - a) * w.reshape(shape)


def read_rows(x: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Row i of the result is x read at fractional row src[i] (linear interpolation; clipped to x's rows)."""
    src = np.clip(src, 0, x.shape[0] - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, x.shape[0] - 1)
    w = (src - lo).astype(np.float32)[:, None]
    return x[lo] + (x[hi] - x[lo]) * w


def warp_frequency(mel: np.ndarray, alpha: float) -> np.ndarray:
    """Vocal-tract-length warp: bin i takes the value at bin i / alpha (alpha > 1 moves formants up);
    bins past the top repeat the last one."""
    return read_rows(mel, np.arange(mel.shape[0]) / alpha)


# ---- formant warp: VTLP of the spectral envelope, the pitch left alone ---------------------------------
# A log-mel frame is the spectral envelope (the vocal tract: formants) plus fine structure (the harmonics of
# the pitch). Along the 80 Slaney mels (0-8 kHz) a DCT basis vector k has a period of 160 / k bins; the
# harmonics of a pitch up to 250 Hz repeat every ≥ 6.7 bins below 1 kHz (bins 37 Hz apart), i.e. k ≥ 24, and
# more often above it, while formants are a few hundred Hz wide. So the first 20 coefficients are the envelope
# (cepstral liftering, as MFCCs keep 13 of a 26-40 band filterbank), and the rest is the pitch's.
ENVELOPE_COEFFS = 20
VTLP_BOUNDARY_HZ = 4800.0   # Jaitly & Hinton's F_hi: below it frequencies scale by alpha, above it the top stays put


@lru_cache(maxsize=4)
def envelope_projector(n_mels: int, n_coeffs: int = ENVELOPE_COEFFS) -> np.ndarray:
    """(n_mels, n_mels): keeps a log-mel column's first n_coeffs orthonormal DCT-II coefficients."""
    k, i = np.arange(n_coeffs)[:, None], np.arange(n_mels)[None, :]
    dct = np.sqrt(2 / n_mels) * np.cos(np.pi * k * (2 * i + 1) / (2 * n_mels))   # (n_coeffs, n_mels)
    dct[0] /= np.sqrt(2)
    return (dct.T @ dct).astype(np.float32)


def spectral_envelope(mel: np.ndarray) -> np.ndarray:
    """(n_mels, T) log-mel → (n_mels, T) its smooth part, the formants without the pitch's harmonics."""
    return envelope_projector(mel.shape[0]) @ mel


def vtlp_source_hz(hz: np.ndarray, alpha: float, nyquist: float = SAMPLE_RATE / 2) -> np.ndarray:
    """Where a VTLP by alpha reads frequency hz from: the inverse of Jaitly & Hinton's piecewise-linear warp
    f → alpha·f below VTLP_BOUNDARY_HZ·min(alpha, 1), then a straight line that keeps the Nyquist frequency."""
    boundary = VTLP_BOUNDARY_HZ * min(alpha, 1.0)                       # the warp's knee, in output Hz
    above = nyquist - (nyquist - hz) * (nyquist - boundary / alpha) / (nyquist - boundary)
    return np.where(hz <= boundary, hz / alpha, above)


def warp_formants(mel: np.ndarray, alpha: float) -> np.ndarray:
    """(n_mels, T) Whisper log-mel → the same with every formant at alpha× its frequency (a vocal tract
    1/alpha as long) and the pitch's harmonics where they were: only `spectral_envelope` is warped (in Hz, by
    `vtlp_source_hz`), then the fine structure is added back, clipped to the clip's own range."""
    edges = mel_edges_hz(SAMPLE_RATE, mel.shape[0])                                 # (n_mels + 2,)
    step = hz_to_mel(edges[-1]) / (len(edges) - 1)                # Slaney mels between filter centres
    src = hz_to_mel(vtlp_source_hz(edges[1:-1], alpha)) / step - 1   # (n_mels,) fractional bins
    envelope = spectral_envelope(mel)                                                # (n_mels, T)
    out = read_rows(envelope, src) + (mel - envelope)
    return np.clip(out, mel.min(), mel.max()).astype(np.float32)


def light_spec_augment(mel: np.ndarray, g: torch.Generator) -> np.ndarray:
    """SpecAugment (Park et al. 2019), light (`--opt augment=light`): a copy of the (n_mels, T) log-mel with two time
    bands of ≤ 10% of the clip and one band of ≤ 8 mels set to the clip's floor (silence)."""
    mel = mel.copy()
    n_mels, T = mel.shape
    floor = mel.min()
    for _ in range(2):
        w = int(torch.randint(0, max(T // 10, 1) + 1, (1,), generator=g))
        t0 = int(torch.randint(0, max(T - w, 1), (1,), generator=g))
        mel[:, t0:t0 + w] = floor
    w = int(torch.randint(0, 9, (1,), generator=g))
    f0 = int(torch.randint(0, n_mels - w, (1,), generator=g))
    mel[f0:f0 + w] = floor
    return mel


def augment_mel(mel: np.ndarray, g: torch.Generator, policy: MelPolicy = MelPolicy()) -> np.ndarray:
    """(n_mels, T) log-mel → a tempo-changed, frequency-warped (with policy.formants, also formant-warped) and
    masked copy (n_mels, T'). Masks are set to the clip's floor (silence)."""
    n_mels, T = mel.shape
    T2 = max(int(round(T / _uniform(g, *policy.tempo))), 1)
    out = resample_axis(mel, T2, axis=1)
    out = warp_frequency(out, _uniform(g, *policy.warp))
    if policy.formants:
        out = warp_formants(out, _uniform(g, *policy.formants))
    floor = out.min()
    for _ in range(policy.freq_masks):
        w = _randint(g, 0, policy.freq_width)
        f0 = _randint(g, 0, n_mels - w)
        out[f0:f0 + w] = floor
    width = int(policy.time_width * T2)
    for _ in range(int(round(policy.time_masks_per_second * T2 / 100))):   # 100 frames a second
        w = _randint(g, 0, width)
        t0 = _randint(g, 0, max(T2 - w, 0))
        out[:, t0:t0 + w] = floor
    return out.astype(np.float32)


__all__ = ["MelPolicy", "WaveformPolicy", "add_noise", "augment_mel", "band_limit", "change_speed",
           "coloured_noise", "light_spec_augment", "perturb", "read_rows", "resample_axis", "reverberate",
           "spectral_envelope", "vtlp_source_hz", "warp_formants", "warp_frequency"]
