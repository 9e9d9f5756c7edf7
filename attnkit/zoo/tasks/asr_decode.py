"""Decoding for `--model asr` (`attnkit.zoo.tasks.asr.ASRTask` mixes it in): CTC best path (beam=0), attention
greedy (1), and beam search that scores every prefix jointly with the CTC head (Watanabe et al. 2017)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from attnkit.generation.beam import Hypothesis
from attnkit.zoo.eval import ctc as ctc_eval
from attnkit.zoo.tasks.seq2seq import Seq2SeqTask

BEAM = 4


class ASRDecoding:
    ctc_weight: float

    def batch_order(self, mels: list[np.ndarray]) -> list[int]:
        return sorted(range(len(mels)), key=lambda i: mels[i].shape[1])

    def decode_limit(self, model: nn.Module, mel: torch.Tensor, max_len: int | None) -> int:
        # espeak's fastest speech is under 25 characters a second (100 frames): no transcript is longer.
        return min(model.cfg.max_len - 1, 8 + mel.shape[2] // 4)

    def decode_batch(self, model: nn.Module, mel: torch.Tensor, beam: int, alpha: float,
                     max_len: int) -> list[list[Hypothesis]]:
        """Also CTC best path (beam=0) and, with a CTC head, beam search scoring every prefix jointly
        (`attnkit.zoo.eval.ctc.joint_beam_search`); those hypotheses have no attention log-probability (nan)."""
        if beam == 0:
            return [[Hypothesis(tokens, math.nan, math.nan)] for tokens in ctc_eval.ctc_best_path(model, mel)]
        if beam > 1 and model.cfg.ctc_head and self.ctc_weight > 0:
            found = ctc_eval.joint_beam_search(model, mel, beam, max_len, self.ctc_weight)
            return [[Hypothesis(tokens, math.nan, score)] for tokens, score in found]
        return super().decode_batch(model, mel, beam, alpha, max_len)

    # Log-mel clips (n_mels, T_i) → transcripts: CTC best path (beam=0), attention greedy (1) or beam search.
    transcribe = Seq2SeqTask.best_texts

    def decodings(self, model: nn.Module) -> list[tuple[str, int]]:
        ctc = model.cfg.ctc_head
        return [("CTC best path", 0)] * ctc + [("greedy", 1), (f"beam {BEAM}" + (" + CTC" if ctc else ""), BEAM)]

