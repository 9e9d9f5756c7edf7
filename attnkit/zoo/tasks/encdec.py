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
penalty) and prints exact match and BLEU side by side, for the final weights and, when the trainer kept
step checkpoints, for their average.
"""
from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from attnkit.generation.beam import beam_search, greedy_decode
from attnkit.config import SampleConfig, TrainConfig
from attnkit.zoo.data.numbers import VARIANTS, WordVocab, all_words, make_pair, numbers_source
from attnkit.zoo.metrics import bleu, exact_match
from attnkit.zoo.models.encdec import EncDec, EncDecConfig
from attnkit.errors import UserError
from attnkit.zoo.tasks.base import Task

N_SPECIAL = 4  # <pad>, <s>, </s>, <unk> come first in every vocabulary here
BEAM, ALPHA = 4, 0.6  # report's beam: Wu et al. 2016 use alpha in [0.6, 0.7]
RECIPE = dict(schedule="noam", beta2=0.98, label_smoothing=0.1, dropout=0.1)


class ShiftedTokenizer:
    """A char or sentencepiece tokenizer with ids moved up by 4, so 0..3 are <pad>, <s>, </s>, <unk>."""

    def __init__(self, inner):
        self.inner = inner

    def __len__(self) -> int:
        return self.inner.vocab_size + N_SPECIAL

    def encode(self, text: str) -> list[int]:
        return [i + N_SPECIAL for i in self.inner.encode(text)]

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode([i - N_SPECIAL for i in ids if i >= N_SPECIAL])


def heldout_pairs(variant: str, n: int, min_digits: int = 4) -> list[tuple[str, str]]:
    """n distinct generated pairs with at least min_digits digits in all: a fixed set (seed 0, whatever
    --seed is) that training never sees. Shorter examples (0-999) have too few distinct values to hold out;
    they stay in training only."""
    rng, pairs = random.Random(0), {}
    while len(pairs) < n:
        src, tgt = make_pair(rng, variant)
        if sum(c.isdigit() for c in src) >= min_digits:
            pairs[src] = tgt
    return list(pairs.items())


class EncDecTask(Task):
    name = "encdec"
    default_flavor = "small"
    flavors = {
        "debug": {"model": dict(n_enc_layer=1, n_dec_layer=1, n_head=2, d_model=32, d_ff=64, pre_ln=False),
                  "data": dict(heldout=32),
                  "train": dict(RECIPE, max_steps=40, batch_size=16, block_size=64, lr=2e-3, warmup_steps=10,
                                eval_interval=10, eval_batches=2, keep_last=3)},
        # CPU-sized: about 1.4 M parameters; the numbers task is learned in ~1000 steps.
        "small": {"model": dict(n_enc_layer=3, n_dec_layer=3, n_head=4, d_model=128, d_ff=512, pre_ln=False),
                  "train": dict(RECIPE, max_steps=1000, batch_size=64, block_size=128, lr=1e-3,
                                warmup_steps=200, eval_interval=50, eval_batches=4, keep_last=5)},
        "small-preln": {"model": dict(n_enc_layer=3, n_dec_layer=3, n_head=4, d_model=128, d_ff=512, pre_ln=True),
                        "train": dict(RECIPE, max_steps=1000, batch_size=64, block_size=128, lr=1e-3,
                                      warmup_steps=200, eval_interval=50, eval_batches=4, keep_last=5)},
        # Transformer (base): for real parallel data on a GPU.
        "base": {"model": dict(n_enc_layer=6, n_dec_layer=6, n_head=8, d_model=512, d_ff=2048, pre_ln=False),
                 "train": dict(RECIPE, max_steps=100_000, batch_size=128, block_size=256, lr=7e-4,
                               warmup_steps=4000, eval_interval=1000, eval_batches=20, keep_last=5)},
    }

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.data = cfg.data or "numbers"
        self.vocab = None
        self.max_len = 64
        self.val: list[tuple[str, str]] = []
        self.train_pairs: list[tuple[str, str]] | None = None  # None = generated on the fly

    # ---- data ----------------------------------------------------------------------------
    @property
    def generated(self) -> bool:
        return self.data in VARIANTS

    def prepare(self, run_dir: Path) -> None:
        run_dir = Path(run_dir)
        n_val = self.flavors[self.cfg.flavor].get("data", {}).get("heldout", 1000)
        if self.generated:
            self.vocab = WordVocab(all_words())
            self.val = heldout_pairs(self.data, n_val)
            self._val_sources = {s for s, _ in self.val}
            self.vocab.save(run_dir / "vocab.json")
            longest = max(len(t.split()) for _, t in self.val)
            self.max_len = max(64, 2 * longest)
        else:
            self._prepare_files(run_dir, n_val)
        (run_dir / "encdec_data.json").write_text(json.dumps({"data": self.data, "max_len": self.max_len}))

    def _prepare_files(self, run_dir: Path, n_val: int) -> None:
        parts = self.data.split(",")
        if len(parts) != 2:
            raise UserError(f"--data for encdec is one of {', '.join(VARIANTS)} or SRC.txt,TGT.txt; got {self.data!r}")
        src_path, tgt_path = (Path(p).expanduser() for p in parts)
        for p in (src_path, tgt_path):
            if not p.is_file():
                raise UserError(f"parallel data file not found: {p}")
        src = src_path.read_text(encoding="utf-8").splitlines()
        tgt = tgt_path.read_text(encoding="utf-8").splitlines()
        if len(src) != len(tgt):
            raise UserError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; they must be parallel")
        pairs = [(s.strip(), t.strip()) for s, t in zip(src, tgt) if s.strip() and t.strip()]
        if len(pairs) < 2:
            raise UserError("parallel data needs at least 2 non-empty line pairs")
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

    def _collate(self, pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
        """(source, target) strings → src (B, Ls), tgt_in (B, Lt) = <s> y, tgt_out (B, Lt) = y </s>; 0-padded."""
        src = [self.vocab.encode(s) for s, _ in pairs]
        tgt = [self.vocab.encode(t) for _, t in pairs]
        Ls, Lt = max(map(len, src)), max(map(len, tgt)) + 1
        S = torch.zeros(len(pairs), Ls, dtype=torch.long)
        Ti, To = torch.zeros(len(pairs), Lt, dtype=torch.long), torch.zeros(len(pairs), Lt, dtype=torch.long)
        for b, (s, t) in enumerate(zip(src, tgt)):
            S[b, :len(s)] = torch.tensor(s)
            Ti[b, :len(t) + 1] = torch.tensor([WordVocab.bos_id, *t])
            To[b, :len(t) + 1] = torch.tensor([*t, WordVocab.eos_id])
        return {"src": S, "tgt_in": Ti, "tgt_out": To}

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if split != "train":
            idx = torch.randint(len(self.val), (batch_size,), generator=generator).tolist()
            return self._collate([self.val[i] for i in idx])
        if self.train_pairs is not None:
            idx = torch.randint(len(self.train_pairs), (batch_size,), generator=generator).tolist()
            return self._collate([self.train_pairs[i] for i in idx])
        rng = random.Random(torch.randint(2 ** 62, (1,), generator=generator).item())
        pairs = []
        while len(pairs) < batch_size:
            pair = make_pair(rng, self.data)
            if pair[0] not in self._val_sources:  # never train on a held-out source
                pairs.append(pair)
        return self._collate(pairs)

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int((batch["src"] != WordVocab.pad_id).sum() + (batch["tgt_out"] != WordVocab.pad_id).sum())

    # ---- model ---------------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        V = len(self.vocab)
        return dict(super().model_config(), src_vocab_size=V, tgt_vocab_size=V, shared_vocab=True,
                    pad_id=WordVocab.pad_id, bos_id=WordVocab.bos_id, eos_id=WordVocab.eos_id, max_len=self.max_len)

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        return EncDec(EncDecConfig(**model_config))

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # Through model(...): the trainer may hand us the model wrapped by DDP or torch.compile.
        logits = model(batch["src"], batch["tgt_in"])  # (B, Lt, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["tgt_out"].flatten(), ignore_index=WordVocab.pad_id,
                               label_smoothing=self.cfg.label_smoothing or 0.0)

    # ---- decoding and metrics ------------------------------------------------------------
    @torch.no_grad()
    def translate(self, model: nn.Module, sources: list[str], beam: int = 1, alpha: float = ALPHA,
                  batch_size: int = 128, max_len: int | None = None) -> list[list[tuple[str, float, float]]]:
        """Sources in model format → per source an n-best list of (translation, score, log-prob);
        translations have at most max_len tokens with the end token (default: the model's max_len)."""
        max_len = min(max_len or model.cfg.max_len, model.cfg.max_len)
        model.eval()
        device = next(model.parameters()).device
        out = []
        for i in range(0, len(sources), batch_size):
            chunk = [(s, "") for s in sources[i:i + batch_size]]
            src = self._collate(chunk)["src"].to(device)
            if src.shape[1] > model.cfg.max_len:
                raise UserError(f"source of {src.shape[1]} tokens is longer than the model's {model.cfg.max_len}")
            if beam == 1:
                nbest = [[h] for h in greedy_decode(model, src, max_len, alpha)]
            else:
                nbest = beam_search(model, src, beam, max_len, alpha)
            out += [[(self.vocab.decode(h.tokens), h.score, h.logprob) for h in hs] for hs in nbest]
        return out

    def heldout_metrics(self, model: nn.Module, beam: int) -> dict[str, float]:
        sources, refs = [s for s, _ in self.val], [t for _, t in self.val]
        t0 = time.perf_counter()
        hyps = [nbest[0][0] for nbest in self.translate(model, sources, beam)]
        return {"exact_match": exact_match(hyps, refs), "bleu": bleu(hyps, refs), "seconds": time.perf_counter() - t0}

    def report(self, model: nn.Module, run_dir: Path, console: Console) -> dict[str, Any]:
        rows = {"final": model}
        averaged = self._averaged_model(model, Path(run_dir))
        if averaged is not None:
            rows[averaged[0]] = averaged[1]
        table = Table(title=f"encdec on {len(self.val)} held-out {self.data} examples")
        for col in ("weights", "decoding", "exact match", "BLEU", "decode s"):
            table.add_column(col, justify="right" if col not in ("weights", "decoding") else "left")
        summary: dict[str, Any] = {"heldout_examples": len(self.val), "beam_size": BEAM, "length_penalty_alpha": ALPHA}
        for weights, m in rows.items():
            for name, beam in (("greedy", 1), (f"beam {BEAM}", BEAM)):
                r = self.heldout_metrics(m, beam)
                table.add_row(weights, name, f"{100 * r['exact_match']:.1f}%", f"{r['bleu']:.2f}", f"{r['seconds']:.1f}")
                prefix = ("" if weights == "final" else "averaged_") + ("greedy" if beam == 1 else "beam")
                summary[f"{prefix}_exact_match"] = r["exact_match"]
                summary[f"{prefix}_bleu"] = r["bleu"]
        console.print(table)
        if averaged is not None:
            summary["averaged_checkpoints"] = averaged[0]
            n = len(averaged[2])  # the checkpoints there are (keep_last is a ceiling: a short run keeps fewer)
            console.print(f"`attnkit average --run {run_dir} --last {n}` makes the averaged "
                          "weights the run's model (what `attnkit sample` loads)")
        else:
            console.print("train with --keep-last N (N ≥ 2) to compare averaged step checkpoints")
        return summary

    def _averaged_model(self, model: nn.Module, run_dir: Path):
        """(label, model with the mean weights of the kept step checkpoints, their steps), or None if fewer than 2
        are kept."""
        steps = self.checkpoints.steps()[-(self.cfg.keep_last or 1):] if self.checkpoints else []
        if len(steps) < 2:
            return None
        averaged = self.build_model(dataclasses.asdict(model.cfg)).to(next(model.parameters()).device)
        self.checkpoints.load_average(averaged, steps)
        return f"avg of {len(steps)} (steps {steps[0]}-{steps[-1]})", averaged, steps

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

    sample_flags = ("prompt", "beam")  # the model-specific flags `sample` reads
    def sample(self, model: nn.Module, cfg: SampleConfig, console: Console) -> dict[str, Any]:
        """Translate --prompt (an n-best table with --beam), or without a prompt the held-out sources."""
        if not cfg.prompt:
            return self._sample_heldout(model, cfg, console)
        source = numbers_source(cfg.prompt, self.data) if self.generated else cfg.prompt
        alpha = float(cfg.extra.get("alpha", ALPHA))
        nbest = self.translate(model, [source], beam=max(cfg.beam, 1), alpha=alpha, max_len=cfg.max_new_tokens + 1)[0]
        if cfg.beam <= 1:
            console.print(nbest[0][0])
        else:
            table = Table(title=f"beam {cfg.beam}, length penalty α={alpha}: {cfg.prompt}")
            for col in ("#", "translation", "score", "log-prob"):
                table.add_column(col, justify="left" if col == "translation" else "right")
            for i, (text, score, logprob) in enumerate(nbest, 1):
                table.add_row(str(i), text, f"{score:.3f}", f"{logprob:.3f}")
            console.print(table)
        return {"source": source, "translation": nbest[0][0],
                "nbest": [{"translation": t, "score": s, "logprob": lp} for t, s, lp in nbest]}

    def _sample_heldout(self, model: nn.Module, cfg: SampleConfig, console: Console) -> dict[str, Any]:
        """The first --num-samples (at least 10) held-out examples: source, reference, translation, exact match."""
        if not self.generated:
            raise UserError('this run was trained on files: pass a source sentence with --prompt "..."')
        n_val = self.flavors.get(self.cfg.flavor or self.default_flavor, {}).get("data", {}).get("heldout", 1000)
        pairs = heldout_pairs(self.data, n_val)[:max(cfg.num_samples, 10)]
        beam = max(cfg.beam, 1)
        hyps = [nbest[0][0] for nbest in self.translate(model, [s for s, _ in pairs], beam=beam,
                                                        alpha=float(cfg.extra.get("alpha", ALPHA)))]
        table = Table(title=f"held-out {self.data} examples ({'greedy' if beam == 1 else f'beam {beam}'})")
        for col in ("source", "reference", "translation", "exact"):
            table.add_column(col)
        for (src, ref), hyp in zip(pairs, hyps):
            ok = hyp == ref
            table.add_row(src, ref, hyp if ok else f"[red]{hyp}[/red]", "✓" if ok else "✗")
        console.print(table)
        match = exact_match(hyps, [r for _, r in pairs])
        console.print(f"exact match on these {len(pairs)}: [bold]{100 * match:.1f}%[/bold]")
        return {"heldout": [{"source": s, "reference": r, "translation": h} for (s, r), h in zip(pairs, hyps)],
                "exact_match": match}
