"""espeak-ng speech (attnkit.zoo.data.speech): synthesis, splits that hold out voices and texts, and the run cache."""
import shutil

import numpy as np
import pytest

from attnkit.config import TrainConfig
from attnkit.zoo.data import speech
from attnkit.zoo.data.logmel import log_mel
from attnkit.errors import UserError
from attnkit.zoo.tasks.asr import ASRTask
from attnkit.engine.resolve import resolve_config


def test_espeak_speaks_at_22050_and_resamples_to_16k():
    raw = speech.espeak().synth("one two three", "m1", 175, 50)
    assert raw.dtype == np.float32 and 0.5 < raw.size / speech.ESPEAK_RATE < 3.0
    assert 0.05 < np.abs(raw).max() <= 1.0
    wave = speech.to_16k(raw, speech.ESPEAK_RATE)
    assert abs(wave.size - raw.size * 16000 / 22050) <= 1
    # Faster speech is shorter; another voice sounds different.
    slow, fast = speech.say("four five six seven", "m1", 130), speech.say("four five six seven", "m1", 210)
    assert fast.size < 0.85 * slow.size
    male, female = log_mel(speech.say("four five six seven", "m1", 130)), log_mel(speech.say("four five six seven", "f1", 130))
    n = min(male.shape[1], female.shape[1])
    assert float((male[:, :n] - female[:, :n]).abs().mean()) > 0.1
    with pytest.raises(ValueError, match="voice"):
        speech.say("one", "no-such-voice")


def test_repeated_synthesis_agrees_within_tolerance():
    # espeak-ng is not bit-reproducible across calls: compare log-mels, not samples.
    a, b = speech.say("twenty nine", "f3", 160, 40), speech.say("twenty nine", "f3", 160, 40)
    assert abs(a.size - b.size) < 0.02 * a.size
    n = min(a.size, b.size)
    ma, mb = log_mel(a[:n]), log_mel(b[:n])
    assert float((ma - mb).abs().mean()) < 0.05


def test_heldout_texts_and_voices_never_reach_training():
    assert not set(speech.SEEN_VOICES) & set(speech.HELDOUT_VOICES)
    train, test = speech.corpus_texts(2000, 100)
    assert len(set(train)) == 2000 and len(set(test)) == 100 and not set(train) & set(test)
    assert all(len(t.split()) >= 3 for t in test)
    assert all(set(t) <= set(" 'abcdefghijklmnopqrstuvwxyz") for t in train + test)
    assert speech.ordinal(21) == "twenty first" and speech.ordinal(30) == "thirtieth"


def test_quantised_log_mel_is_within_half_a_step():
    mel = log_mel(speech.say("set a timer for five minutes", "m2")).numpy()
    q, top = speech.quantise(mel)
    assert np.abs(speech.dequantise(q, top) - mel).max() <= 1.0 / 255 + 1e-6


def small_task(resume_from=None, **opts):
    import dataclasses

    cfg = resolve_config(TrainConfig(model="asr", flavor="debug"))
    if resume_from is not None:
        cfg = dataclasses.replace(cfg, resume=True, out=str(resume_from))
    return ASRTask(cfg, ASRTask.Options(train_clips=opts.get("train_clips", 12), test_clips=opts.get("test_clips", 3)))


def test_corpus_is_synthesised_once_and_a_resumed_run_reads_it_back(tmp_path, monkeypatch):
    run, staged = tmp_path / "run", tmp_path / "staged"
    run.mkdir(), staged.mkdir()
    first = small_task()
    first.prepare(run)
    assert sorted(p.name for p in run.iterdir()) == ["speech.npz"]
    assert {k: len(s) for k, s in first.splits.items()} == {"train": 12, "heldout": 3, "seen": 3}
    assert {c.voice for c in first.splits["heldout"].clips} <= set(speech.HELDOUT_VOICES)
    assert {c.voice for c in first.splits["train"].clips} <= set(speech.SEEN_VOICES)
    # held-out and seen voices say the same held-out texts
    assert [c.text for c in first.splits["heldout"].clips] == [c.text for c in first.splits["seen"].clips]

    def no_synthesis(*a, **k):
        raise AssertionError("synthesised again on --resume")

    monkeypatch.setattr(speech, "build_corpus", no_synthesis)
    again = small_task(resume_from=run)
    again.prepare(staged)  # the trainer stages a resumed run too: the corpus comes from the run itself
    assert not any(staged.iterdir())
    for name, split in first.splits.items():
        np.testing.assert_array_equal(again.splits[name].mel, split.mel)
        assert [c.text for c in again.splits[name].clips] == [c.text for c in split.clips]
    np.testing.assert_array_equal(again.splits["heldout"].waveform(1), first.splits["heldout"].waveform(1))
    # the stored features are the log-mel of the stored waveform
    h = first.splits["heldout"]
    np.testing.assert_allclose(h.features(0), log_mel(h.waveform(0)).numpy(), atol=0.02)
    # resuming with other data settings, or without the corpus, is refused in one line
    with pytest.raises(UserError, match="other settings"):
        small_task(resume_from=run, train_clips=10).prepare(staged)
    with pytest.raises(UserError, match="missing"):
        small_task(resume_from=staged).prepare(staged)


