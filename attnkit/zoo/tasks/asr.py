"""`--model asr`: Whisper-style speech recognition of espeak-ng speech (numbers, dates, short commands).

Data: `attnkit.zoo.data.speech` synthesises the clips once per run (cached as RUN/speech.npz; synthesis is not
bit-reproducible, so the cache, not a seed, makes a run repeatable) and `attnkit.zoo.data.logmel` turns them
into Whisper's log-mel frames. Training adds SpecAugment-style masks (two time bands, one mel band), or with
`augment=full` the dialects, waveform effects and log-mel effects of `attnkit.zoo.data.augment`. With
`ctc_weight=λ > 0` the encoder has a CTC head, trained jointly ((1 − λ)·CE + λ·CTC) and used in a joint
CTC/attention beam search; `subsample=4` gives the encoder 25 positions a second instead of 50
(docs/zoo/asr.md has the ablations).
Targets are lower-case characters. `report` decodes the held-out voices and the seen voices (greedy and
beam), scores WER/CER with jiwer, runs pocketsphinx on the same held-out clips, and draws the decoder's
cross-attention over a clip's log-mel (RUN/asr_attention.png).

`attnkit sample --run RUN` transcribes held-out clips (reference, hypothesis, error per clip);
`--audio A.wav --audio 'B*.wav'` transcribes WAV files in one batch (one line each; long ones cut at
silences); `--say "text" [--voice NAME]` synthesises and transcribes.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from attnkit.generation.beam import beam_search, greedy_decode
from attnkit.config import SampleConfig, TrainConfig
from attnkit.zoo.data import augment, speech
from attnkit.zoo.data.logmel import HOP_LENGTH, SAMPLE_RATE, log_mel
from attnkit.zoo.data.segment import split_at_silences
from attnkit.errors import UserError
from attnkit.zoo.eval import asr as asr_eval
from attnkit.zoo.eval import ctc as ctc_eval
from attnkit.zoo.models.asr import ASR, PAD_FRAME, ASRConfig
from attnkit.zoo.tasks.base import Task

CORPUS = "speech.npz"
BEAM, ALPHA = 4, 0.0
MAX_SECONDS = 20.0
MIN_RATE, MAX_RATE = 8_000, 48_000
MIN_SECONDS = 0.1
PIECE_SECONDS = 8.0   # `sample` cuts longer audio at silences: training clips are a few seconds long


class CharVocab:
    """<pad>, <s>, </s>, then space, apostrophe and a–z. Other characters are dropped by `encode`."""
    pad_id, bos_id, eos_id = 0, 1, 2
    chars = " 'abcdefghijklmnopqrstuvwxyz"

    def __len__(self) -> int:
        return 3 + len(self.chars)

    def encode(self, text: str) -> list[int]:
        return [3 + self.chars.index(c) for c in text.lower() if c in self.chars]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i - 3] for i in ids if i >= 3)


@dataclass
class ASROptions:
    train_clips: int | None = field(default=None, metadata={"help": "training clips to synthesise (default: the flavor's)"})
    test_clips: int | None = field(default=None, metadata={"help": "held-out texts, each said by a held-out and a seen voice"})
    ctc_weight: float | None = field(default=None, metadata={
        "help": "weight λ of the encoder's CTC loss and score (hybrid CTC/attention); 0 = attention only"})
    subsample: int | None = field(default=None, metadata={"help": "mel frames per encoder position: 2 or 4"})
    augment: str | None = field(default=None, metadata={
        "help": "light (light SpecAugment) | full (dialects, waveform effects, tempo, VTLP, full SpecAugment)"})


def _flavor(model: dict, train: dict, train_clips: int, test_clips: int, baseline_clips: int,
            ctc_weight: float = 0.0, subsample: int = 2, augment: str = "light") -> dict:
    return {"model": model, "train": train,
            "options": dict(train_clips=train_clips, test_clips=test_clips, ctc_weight=ctc_weight,
                            subsample=subsample, augment=augment),
            "data": dict(baseline_clips=baseline_clips)}


class ASRTask(Task):
    name = "asr"
    Options = ASROptions
    default_flavor = "small"
    flavors = {
        "debug": _flavor(dict(n_enc_layer=1, n_dec_layer=1, n_head=2, d_model=32, d_ff=64),
                         dict(max_steps=30, batch_size=8, lr=3e-3, warmup_steps=5, eval_interval=15,
                              eval_batches=1, label_smoothing=0.1, beta2=0.98, dropout=0.0),
                         train_clips=64, test_clips=6, baseline_clips=2),
        # CPU-sized: 4 + 2 layers × 4 heads × 128 (1.43 M parameters); about 1.3 CPU-seconds a step on one
        # core of the project's machine, so 600 steps fit the 15-minute budget.
        "small": _flavor(dict(n_enc_layer=4, n_dec_layer=2, n_head=4, d_model=128, d_ff=512),
                         dict(max_steps=600, batch_size=32, lr=1.5e-3, warmup_steps=60, eval_interval=50,
                              eval_batches=2, label_smoothing=0.1, beta2=0.98, dropout=0.0, weight_decay=0.05),
                         train_clips=6000, test_clips=200, baseline_clips=60),
        # Whisper tiny's shape (4 + 4 layers × 6 heads × 384), for a GPU.
        "tiny": _flavor(dict(n_enc_layer=4, n_dec_layer=4, n_head=6, d_model=384, d_ff=1536),
                        dict(max_steps=20000, batch_size=64, lr=1e-3, warmup_steps=1000, eval_interval=1000,
                             eval_batches=8, label_smoothing=0.1, beta2=0.98, dropout=0.1),
                        train_clips=50000, test_clips=500, baseline_clips=200),
    }

    def __init__(self, cfg: TrainConfig, opts=None):
        super().__init__(cfg, opts)
        flavor = self.flavors.get(cfg.flavor or self.default_flavor, {})
        self.n_train = self.opts.train_clips or flavor.get("options", {}).get("train_clips", 6000)
        self.n_test = self.opts.test_clips or flavor.get("options", {}).get("test_clips", 200)
        self.baseline_clips = flavor.get("data", {}).get("baseline_clips", self.n_test)
        options = flavor.get("options", {})
        self.ctc_weight = self.opts.ctc_weight if self.opts.ctc_weight is not None else options.get("ctc_weight", 0.0)
        self.subsample = self.opts.subsample or options.get("subsample", 2)
        self.augment = self.opts.augment or options.get("augment", "light")
        if self.augment not in ("light", "full"):
            raise UserError(f"augment must be light or full, got {self.augment!r}")
        if self.subsample not in (2, 4):
            raise UserError(f"subsample must be 2 or 4, got {self.subsample}")
        if not 0.0 <= self.ctc_weight < 1.0:
            raise UserError(f"ctc_weight must be in [0, 1), got {self.ctc_weight}")
        self.vocab = CharVocab()
        self.splits: dict[str, speech.Split] = {}
        self.run_dir: Path | None = None
        self.synth_wall_s: float | None = None     # None when the corpus came from a resumed run's cache
        self.train_started: float | None = None    # perf_counter when prepare ended

    # ---- data ----------------------------------------------------------------------------
    def _spec(self) -> dict:
        spec = {"train_clips": self.n_train, "test_clips": self.n_test, "seed": self.cfg.seed,
                "seen_voices": list(speech.SEEN_VOICES), "heldout_voices": list(speech.HELDOUT_VOICES)}
        if self.augment == "full":  # the light recipe's spec stays as it was, so its old caches still resume
            spec["train_dialects"] = list(speech.TRAIN_DIALECTS)
        return spec

    def prepare(self, run_dir: Path) -> None:
        """Synthesise the corpus into run_dir (the trainer's staging directory) once; a resumed run reads
        its own RUN/speech.npz instead, since synthesis would not give the same clips again."""
        if self.cfg.data:
            raise UserError("--model asr synthesises its own speech; it takes no --data")
        self.run_dir = Path(run_dir)
        if self.cfg.resume:
            path = (self.resume_dir or Path(self.cfg.out)) / CORPUS  # resume_dir: set by the trainer
            if not path.is_file():
                raise UserError(f"cannot resume: {path} is missing (the run's synthesised speech)")
            self.splits, spec = speech.load_corpus(path)
            if spec != self._spec():
                raise UserError(f"cannot resume: {path} was made with other settings ({spec['train_clips']} "
                                f"training clips, {spec['test_clips']} held-out texts, seed {spec['seed']})")
            self.train_started = time.perf_counter()
            return
        path = self.run_dir / CORPUS
        from rich.progress import Progress

        total = self.n_train + 2 * self.n_test
        t0 = time.perf_counter()
        with Progress(transient=True) as progress:
            bar = progress.add_task("synthesising speech with espeak-ng", total=total)
            self.splits = speech.build_corpus(self.n_train, self.n_test, self.cfg.seed,
                                              lambda done, _: progress.update(bar, completed=done),
                                              augment=self.augment == "full")
        self.synth_wall_s = time.perf_counter() - t0
        speech.save_corpus(self.splits, path, self._spec())
        self.train_started = time.perf_counter()

    def _collate(self, mels: list[np.ndarray], texts: list[str]) -> dict[str, torch.Tensor]:
        """Clips (n_mels, T_i) and transcripts → mel (B, n_mels, T) padded with PAD_FRAME,
        tgt_in (B, Lt) = <s> y, tgt_out (B, Lt) = y </s>, 0-padded."""
        B, T = len(mels), max(m.shape[1] for m in mels)
        mel = torch.full((B, mels[0].shape[0], T), PAD_FRAME)
        for b, m in enumerate(mels):
            mel[b, :, :m.shape[1]] = torch.from_numpy(m)
        ids = [self.vocab.encode(t) for t in texts]
        Lt = max(map(len, ids)) + 1
        tgt_in, tgt_out = torch.zeros(B, Lt, dtype=torch.long), torch.zeros(B, Lt, dtype=torch.long)
        for b, y in enumerate(ids):
            tgt_in[b, :len(y) + 1] = torch.tensor([CharVocab.bos_id, *y])
            tgt_out[b, :len(y) + 1] = torch.tensor([*y, CharVocab.eos_id])
        return {"mel": mel, "tgt_in": tgt_in, "tgt_out": tgt_out}

    @staticmethod
    def _spec_augment(mel: np.ndarray, g: torch.Generator) -> np.ndarray:
        """Park et al. 2019, light: two time bands of ≤ 10% of the clip and one band of ≤ 8 mels set to
        the clip's floor (silence)."""
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

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        data = self.splits["train" if split == "train" else "heldout"]
        idx = torch.randint(len(data), (batch_size,), generator=generator).tolist()
        mels = [data.features(i) for i in idx]
        if split == "train":
            light = self.augment == "light"
            mels = [self._spec_augment(m, generator) if light else augment.augment_mel(m, generator) for m in mels]
        return self._collate(mels, [data.clips[i].text for i in idx])

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """Mel frames plus target characters."""
        return int((batch["mel"][:, 0] != PAD_FRAME).sum() + (batch["tgt_out"] != CharVocab.pad_id).sum())

    # ---- model ---------------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        longest = max(len(c.text) for s in self.splits.values() for c in s.clips)
        return dict(super().model_config(), vocab_size=len(self.vocab), pad_id=CharVocab.pad_id,
                    bos_id=CharVocab.bos_id, eos_id=CharVocab.eos_id,
                    max_frames=int(MAX_SECONDS * SAMPLE_RATE / HOP_LENGTH), max_len=max(128, 2 * longest),
                    subsample=self.subsample, ctc_head=self.ctc_weight > 0)

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        return ASR(ASRConfig(**model_config))

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the decoder, or with a CTC head (1 − λ)·CE + λ·CTC (Watanabe et al. 2017)."""
        memory, mask = model.encode(batch["mel"])                      # (B, T', d), (B, T')
        logits = model.decode(batch["tgt_in"], memory, mask)           # (B, Lt, V)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), batch["tgt_out"].flatten(),
                             ignore_index=CharVocab.pad_id, label_smoothing=self.cfg.label_smoothing or 0.0)
        if not self.ctc_weight:
            return ce
        chars = batch["tgt_out"] > CharVocab.eos_id                    # (B, Lt): the transcript, no EOS/pad
        # zero_infinity: a clip too short for its transcript (rare, at 25 positions/s) adds no gradient.
        ctc = F.ctc_loss(model.ctc_log_probs(memory).transpose(0, 1), batch["tgt_out"], mask.sum(1),
                         chars.sum(1), blank=CharVocab.pad_id, zero_infinity=True)
        return (1 - self.ctc_weight) * ce + self.ctc_weight * ctc

    # ---- decoding and metrics ------------------------------------------------------------
    @torch.no_grad()
    def transcribe(self, model: nn.Module, mels: list[np.ndarray], beam: int = 1, batch_size: int = 32) -> list[str]:
        """Log-mel clips (n_mels, T_i) → transcripts: attention greedy (beam=1), CTC best path (beam=0), or
        beam search, which with a CTC head scores every prefix jointly (`attnkit.zoo.eval.ctc.joint_beam_search`)."""
        model.eval()
        device = next(model.parameters()).device
        # Sorted by length so each batch pads little; results come back in the input order.
        order = sorted(range(len(mels)), key=lambda i: mels[i].shape[1])
        out: dict[int, str] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            mel = self._collate([mels[i] for i in chunk], [""] * len(chunk))["mel"].to(device)
            # espeak's fastest speech is under 25 characters a second (100 frames): no transcript is longer.
            max_len = min(model.cfg.max_len - 1, 8 + mel.shape[2] // 4)
            if beam == 0:
                memory, mask = model.encode(mel)
                ids = ctc_eval.ctc_greedy(model.ctc_log_probs(memory), mask.sum(1), model.cfg.pad_id)
            elif beam == 1:
                ids = [h.tokens for h in greedy_decode(model, mel, max_len)]
            elif model.cfg.ctc_head and self.ctc_weight > 0:
                ids = [tokens for tokens, _ in ctc_eval.joint_beam_search(model, mel, beam, max_len, self.ctc_weight)]
            else:
                ids = [nbest[0].tokens for nbest in beam_search(model, mel, beam, max_len, ALPHA)]
            out.update({i: self.vocab.decode(h) for i, h in zip(chunk, ids)})
        return [out[i] for i in range(len(mels))]

    def split_metrics(self, model: nn.Module, split: str, beam: int) -> dict[str, Any]:
        data = self.splits[split]
        refs = [c.text for c in data.clips]
        t0 = time.perf_counter()
        hyps = self.transcribe(model, [data.features(i) for i in range(len(data))], beam)
        return {"wer": asr_eval.wer(refs, hyps), "cer": asr_eval.cer(refs, hyps), "hyps": hyps,
                "seconds": time.perf_counter() - t0}

    def report(self, model: nn.Module, run_dir: Path, console: Console) -> dict[str, Any]:
        heldout, seen = self.splits["heldout"], self.splits["seen"]
        # From the end of prepare to here: this process's model set-up, training, evaluations and checkpoints.
        t_report = time.perf_counter()
        train_wall_s = t_report - self.train_started if self.train_started is not None else None
        table = Table(title=f"asr: WER / CER on {len(heldout)} held-out texts")
        for col in ("system", "voices", "decoding", "WER", "CER", "seconds"):
            table.add_column(col, justify="left" if col in ("system", "voices", "decoding") else "right")
        summary: dict[str, Any] = {"train_clips": len(self.splits["train"]), "heldout_clips": len(heldout),
                                   "seen_clips": len(seen), "beam_size": BEAM, "synth_wall_s": self.synth_wall_s,
                                   "train_wall_s": train_wall_s, "ctc_weight": self.ctc_weight,
                                   "subsample": self.subsample, "augment": self.augment}
        results = {}
        decodings = [("greedy", 1), (f"beam {BEAM}" + (" + CTC" if model.cfg.ctc_head else ""), BEAM)]
        if model.cfg.ctc_head:
            decodings.insert(0, ("CTC best path", 0))
        for split, voices in (("heldout", "held-out"), ("seen", "seen")):
            for name, beam in decodings:
                r = results[split, beam] = self.split_metrics(model, split, beam)
                table.add_row("transformer", voices, name, f"{100 * r['wer']:.1f}%", f"{100 * r['cer']:.1f}%",
                              f"{r['seconds']:.1f}")
        best = {s: results[s, BEAM] for s in ("heldout", "seen")}
        summary.update(wer_heldout_voices=best["heldout"]["wer"], cer_heldout_voices=best["heldout"]["cer"],
                       wer_seen_voices=best["seen"]["wer"], cer_seen_voices=best["seen"]["cer"],
                       wer_heldout_voices_greedy=results["heldout", 1]["wer"],
                       wer_seen_voices_greedy=results["seen", 1]["wer"])
        if model.cfg.ctc_head:
            summary.update(wer_heldout_voices_ctc=results["heldout", 0]["wer"],
                           wer_seen_voices_ctc=results["seen", 0]["wer"])

        n = min(self.baseline_clips, len(heldout))
        refs = [c.text for c in heldout.clips[:n]]
        waves = [heldout.waveform(i) for i in range(n)]
        model_wer = asr_eval.wer(refs, best["heldout"]["hyps"][:n])
        # Its general LM only: the word-loop grammar (`pocketsphinx_transcribe(words=...)`) is several times
        # slower still on CPU.
        t0 = time.perf_counter()
        hyps = asr_eval.pocketsphinx_transcribe(waves)
        summary["wer_pocketsphinx"], summary["cer_pocketsphinx"] = asr_eval.wer(refs, hyps), asr_eval.cer(refs, hyps)
        table.add_row("pocketsphinx (general LM)", "held-out", "its own", f"{100 * summary['wer_pocketsphinx']:.1f}%",
                      f"{100 * summary['cer_pocketsphinx']:.1f}%", f"{time.perf_counter() - t0:.1f}")
        summary["pocketsphinx_clips"] = n
        summary["wer_heldout_voices_on_pocketsphinx_clips"] = model_wer
        console.print(table)
        path = self.attention_png(model, heldout.features(0), Path(run_dir) / "asr_attention.png")
        console.print(f"cross-attention picture: {path}")
        summary["report_wall_s"] = time.perf_counter() - t_report
        return summary

    def attention_png(self, model: nn.Module, mel: np.ndarray, out: Path, title: str | None = None) -> Path:
        """Greedy-transcribe one clip, then draw its log-mel above the cross-attention of each output character."""
        text = self.transcribe(model, [mel])[0]
        device = next(model.parameters()).device
        tokens = [CharVocab.bos_id, *self.vocab.encode(text)]
        probs = asr_eval.cross_attention(model, torch.from_numpy(mel)[None].to(device), tokens)  # (layers, H, Lt, T')
        labels = list(text) + ["</s>"]
        return asr_eval.plot_attention(mel, probs.mean(dim=(0, 1)).cpu().numpy(), labels, out,
                                       title or f'"{text}" (decoder cross-attention, mean over layers and heads)',
                                       subsample=model.cfg.subsample)

    # ---- sampling ------------------------------------------------------------------------
    def transcribe_waves(self, model: nn.Module, waves: list[np.ndarray], beam: int) -> list[str]:
        """16 kHz waveforms of any length → transcripts. A wave longer than PIECE_SECONDS is cut at its
        quietest moments (`attnkit.zoo.data.segment`); all pieces of all waves are decoded as one batch."""
        pieces, owner = [], []
        for i, wave in enumerate(waves):
            for a, b in split_at_silences(wave, PIECE_SECONDS):
                pieces.append(log_mel(wave[a:b]).numpy())
                owner.append(i)
        texts = self.transcribe(model, pieces, beam)
        joined: list[list[str]] = [[] for _ in waves]
        for i, text in zip(owner, texts):
            if text.strip():
                joined[i].append(text.strip())
        return [" ".join(t) for t in joined]

    def transcribe_files(self, model: nn.Module, paths: list[Path], beam: int, console: Console) -> dict[str, Any]:
        """One line per file, `PATH: TRANSCRIPT (SECONDS s)`, all decoded in one batch. A file that
        cannot be read gets one error line on stderr and the others still print; then the last bad file is
        raised as the UserError that makes the exit status non-zero."""
        waves, good, errors = [], [], []
        for path in paths:
            try:
                waves.append(read_wav(path))
                good.append(path)
            except UserError as e:
                errors.append(e)
        rows = [{"path": str(p), "transcript": t, "seconds": round(len(w) / SAMPLE_RATE, 2)}
                for p, w, t in zip(good, waves, self.transcribe_waves(model, waves, beam) if waves else [])]
        for row in rows:
            console.print(f"{row['path']}: {row['transcript']} ({row['seconds']:.2f} s)", markup=False,
                          highlight=False, soft_wrap=True)
        if errors:
            err = Console(stderr=True, soft_wrap=True)
            for e in errors[:-1]:
                err.print(f"error: {e}", markup=False, highlight=False)
            raise errors[-1]
        result: dict[str, Any] = {"files": rows}
        if len(rows) == 1:
            result.update(source=rows[0]["path"], transcript=rows[0]["transcript"])
        return result


    @classmethod
    def load(cls, run_dir: Path, cfg: TrainConfig) -> "ASRTask":
        task = cls(cfg)
        task.run_dir = Path(run_dir)
        return task

    def _heldout_from_cache(self) -> speech.Split:
        path = self.run_dir / CORPUS
        if not path.is_file():
            raise UserError(f"{self.run_dir} has no {CORPUS}: pass --audio FILE.wav or --say \"text\"")
        return speech.load_corpus(path)[0]["heldout"]

    sample_flags = ("audio", "say", "voice", "beam", "attention_png")  # the model-specific flags `sample` reads
    def sample(self, model: nn.Module, cfg: SampleConfig, console: Console) -> dict[str, Any]:
        audio, say, voice = cfg.audio, cfg.say, cfg.voice or speech.HELDOUT_VOICES[0]
        out_dir = Path(cfg.out) if cfg.out else self.run_dir
        beam = max(cfg.beam, 1)
        if audio and say:
            raise UserError("pass either --audio FILE.wav or --say TEXT, not both")
        if audio:
            return self.transcribe_files(model, audio_paths(audio), beam, console)
        if say:
            try:
                wave = speech.say(say, voice)
            except ValueError as e:
                raise UserError(str(e)) from None
            source = f"espeak-ng voice {voice}: {say!r}"
            text = self.transcribe_waves(model, [wave], beam)[0]
            console.print(f"[dim]{source}[/]\n{text}")
            result: dict[str, Any] = {"source": source, "transcript": text, "reference": say,
                                      "wer": asr_eval.wer([say.lower()], [text])}
            if cfg.attention_png:
                out_dir.mkdir(parents=True, exist_ok=True)
                mel = log_mel(wave[:int(PIECE_SECONDS * SAMPLE_RATE)]).numpy()
                result["attention_png"] = str(self.attention_png(model, mel, out_dir / "asr_attention.png"))
                console.print(f"cross-attention picture: {result['attention_png']}")
            return result
        heldout = self._heldout_from_cache()
        n = min(cfg.num_samples if cfg.num_samples > 1 else 10, len(heldout))
        refs = [c.text for c in heldout.clips[:n]]
        hyps = self.transcribe(model, [heldout.features(i) for i in range(n)], beam)
        table = Table(title=f"{n} held-out clips (voices never heard in training)")
        for col in ("voice", "reference", "hypothesis", "WER"):
            table.add_column(col, justify="right" if col == "WER" else "left")
        rows = []
        for clip, ref, hyp in zip(heldout.clips, refs, hyps):
            w = asr_eval.wer([ref], [hyp])
            rows.append({"voice": clip.voice, "reference": ref, "hypothesis": hyp, "wer": w})
            table.add_row(clip.voice, ref, hyp, f"{100 * w:.0f}%")
        console.print(table)
        console.print(f"WER over these clips: {100 * asr_eval.wer(refs, hyps):.1f}%")
        if cfg.attention_png:
            out_dir.mkdir(parents=True, exist_ok=True)
            console.print(f"cross-attention picture: {self.attention_png(model, heldout.features(0), out_dir / 'asr_attention.png')}")
        return {"clips": rows, "wer": asr_eval.wer(refs, hyps)}


def audio_paths(audio: str | list[str]) -> list[Path]:
    """--audio values → paths in order; a value with glob characters that names no file is expanded
    (sorted), and one that matches nothing stays as it is, to fail as 'not found'."""
    import glob

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
        raise UserError(f"{path} is {1000 * len(data) / rate:.0f} ms long; the model needs at least {1000 * MIN_SECONDS:.0f} ms")
    return speech.to_16k(data, rate)


__all__ = ["ASRTask", "CharVocab", "audio_paths", "read_wav"]
