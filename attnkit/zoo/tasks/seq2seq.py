"""What the zoo's sequence-to-sequence tasks share: `encdec` (translation) and `asr` (speech recognition).

Both train an `attnkit.zoo.models.encdec.EncoderDecoder` on (input, target text) pairs and decode it the same way:
    batch  {input_key: padded inputs (B, ...), "tgt_in": <s> y (B, Lt), "tgt_out": y </s> (B, Lt)}, PAD-padded
    loss   teacher-forced cross-entropy over the target tokens (the recipe's label smoothing)
    decode inputs in batches: greedy (beam = 1) or beam search with the GNMT length penalty (alpha)
    report each decoding's metrics and time as the rows of one table (greedy beside beam)
A subclass describes the rest: its data (`prepare`, `get_batch`, `pad_inputs`, a vocabulary with PAD, BOS and
EOS at 0, 1, 2), its model, its metrics (`score`, `cells`) and its report and sample.
"""
from __future__ import annotations

import time
from typing import Any, ClassVar, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit.generation.beam import Hypothesis, beam_search, greedy_decode
from attnkit.nn.modes import model_device
from attnkit.zoo.report import Table
from attnkit.zoo.tasks.base import Task

PAD, BOS, EOS = 0, 1, 2  # the first ids of every vocabulary here (and the models' pad_id, bos_id, eos_id)


def pad_ids(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """Token id lists → (B, max length) long, PAD on the right."""
    out = torch.full((len(rows), max(map(len, rows), default=0)), PAD, dtype=torch.long)
    for b, row in enumerate(rows):
        out[b, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out


class Seq2SeqTask(Task):
    input_key: ClassVar[str] = "src"        # the batch's input: "src" (token ids) or "mel" (log-mel frames)
    beam: ClassVar[int] = 4                 # report's beam width
    alpha: ClassVar[float] = 0.6            # the length penalty's alpha (0: hypotheses rank by log-probability)
    decode_batch_size: ClassVar[int] = 128
    vocab: Any = None                       # encode(text) -> ids, decode(ids) -> text; set by prepare / load

    # ---- data ----------------------------------------------------------------------------
    def pad_inputs(self, inputs: Sequence) -> torch.Tensor:
        """Encoded inputs (token id lists here) → one padded batch tensor."""
        return pad_ids(inputs)

    def input_positions(self, x: torch.Tensor) -> int:
        """Real (unpadded) positions in a padded input batch."""
        return int((x != PAD).sum())

    def collate(self, inputs: Sequence, targets: Sequence[str]) -> dict[str, torch.Tensor]:
        """Encoded inputs and target texts → {input_key: padded inputs, "tgt_in": <s> y, "tgt_out": y </s>}."""
        ys = [self.vocab.encode(t) for t in targets]
        return {self.input_key: self.pad_inputs(inputs), "tgt_in": pad_ids([[BOS, *y] for y in ys]),
                "tgt_out": pad_ids([[*y, EOS] for y in ys])}

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """Real input positions plus target tokens."""
        return self.input_positions(batch[self.input_key]) + int((batch["tgt_out"] != PAD).sum())

    # ---- training ------------------------------------------------------------------------
    def token_loss(self, logits: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of logits (B, Lt, V) against tgt_out (B, Lt), PAD ignored."""
        return F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=PAD,
                               label_smoothing=self.cfg.label_smoothing or 0.0)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # Through model(...): the trainer may hand us the model wrapped by DDP or torch.compile.
        return self.token_loss(model(batch[self.input_key], batch["tgt_in"]), batch["tgt_out"])  # logits (B, Lt, V)

    # ---- decoding ------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, model: nn.Module, inputs: Sequence, beam: int = 1, alpha: float | None = None,
               max_len: int | None = None) -> list[list[Hypothesis]]:
        """Encoded inputs → per input its hypotheses, best first: one for greedy (beam=1), the n-best for beam
        search. Inputs go in batches of decode_batch_size, in `batch_order`; results come back in input order."""
        alpha = self.alpha if alpha is None else alpha
        order, out = self.batch_order(inputs), {}
        for start in range(0, len(order), self.decode_batch_size):
            chunk = order[start:start + self.decode_batch_size]
            x = self.pad_inputs([inputs[i] for i in chunk]).to(model_device(model))
            out.update(zip(chunk, self.decode_batch(model, x, beam, alpha, self.decode_limit(model, x, max_len))))
        return [out[i] for i in range(len(inputs))]

    def best_texts(self, model: nn.Module, inputs: Sequence, beam: int = 1, alpha: float | None = None) -> list[str]:
        """Encoded inputs → the text of each one's best hypothesis."""
        return [self.vocab.decode(hyps[0].tokens) for hyps in self.decode(model, inputs, beam, alpha)]

    def batch_order(self, inputs: Sequence) -> list[int]:
        """The order inputs are batched in (ASR sorts clips by length, so each batch pads little)."""
        return list(range(len(inputs)))

    def decode_limit(self, model: nn.Module, x: torch.Tensor, max_len: int | None) -> int:
        """Most tokens, EOS included, a hypothesis for the batch x may have: max_len, within the model's."""
        return min(max_len or model.cfg.max_len, model.cfg.max_len)

    def decode_batch(self, model: nn.Module, x: torch.Tensor, beam: int, alpha: float,
                     max_len: int) -> list[list[Hypothesis]]:
        if beam == 1:
            return [[h] for h in greedy_decode(model, x, max_len, alpha)]
        return beam_search(model, x, beam, max_len, alpha)

    # ---- report --------------------------------------------------------------------------
    def decodings(self, model: nn.Module) -> list[tuple[str, int]]:
        """(name, beam) of each decoding report compares, in table order."""
        return [("greedy", 1), (f"beam {self.beam}", self.beam)]

    def score(self, refs: list[str], hyps: list[str]) -> dict[str, float]:
        """The task's metrics of hypotheses against references, e.g. {"wer": ..., "cer": ...}."""
        raise NotImplementedError

    def cells(self, result: dict[str, Any]) -> list[str]:
        """The table cells of one decoding's metrics, formatted (e.g. "12.5%")."""
        raise NotImplementedError

    def compare_decodings(self, table: Table, labels: list[str], model: nn.Module, inputs: Sequence,
                          refs: list[str]) -> dict[int, dict[str, Any]]:
        """Decode inputs each way of `decodings` and add a row per decoding to table: labels, decoding name,
        `cells`, seconds. Returns beam → the decoding's metrics, its hypotheses ("hyps") and "seconds"."""
        results = {}
        for name, beam in self.decodings(model):
            t0 = time.perf_counter()
            hyps = self.best_texts(model, inputs, beam)
            r = results[beam] = dict(self.score(refs, hyps), hyps=hyps, seconds=time.perf_counter() - t0)
            table.rows.append([*labels, name, *self.cells(r), f"{r['seconds']:.1f}"])
        return results
