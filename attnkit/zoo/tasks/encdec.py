"""`--model encdec`: the 2017 Transformer on translation, with its recipe and decoding.

Data (`--data`):
    numbers (default), numbers-reversed, numbers-many   generated on the fly (`attnkit.zoo.data.numbers`);
                                                        word vocabulary shared by source and target.
    SRC.txt,TGT.txt                                     parallel files, one sentence per line; tokenised
                                                        by `--tokenizer` (char, or a sentencepiece .model),
                                                        shared by both sides. 10% of lines (≤ 1000) held out.
Recipe (flavor defaults): label smoothing 0.1, Adam β2 = 0.98, inverse-square-root warmup ("noam"),
dropout 0.1, and `keep_last` step checkpoints for averaging. Post-LN as in the paper; the "*-preln"
flavors use pre-LN. `report` decodes the held-out set greedily and with beam search (GNMT length
penalty) and tabulates exact match and BLEU side by side, for the final weights and, when the trainer kept
step checkpoints, for their average. Loss, batching and decoding: `attnkit.zoo.tasks.seq2seq`.
"""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from attnkit.config import SampleConfig, TrainConfig
from attnkit.errors import UserError
from attnkit.fsio import atomic_write
from attnkit.nn.modes import mode, model_device
from attnkit.zoo.data.numbers import VARIANTS, WordVocab, all_words, heldout_pairs, make_pair, numbers_source
from attnkit.zoo.data.parallel import ShiftedTokenizer, read_parallel
from attnkit.zoo.metrics import bleu, exact_match
from attnkit.zoo.models.encdec import EncDec, EncDecConfig
from attnkit.zoo.report import Echo, Report
from attnkit.zoo.tasks.base import Flavor
from attnkit.zoo.tasks.sample_options import LENGTH_PENALTY, EncDecSampleOptions
from attnkit.zoo.tasks.seq2seq import BOS, EOS, PAD, Seq2SeqTask

BEAM, ALPHA = 4, LENGTH_PENALTY  # report's beam: Wu et al. 2016 use alpha in [0.6, 0.7]
RECIPE = dict(schedule="noam", beta2=0.98, label_smoothing=0.1, dropout=0.1)
HELDOUT = 1000  # held-out pairs of a generated task, unless the flavor fixes fewer
SMALL = dict(n_enc_layer=3, n_dec_layer=3, n_head=4, d_model=128, d_ff=512)
# The paper averaged the last 5 checkpoints of a 100k-step run, written 10 minutes (~1500 steps) apart: its
# last ~7%. Here one every 20 steps, so steps 1420-1500 (the last 5%) are averaged, once training has settled.
SMALL_TRAIN = dict(RECIPE, max_steps=1500, batch_size=64, block_size=128, lr=1e-3, warmup_steps=200,
                   eval_interval=20, eval_batches=4, keep_last=5)


@dataclasses.dataclass(frozen=True)
class EncDecSettings:
    heldout: int = HELDOUT


