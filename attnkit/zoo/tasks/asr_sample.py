"""`attnkit sample` for `--model asr` (`attnkit.zoo.tasks.asr.ASRTask` is built on this): held-out clips from the
run's cache, WAV files (`--audio`, several in one batch, long ones cut at silences) and synthesised text (`--say`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch.nn as nn

from attnkit.config import SampleConfig, TrainConfig
from attnkit.errors import UserError
from attnkit.zoo.data import speech
from attnkit.zoo.data.audio import audio_paths, read_wavs
from attnkit.zoo.data.logmel import SAMPLE_RATE, log_mel
from attnkit.zoo.eval import asr as asr_eval
from attnkit.zoo.report import Echo, Report
from attnkit.zoo.tasks.sample_options import ASRSampleOptions
from attnkit.zoo.tasks.seq2seq import BOS

CORPUS = "speech.npz"  # the run's synthesised clips (`attnkit.zoo.data.speech.save_corpus`)
PIECE_SECONDS = 8.0    # longer audio is cut at silences: training clips are a few seconds long


class ASRSampling:
    """What a trained recogniser does for `attnkit sample`; the task gives `transcribe(model, mels, beam)`, `vocab`
    and `run_dir`."""

    def attention_png(self, model: nn.Module, mel: np.ndarray, out: Path, title: str | None = None) -> Path:
        """Greedy-transcribe one clip, then draw its log-mel above the cross-attention of each output character."""
        text = self.transcribe(model, [mel])[0]
        return asr_eval.attention_picture(model, mel, [BOS, *self.vocab.encode(text)], list(text) + ["</s>"], out,
                                          title or f'"{text}" (decoder cross-attention, mean over layers and heads)')

    def transcribe_waves(self, model: nn.Module, waves: list[np.ndarray], beam: int) -> list[str]:
        """16 kHz waveforms of any length → transcripts, cut into pieces of ≤ PIECE_SECONDS decoded as one batch."""
        return asr_eval.transcribe_long(waves, lambda mels: self.transcribe(model, mels, beam), PIECE_SECONDS)

    def transcribe_files(self, model: nn.Module, paths: list[Path], beam: int, echo: Echo) -> Report:
        """One line per file, `PATH: TRANSCRIPT (SECONDS s)`, all decoded in one batch. The lines are echoed
        (unwrapped, and out before an error), then the files that could not be read are named in one UserError."""
        good, waves, error = read_wavs(paths)
        rows = [{"path": str(p), "transcript": t, "seconds": round(len(w) / SAMPLE_RATE, 2)}
                for p, w, t in zip(good, waves, self.transcribe_waves(model, waves, beam) if waves else [])]
        for row in rows:
            echo(f"{row['path']}: {row['transcript']} ({row['seconds']:.2f} s)\n")
        if error:
            raise error
        rep = Report(metrics={"files": rows})
        if len(rows) == 1:
            rep.metrics.update(source=rows[0]["path"], transcript=rows[0]["transcript"])
        return rep

    @classmethod
    def load(cls, run_dir: Path, cfg: TrainConfig) -> "ASRSampling":
        task = cls(cfg)
        task.run_dir = Path(run_dir)
        return task

    def _heldout_from_cache(self) -> speech.Split:
        path = self.run_dir / CORPUS
        if not path.is_file():
            raise UserError(f"{self.run_dir} has no {CORPUS}: pass --audio FILE.wav or --say \"text\"")
        return speech.load_corpus(path)[0]["heldout"]

    SampleOptions = ASRSampleOptions
    def sample(self, model: nn.Module, cfg: SampleConfig, echo: Echo) -> Report:
        o = self.sample_options(cfg)
        audio, say, voice = o.audio, o.say, o.voice or speech.HELDOUT_VOICES[0]
        beam = max(o.beam, 1)
        if audio and say:
            raise UserError("pass either --audio FILE.wav or --say TEXT, not both")
        if audio:
            return self.transcribe_files(model, audio_paths(audio), beam, echo)
        if say:
            try:
                wave = speech.say(say, voice)
            except ValueError as e:
                raise UserError(str(e)) from None
            source = f"espeak-ng voice {voice}: {say!r}"
            text = self.transcribe_waves(model, [wave], beam)[0]
            rep = Report(metrics={"source": source, "transcript": text, "reference": say,
                                  "wer": asr_eval.wer([say.lower()], [text])}, lines=[source, text])
        else:
            heldout = self._heldout_from_cache()
            n = min(cfg.num_samples if cfg.num_samples > 1 else 10, len(heldout))
            refs = [c.text for c in heldout.clips[:n]]
            hyps = self.transcribe(model, [heldout.features(i) for i in range(n)], beam)
            rows = [{"voice": clip.voice, "reference": ref, "hypothesis": hyp, "wer": asr_eval.wer([ref], [hyp])}
                    for clip, ref, hyp in zip(heldout.clips, refs, hyps)]
            rep = Report(metrics={"clips": rows, "wer": asr_eval.wer(refs, hyps)})
            rep.table(f"{n} held-out clips (voices never heard in training)",
                      ["voice", "reference", "hypothesis", "WER"],
                      [[r["voice"], r["reference"], r["hypothesis"], f"{100 * r['wer']:.0f}%"] for r in rows],
                      note=f"WER over these clips: {100 * rep.metrics['wer']:.1f}%")
        if o.attention_png:
            out_dir = Path(cfg.out) if cfg.out else self.run_dir
            out_dir.mkdir(parents=True, exist_ok=True)
            mel = log_mel(wave[:int(PIECE_SECONDS * SAMPLE_RATE)]).numpy() if say else heldout.features(0)
            path = self.attention_png(model, mel, out_dir / "asr_attention.png")
            rep.metrics["attention_png"] = str(path)
            rep.file("cross-attention picture", path)
        return rep
