"""Whisper's log-mel front end (attnkit.zoo.data.logmel) against librosa, which is only a test dependency."""
import librosa
import numpy as np
import pytest
import torch

from attnkit.zoo.data.logmel import HOP_LENGTH, N_MELS, hz_to_mel, log_mel, mel_filters, mel_to_hz


def test_mel_filterbank_matches_librosa_slaney():
    ours = mel_filters().numpy()
    ref = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)  # Slaney scale and norm: librosa's default
    assert ours.shape == ref.shape == (80, 201)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)


def test_slaney_scale_round_trips_and_is_linear_below_1khz():
    f = np.array([0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(hz_to_mel(np.array([500.0])), librosa.hz_to_mel(500.0), rtol=1e-10)
    np.testing.assert_allclose(hz_to_mel(np.array([5000.0])), librosa.hz_to_mel(5000.0), rtol=1e-10)


def whisper_log_mel_librosa(wave):
    """The same pipeline on librosa's STFT and filterbank: power spectrum, last frame dropped, log10,
    clamp at max - 8, (x + 4) / 4."""
    S = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=400, hop_length=160, n_mels=80, power=2.0,
                                       center=True, pad_mode="reflect", htk=False, norm="slaney")[:, :-1]
    L = np.log10(np.maximum(S, 1e-10))
    return (np.maximum(L, L.max() - 8.0) + 4.0) / 4.0


def test_log_mel_matches_librosa_pipeline_on_a_chirp_with_noise():
    t = np.arange(16000 * 2) / 16000
    rng = np.random.default_rng(0)
    wave = (0.5 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    ours = log_mel(wave).numpy()
    assert ours.shape == (N_MELS, wave.size // HOP_LENGTH)
    np.testing.assert_allclose(ours, whisper_log_mel_librosa(wave), atol=1e-4)


def test_log_mel_range_and_batching():
    rng = np.random.default_rng(1)
    a = rng.standard_normal(8000).astype(np.float32) * 0.1
    b = np.concatenate([np.zeros(4000, np.float32), a[:4000]])
    single = [log_mel(a), log_mel(b)]
    batch = log_mel(torch.from_numpy(np.stack([a, b])))
    for one, row in zip(single, batch):
        # the clamp is per clip: every clip spans at most 2 (= 8 decades / 4) below its own maximum
        assert float(one.max() - one.min()) <= 2.0 + 1e-6
        torch.testing.assert_close(row, one, atol=1e-5, rtol=1e-5)
    # silence is clamped, never -inf
    assert torch.isfinite(log_mel(np.zeros(1600, np.float32))).all()


@pytest.mark.parametrize("freq", [300.0, 2500.0])
def test_a_pure_tone_peaks_in_its_mel_bin(freq):
    t = np.arange(16000) / 16000
    mel = log_mel(np.sin(2 * np.pi * freq * t).astype(np.float32))
    centres = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(8000.0), N_MELS + 2))[1:-1]
    peak_bin = int(mel[:, 10:-10].mean(1).argmax())
    assert abs(peak_bin - int(np.abs(centres - freq).argmin())) <= 1