class EncDecTask(Seq2SeqTask):
    name = "encdec"
    default_flavor = "small"
    beam, alpha = BEAM, ALPHA
    flavors = {
        "debug": Flavor(model=dict(n_enc_layer=1, n_dec_layer=1, n_head=2, d_model=32, d_ff=64, pre_ln=False),
                        fixed=EncDecSettings(heldout=32),
                        train=dict(RECIPE, max_steps=40, batch_size=16, block_size=64, lr=2e-3, warmup_steps=10,
                                   eval_interval=10, eval_batches=2, keep_last=3)),
        # CPU-sized: about 1.4 M parameters. The numbers task is learned in ~1000 steps, but a seed may still
        # be learning there; 1500 steps let it settle, and the 5 checkpoints averaged are the last 5% of the run.
        "small": Flavor(model=dict(SMALL, pre_ln=False), train=SMALL_TRAIN),
        "small-preln": Flavor(model=dict(SMALL, pre_ln=True), train=SMALL_TRAIN),
        # Transformer (base): for real parallel data on a GPU.
        "base": Flavor(model=dict(n_enc_layer=6, n_dec_layer=6, n_head=8, d_model=512, d_ff=2048, pre_ln=False),
                       train=dict(RECIPE, max_steps=100_000, batch_size=128, block_size=256, lr=7e-4,
                                  warmup_steps=4000, eval_interval=1000, eval_batches=20, keep_last=5)),
    }

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.data = cfg.data or "numbers"
        self.max_len = 64
        self.val: list[tuple[str, str]] = []
        self.train_pairs: list[tuple[str, str]] | None = None  # None = generated on the fly

    # ---- data ----------------------------------------------------------------------------
    @property
    def heldout(self) -> int:
        """Held-out pairs of a generated task (its validation set, and `sample`'s examples)."""
        fixed: EncDecSettings | None = self.flavor.fixed
        return fixed.heldout if fixed else HELDOUT

    @property
    def generated(self) -> bool:
        return self.data in VARIANTS

    def prepare(self, run_dir: Path) -> None:
        run_dir = Path(run_dir)
        n_val = self.heldout
        if self.generated:
            self.vocab = WordVocab(all_words())
            self.val = heldout_pairs(self.data, n_val)
            self._val_sources = {s for s, _ in self.val}
            self.vocab.save(run_dir / "vocab.json")
            longest = max(len(t.split()) for _, t in self.val)
            self.max_len = max(64, 2 * longest)
        else:
            self._prepare_files(run_dir, n_val)
        atomic_write(run_dir / "encdec_data.json", json.dumps({"data": self.data, "max_len": self.max_len}))

    def _prepare_files(self, run_dir: Path, n_val: int) -> None:
        pairs = read_parallel(self.data)
        from attnkit.zoo.data.tokenizer import CharTokenizer, load_tokenizer

        if self.cfg.tokenizer == "char":
            inner = CharTokenizer.fit("".join(s + t for s, t in pairs))
            inner.save(run_dir / "tokenizer.json")
        else:
            inner = load_tokenizer(self.cfg.tokenizer)
            inner.save(run_dir / f"tokenizer{Path(self.cfg.tokenizer).suffix}")
        self.vocab = ShiftedTokenizer(inner)
        limit = self.cfg.block_size - 1  # room for <s> / </s>
        pairs = [p for p in pairs if len(self.vocab.encode(p[0])) <= limit and len(self.vocab.encode(p[1])) <= limit]
        if len(pairs) < 2:
            raise UserError(f"no line pairs fit in --block-size {self.cfg.block_size} tokens")
        random.Random(0).shuffle(pairs)
        n_val = min(n_val, max(1, len(pairs) // 10))
        self.val, self.train_pairs = pairs[:n_val], pairs[n_val:]
        self.max_len = self.cfg.block_size

    def _batch(self, pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
        """(source, target) strings → src (B, Ls), tgt_in (B, Lt) = <s> y, tgt_out (B, Lt) = y </s>; 0-padded."""
        return self.collate([self.vocab.encode(s) for s, _ in pairs], [t for _, t in pairs])

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if split != "train":
            idx = torch.randint(len(self.val), (batch_size,), generator=generator).tolist()
            return self._batch([self.val[i] for i in idx])
        if self.train_pairs is not None:
            idx = torch.randint(len(self.train_pairs), (batch_size,), generator=generator).tolist()
            return self._batch([self.train_pairs[i] for i in idx])
        rng = random.Random(torch.randint(2 ** 62, (1,), generator=generator).item())
        pairs = []
        while len(pairs) < batch_size:
            pair = make_pair(rng, self.data)
            if pair[0] not in self._val_sources:  # never train on a held-out source
                pairs.append(pair)
        return self._batch(pairs)

    # ---- model ---------------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        V = self.vocab.vocab_size
        return dict(super().model_config(), src_vocab_size=V, tgt_vocab_size=V, shared_vocab=True,
                    pad_id=PAD, bos_id=BOS, eos_id=EOS, max_len=self.max_len)

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        return EncDec(EncDecConfig(**model_config))

    # ---- decoding and metrics ------------------------------------------------------------
    def decode_limit(self, model: nn.Module, src: torch.Tensor, max_len: int | None) -> int:
        if src.shape[1] > model.cfg.max_len:
            raise UserError(f"source of {src.shape[1]} tokens is longer than the model's {model.cfg.max_len}")
        return super().decode_limit(model, src, max_len)

    def score(self, refs: list[str], hyps: list[str]) -> dict[str, float]:
        return {"exact_match": exact_match(hyps, refs), "bleu": bleu(hyps, refs)}

    def cells(self, result: dict[str, Any]) -> list[str]:
        return [f"{100 * result['exact_match']:.1f}%", f"{result['bleu']:.2f}"]

    def report(self, model: nn.Module, run_dir: Path) -> Report:
        rep = Report(metrics={"heldout_examples": len(self.val), "beam_size": BEAM, "length_penalty_alpha": ALPHA})
        table = rep.table(f"encdec on {len(self.val)} held-out {self.data} examples",
                          ["weights", "decoding", "exact match", "BLEU", "decode s"])
        sources, refs = [self.vocab.encode(s) for s, _ in self.val], [t for _, t in self.val]
        self._add_rows(rep, table, "final", model, sources, refs)
        steps = self.checkpoints.steps()[-(self.cfg.keep_last or 1):] if self.checkpoints else []
        if len(steps) < 2:
            table.note = "train with --keep-last N (N ≥ 2) to compare averaged step checkpoints"
            return rep
        averaged = self.build_model(dataclasses.asdict(model.cfg)).to(model_device(model))
        self.checkpoints.load_average(averaged, steps)
        label = rep.metrics["averaged_checkpoints"] = f"avg of {len(steps)} (steps {steps[0]}-{steps[-1]})"
        with mode(averaged, training=False):  # a fresh copy: the engine put only `model` in eval mode
            self._add_rows(rep, table, label, averaged, sources, refs)
        # The checkpoints there are: keep_last is a ceiling, a short run keeps fewer.
        table.note = (f"`attnkit average --run {run_dir} --last {len(steps)}` makes the averaged weights the "
                      "run's model (what `attnkit sample` loads)")
        return rep

    def _add_rows(self, rep: Report, table, weights: str, model: nn.Module, sources: list, refs: list[str]) -> None:
        """Greedy and beam rows for one set of weights; metrics greedy_* / beam_* (averaged_* for an average)."""
        prefix = "" if weights == "final" else "averaged_"
        for beam, r in self.compare_decodings(table, [weights], model, sources, refs).items():
            kind = "greedy" if beam == 1 else "beam"
            rep.metrics.update({f"{prefix}{kind}_exact_match": r["exact_match"], f"{prefix}{kind}_bleu": r["bleu"]})

    # ---- sampling ------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: Path, cfg: TrainConfig) -> "EncDecTask":
        task = cls(cfg)
        run_dir = Path(run_dir)
        meta_path = run_dir / "encdec_data.json"
        if not meta_path.is_file():
            raise UserError(f"{run_dir} is not an encdec run (no encdec_data.json)")
        meta = json.loads(meta_path.read_text())
        task.data, task.max_len = meta["data"], meta["max_len"]
        if task.generated:
            task.vocab = WordVocab.load(run_dir / "vocab.json")
        else:
            from attnkit.zoo.data.tokenizer import load_tokenizer
            path = next((p for p in (run_dir / "tokenizer.json", run_dir / "tokenizer.model") if p.is_file()), None)
            if path is None:
                raise UserError(f"no tokenizer in {run_dir}")
            task.vocab = ShiftedTokenizer(load_tokenizer(path))
        return task

    SampleOptions = EncDecSampleOptions
    def sample(self, model: nn.Module, cfg: SampleConfig, echo: Echo) -> Report:
        """Translate --prompt (an n-best table with --beam), or without a prompt the held-out sources."""
        o = self.sample_options(cfg)
        beam, alpha = max(o.beam, 1), o.alpha
        if not o.prompt:
            return self._sample_heldout(model, cfg, beam, alpha)
        source = numbers_source(o.prompt, self.data) if self.generated else o.prompt
        nbest = [(self.vocab.decode(h.tokens), h.score, h.logprob) for h in
                 self.decode(model, [self.vocab.encode(source)], beam, alpha, cfg.max_new_tokens + 1)[0]]
        rep = Report(metrics={"source": source, "translation": nbest[0][0],
                              "nbest": [{"translation": t, "score": s, "logprob": lp} for t, s, lp in nbest]})
        if beam <= 1:
            rep.line(nbest[0][0])
        else:
            rep.table(f"beam {beam}, length penalty α={alpha}: {o.prompt}",
                      ["#", "translation", "score", "log-prob"],
                      [[i, text, f"{score:.3f}", f"{logprob:.3f}"] for i, (text, score, logprob) in enumerate(nbest, 1)])
        return rep

    def _sample_heldout(self, model: nn.Module, cfg: SampleConfig, beam: int, alpha: float) -> Report:
        """The first --num-samples (at least 10) held-out examples: source, reference, translation, exact match."""
        if not self.generated:
            raise UserError('this run was trained on files: pass a source sentence with --prompt "..."')
        pairs = heldout_pairs(self.data, self.heldout)[:max(cfg.num_samples, 10)]
        hyps = self.best_texts(model, [self.vocab.encode(s) for s, _ in pairs], beam, alpha)
        match = exact_match(hyps, [r for _, r in pairs])
        rep = Report(metrics={"heldout": [{"source": s, "reference": r, "translation": h}
                                          for (s, r), h in zip(pairs, hyps)], "exact_match": match})
        rep.table(f"held-out {self.data} examples ({'greedy' if beam == 1 else f'beam {beam}'})",
                  ["source", "reference", "translation", "exact"],
                  [[s, r, h, "✓" if h == r else "✗"] for (s, r), h in zip(pairs, hyps)],
                  note=f"exact match on these {len(pairs)}: {100 * match:.1f}%")
        return rep


__all__ = ["EncDecTask", "ShiftedTokenizer", "heldout_pairs"]
