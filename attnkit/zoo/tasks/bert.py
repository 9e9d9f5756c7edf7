"""`--model bert`: masked-language-model pre-training on a text corpus, fill-mask sampling, and fine-tuning.

Data (`attnkit.zoo.data.mlm.corpus_splits`): `--data python` (the default "code" flavor's), the standard library's
source with every tenth file held out whole; or GPT's corpus (the embedded Austen text, or `--data PATH`), 90% / 10%.
Tokenizer: sentencepiece with [PAD] [CLS] [SEP] [MASK], trained on the training split's first 1M characters
(`--tokenizer char`, the default) or a `--tokenizer FILE.model`.

An example is [CLS] + a random window of the token stream + [SEP]; with next-sentence prediction (the "*-nsp" flavors)
[CLS] A [SEP] B [SEP], B following A half of the time. Masking follows BERT (`attnkit.zoo.models.bert.mask_tokens`).
`report` gives masked-token accuracy on validation beside a unigram-frequency baseline on the same masked positions.

Then the claim that matters: fine-tuning (`--opt finetune_*`; off with `--opt finetune_labels=0`) on a downstream task
(`finetune_task`, one of `attnkit.zoo.eval.bert.DOWNSTREAM`), the pretrained model against the same architecture from
scratch, fine-tuned alike on the same few labels, beside bag-of-words logistic regression (`finetune_comparison`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from attnkit.config import SampleConfig, TrainConfig
from attnkit.zoo.data.mlm import (corpus_splits, encode_masked_prompt, heldout_sentences, mlm_tokenizer, pad_rows, special_token_ids,
                                  window_examples)
from attnkit.zoo.eval.bert import (DOWNSTREAM, MaskedTokenStats, fill_probabilities, finetune_comparison,
                                   heldout_fills, heldout_rows, masked_lm_rows, top_fills, unigram_frequencies)
from attnkit.zoo.models.bert import BERT, POOLINGS, BERTConfig, mask_tokens
from attnkit.errors import UserError
from attnkit.fsio import atomic_write
from attnkit.nn.modes import model_device
from attnkit.zoo.report import Echo, Report
from attnkit.zoo.tasks.base import Flavor, Task
from attnkit.zoo.tasks.sample_options import BERTSampleOptions

MASK_PROB, HELDOUT_FILE = 0.15, "bert_data.json"  # BERT's masking rate; the held-out sentences `sample` fills
FILL_TOP_K = 10  # candidates shown per [MASK] unless --top-k is set to something other than its default
CODE_OPTIONS = dict(pre_ln=True, position="rotary", finetune_task="swapped_line", finetune_words=20, finetune_corrupt=2,
                    finetune_labels=1024)  # with 256 labels the gap was 3.0 ± 4.2 points; with 1024, 23.6 ± 2.9


@dataclass
class BERTOptions:
    """Pretraining knobs, then the fine-tuning phase after it (attnkit.zoo.eval.bert.finetune_comparison)."""
    pre_ln: bool = field(default=False, metadata={"help": "pre-LN encoder blocks (BERT is post-LN)"})
    position: str = field(default="learned", metadata={"help": "positions: learned (BERT) or rotary"})
    mask_prob: float = field(default=MASK_PROB, metadata={"help": "fraction of training tokens to predict (eval: 0.15)"})
    finetune_task: str = field(default="replaced_word", metadata={"help": "one of attnkit.zoo.eval.bert.DOWNSTREAM"})
    finetune_labels: int = field(default=256, metadata={"help": "labelled passages to fine-tune on (0: no fine-tuning phase)"})
    finetune_test: int = field(default=1000, metadata={"help": "held-out passages to test on"})
    finetune_words: int = field(default=16, metadata={"help": "words per passage"})
    finetune_steps: int = field(default=300, metadata={"help": "fine-tuning steps (each arm)"})
    finetune_lr: float = field(default=3e-4, metadata={"help": "peak fine-tuning learning rate (each arm)"})
    finetune_batch_size: int = field(default=32, metadata={"help": "fine-tuning batch size"})
    finetune_pooling: str = field(default="mean", metadata={"help": "classifier head: mean, max, cls or surprise"})
    finetune_body_lr: float = field(default=1.0, metadata={"help": "pretrained encoder's lr / the head's"})
    finetune_corrupt: int = field(default=1, metadata={"help": "words replaced (or swaps made) in a corrupted passage"})

class BERTTask(Task):
    name = "bert"
    Options = BERTOptions
    default_flavor = "code"
    _train = dict(schedule="cosine", beta2=0.98, dropout=0.1)
    # vocab_size: of the sentencepiece model trained on the corpus; a `--tokenizer FILE.model` brings its own size.
    flavors = {
        "debug": Flavor(model=dict(n_layer=1, n_head=2, d_model=32, d_ff=64, nsp=False, vocab_size=400),
                        options=dict(finetune_labels=32, finetune_test=64, finetune_steps=5),
                        train=dict(_train, max_steps=20, batch_size=8, block_size=32, lr=1e-3, warmup_steps=5,
                                   eval_interval=10, eval_batches=2)),
        # CPU-sized: about 1.1 M parameters (a quarter of them the 2000-token embedding).
        "small": Flavor(model=dict(n_layer=4, n_head=4, d_model=128, d_ff=512, nsp=False, vocab_size=2000),
                        train=dict(_train, max_steps=1000, batch_size=32, block_size=64, lr=1e-3, warmup_steps=100,
                                   eval_interval=200, eval_batches=8)),
    }
    # The default: the standard library's source; rotary, pre-LN, lr 3e-3 leave the unigram plateau (docs/zoo/bert.md).
    flavors["code"] = replace(flavors["small"], options=CODE_OPTIONS, train=dict(flavors["small"].train, data="python",
                              batch_size=16, block_size=128, lr=3e-3, max_steps=3000, eval_interval=250))
    flavors.update({f"{name}-nsp": replace(f, model=dict(f.model, nsp=True)) for name, f in list(flavors.items())})

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.tok, self.ids, self.heldout = None, {}, []

    # ---- tokenizer and data --------------------------------------------------------------
    def _set_tokenizer(self, tok) -> None:
        ids = special_token_ids(tok)
        self.tok = tok
        self.pad_id, self.cls_id, self.sep_id, self.mask_id = ids.values()  # in SPECIALS' order
        self.special_ids = torch.tensor(sorted({*ids.values(), tok.sp.unk_id()}))
        self.random_ids = torch.tensor([i for i in range(tok.vocab_size) if i not in set(self.special_ids.tolist())])

    def shown_settings(self) -> dict[str, str]:
        if self.cfg.tokenizer == "char":  # the default: train a sentencepiece model on the corpus
            return {"tokenizer": f"sentencepiece(bpe,vocab={self.tok.vocab_size},trained-on-data)"}
        return {}

    def prepare(self, run_dir: Path) -> None:
        self.texts = parts = corpus_splits(self.cfg.data)
        if self.opts.finetune_task not in DOWNSTREAM or self.opts.finetune_pooling not in POOLINGS:
            raise UserError(f"--opt finetune_task takes {', '.join(DOWNSTREAM)}; finetune_pooling {', '.join(POOLINGS)}")
        words = 2 * self.opts.finetune_words  # checked now rather than after training
        short = [split for split, part in parts.items() if len(part.split()) < words]
        if self.opts.finetune_labels > 0 and short:
            raise UserError(f"the {short[0]} split has fewer than {words} words, too few for fine-tuning passages of "
                            f"{self.opts.finetune_words}; use more text, or --opt finetune_labels=0")
        tok = mlm_tokenizer(self.cfg.tokenizer, parts["train"], self.flavor.model["vocab_size"])
        self._set_tokenizer(tok)
        tok.save(Path(run_dir) / "tokenizer.model")
        self.ids = {k: torch.tensor(tok.encode(v), dtype=torch.long) for k, v in parts.items()}
        need = self.cfg.block_size
        for split, ids in self.ids.items():
            if len(ids) < 2 * need:
                raise UserError(f"the {split} split has {len(ids)} tokens; BERT needs at least {2 * need} "
                                f"(2 × --block-size); use more text or a smaller --block-size")
        self.unigram = unigram_frequencies(self.ids["train"], tok.vocab_size, self.special_ids)  # the baseline
        atomic_write(Path(run_dir) / HELDOUT_FILE, json.dumps({"block_size": self.cfg.block_size,
                                                               "heldout": heldout_sentences(parts["val"])}))

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        nsp = self.flavor.model.get("nsp", False)
        batch = window_examples(self.ids[split], batch_size, self.cfg.block_size, nsp, self.cls_id, self.sep_id,
                                generator)
        ids = batch.pop("ids")  # (B, L)
        maskable = ~torch.isin(ids, self.special_ids)
        batch["input_ids"], batch["labels"] = mask_tokens(ids, maskable=maskable, mask_id=self.mask_id,
                                                          random_ids=self.random_ids, generator=generator,
                                                          mask_prob=self.opts.mask_prob if split == "train" else MASK_PROB)
        return batch

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["input_ids"].numel()

    # ---- model ---------------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        return dict(super().model_config(), vocab_size=self.tok.vocab_size, block_size=self.cfg.block_size,
                    pad_id=self.pad_id, **({"pre_ln": True} if self.opts.pre_ln else {}),
                    **({"position": self.opts.position} if self.opts.position != "learned" else {}))

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
        """Model and unigram baseline on the same masked positions of `batches` fixed batches (the engine
        calls evaluate and report in eval mode)."""
        g = torch.Generator().manual_seed(1234)
        stats = MaskedTokenStats(self.unigram.to(device))
        for _ in range(batches):
            batch = {k: v.to(device) for k, v in self.get_batch(split, self.cfg.batch_size, g).items()}
            stats.add(self._losses(model, batch), batch)
        return stats.result()

    def evaluate(self, model: nn.Module, split: str, batches: int, device: torch.device) -> dict[str, float]:
        s = self._masked_stats(model, split, batches, device)
        return {f"{split}_loss": s["loss"], f"{split}_mlm_accuracy": s["mlm_accuracy"]}

    def report(self, model: nn.Module, run_dir: Path) -> Report:
        L = self.cfg.block_size
        # Enough random windows to cover the validation text about twice.
        batches = min(50, max(self.cfg.eval_batches or 1, math.ceil(2 * len(self.ids["val"]) / (L * self.cfg.batch_size))))
        s = self._masked_stats(model, "val", batches, model_device(model))
        report = Report({k: v for k, v in s.items() if k != "loss"})
        report.table(f"masked-token prediction on validation ({s['masked_tokens']:,} masked tokens)",
                     ["predictor", "accuracy", "top-5 accuracy", "loss (nats)", "perplexity"], masked_lm_rows(s))
        if "nsp_accuracy" in s:
            report.line(f"next-sentence prediction accuracy: {100 * s['nsp_accuracy']:.1f}% (chance: 50%)")
        report.metrics.update(self.finetune(model))
        return report

    def finetune(self, model: nn.Module) -> dict[str, Any]:
        """The fine-tuning phase: pretrained vs the same model from scratch vs bag-of-words, same labels."""
        if self.opts.finetune_labels <= 0:
            return {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed + 1)
            scratch = self.build_model(self.model_config()).to(model_device(model))
        knobs = {k.removeprefix("finetune_"): v for k, v in asdict(self.opts).items() if k.startswith("finetune_")}
        return finetune_comparison(model, scratch, self.encode_passages, self.texts["train"], self.texts["val"],
                                   seed=self.cfg.seed, mask_id=self.mask_id, **knobs)

    def encode_passages(self, texts: list[str]) -> torch.Tensor:
        """Passages → (N, L) ids: [CLS] tokens [SEP], cut to block_size, then [PAD] to the longest."""
        rows = [[self.cls_id, *self.tok.encode(t)[:self.cfg.block_size - 2], self.sep_id] for t in texts]
        return pad_rows(rows, self.pad_id)  # (N, L)

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

    SampleOptions = BERTSampleOptions
    def sample(self, model: nn.Module, cfg: SampleConfig, echo: Echo) -> Report:
        """Fill the [MASK]s of --prompt (top-k table per mask), or without a prompt held-out sentences."""
        prompt = self.sample_options(cfg).prompt
        if not prompt:
            return self._sample_heldout(model, cfg)
        if "[MASK]" not in prompt:
            raise UserError('BERT fills masks: pass a prompt with [MASK], e.g. --prompt "The [MASK] was very kind."')
        ids = encode_masked_prompt(self.tok.encode, prompt, self.cls_id, self.sep_id, self.mask_id)
        if len(ids) > model.cfg.block_size:
            raise UserError(f"prompt is {len(ids)} tokens; this model reads at most {model.cfg.block_size}")
        k = FILL_TOP_K if cfg.top_k in (None, SampleConfig.top_k) else max(1, cfg.top_k)
        candidates, filled = top_fills(fill_probabilities(model, ids, self.special_ids), ids, self.mask_id, k, self.tok.decode)
        report = Report()
        for n, cands in enumerate(candidates, 1):
            report.table(f"[MASK] {n} of {len(candidates)}" if len(candidates) > 1 else "[MASK]",
                         ["#", "token", "probability"],
                         [[str(r), repr(c["token"]), f"{c['probability']:.3f}"] for r, c in enumerate(cands, 1)])
        text = self.tok.decode([t for t in filled if t not in (self.cls_id, self.sep_id)])
        report.line(f"top-1 fill: {text}")
        report.metrics = {"prompt": prompt, "filled": text, "candidates": candidates}
        return report

    def _sample_heldout(self, model: nn.Module, cfg: SampleConfig) -> Report:
        """--num-samples (at least 5) held-out sentences, 15% of their tokens (at least one) masked with --seed;
        a table of each masked token, the model's top guess and whether it is right."""
        if not getattr(self, "heldout", None):
            raise UserError('this run has no held-out sentences saved (trained before they were): pass a prompt '
                            'with [MASK], e.g. --prompt "The [MASK] was very kind."')
        sentences = self.heldout[:max(cfg.num_samples, 5)]
        bodies = [self.tok.encode(s)[:model.cfg.block_size - 2] for s in sentences]
        fills = heldout_fills(bodies, lambda masked: fill_probabilities(model, masked, self.special_ids).argmax(-1).tolist(),
                              self.cls_id, self.sep_id, self.mask_id, torch.Generator().manual_seed(cfg.seed))
        table, rows = heldout_rows(sentences, fills, self.tok.decode)
        hits = sum(row[3] == "✓" for row in table)
        report = Report({"heldout": rows, "accuracy": hits / len(rows)})
        report.table("held-out sentences, masked and filled", ["sentence (masked)", "true", "top guess", ""], table)
        report.line(f"top-1 accuracy on these {len(rows)} masked tokens: {100 * hits / len(rows):.1f}%")
        return report
