"""`--model asr`: Whisper-style speech recognition of synthesised speech (numbers, dates, short commands).

Data: `attnkit.zoo.data.speech` synthesises the clips once per run with espeak-ng (and flite with
`synths=espeak+flite`), cached as RUN/speech.npz: synthesis is not bit-reproducible, so the cache makes a run
repeatable. `attnkit.zoo.data.logmel` gives Whisper's log-mel frames. Training adds SpecAugment-style masks, or
with `augment=full` the dialects, waveform effects and log-mel effects of `attnkit.zoo.data.augment`, and with
`augment=full+vtlp` those plus a formant warp of every training clip (`augment.warp_formants`). With
`ctc_weight=λ > 0` the encoder has a CTC head, trained jointly ((1 − λ)·CE + λ·CTC) and used in a joint
CTC/attention beam search; `subsample=4` gives the encoder 25 positions a second instead of 50
(docs/zoo/asr.md has the ablations).
Targets are lower-case characters. `report` decodes the held-out voices and the seen voices (greedy and
beam), scores WER/CER with jiwer, runs pocketsphinx on the same held-out clips, and draws the decoder's
cross-attention over a clip's log-mel (RUN/asr_attention.png). Loss, batching and decoding are
`attnkit.zoo.tasks.seq2seq`'s, with CTC added.

`attnkit sample --run RUN` transcribes held-out clips (reference, hypothesis, error per clip);
`--audio A.wav --audio 'B*.wav'` transcribes WAV files in one batch (one line each; long ones cut at
silences); `--say "text" [--voice NAME]` synthesises and transcribes (`attnkit.zoo.tasks.asr_sample`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit.config import TrainConfig
from attnkit.errors import UserError
from attnkit.zoo.data import augment, speech
from attnkit.zoo.data.audio import audio_paths, read_wav
from attnkit.zoo.data.speech import CharVocab
from attnkit.zoo.data.logmel import HOP_LENGTH, SAMPLE_RATE
from attnkit.zoo.eval import asr as asr_eval
from attnkit.zoo.models.asr import ASR, PAD_FRAME, ASRConfig, pad_frames
from attnkit.zoo.report import Report
from attnkit.zoo.tasks.asr_decode import BEAM, ASRDecoding
from attnkit.zoo.tasks.asr_sample import CORPUS, ASRSampling
from attnkit.zoo.tasks.base import Flavor
from attnkit.zoo.tasks.seq2seq import BOS, EOS, PAD, Seq2SeqTask

ALPHA = 0.0
MAX_SECONDS = 20.0


@dataclass
class ASROptions:
    train_clips: int | None = field(default=None, metadata={"help": "training clips to synthesise (default: the flavor's)"})
    test_clips: int | None = field(default=None, metadata={"help": "held-out texts, each said by a held-out and a seen voice"})
    ctc_weight: float | None = field(default=None, metadata={
        "help": "weight λ of the encoder's CTC loss and score (hybrid CTC/attention); 0 = attention only"})
    subsample: int | None = field(default=None, metadata={"help": "mel frames per encoder position: 2 or 4"})
    augment: str | None = field(default=None, metadata={
        "help": "light (light SpecAugment) | full (dialects, waveform effects, tempo, VTLP, full SpecAugment) | "
                "full+vtlp (full, plus every clip's formants warped by 0.9-1.25, its pitch kept)"})
    synths: str | None = field(default=None, metadata={
        "help": "espeak | espeak+flite (a quarter of the training clips said by flite: Debian package flite) | "
                "espeak+flite+shift (half of those flite clips that can be shifted, at women's pitch and formants)"})


# Per-batch log-mel effects of each recipe but light. full+vtlp: the unheard slt voice's pitch lies among the
# training voices' and her F2 above them (docs/zoo/asr.md), so every clip's formants move by 0.9-1.25, mostly up.
MEL_POLICIES = {"full": augment.MelPolicy(), "full+vtlp": augment.MelPolicy(formants=(0.9, 1.25))}


@dataclass(frozen=True)
class ASRSettings:
    baseline_clips: int  # held-out clips pocketsphinx transcribes beside the model (it is slow)


def _flavor(model: dict, train: dict, train_clips: int, test_clips: int, baseline_clips: int,
            ctc_weight: float = 0.0, subsample: int = 2, augment: str = "light", synths: str = "espeak") -> Flavor:
    return Flavor(model=model, train=train,
                  options=dict(train_clips=train_clips, test_clips=test_clips, ctc_weight=ctc_weight,
                               subsample=subsample, augment=augment, synths=synths),
                  fixed=ASRSettings(baseline_clips=baseline_clips))


class ASRTask(ASRSampling, ASRDecoding, Seq2SeqTask):
    name = "asr"
    input_key, beam, alpha, decode_batch_size = "mel", BEAM, ALPHA, 32
    Options = ASROptions
    default_flavor = "small"
    flavors = {
        "debug": _flavor(dict(n_enc_layer=1, n_dec_layer=1, n_head=2, d_model=32, d_ff=64),
                         dict(max_steps=30, batch_size=8, lr=3e-3, warmup_steps=5, eval_interval=15,
                              eval_batches=1, label_smoothing=0.1, beta2=0.98, dropout=0.0),
                         train_clips=64, test_clips=6, baseline_clips=2),
        # CPU-sized (1.48 M params), hybrid CTC/attention, 4× stem, full augmentation plus a formant warp, a
        # quarter of the clips by flite, some of them shifted to women's pitch. Four voices of synthesisers it
        # never heard: 9.3 ± 0.7% WER with the warp, 10.8 ± 1.0% without (3 seeds each; 47% from espeak-ng
        # alone); held-out espeak-ng voices 2.2 ± 0.4%; 26 minutes a command on 2026-12-04's machine (docs/zoo/asr.md).
        "small": _flavor(dict(n_enc_layer=4, n_dec_layer=2, n_head=4, d_model=128, d_ff=512),
                         dict(max_steps=2200, batch_size=32, lr=1.5e-3, warmup_steps=100, eval_interval=200,
                              eval_batches=2, label_smoothing=0.1, beta2=0.98, dropout=0.0, weight_decay=0.05),
                         train_clips=12000, test_clips=200, baseline_clips=60,
                         ctc_weight=0.3, subsample=4, augment="full+vtlp", synths="espeak+flite+shift"),
        # Whisper tiny's shape (4 + 4 layers × 6 heads × 384), for a GPU.
        "tiny": _flavor(dict(n_enc_layer=4, n_dec_layer=4, n_head=6, d_model=384, d_ff=1536),
                        dict(max_steps=20000, batch_size=64, lr=1e-3, warmup_steps=1000, eval_interval=1000,
                             eval_batches=8, label_smoothing=0.1, beta2=0.98, dropout=0.1),
                        train_clips=50000, test_clips=500, baseline_clips=200),
    }

    def __init__(self, cfg: TrainConfig, opts=None):
        super().__init__(cfg, opts)
        # An unset option takes the flavor's value (the default flavor's for an unknown one): runs saved before
        # an option existed load with it unset (None).
        o = self.flavor.options
        self.n_train = self.opts.train_clips or o["train_clips"]
        self.n_test = self.opts.test_clips or o["test_clips"]
        self.ctc_weight = o["ctc_weight"] if self.opts.ctc_weight is None else self.opts.ctc_weight
        self.subsample = self.opts.subsample or o["subsample"]
        self.augment = self.opts.augment or o["augment"]
        self.synths = self.opts.synths or o.get("synths", "espeak")
        self.baseline_clips = self.flavor.fixed.baseline_clips
        for name, allowed in (("augment", ("light", *MEL_POLICIES)), ("synths", ("espeak", "espeak+flite", "espeak+flite+shift")),
                              ("subsample", (2, 4))):
            if getattr(self, name) not in allowed:
                raise UserError(f"{name} must be {' or '.join(map(str, allowed))}, got {getattr(self, name)}")
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
        # The light recipe's spec stays as it was, so its old caches still resume; full+vtlp synthesises the same
        # corpus as full (its warp is drawn per batch), so the two share a spec.
        if self.augment != "light":
            spec["train_dialects"] = list(speech.TRAIN_DIALECTS)
        if self.synths != "espeak":
            spec["flite_voices"], spec["flite_share"] = list(speech.FLITE_VOICES), speech.FLITE_SHARE
        if self.synths.endswith("+shift"):
            spec["flite_shift"] = {"voices": list(speech.FLITE_SHIFTABLE), "f0_hz": list(speech.SHIFT_F0_HZ),
                                   "formant": list(speech.SHIFT_FORMANT)}
        return spec

    def prepare(self, run_dir: Path) -> None:
        """Synthesise the corpus into run_dir (the trainer's staging directory) once; a resumed run reads
        its own RUN/speech.npz instead, since synthesis would not give the same clips again."""
        if self.cfg.data:
            raise UserError("--model asr synthesises its own speech; it takes no --data")
        self.run_dir = Path(run_dir)
        if self.cfg.resume:  # resume_dir: set by the trainer
            self.splits = speech.resume_corpus((self.resume_dir or Path(self.cfg.out)) / CORPUS, self._spec())
            self.train_started = time.perf_counter()
            return
        show = self.progress and partial(self.progress, "synthesising speech with espeak-ng")
        t0 = time.perf_counter()
        self.splits = speech.build_corpus(self.n_train, self.n_test, self.cfg.seed, show, augment=self.augment != "light",
                                          flite_share=speech.FLITE_SHARE if self.synths != "espeak" else 0.0,
                                          flite_shift=self.synths.endswith("+shift"))
        self.synth_wall_s = time.perf_counter() - t0
        speech.save_corpus(self.splits, self.run_dir / CORPUS, self._spec())
        self.train_started = time.perf_counter()

    pad_inputs = staticmethod(pad_frames)                              # clips (n_mels, T_i) → mel (B, n_mels, T)

    def input_positions(self, mel: torch.Tensor) -> int:
        return int((mel[:, 0] != PAD_FRAME).sum())

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        data = self.splits["train" if split == "train" else "heldout"]
        idx = torch.randint(len(data), (batch_size,), generator=generator).tolist()
        mels = [data.features(i) for i in idx]
        if split == "train":
            if self.augment == "light":
                mels = [augment.light_spec_augment(m, generator) for m in mels]
            else:
                mels = [augment.augment_mel(m, generator, MEL_POLICIES[self.augment]) for m in mels]
        return self.collate(mels, [data.clips[i].text for i in idx])

    # ---- model ---------------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        longest = max(len(c.text) for s in self.splits.values() for c in s.clips)
        return dict(super().model_config(), vocab_size=self.vocab.vocab_size, pad_id=PAD, bos_id=BOS, eos_id=EOS,
                    max_frames=int(MAX_SECONDS * SAMPLE_RATE / HOP_LENGTH), max_len=max(128, 2 * longest),
                    subsample=self.subsample, ctc_head=self.ctc_weight > 0)

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        return ASR(ASRConfig(**model_config))

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the decoder, or with a CTC head (1 − λ)·CE + λ·CTC (Watanabe et al. 2017)."""
        if not self.ctc_weight:
            return super().loss(model, batch)
        memory, mask = model.encode(batch["mel"])                      # (B, T', d), (B, T')
        ce = self.token_loss(model.decode(batch["tgt_in"], memory, mask), batch["tgt_out"])  # logits (B, Lt, V)
        chars = batch["tgt_out"] > EOS                                 # (B, Lt): the transcript, no EOS/pad
        # zero_infinity: a clip too short for its transcript (rare, at 25 positions/s) adds no gradient.
        ctc = F.ctc_loss(model.ctc_log_probs(memory).transpose(0, 1), batch["tgt_out"], mask.sum(1),
                         chars.sum(1), blank=PAD, zero_infinity=True)
        return (1 - self.ctc_weight) * ce + self.ctc_weight * ctc

    # ---- metrics -------------------------------------------------------------------------
    def score(self, refs: list[str], hyps: list[str]) -> dict[str, float]:
        return {"wer": asr_eval.wer(refs, hyps), "cer": asr_eval.cer(refs, hyps)}

    def cells(self, result: dict[str, Any]) -> list[str]:
        return [f"{100 * result['wer']:.1f}%", f"{100 * result['cer']:.1f}%"]

    def report(self, model: nn.Module, run_dir: Path) -> Report:
        heldout, seen = self.splits["heldout"], self.splits["seen"]
        # From the end of prepare to here: this process's model set-up, training, evaluations and checkpoints.
        t_report = time.perf_counter()
        train_wall_s = t_report - self.train_started if self.train_started is not None else None
        rep = Report(metrics={"train_clips": len(self.splits["train"]), "heldout_clips": len(heldout),
                              "seen_clips": len(seen), "beam_size": BEAM, "synth_wall_s": self.synth_wall_s,
                              "train_wall_s": train_wall_s, "ctc_weight": self.ctc_weight,
                              "subsample": self.subsample, "augment": self.augment, "synths": self.synths})
        table = rep.table(f"asr: WER / CER on {len(heldout)} held-out texts",
                          ["system", "voices", "decoding", "WER", "CER", "seconds"])
        h, s = (self.compare_decodings(table, ["transformer", voices], model,
                                       [data.features(i) for i in range(len(data))], [c.text for c in data.clips])
                for voices, data in (("held-out", heldout), ("seen", seen)))
        rep.metrics.update(wer_heldout_voices=h[BEAM]["wer"], cer_heldout_voices=h[BEAM]["cer"],
                           wer_seen_voices=s[BEAM]["wer"], cer_seen_voices=s[BEAM]["cer"],
                           wer_heldout_voices_greedy=h[1]["wer"], wer_seen_voices_greedy=s[1]["wer"])
        if model.cfg.ctc_head:
            rep.metrics.update(wer_heldout_voices_ctc=h[0]["wer"], wer_seen_voices_ctc=s[0]["wer"])
        n = min(self.baseline_clips, len(heldout))  # pocketsphinx on the first n held-out clips, the model beside it
        refs = [c.text for c in heldout.clips[:n]]
        theirs = asr_eval.pocketsphinx_baseline(refs, [heldout.waveform(i) for i in range(n)])
        table.rows.append(["pocketsphinx (general LM)", "held-out", "its own", *self.cells(theirs),
                           f"{theirs['seconds']:.1f}"])
        rep.metrics.update(wer_pocketsphinx=theirs["wer"], cer_pocketsphinx=theirs["cer"], pocketsphinx_clips=n,
                           wer_heldout_voices_on_pocketsphinx_clips=asr_eval.wer(refs, h[BEAM]["hyps"][:n]))
        rep.file("cross-attention picture",
                 self.attention_png(model, heldout.features(0), Path(run_dir) / "asr_attention.png"))
        rep.metrics["report_wall_s"] = time.perf_counter() - t_report
        return rep


__all__ = ["ASRTask", "CharVocab", "audio_paths", "read_wav"]
