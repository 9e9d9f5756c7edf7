"""Audio and log-mel augmentation (attnkit.zoo.data.augment)."""
import numpy as np
import pytest
import torch

from attnkit.zoo.data import augment as A


@pytest.mark.parametrize("colour,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_noise_colours_have_their_spectral_slope(colour, slope):
    rng = np.random.default_rng(0)
    n = A.coloured_noise(1 << 16, colour, rng)
    assert n.std() == pytest.approx(1.0, rel=1e-3)
    power = np.abs(np.fft.rfft(n)) ** 2
    bands = np.logspace(1.5, 4.2, 12).astype(int)               # mean power in log-spaced bands
    mean = [power[a:b].mean() for a, b in zip(bands[:-1], bands[1:])]
    centre = [np.sqrt(a * b) for a, b in zip(bands[:-1], bands[1:])]
    fitted = np.polyfit(np.log10(centre), np.log10(mean), 1)[0]
    assert fitted == pytest.approx(slope, abs=0.15)


def test_noise_is_added_at_the_asked_snr():
    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(np.arange(32000) * 0.05)).astype(np.float32)
    noisy = A.add_noise(wave, 10.0, rng, "pink")
    snr = 10 * np.log10(np.mean(wave ** 2) / np.mean((noisy - wave) ** 2))
    assert snr == pytest.approx(10.0, abs=0.3)


def test_speed_change_scales_length_and_pitch():
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    fast = A.change_speed(tone, 1.25)
    assert abs(fast.size - 16000 / 1.25) <= 1
    peak = np.argmax(np.abs(np.fft.rfft(fast))) * 16000 / fast.size
    assert peak == pytest.approx(550, abs=3)


def test_band_limit_removes_what_lies_outside_the_band():
    t = np.arange(16000) / 16000
    low, high = np.sin(2 * np.pi * 100 * t), np.sin(2 * np.pi * 6000 * t)
    phone = A.band_limit((low + high + np.sin(2 * np.pi * 1000 * t)).astype(np.float32), 300.0, 3400.0)
    spec = np.abs(np.fft.rfft(phone[2000:]))
    bin_of = lambda hz: int(round(hz * (16000 - 2000) / 16000))
    assert spec[bin_of(1000)] > 30 * spec[bin_of(100)] and spec[bin_of(1000)] > 30 * spec[bin_of(6000)]


def test_reverb_keeps_length_and_peak_and_spreads_energy_later():
    rng = np.random.default_rng(0)
    click = np.zeros(8000, np.float32)
    click[100] = 0.5
    wet = A.reverberate(click, 0.3, 0.5, rng)
    assert wet.shape == click.shape and np.abs(wet).max() == pytest.approx(0.5, rel=1e-5)
    assert np.sum(wet[1000:] ** 2) > 0.01 * np.sum(wet ** 2) and np.abs(wet[:100]).max() < 1e-6  # causal: nothing before the click


def test_perturb_is_reproducible_from_its_generator_and_describes_itself():
    wave = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    a, what_a, snr_a = A.perturb(wave, np.random.default_rng(5))
    b, what_b, snr_b = A.perturb(wave, np.random.default_rng(5))
    assert np.array_equal(a, b) and what_a == what_b and snr_a == snr_b
    assert what_a.endswith(f"noise {snr_a:.0f}dB") and 5 <= snr_a <= 40


def test_frequency_warp_is_identity_at_one_and_moves_a_peak():
    mel = np.zeros((80, 5), np.float32)
    mel[30] = 1.0
    np.testing.assert_allclose(A.warp_frequency(mel, 1.0), mel)
    assert int(A.warp_frequency(mel, 1.1)[:, 0].argmax()) == 33     # bin 33 reads bin 30
    assert int(A.warp_frequency(mel, 0.9)[:, 0].argmax()) == 27


def vowel(f0: float, formants: tuple[float, ...], seconds: float = 1.0) -> np.ndarray:
    """A glottal pulse train at f0 through one two-pole resonance (100 Hz wide) per formant, 16 kHz."""
    from scipy.signal import lfilter

    x = np.zeros(int(16000 * seconds))
    x[::int(16000 / f0)] = 1.0
    for f in formants:
        r, theta = np.exp(-np.pi * 100 / 16000), 2 * np.pi * f / 16000
        x = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def test_formant_warp_is_identity_at_one_and_keeps_the_shape():
    from attnkit.zoo.data.logmel import log_mel

    mel = log_mel(vowel(120, (700, 1800))).numpy()                      # (80, 100)
    np.testing.assert_allclose(A.warp_formants(mel, 1.0), mel, atol=1e-5)
    for alpha in (0.9, 1.25):
        out = A.warp_formants(mel, alpha)
        assert out.shape == mel.shape and out.dtype == np.float32
        assert mel.min() <= out.min() and out.max() <= mel.max()       # still a Whisper log-mel of the clip's range


@pytest.mark.parametrize("f0", [120, 220])
@pytest.mark.parametrize("alpha", [0.9, 1.2])
def test_formant_warp_moves_the_formant_and_keeps_the_pitch(f0, alpha):
    from attnkit.zoo.data.logmel import hz_to_mel, log_mel, mel_to_hz

    centres = mel_to_hz(np.arange(1, 81) * hz_to_mel(8000) / 81)       # the 80 filters' centres, Hz
    mel = log_mel(vowel(f0, (700, 1800))).numpy()
    out = A.warp_formants(mel, alpha)
    peak = lambda m: centres[A.spectral_envelope(m).mean(1)[:25].argmax()]   # F1 (the first 25 bins end at 1.1 kHz)
    assert abs(peak(out) - alpha * peak(mel)) < 40                     # one filter is 37 Hz wide here
    # The harmonics of the pitch (what the envelope leaves, below 1.1 kHz) stay where they were; warping the
    # whole spectrum (warp_frequency) would move them with the formants.
    fine = lambda m: (m - A.spectral_envelope(m))[:30].ravel()
    assert np.corrcoef(fine(mel), fine(out))[0, 1] > 0.98
    assert np.corrcoef(fine(mel), fine(A.warp_frequency(mel, alpha)))[0, 1] < 0.5


def test_augment_mel_changes_tempo_and_masks_to_the_floor():
    g = torch.Generator().manual_seed(0)
    mel = np.random.default_rng(0).uniform(-1, 1, (80, 300)).astype(np.float32)
    lengths = set()
    for _ in range(20):
        out = A.augment_mel(mel, g)
        lengths.add(out.shape[1])
        assert out.shape[0] == 80 and 300 / 1.15 - 1 <= out.shape[1] <= 300 / 0.85 + 1
        assert out.min() >= mel.min() - 1e-6 and out.max() <= mel.max() + 1e-6
    assert len(lengths) > 5
    no_masks = A.MelPolicy(tempo=(1.0, 1.0), warp=(1.0, 1.0), freq_masks=0, time_masks_per_second=0.0, time_width=0.0)
    np.testing.assert_allclose(A.augment_mel(mel, g, no_masks), mel, atol=1e-6)


def test_augment_mel_warps_formants_when_its_policy_asks():
    mel = np.random.default_rng(0).uniform(-1, 1, (80, 200)).astype(np.float32)
    only_formants = A.MelPolicy(tempo=(1.0, 1.0), warp=(1.0, 1.0), formants=(1.2, 1.2), freq_masks=0,
                                time_masks_per_second=0.0, time_width=0.0)
    np.testing.assert_allclose(A.augment_mel(mel, torch.Generator(), only_formants), A.warp_formants(mel, 1.2))
