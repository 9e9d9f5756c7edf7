"""`--model asr` end to end on its debug flavor: train through the CLI, then transcribe cached clips,
a WAV file and synthesised text; bad audio gives one clear line."""
import json
import wave

import numpy as np
import pytest
from rich.console import Console

from attnkit.config import SampleConfig
from attnkit.engine.sample import run_sampling
from attnkit.zoo.eval import asr as asr_eval
from cli_invoke import invoke, run


@pytest.fixture(scope="module")
def asr_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("asr")
    out = invoke("train", "--model", "asr", "--flavor", "debug", "--out", run)
    return run, out


def write_wav(path, samples, rate):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.asarray(samples) * 32767).astype(np.int16).tobytes())
    return path


def test_train_writes_the_issue_summary_keys_and_the_attention_picture(asr_run):
    run, out = asr_run
    summary = json.loads((run / "summary.json").read_text())
    # The report's greedy WER on the held-out voices is the WER of the hypotheses `sample` gives for the
    # same clips, recomputed here from them; the reported WER is the better of greedy and beam.
    result = run_sampling(SampleConfig(run=str(run), num_samples=summary["heldout_clips"]), console())
    refs, hyps = [c["reference"] for c in result["clips"]], [c["hypothesis"] for c in result["clips"]]
    assert len(refs) == summary["heldout_clips"] and result["wer"] == asr_eval.wer(refs, hyps)
    assert summary["wer_heldout_voices_greedy"] == pytest.approx(result["wer"])
    assert summary["wer_heldout_voices"] <= summary["wer_heldout_voices_greedy"]
    assert (summary["train_clips"], summary["heldout_clips"], summary["seen_clips"]) == (64, 6, 6)
    assert summary["pocketsphinx_clips"] == 2
    assert (run / "speech.npz").is_file() and (run / "asr_attention.png").stat().st_size > 10_000
    assert "pocketsphinx" in out and "held-out" in out


def test_sample_without_input_transcribes_heldout_clips(asr_run):
    run, _ = asr_run
    out = invoke("sample", "--run", run, "--num-samples", "4")
    assert "4 held-out clips" in out and "reference" in out and "hypothesis" in out and "WER over these clips" in out


def console():
    return Console(width=200, record=True)


def test_sample_transcribes_a_wav_file_and_synthesised_text(asr_run, tmp_path):
    from attnkit.zoo.data.speech import say

    run, _ = asr_run
    # 22 050 Hz is resampled; the run's model (untrained here) returns a string either way.
    path = write_wav(tmp_path / "clip.wav", say("four two")[:16000] * 0.9, 22050)
    result = run_sampling(SampleConfig(run=str(run), options={"audio": str(path)}), console())
    assert isinstance(result["transcript"], str) and result["source"] == str(path)
    out = invoke("sample", "--run", run, "--say", "one two three", "--voice", "f2", "--out", tmp_path, "--attention-png")
    assert "espeak-ng voice f2" in out and (tmp_path / "asr_attention.png").is_file()


@pytest.mark.parametrize("kind", ["not-a-wav", "empty", "7khz", "missing", "unknown-voice"])
def test_bad_audio_is_one_line_error(asr_run, tmp_path, kind, capsys):
    run_dir, _ = asr_run
    args = ["--audio", tmp_path / "x.wav"]
    if kind == "not-a-wav":
        (tmp_path / "x.wav").write_text("hello, I am text")
    elif kind == "empty":
        write_wav(tmp_path / "x.wav", np.zeros(0), 16000)
    elif kind == "7khz":  # 8-48 kHz is resampled; below is refused
        write_wav(tmp_path / "x.wav", np.zeros(7000), 7000)
    elif kind == "unknown-voice":
        args = ["--say", "one", "--voice", "nobody"]
    code, out, err = run(["sample", "--run", run_dir, *args], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert {"not-a-wav": "not a readable WAV", "empty": "no audio", "7khz": "7000 Hz", "missing": "not found",
            "unknown-voice": "unknown espeak-ng voice"}[kind] in lines[0]
