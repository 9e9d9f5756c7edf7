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
