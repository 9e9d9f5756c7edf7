"""BERT's downstream task: is this passage in its original word order, or were two of its words swapped?

Built from any text, offline: a passage is `words` consecutive words at a random start; half the passages
(chosen at random, exactly balanced) get two of their words, at two random positions holding different
words, exchanged. Label 1 = original, 0 = swapped.

Both versions of a passage hold the same words, so a bag-of-words model cannot beat chance (50%) by
construction: the label lives only in word order, which a masked-LM learns in pretraining. Passages for
fine-tuning come from the training text and those for testing from the held-out text, so no test passage
was seen in pretraining.
"""
from __future__ import annotations

import random

from attnkit.zoo.data.replaced_word import balanced_labels

ORIGINAL, SWAPPED = 1, 0


def swap_two_words(words: list[str], rng: random.Random, adjacent: bool = False) -> list[str]:
    """A copy of words with two different words at two random positions (next to each other if adjacent)
    exchanged."""
    if len(set(words)) < 2:
        raise ValueError("a passage needs two different words to swap")
    while True:
        if adjacent:
            i = rng.randrange(len(words) - 1)
            j = i + 1
        else:
            i, j = rng.sample(range(len(words)), 2)
        if words[i] != words[j]:
            out = list(words)
            out[i], out[j] = out[j], out[i]
            return out


def word_order_examples(text: str, n: int, words: int, seed: int, adjacent: bool = False, swaps: int = 1
                        ) -> tuple[list[str], list[int]]:
    """n passages of `words` words from text and their labels (ORIGINAL or SWAPPED), half of each; a SWAPPED
    passage has had `swaps` swaps made one after the other (two neighbours each time if adjacent)."""
    tokens = text.split()
    if len(tokens) < 2 * words:
        raise ValueError(f"the text has {len(tokens)} words; passages of {words} need at least {2 * words}")
    rng = random.Random(seed)
    texts, labels = [], balanced_labels(n, rng)
    for label in labels:
        while True:
            start = rng.randrange(len(tokens) - words + 1)
            passage = tokens[start:start + words]
            if len(set(passage)) >= 2:
                break
        swapped = passage
        while label == SWAPPED and swapped == passage:  # repeated swaps may undo each other: draw again
            for _ in range(swaps):
                swapped = swap_two_words(swapped, rng, adjacent)
        texts.append(" ".join(swapped))
    return texts, labels
