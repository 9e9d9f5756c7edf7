"""`attnkit sample --audio` for ASR (attnkit.zoo.tasks.asr_sample, attnkit.zoo.data.audio): any WAV a user has,
several at once, long ones cut at silences (attnkit.zoo.data.segment), bad ones reported by name while the others
still print."""
import numpy as np
import pytest
import torch
from scipy.io import wavfile

from attnkit.config import TrainConfig
from attnkit.engine.resolve import resolve_config
from attnkit.errors import UserError
from attnkit.zoo.data import speech
from attnkit.zoo.data.segment import split_at_silences
from attnkit.zoo.models.asr import ASR, ASRConfig
from attnkit.zoo.data.audio import audio_paths, read_wav
from attnkit.zoo.report import no_echo
from attnkit.zoo.tasks.asr import ASRTask, CharVocab


TEXTS = ("dial nine one one", "room twelve")


@pytest.fixture(scope="module")
def task_and_model():
    """A tiny model that has heard the two texts a few times: its transcripts depend on the audio."""
    from attnkit.zoo.data.logmel import log_mel

    task = ASRTask(resolve_config(TrainConfig(model="asr", flavor="debug")), ASRTask.Options(ctc_weight=0.3))
    torch.manual_seed(3)
    model = ASR(ASRConfig(vocab_size=CharVocab.vocab_size, n_enc_layer=1, n_dec_layer=1, n_head=2, d_model=32,
                          d_ff=64, max_frames=2000, max_len=40, subsample=4, ctc_head=True))
    batch = task.collate([log_mel(speech.say(t, v)).numpy() for t, v in zip(TEXTS, ("m1", "f1"))], list(TEXTS))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = task.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return task, model.eval()


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    """The same kinds of files a user has: 8 kHz float, 44.1 kHz stereo float, 48 kHz 16-bit, 16 kHz 16-bit."""
    d = tmp_path_factory.mktemp("wavs")
    a, b = speech.say(TEXTS[0], "m3"), speech.say(TEXTS[1], "f2", 150)
    from scipy.signal import resample_poly
    files = {"a8k.wav": (8000, resample_poly(a, 1, 2).astype(np.float32)),
             "b44.wav": (44100, np.stack([resample_poly(b, 441, 160)] * 2, 1).astype(np.float32)),
             "a48.wav": (48000, (resample_poly(a, 3, 1) * 32767).astype(np.int16)),
             "b16.wav": (16000, (b * 32767).astype(np.int16))}
    for name, (rate, data) in files.items():
        wavfile.write(d / name, rate, data)
    return d, a, b


def test_every_format_reads_back_as_the_same_16k_mono_wave(wavs):
    d, a, b = wavs
    for name, ref in (("a8k.wav", None), ("b44.wav", b), ("a48.wav", a), ("b16.wav", b)):
        wave = read_wav(d / name)
        assert wave.dtype == np.float32 and wave.ndim == 1
        if ref is not None:
            n = min(len(ref), len(wave))
            assert abs(len(wave) - len(ref)) <= 2 and np.corrcoef(wave[:n], ref[:n])[0, 1] > 0.999, name
    # 8 kHz keeps what lies below 4 kHz of the original
    low = read_wav(d / "a8k.wav")
    assert abs(len(low) - len(a)) <= 2


def test_batched_files_give_what_one_at_a_time_gives(task_and_model, wavs):
    task, model = task_and_model
    d, _, _ = wavs
    paths = sorted(d.glob("*.wav"))
    echoed = []
    together = task.transcribe_files(model, paths, 1, echoed.append).metrics["files"]
    alone = [task.transcribe_files(model, [p], 1, no_echo).metrics["files"][0] for p in paths]
    assert together == alone
    assert len({r["transcript"] for r in together}) > 1          # the untrained model still hears a difference
    lines = "".join(echoed).splitlines()
    assert lines == [f"{r['path']}: {r['transcript']} ({r['seconds']:.2f} s)" for r in together]
    assert [r["path"] for r in together] == [str(p) for p in paths]


def test_bad_files_are_one_error_line_and_the_others_still_print(task_and_model, wavs, tmp_path):
    task, model = task_and_model
    d, _, _ = wavs
    (tmp_path / "text.wav").write_text("I am not audio")
    wavfile.write(tmp_path / "empty.wav", 16000, np.zeros(0, np.int16))
    wavfile.write(tmp_path / "click.wav", 16000, np.ones(80, np.int16))
    wavfile.write(tmp_path / "nan.wav", 16000, np.full(8000, np.nan, np.float32))
    echoed = []
    paths = [d / "b16.wav", tmp_path / "text.wav", tmp_path / "click.wav", d / "a48.wav", tmp_path / "nan.wav",
             tmp_path / "empty.wav"]
    with pytest.raises(UserError) as raised:
        task.transcribe_files(model, paths, 1, echoed.append)
    assert [line.split(": ")[0] for line in "".join(echoed).splitlines()] == [str(d / "b16.wav"), str(d / "a48.wav")]
    # one line naming each bad file with its own reason, in the order given
    error = str(raised.value)
    assert "\n" not in error and error.startswith("4 of 6 audio files were not transcribed: ")
    reasons = ["text.wav is not a readable WAV", "click.wav is 5 ms long", "nan.wav holds samples that are not finite",
               "empty.wav holds no audio"]
    assert all(r in error for r in reasons) and sorted(reasons, key=error.index) == reasons


def test_globs_expand_in_order_and_a_missing_file_stays_to_fail(wavs, tmp_path):
    d, _, _ = wavs
    assert audio_paths([str(d / "a*.wav"), str(d / "b16.wav")]) == [d / "a48.wav", d / "a8k.wav", d / "b16.wav"]
    assert audio_paths(str(tmp_path / "none*.wav")) == [tmp_path / "none*.wav"]
    with pytest.raises(UserError, match="not found"):
        read_wav(tmp_path / "none*.wav")


def test_long_audio_is_cut_in_the_pauses(task_and_model):
    rng = np.random.default_rng(0)
    burst = lambda s: (0.3 * rng.standard_normal(int(s * 16000))).astype(np.float32)
    quiet = lambda s: (1e-4 * rng.standard_normal(int(s * 16000))).astype(np.float32)
    # speech-like bursts of 3 s with 0.5 s pauses: every cut must fall in a pause
    wave = np.concatenate([x for _ in range(6) for x in (burst(3.0), quiet(0.5))])
    pieces = split_at_silences(wave, 8.0)
    assert pieces[0][0] == 0 and pieces[-1][1] == wave.size
    assert all(a == b for (_, a), (b, _) in zip(pieces, pieces[1:]))
    assert all(4.0 * 16000 <= e - s <= 8.0 * 16000 for s, e in pieces[:-1]) and pieces[-1][1] - pieces[-1][0] <= 8 * 16000
    for _, cut in pieces[:-1]:
        assert cut % int(3.5 * 16000) >= 3.0 * 16000, cut / 16000
    assert split_at_silences(wave[:16000], 8.0) == [(0, 16000)]
    # a 21 s file is transcribed piece by piece, not refused
    task, model = task_and_model
    assert isinstance(task.transcribe_waves(model, [wave], 1)[0], str)
