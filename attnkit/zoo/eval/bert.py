"""BERT's evaluation. Masked-LM: accuracy, top-5 and loss on the masked positions, beside the unigram-frequency
baseline (always guess the most frequent training tokens) on exactly the same positions. Fine-tuning: the
accuracy of a classifier fine-tuned from an encoder on a few labels, and of a bag-of-words logistic regression
on the same labels."""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F

from attnkit.nn.modes import mode, model_device
from attnkit.zoo.models.bert import BERT, IGNORE, BERTClassifier, inner_positions


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
                      test_labels: torch.Tensor, *, steps: int, lr: float, batch_size: int, seed: int,
                      pooling: str = "mean", body_lr: float = 1.0) -> float:
    """Test accuracy of a copy of `encoder` fine-tuned, all weights, with a fresh BERTClassifier head
    (its `pooling`).

    ids: (N, L) [CLS] ... [SEP] [PAD]...; labels: (N,). AdamW (weight decay 0.01), 10% linear warmup then
    linear decay, the encoder's learning rate body_lr × lr (the head's lr), random batches drawn with `seed`,
    dropout on as in BERT's fine-tuning. Only the private copy is switched between training and evaluation
    mode; `encoder` itself is not changed.
    """
    device = model_device(encoder)
    # Dropout draws from the global generators: seeded here and restored after, so a result depends on `seed` only.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        clf = BERTClassifier(copy.deepcopy(encoder), int(train_labels.max()) + 1, pooling).to(device)
        head = [p for n, p in clf.named_parameters() if not n.startswith("encoder.")]
        opt = torch.optim.AdamW([{"params": list(clf.encoder.parameters()), "scale": body_lr},
                                 {"params": head, "scale": 1.0}], lr=lr, weight_decay=0.01)
        g = torch.Generator().manual_seed(seed)
        warmup = max(1, steps // 10)
        with mode(clf, training=True), torch.enable_grad():  # the engine calls reports under no_grad
            for step in range(steps):
                scale = (step + 1) / warmup if step < warmup else (steps - step) / (steps - warmup)
                for group in opt.param_groups:
                    group["lr"] = lr * scale * group["scale"]
                idx = torch.randint(len(train_ids), (batch_size,), generator=g)
                loss = F.cross_entropy(clf(train_ids[idx].to(device)).float(), train_labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    with mode(clf, training=False), torch.no_grad():
        preds = torch.cat([clf(chunk.to(device)).argmax(-1).cpu() for chunk in test_ids.split(256)])  # (N,)
    return (preds == test_labels).float().mean().item()


PLL_STRIDE = 7  # masked pseudo-log-likelihood: every 7th token masked at once, 7 passes (about BERT's 15%)


@torch.no_grad()
def token_log_probs(model: BERT, ids: torch.Tensor, mask_id: int | None = None, stride: int = PLL_STRIDE) -> torch.Tensor:
    """The masked LM's log-probability of each token of ids (N, L) → (N, L) float, on ids' device.

    mask_id None: of each token as it stands (unmasked: one pass, dominated by copying the input). Else the
    masked pseudo-log-likelihood (Salazar et al. 2020) of each token with it and every stride-th token from it
    replaced by [MASK]: `stride` passes, each masking 1/stride of the positions. The caller sets the model's mode.
    """
    if mask_id is None:
        return model(ids).float().log_softmax(-1).gather(-1, ids[..., None])[..., 0]  # (N, L)
    out = torch.zeros(ids.shape, device=ids.device)
    phase = torch.arange(ids.shape[1], device=ids.device) % stride  # (L,)
    inner = inner_positions(ids, model.cfg.pad_id)
    for r in range(stride):
        masked = inner & (phase == r)  # (N, L)
        logp = model(ids.masked_fill(masked, mask_id)).float().log_softmax(-1)  # (N, L, V)
        out = torch.where(masked, logp.gather(-1, ids[..., None])[..., 0], out)
    return out  # (N, L)


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of scores (N,) ranking label-1 rows above label-0 ones (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return ((pos[:, None] > neg[None]).float().mean() + 0.5 * (pos[:, None] == neg[None]).float().mean()).item()


@torch.no_grad()
def zero_shot_auc(model: BERT, ids: torch.Tensor, labels: torch.Tensor, mask_id: int | None = None) -> dict[str, float]:
    """Before any fine-tuning: how well the masked LM's log-probabilities of a passage's tokens (`token_log_probs`:
    unmasked, or masked with mask_id) rank label-1 (original) passages above label-0 (corrupted) ones, scored by
    their mean ("mean") and by their least likely token ("min"). Areas under the ROC curve: 0.5 is no signal. The
    caller sets the model's mode (eval: no dropout).

    ids: (N, L) [CLS] ... [SEP] [PAD]...; labels: (N,) 0 or 1.
    """
    device, means, mins = model_device(model), [], []
    for chunk in ids.split(128):
        chunk = chunk.to(device)
        logp, inner = token_log_probs(model, chunk, mask_id), inner_positions(chunk, model.cfg.pad_id)  # (n, L)
        means.append(((logp * inner).sum(1) / inner.sum(1)).cpu())  # (n,)
        mins.append(logp.masked_fill(~inner, 0.0).min(1).values.cpu())  # (n,)
    return {"mean": auc(torch.cat(means), labels), "min": auc(torch.cat(mins), labels)}


def bag_of_words_accuracy(train_texts: list[str], train_labels: list[int], test_texts: list[str],
                          test_labels: list[int], ngram: int = 1) -> float:
    """Test accuracy of logistic regression on word counts (scikit-learn), trained on the same labels; with
    ngram=2, on counts of word pairs (bigrams) instead: the simplest model of word order."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = CountVectorizer(token_pattern=r"\S+", ngram_range=(ngram, ngram))
    clf = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(train_texts), train_labels)
    return float(clf.score(vectorizer.transform(test_texts), test_labels))


def downstream_examples(task: str, text: str, n: int, words: int, seed: int, corrupt: int = 1
                        ) -> tuple[list[str], list[int]]:
    """n labelled passages of `words` words from text for one of DOWNSTREAM's tasks, half of each label; a
    corrupted passage has `corrupt` words (names, lines) replaced, or swaps made."""
    from attnkit.zoo.data.replaced_name import replaced_name_examples
    from attnkit.zoo.data.replaced_word import replaced_word_examples
    from attnkit.zoo.data.swapped_line import swapped_line_examples
    from attnkit.zoo.data.word_order import word_order_examples

    if task == "replaced_word":
        return replaced_word_examples(text, n, words, seed, corrupt)
    if task == "replaced_name":
        return replaced_name_examples(text, n, words, seed, corrupt)
    if task == "swapped_line":
        return swapped_line_examples(text, n, words, seed, corrupt)
    if task in ("word_order", "adjacent_swap"):
        return word_order_examples(text, n, words, seed, adjacent=task == "adjacent_swap", swaps=corrupt)
    raise ValueError(f"downstream task must be one of {DOWNSTREAM}, got {task!r}")


DOWNSTREAM = ("replaced_word", "replaced_name", "swapped_line", "word_order", "adjacent_swap")


def finetune_comparison(pretrained: BERT, scratch: BERT, encode: Callable[[list[str]], torch.Tensor],
                        train_text: str, test_text: str, *, task: str, labels: int, test: int, words: int,
                        steps: int, lr: float, batch_size: int, seed: int, pooling: str = "mean",
                        body_lr: float = 1.0, corrupt: int = 1, mask_id: int | None = None) -> dict[str, float]:
    """BERT's claim: on a downstream task (DOWNSTREAM), with `labels` labelled passages from train_text, the
    pretrained encoder fine-tunes to a higher accuracy on `test` passages from test_text than the same
    architecture from scratch, with the same labels, steps, head and seed; bag-of-words on the same labels is
    the surface-statistics baseline.

    encode: passages -> (N, L) ids, [CLS] ... [SEP] then [PAD]. mask_id: [MASK], for the zero-shot check's
    masked pseudo-log-likelihood (`zero_shot_auc`; without it only the unmasked one is reported).
    """
    train_texts, train_y = downstream_examples(task, train_text, labels, words, seed, corrupt)
    test_texts, test_y = downstream_examples(task, test_text, test, words, seed + 1, corrupt)
    data = (encode(train_texts), torch.tensor(train_y), encode(test_texts), torch.tensor(test_y))
    kw = dict(steps=steps, lr=lr, batch_size=batch_size, seed=seed, pooling=pooling)
    with mode(pretrained, training=False):
        zero_shot = {"finetune_zero_shot_auc": zero_shot_auc(pretrained, data[2], data[3])["mean"]}
        if mask_id is not None:
            zero_shot.update({f"finetune_zero_shot_pll_{k}_auc": v
                              for k, v in zero_shot_auc(pretrained, data[2], data[3], mask_id).items()})
    return {"finetune_acc_pretrained": finetune_accuracy(pretrained, *data, **kw, body_lr=body_lr),
            "finetune_acc_scratch": finetune_accuracy(scratch, *data, **kw),
            "finetune_acc_bow": bag_of_words_accuracy(train_texts, train_y, test_texts, test_y),
            **zero_shot, "finetune_labels": labels, "finetune_test_passages": test}


def masked_lm_rows(s: dict[str, float]) -> list[list[str]]:
    """Rows (predictor, accuracy, top-5, loss, perplexity) of the masked-token table, from MaskedTokenStats."""
    return [[name, f"{100 * s[f'{key}_accuracy']:.1f}%", f"{100 * s[f'{key}_top5']:.1f}%", f"{s[f'{key}_loss']:.3f}",
             f"{math.exp(min(s[f'{key}_loss'], 50)):.1f}"] for name, key in (("BERT", "mlm"), ("unigram frequency", "unigram"))]


def heldout_fills(sentences: list[list[int]], fill: Callable[[list[int]], list[int]], cls_id: int, sep_id: int,
                  mask_id: int, generator: torch.Generator) -> list[tuple[list[int], list[int], list[int], list[int]]]:
    """Mask 15% (at least one) of each sentence's tokens (ids without [CLS]/[SEP]) with `generator`, and fill
    them. fill: [CLS] ids [SEP] with [MASK]s → the top guess at every position. Returns per sentence
    (true ids, masked ids, guesses), each [CLS] ... [SEP], and the masked positions."""
    out = []
    for body in sentences:
        n_mask = max(1, round(0.15 * len(body)))
        positions = sorted((torch.randperm(len(body), generator=generator)[:n_mask] + 1).tolist())  # after [CLS]
        ids = [cls_id, *body, sep_id]
        masked = [mask_id if i in positions else t for i, t in enumerate(ids)]
        out.append((ids, masked, fill(masked), positions))
    return out


def top_fills(probs: torch.Tensor, ids: list[int], mask_id: int, k: int,
              decode: Callable[[list[int]], str]) -> tuple[list[list[dict]], list[int]]:
    """probs (L, V) over the positions of ids → per [MASK] its top-k {"token": piece, "probability"}, and ids
    with each [MASK] replaced by its top-1."""
    filled, candidates = list(ids), []
    for pos in (i for i, t in enumerate(ids) if t == mask_id):
        p, idx = probs[pos].topk(min(k, probs.shape[-1]))
        candidates.append([{"token": decode([i]), "probability": pr} for i, pr in zip(idx.tolist(), p.tolist())])
        filled[pos] = idx[0].item()
    return candidates, filled


def heldout_rows(sentences: list[str], fills: list, decode: Callable[[list[int]], str]) -> tuple[list[list[str]], list[dict]]:
    """heldout_fills' result → table rows (masked sentence, true, top guess, ✓/✗) and per masked token
    {"sentence", "true", "guess"}."""
    table, rows = [], []
    for sentence, (ids, masked, guess, positions) in zip(sentences, fills):
        shown = decode(masked[1:-1])
        for pos in positions:
            true, pred = decode([ids[pos]]), decode([guess[pos]])
            table.append([shown if pos == positions[0] else "", true, pred, "✓" if guess[pos] == ids[pos] else "✗"])
            rows.append({"sentence": sentence, "true": true, "guess": pred})
    return table, rows


def fill_probabilities(model: torch.nn.Module, ids: list[int], special_ids: torch.Tensor) -> torch.Tensor:
    """(L, V) fill-in probabilities at every position of ids (one sequence); special tokens are never proposed."""
    device = model_device(model)
    probs = model(torch.tensor([ids], device=device))[0].float().softmax(-1)  # (L, V)
    probs[:, special_ids.to(device)] = 0  # never propose [MASK], [PAD], ...
    return probs / probs.sum(-1, keepdim=True)


def unigram_frequencies(train_ids: torch.Tensor, vocab_size: int, special_ids: torch.Tensor) -> torch.Tensor:
    """(V,) training-set token frequencies with the special tokens zeroed: the masked-LM baseline."""
    counts = torch.bincount(train_ids, minlength=vocab_size).float()
    counts[special_ids] = 0
    return counts / counts.sum()
