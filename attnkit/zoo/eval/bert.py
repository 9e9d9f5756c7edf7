"""Masked-LM evaluation for BERT: accuracy, top-5 and loss on the masked positions, beside the unigram-frequency
baseline (always guess the most frequent training tokens) on exactly the same positions."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attnkit.zoo.models.bert import IGNORE


class MaskedTokenStats:
    """Accumulates `add(model output, batch)` over batches; `result()` gives the means per masked token.

    unigram: (V,) training-set token frequencies (specials zeroed), on the batches' device.
    """

    def __init__(self, unigram: torch.Tensor):
        self.log_unigram = (unigram + 1e-9).log()
        self.top_unigram = unigram.topk(5).indices  # (5,)
        self.sums = dict.fromkeys(("n", "total", "nll", "correct", "top5", "base_correct", "base_top5",
                                   "base_nll", "nsp_correct", "nsp_n"), 0.0)

    def add(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> None:
        s = self.sums
        labels = batch["labels"][batch["labels"] != IGNORE]  # (N,)
        logits = out["logits"].float()  # (N, V)
        k = len(labels)
        s["n"] += k
        s["total"] += (out["mlm"].item() + out.get("nsp", torch.tensor(0.0)).item()) * k
        s["nll"] += F.cross_entropy(logits, labels, reduction="sum").item()
        s["correct"] += (logits.argmax(-1) == labels).sum().item()
        s["top5"] += (logits.topk(5, -1).indices == labels[:, None]).any(-1).sum().item()
        s["base_correct"] += (labels == self.top_unigram[0]).sum().item()
        s["base_top5"] += (labels[:, None] == self.top_unigram[None]).any(-1).sum().item()
        s["base_nll"] -= self.log_unigram[labels].sum().item()
        if "nsp_logits" in out:
            s["nsp_correct"] += (out["nsp_logits"].argmax(-1) == batch["is_next"]).sum().item()
            s["nsp_n"] += len(batch["is_next"])

    def result(self) -> dict[str, float]:
        s, n = self.sums, max(self.sums["n"], 1)
        stats = {"loss": s["total"] / n, "mlm_loss": s["nll"] / n, "mlm_accuracy": s["correct"] / n,
                 "mlm_top5": s["top5"] / n, "unigram_loss": s["base_nll"] / n,
                 "unigram_accuracy": s["base_correct"] / n, "unigram_top5": s["base_top5"] / n,
                 "masked_tokens": int(n)}
        if s["nsp_n"]:
            stats["nsp_accuracy"] = s["nsp_correct"] / s["nsp_n"]
        return stats
