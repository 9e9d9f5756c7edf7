"""BERT's evaluation. Masked-LM: accuracy, top-5 and loss on the masked positions, beside the unigram-frequency
baseline (always guess the most frequent training tokens) on exactly the same positions. Fine-tuning: the
accuracy of a classifier fine-tuned from an encoder on a few labels, and of a bag-of-words logistic regression
on the same labels."""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F

from attnkit.nn.modes import mode
from attnkit.zoo.models.bert import BERT, IGNORE, BERTClassifier


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


def finetune_accuracy(encoder: BERT, train_ids: torch.Tensor, train_labels: torch.Tensor, test_ids: torch.Tensor,
                      test_labels: torch.Tensor, *, steps: int, lr: float, batch_size: int, seed: int) -> float:
    """Test accuracy of a copy of `encoder` fine-tuned, all weights, with a fresh classification head.

    ids: (N, L) [CLS] ... [SEP] [PAD]...; labels: (N,). AdamW (weight decay 0.01), 10% linear warmup then
    linear decay, random batches drawn with `seed`, dropout on as in BERT's fine-tuning. Only the private copy
    is switched between training and evaluation mode; `encoder` itself is not changed.
    """
    device = next(encoder.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = BERTClassifier(copy.deepcopy(encoder), int(train_labels.max()) + 1).to(device)
    opt = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    warmup = max(1, steps // 10)
    with mode(clf, training=True), torch.enable_grad():  # the engine calls reports under no_grad
        for step in range(steps):
            scale = (step + 1) / warmup if step < warmup else (steps - step) / (steps - warmup)
            for group in opt.param_groups:
                group["lr"] = lr * scale
            idx = torch.randint(len(train_ids), (batch_size,), generator=g)
            loss = F.cross_entropy(clf(train_ids[idx].to(device)).float(), train_labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with mode(clf, training=False), torch.no_grad():
        preds = torch.cat([clf(chunk.to(device)).argmax(-1).cpu() for chunk in test_ids.split(256)])  # (N,)
    return (preds == test_labels).float().mean().item()


def bag_of_words_accuracy(train_texts: list[str], train_labels: list[int], test_texts: list[str],
                          test_labels: list[int]) -> float:
    """Test accuracy of logistic regression on word counts (scikit-learn), trained on the same labels."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = CountVectorizer(token_pattern=r"\S+")
    clf = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(train_texts), train_labels)
    return float(clf.score(vectorizer.transform(test_texts), test_labels))


def finetune_comparison(pretrained: BERT, scratch: BERT, encode: Callable[[list[str]], torch.Tensor],
                        train_text: str, test_text: str, *, labels: int, test: int, words: int, steps: int,
                        lr: float, batch_size: int, seed: int) -> dict[str, float]:
    """BERT's claim: on the word-order task (attnkit.zoo.data.word_order), with `labels` labelled passages from
    train_text, the pretrained encoder fine-tunes to a higher accuracy on `test` passages from test_text than
    the same architecture from scratch, with the same labels, steps and seed; bag-of-words is at chance.

    encode: passages -> (N, L) ids, [CLS] ... [SEP] then [PAD].
    """
    from attnkit.zoo.data.word_order import word_order_examples

    train_texts, train_y = word_order_examples(train_text, labels, words, seed)
    test_texts, test_y = word_order_examples(test_text, test, words, seed + 1)
    data = (encode(train_texts), torch.tensor(train_y), encode(test_texts), torch.tensor(test_y))
    kw = dict(steps=steps, lr=lr, batch_size=batch_size, seed=seed)
    return {"finetune_acc_pretrained": finetune_accuracy(pretrained, *data, **kw),
            "finetune_acc_scratch": finetune_accuracy(scratch, *data, **kw),
            "finetune_acc_bow": bag_of_words_accuracy(train_texts, train_y, test_texts, test_y),
            "finetune_labels": labels, "finetune_test_passages": test}
