"""BERT's downstream tasks: replaced-word detection and word order (adjacent or not), built from any text."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from attnkit.zoo.data.replaced_word import ORIGINAL, REPLACED, replace_words, replaced_word_examples
from attnkit.zoo.data.word_order import swap_two_words, word_order_examples
from attnkit.zoo.eval.bert import DOWNSTREAM, bag_of_words_accuracy, downstream_examples


def zipf_text(n: int, vocab: int, seed: int) -> str:
    """n running words drawn from a Zipf distribution over `vocab` words (as in real text)."""
    r = random.Random(seed)
    return " ".join(r.choices([f"w{i}" for i in range(vocab)], weights=[1 / (i + 1) for i in range(vocab)], k=n))


@pytest.mark.parametrize("k", [1, 3])
def test_replaced_passages_differ_from_a_run_of_the_text_in_exactly_k_words(k):
    text = " ".join(f"w{i}" for i in range(3000))  # every word distinct
    tokens = text.split()
    texts, labels = replaced_word_examples(text, 101, 12, seed=3, replaced=k)
    assert Counter(labels) == {ORIGINAL: 51, REPLACED: 50}
    for t, y in zip(texts, labels):
        words = t.split()
        distance = min(sum(a != b for a, b in zip(words, tokens[s:s + 12])) for s in range(len(tokens) - 11))
        assert distance == (0 if y == ORIGINAL else k)
    assert replaced_word_examples(text, 101, 12, seed=3, replaced=k) == (texts, labels)  # deterministic given the seed
    assert replaced_word_examples(text, 101, 12, seed=4, replaced=k) != (texts, labels)


def test_replace_words_changes_k_positions_to_words_of_the_vocabulary():
    words, vocabulary = list("abcdefgh"), list("abxyz")
    for seed in range(20):
        out = replace_words(words, vocabulary, 3, random.Random(seed))
        changed = [i for i, (a, b) in enumerate(zip(words, out)) if a != b]
        assert len(changed) == 3 and all(out[i] in vocabulary for i in changed)
    with pytest.raises(ValueError, match="cannot replace 9 of 8"):
        replace_words(words, vocabulary, 9, random.Random(0))


def test_replacements_follow_the_unigram_distribution():
    """A frequent word is drawn as often as it occurs: 'a' is half the vocabulary list, so about half of the
    replacements of non-'a' words are 'a'."""
    r = random.Random(0)
    drawn = Counter(replace_words(["q"], ["a", "a", "b", "c"], 1, r)[0] for _ in range(4000))
    assert drawn["a"] / 4000 == pytest.approx(0.5, abs=0.03)  # 4000 draws: ± 3.8 standard errors


def test_adjacent_swaps_exchange_neighbours():
    r = random.Random(0)
    words = [f"w{i}" for i in range(10)]
    for _ in range(50):
        out = swap_two_words(words, r, adjacent=True)
        i, j = [k for k in range(10) if out[k] != words[k]]
        assert j == i + 1 and out[i] == words[j] and out[j] == words[i]


def test_repeated_swaps_keep_the_words():
    text = " ".join(f"w{i}" for i in range(3000))
    texts, labels = word_order_examples(text, 40, 12, seed=0, adjacent=True, swaps=3)
    for t, y in zip(texts, labels):
        words = t.split()
        run = sorted(words, key=lambda w: int(w[1:]))
        assert [int(w[1:]) for w in run] == list(range(int(run[0][1:]), int(run[0][1:]) + 12))  # a run, reordered
        assert (words == run) == (y == ORIGINAL)  # swaps that undo each other are redrawn


@pytest.mark.parametrize("task,corrupt", [(t, 1) for t in DOWNSTREAM] + [("replaced_word", 4), ("word_order", 4)])
def test_bag_of_words_stays_near_chance(task, corrupt):
    """Word order keeps the words; a replaced word is distributed like the one it removes: no count tells."""
    text = zipf_text(20000, 300, seed=0)
    train = downstream_examples(task, text, 400, 12, seed=0, corrupt=corrupt)
    test = downstream_examples(task, text, 2000, 12, seed=1, corrupt=corrupt)
    assert abs(bag_of_words_accuracy(*train, *test) - 0.5) < 0.05  # 2000 test passages: ± 4.5 standard errors


def test_downstream_tasks_are_named():
    text = zipf_text(500, 30, seed=0)
    assert downstream_examples("word_order", text, 10, 8, seed=0) == word_order_examples(text, 10, 8, seed=0)
    with pytest.raises(ValueError, match="downstream task must be one of"):
        downstream_examples("sentiment", text, 10, 8, seed=0)


def test_zero_shot_auc_ranks_passages_by_the_mlm_s_log_probabilities():
    """A model whose logits favour token 5 everywhere scores passages with more 5s higher."""
    import torch

    from attnkit.zoo.eval.bert import zero_shot_auc

    class Fives(torch.nn.Module):
        cfg = type("cfg", (), {"pad_id": 0})

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))  # tells model_device where the model lives

        def forward(self, ids):
            return torch.nn.functional.one_hot(torch.full_like(ids, 5), 8).float() * 4  # (B, L, V)

    CLS, SEP = 1, 2
    ids = torch.tensor([[CLS, 5, 5, 5, SEP, 0], [CLS, 5, 5, 6, SEP, 0], [CLS, 5, 6, 6, 6, SEP], [CLS, 6, 6, 6, SEP, 0]])
    assert zero_shot_auc(Fives(), ids, torch.tensor([1, 1, 0, 0])) == 1.0
    assert zero_shot_auc(Fives(), ids, torch.tensor([0, 0, 1, 1])) == 0.0
    # original rows 0 and 2 against corrupted 1 and 3: 0 > 1, 0 > 3, 2 > 3 but not 2 > 1
    assert zero_shot_auc(Fives(), ids, torch.tensor([1, 0, 1, 0])) == 0.75
