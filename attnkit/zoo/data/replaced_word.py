"""BERT's downstream task: is this passage as written, or was one of its words replaced by a random word?

Built from any text, offline: a passage is `words` consecutive words at a random start; half the passages
(chosen at random, exactly balanced) get `replaced` of their words, at random positions, replaced by words
drawn from the text's own unigram distribution (a uniformly random running word of the whole text, different
from the one it replaces). Label 1 = original, 0 = replaced.

The inserted word is distributed like the word it removes (both are a random running word of the text), so a
bag-of-words model has nothing to count: it stays near chance (50%). Telling the passages apart takes knowing
which word fits its context, which is what a masked LM practises in pretraining. Passages for fine-tuning come
from the training text and those for testing from the held-out text, so no test passage was seen in
pretraining.
"""
from __future__ import annotations

import random

ORIGINAL, REPLACED = 1, 0


def replace_words(words: list[str], vocabulary: list[str], k: int, rng: random.Random) -> list[str]:
    """A copy of words with k of them, at distinct random positions, replaced by a different word drawn
    uniformly from vocabulary (a list of running words: drawing from it draws from their unigram distribution)."""
    if k > len(words):
        raise ValueError(f"cannot replace {k} of {len(words)} words")
    out = list(words)
    for i in rng.sample(range(len(words)), k):
        while (new := vocabulary[rng.randrange(len(vocabulary))]) == words[i]:
            pass
        out[i] = new
    return out


def balanced_labels(n: int, rng: random.Random) -> list[int]:
    """n labels in random order, ORIGINAL for half (one more when n is odd) and corrupted (0) for the rest."""
    labels = [ORIGINAL] * (n - n // 2) + [REPLACED] * (n // 2)
    rng.shuffle(labels)
    return labels


def replaced_word_examples(text: str, n: int, words: int, seed: int, replaced: int = 1) -> tuple[list[str], list[int]]:
    """n passages of `words` words from text and their labels (ORIGINAL or REPLACED), half of each."""
    tokens = text.split()
    if len(tokens) < 2 * words:
        raise ValueError(f"the text has {len(tokens)} words; passages of {words} need at least {2 * words}")
    if len(set(tokens)) < 2:
        raise ValueError("the text needs two different words to replace one by another")
    rng = random.Random(seed)
    texts, labels = [], balanced_labels(n, rng)
    for label in labels:
        start = rng.randrange(len(tokens) - words + 1)
        passage = tokens[start:start + words]
        texts.append(" ".join(passage if label == ORIGINAL else replace_words(passage, tokens, replaced, rng)))
    return texts, labels
