"""`--model bert`: masked-language-model pre-training on the text corpus, and fill-mask sampling.

Data: the same corpus as GPT (`attnkit.zoo.data.text.load_text`: the embedded Austen text by default, or
`--data PATH`) with hard line wraps joined (single newlines become spaces), first 90% for training, last
10% for validation. The tokenizer is sentencepiece with the
special tokens [PAD] [CLS] [SEP] [MASK] as user-defined symbols: trained on the training split into
RUN/tokenizer.model (the default `--tokenizer char` means "train one"), or `--tokenizer FILE.model` if that
model already defines the four tokens.

An example is [CLS] + a random window of the token stream + [SEP]; with next-sentence prediction (the
"*-nsp" flavors) it is [CLS] A [SEP] B [SEP], B following A half of the time and drawn from elsewhere
otherwise. Masking follows BERT (see `attnkit.zoo.models.bert.mask_tokens`). `report` prints masked-token
accuracy on validation beside a unigram-frequency baseline (always predict the most frequent training
token; its loss is the unigram entropy) measured on the very same masked positions.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from rich.console import Console
from rich.table import Table

from attnkit.config import SampleConfig, TrainConfig
from attnkit.zoo.eval.bert import MaskedTokenStats
from attnkit.zoo.models.bert import BERT, BERTConfig, mask_tokens
from attnkit.errors import UserError
from attnkit.zoo.tasks.base import Task

SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")
MASK_PROB = 0.15
HELDOUT_FILE = "bert_data.json"


def heldout_sentences(text: str, n: int = 100, words: tuple[int, int] = (6, 30)) -> list[str]:
    """Up to n validation sentences of a readable length, for `attnkit sample` without a prompt."""
    sentences = (" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+", text))
    return [s for s in sentences if words[0] <= len(s.split()) <= words[1]][:n]


FILL_TOP_K = 10  # candidates shown per [MASK] unless --top-k is set to something other than its default


class BERTTask(Task):
    name = "bert"
    default_flavor = "small"
    _train = dict(schedule="cosine", beta2=0.98, dropout=0.1)
    flavors = {
        "debug": {"model": dict(n_layer=1, n_head=2, d_model=32, d_ff=64, nsp=False),
                  "data": dict(vocab_size=400),
                  "train": dict(_train, max_steps=20, batch_size=8, block_size=32, lr=1e-3, warmup_steps=5,
                                eval_interval=10, eval_batches=2)},
        # CPU-sized: about 0.9 M parameters (half of them the 2000-token embedding).
        "small": {"model": dict(n_layer=4, n_head=4, d_model=128, d_ff=512, nsp=False),
                  "data": dict(vocab_size=2000),
                  "train": dict(_train, max_steps=1000, batch_size=32, block_size=64, lr=1e-3, warmup_steps=100,
                                eval_interval=200, eval_batches=8)},
    }
    # Each size also with next-sentence prediction on [CLS].
    flavors.update({f"{name}-nsp": dict(f, model=dict(f["model"], nsp=True)) for name, f in list(flavors.items())})

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.tok = None
        self.ids: dict[str, torch.Tensor] = {}
        self.heldout: list[str] = []

    # ---- tokenizer and data --------------------------------------------------------------
    def _set_tokenizer(self, tok) -> None:
        ids = {t: tok.token_id(t) for t in SPECIALS}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise UserError(f"BERT's tokenizer must define {' '.join(SPECIALS)} (missing {' '.join(missing)}); "
                            "leave --tokenizer unset to train one on the corpus")
        self.tok = tok
        self.pad_id, self.cls_id, self.sep_id, self.mask_id = (ids[t] for t in SPECIALS)
        self.special_ids = torch.tensor(sorted({*ids.values(), tok.sp.unk_id()}))
        self.random_ids = torch.tensor([i for i in range(tok.vocab_size) if i not in set(self.special_ids.tolist())])

    def prepare(self, run_dir: Path) -> None:
        from attnkit.zoo.data.text import load_text
        from attnkit.zoo.data.tokenizer import SentencePieceTokenizer, train_sentencepiece

        # Hard-wrapped prose (the Gutenberg corpus) puts a line break every ~70 characters; as a token it
        # would be the most frequent "word" to predict. Single breaks become spaces; blank lines stay.
        text = re.sub(r"(?<!\n)\n(?!\n)", " ", load_text(self.cfg.data))
        cut = text.rfind("\n", 0, int(0.9 * len(text)))
        cut = cut if cut > 0 else int(0.9 * len(text))
        parts = {"train": text[:cut], "val": text[cut:]}
        if self.cfg.tokenizer == "char":
            vocab_size = self.flavors[self.cfg.flavor]["data"]["vocab_size"]
            tok = train_sentencepiece(parts["train"], vocab_size, "bpe", special_tokens=SPECIALS)
        elif self.cfg.tokenizer.endswith(".model"):
            tok = SentencePieceTokenizer.load(self.cfg.tokenizer)
        else:
            raise UserError(f"BERT needs a sentencepiece tokenizer (.model), got {self.cfg.tokenizer!r}")
        self._set_tokenizer(tok)
        tok.save(Path(run_dir) / "tokenizer.model")
        self.ids = {k: torch.tensor(tok.encode(v), dtype=torch.long) for k, v in parts.items()}
        need = self.cfg.block_size
        for split, ids in self.ids.items():
            if len(ids) < 2 * need:
                raise UserError(f"the {split} split has {len(ids)} tokens; BERT needs at least {2 * need} "
                                f"(2 × --block-size); use more text or a smaller --block-size")
        counts = torch.bincount(self.ids["train"], minlength=tok.vocab_size).float()
        counts[self.special_ids] = 0
        self.unigram = counts / counts.sum()  # training-set token frequencies: the baseline
        (Path(run_dir) / HELDOUT_FILE).write_text(json.dumps({"block_size": self.cfg.block_size,
                                                                 "heldout": heldout_sentences(parts["val"])}))

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        stream, L = self.ids[split], self.cfg.block_size
        nsp = self.flavors[self.cfg.flavor]["model"].get("nsp", False)
        n = L - 3 if nsp else L - 2  # content tokens per example
        starts = torch.randint(len(stream) - n, (batch_size,), generator=generator)
        rows = torch.stack([stream[s:s + n] for s in starts.tolist()])  # (B, n)
        cls = torch.full((batch_size, 1), self.cls_id)
        sep = torch.full((batch_size, 1), self.sep_id)
        batch = {}
        if nsp:
            a_len = torch.randint(1, n, (batch_size,), generator=generator)
            is_next = torch.randint(2, (batch_size,), generator=generator) == 0  # 0 = IsNext, 1 = NotNext
            others = torch.randint(len(stream) - n, (batch_size,), generator=generator)
            ids, segs = [], []
            for b in range(batch_size):
                a, rest = rows[b, :a_len[b]], n - a_len[b].item()
                bseg = rows[b, a_len[b]:] if is_next[b] else stream[others[b]:others[b] + rest]
                ids.append(torch.cat((cls[b], a, sep[b], bseg, sep[b])))
                segs.append(torch.cat((torch.zeros(len(a) + 2, dtype=torch.long), torch.ones(rest + 1, dtype=torch.long))))
            ids, batch["segments"] = torch.stack(ids), torch.stack(segs)
            batch["is_next"] = (~is_next).long()
        else:
            ids = torch.cat((cls, rows, sep), dim=1)  # (B, L)
        maskable = ~torch.isin(ids, self.special_ids)
        batch["input_ids"], batch["labels"] = mask_tokens(ids, maskable=maskable, mask_id=self.mask_id,
                                                          random_ids=self.random_ids, generator=generator,
                                                          mask_prob=MASK_PROB)
        return batch

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["input_ids"].numel()

    # ---- model ---------------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        return dict(super().model_config(), vocab_size=self.tok.vocab_size, block_size=self.cfg.block_size,
                    pad_id=self.pad_id)

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        return BERT(BERTConfig(**model_config))

    def _losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return model(batch["input_ids"], batch.get("segments"), batch["labels"], batch.get("is_next"))

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self._losses(model, batch)
        return out["mlm"] + out.get("nsp", 0.0)

    @torch.no_grad()
    def _masked_stats(self, model: nn.Module, split: str, batches: int, device: torch.device) -> dict[str, float]:
        """Model and unigram baseline on the same masked positions of `batches` fixed batches."""
        g = torch.Generator().manual_seed(1234)
        was_training = model.training
        model.eval()
        stats = MaskedTokenStats(self.unigram.to(device))
        for _ in range(batches):
            batch = {k: v.to(device) for k, v in self.get_batch(split, self.cfg.batch_size, g).items()}
            stats.add(self._losses(model, batch), batch)
        model.train(was_training)
        return stats.result()

    def evaluate(self, model: nn.Module, split: str, batches: int, device: torch.device) -> dict[str, float]:
        s = self._masked_stats(model, split, batches, device)
        return {f"{split}_loss": s["loss"], f"{split}_mlm_accuracy": s["mlm_accuracy"]}

    def report(self, model: nn.Module, run_dir: Path, console: Console) -> dict[str, Any]:
        device = next(model.parameters()).device
        L = self.cfg.block_size
        # Enough random windows to cover the validation text about twice.
        batches = min(50, max(self.cfg.eval_batches or 1, math.ceil(2 * len(self.ids["val"]) / (L * self.cfg.batch_size))))
        s = self._masked_stats(model, "val", batches, device)
        table = Table(title=f"masked-token prediction on validation ({s['masked_tokens']:,} masked tokens)")
        for col in ("predictor", "accuracy", "top-5 accuracy", "loss (nats)", "perplexity"):
            table.add_column(col, justify="left" if col == "predictor" else "right")
        table.add_row("BERT", f"{100 * s['mlm_accuracy']:.1f}%", f"{100 * s['mlm_top5']:.1f}%",
                      f"{s['mlm_loss']:.3f}", f"{math.exp(min(s['mlm_loss'], 50)):.1f}")
        table.add_row("unigram frequency", f"{100 * s['unigram_accuracy']:.1f}%", f"{100 * s['unigram_top5']:.1f}%",
                      f"{s['unigram_loss']:.3f}", f"{math.exp(min(s['unigram_loss'], 50)):.1f}")
        console.print(table)
        if "nsp_accuracy" in s:
            console.print(f"next-sentence prediction accuracy: {100 * s['nsp_accuracy']:.1f}% (chance: 50%)")
        return {k: v for k, v in s.items() if k != "loss"}

    # ---- sampling: fill-mask -------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: Path, cfg: TrainConfig) -> "BERTTask":
        from attnkit.zoo.data.tokenizer import SentencePieceTokenizer

        task = cls(cfg)
        path = Path(run_dir) / "tokenizer.model"
        if not path.is_file():
            raise UserError(f"{run_dir} is not a BERT run (no tokenizer.model)")
        task._set_tokenizer(SentencePieceTokenizer.load(path))
        meta = Path(run_dir) / HELDOUT_FILE
        task.heldout = json.loads(meta.read_text()).get("heldout", []) if meta.is_file() else []
        return task

    def encode_prompt(self, prompt: str) -> list[int]:
        """Text with [MASK]s → [CLS] ids [SEP]. Each [MASK] stands for one token, including the space before
        it (sentencepiece pieces carry their leading space, as '▁word'), so that space is dropped here."""
        parts = prompt.split("[MASK]")
        ids = [self.cls_id]
        for i, part in enumerate(parts):
            if i < len(parts) - 1:
                part = part.rstrip(" ")
            ids += self.tok.encode(part) if part else []
            if i < len(parts) - 1:
                ids.append(self.mask_id)
        return ids + [self.sep_id]

    def _fill_probs(self, model: nn.Module, ids: list[int]) -> torch.Tensor:
        """(L, V) fill-in probabilities for every position of ids; special tokens are never proposed."""
        model.eval()
        device = next(model.parameters()).device
        probs = model(torch.tensor([ids], device=device))[0].float().softmax(-1)  # (L, V)
        probs[:, self.special_ids.to(device)] = 0  # never propose [MASK], [PAD], ...
        return probs / probs.sum(-1, keepdim=True)

    sample_flags = ("prompt",)  # the model-specific flags `sample` reads

    @torch.no_grad()
    def sample(self, model: nn.Module, cfg: SampleConfig, console: Console) -> dict[str, Any]:
        """Fill the [MASK]s of --prompt (top-k table per mask), or without a prompt held-out sentences."""
        if not cfg.prompt:
            return self._sample_heldout(model, cfg, console)
        if "[MASK]" not in cfg.prompt:
            raise UserError('BERT fills masks: pass a prompt with [MASK], e.g. --prompt "The [MASK] was very kind."')
        ids = self.encode_prompt(cfg.prompt)
        if len(ids) > model.cfg.block_size:
            raise UserError(f"prompt is {len(ids)} tokens; this model reads at most {model.cfg.block_size}")
        probs = self._fill_probs(model, ids)  # (L, V)
        k = FILL_TOP_K if cfg.top_k in (None, SampleConfig.top_k) else max(1, cfg.top_k)
        positions = [i for i, t in enumerate(ids) if t == self.mask_id]
        filled, results = list(ids), []
        for n, pos in enumerate(positions, 1):
            p, idx = probs[pos].topk(min(k, probs.shape[-1]))
            cands = [(self.tok.decode([i]), pr) for i, pr in zip(idx.tolist(), p.tolist())]
            filled[pos] = idx[0].item()
            table = Table(title=f"[MASK] {n} of {len(positions)}" if len(positions) > 1 else "[MASK]")
            for col in ("#", "token", "probability"):
                table.add_column(col, justify="left" if col == "token" else "right")
            for r, (piece, pr) in enumerate(cands, 1):
                table.add_row(str(r), repr(piece), f"{pr:.3f}")
            console.print(table)
            results.append([{"token": piece, "probability": pr} for piece, pr in cands])
        text = self.tok.decode([t for t in filled if t not in (self.cls_id, self.sep_id)])
        console.print(f"top-1 fill: {text}", markup=False)
        return {"prompt": cfg.prompt, "filled": text, "candidates": results}

    @torch.no_grad()
    def _sample_heldout(self, model: nn.Module, cfg: SampleConfig, console: Console) -> dict[str, Any]:
        """--num-samples (at least 5) held-out sentences, 15% of their tokens (at least one) masked with --seed;
        a table of each masked token, the model's top guess and whether it is right."""
        if not getattr(self, "heldout", None):
            raise UserError('this run has no held-out sentences saved (trained before they were): pass a prompt '
                            'with [MASK], e.g. --prompt "The [MASK] was very kind."')
        g = torch.Generator().manual_seed(cfg.seed)
        table = Table(title="held-out sentences, masked and filled")
        for col in ("sentence (masked)", "true", "top guess", ""):
            table.add_column(col)
        hits, total, rows = 0, 0, []
        for sentence in self.heldout[:max(cfg.num_samples, 5)]:
            body = self.tok.encode(sentence)[:model.cfg.block_size - 2]
            n_mask = max(1, round(0.15 * len(body)))
            positions = sorted((torch.randperm(len(body), generator=g)[:n_mask] + 1).tolist())  # after [CLS]
            ids = [self.cls_id, *body, self.sep_id]
            masked = [self.mask_id if i in positions else t for i, t in enumerate(ids)]
            guess = self._fill_probs(model, masked).argmax(-1).tolist()
            shown = self.tok.decode(masked[1:-1])
            for pos in positions:
                ok = guess[pos] == ids[pos]
                hits, total = hits + ok, total + 1
                true, pred = self.tok.decode([ids[pos]]), self.tok.decode([guess[pos]])
                table.add_row(shown if pos == positions[0] else "", true, pred if ok else f"[red]{pred}[/red]",
                              "✓" if ok else "✗")
                rows.append({"sentence": sentence, "true": true, "guess": pred})
        console.print(table)
        console.print(f"top-1 accuracy on these {total} masked tokens: [bold]{100 * hits / total:.1f}%[/bold]")
        return {"heldout": rows, "accuracy": hits / total}