def test_batches_are_padded_and_shifted():
    import torch

    task = small_task()
    task.splits = {"train": speech.make_split(*speech.synth_clips(["one two", "three hundred four"], ("m1",), 0), False)}
    task.splits["heldout"] = task.splits["train"]
    batch = task.get_batch("val", 4, torch.Generator().manual_seed(0))
    from attnkit.zoo.models.asr import PAD_FRAME

    mel, tin, tout = batch["mel"], batch["tgt_in"], batch["tgt_out"]
    assert mel.shape[:2] == (4, 80) and tin.shape == tout.shape
    assert (tin[:, 0] == 1).all() and torch.equal(tin[:, 1:][tout[:, :-1] > 2], tout[:, :-1][tout[:, :-1] > 2])
    lengths = (mel[:, 0] != PAD_FRAME).sum(1)
    assert lengths.max() == mel.shape[2] and (mel[:, :, :][mel == PAD_FRAME].numel() > 0 or lengths.min() == lengths.max())
    for b in range(4):
        text = task.vocab.decode(tout[b].tolist())
        assert text in ("one two", "three hundred four")
        assert (tout[b] == 2).sum() == 1


def test_parallel_synthesis_draws_the_same_corpus_as_one_process(monkeypatch):
    # 300 training clips are two chunks: two worker processes. Texts, voices, rates, pitches, dialects and
    # waveform effects must not depend on how the chunks were shared out, nor on the audio's exact length.
    many = speech.build_corpus(300, 4, seed=3, augment=True)
    monkeypatch.setattr(speech.os, "sched_getaffinity", lambda pid: {0})
    one = speech.build_corpus(300, 4, seed=3, augment=True)
    for name in ("train", "heldout", "seen"):
        assert many[name].clips == one[name].clips
        assert abs(many[name].mel.shape[1] - one[name].mel.shape[1]) <= 0.01 * one[name].mel.shape[1]
    assert len({c.effects for c in one["train"].clips}) > 10


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite (Debian package) is not installed")
def test_flite_says_a_share_of_the_training_clips():
    clips, waves = speech.synth_clips([f"call {n}" for n in range(200)], speech.SEEN_VOICES, seed=0,
                                      augment=True, flite_share=speech.FLITE_SHARE)
    flite = [c for c in clips if c.voice.startswith("flite:")]
    assert 0.15 < len(flite) / len(clips) < 0.35 and {c.voice for c in flite} == {f"flite:{v}" for v in speech.FLITE_VOICES}
    assert all(c.dialect == "" and c.word_gap == 0 for c in flite)
    slow, fast = speech.flite_say("four five six seven", "awb", 130), speech.flite_say("four five six seven", "awb", 210)
    assert fast.size < 0.8 * slow.size and np.abs(slow).max() > 0.05


def median_pitch_hz(wave: np.ndarray, sr: int = 16_000) -> float:
    """The median autocorrelation pitch of a clip's voiced 40 ms frames, 70–400 Hz."""
    pitches = []
    for start in range(0, wave.size - 640, 320):
        x = wave[start:start + 640] - wave[start:start + 640].mean()
        ac = np.correlate(x, x, "full")[639:]
        lag = sr // 400 + int(np.argmax(ac[sr // 400:sr // 70]))
        if np.sqrt(np.mean(x ** 2)) > 0.02 and ac[lag] > 0.3 * ac[0]:
            pitches.append(sr / lag)
    return float(np.median(pitches))


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite (Debian package) is not installed")
def test_shifted_flite_speaker_is_higher_and_as_long():
    text = "remind me on march third nineteen ninety"
    own, shifted = speech.flite_say(text, "awb"), speech.flite_say(text, "awb", f0_hz=210, formant=1.15)
    assert abs(shifted.size - own.size) < 0.03 * own.size
    assert median_pitch_hz(own) < 150 and 180 < median_pitch_hz(shifted) < 240
    clips, _ = speech.synth_clips([f"dial {n}" for n in range(120)], speech.SEEN_VOICES, seed=0, augment=True,
                                  flite_share=0.5, flite_shift=True)
    shifted = [c for c in clips if c.formant != 1.0]
    assert shifted and all(c.voice.removeprefix("flite:") in speech.FLITE_SHIFTABLE for c in shifted)
    assert all(speech.SHIFT_F0_HZ[0] <= c.f0_hz <= speech.SHIFT_F0_HZ[1] for c in shifted)


def test_flite_missing_is_one_line_naming_the_package(monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="Debian package flite"):
        speech.flite_say("one", "awb")
