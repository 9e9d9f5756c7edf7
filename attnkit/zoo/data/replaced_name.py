"""BERT's downstream task on source code: is this snippet as written, or was one of its names replaced by a name
from elsewhere?

Built from any Python source, offline: a snippet is `words` consecutive whitespace-separated chunks of the code,
kept as written (line breaks and indentation included); half the snippets (chosen at random, exactly balanced)
get `replaced` of their names (identifiers that are not keywords), at random positions, replaced by a different
name drawn from the code's own name distribution (a uniformly random name occurrence of the whole text). Label
1 = original, 0 = replaced.

The inserted name is distributed like the name it removes (both are a random name occurrence of the text), so a
bag-of-words model has nothing to count: it stays near chance (50%). Telling the snippets apart takes knowing
which name fits its place (a variable used before it is assigned, an attribute the object never had, a call to a
function of another module), which is what a masked LM practises in pretraining. With the corpus split by file
(`attnkit.zoo.data.mlm.split_files`), test snippets come from files never seen in pretraining or fine-tuning.
"""
from __future__ import annotations

import keyword
import random
import re

from attnkit.zoo.data.replaced_word import ORIGINAL, balanced_labels

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CHUNK = re.compile(r"\S+")


def names(text: str) -> list[re.Match]:
    """The name occurrences of text: identifiers that are not Python keywords (words inside strings and
    comments count too)."""
    return [m for m in NAME.finditer(text) if not keyword.iskeyword(m.group())
            and (m.start() == 0 or not text[m.start() - 1].isdigit())]


def replace_names(snippet: str, vocabulary: list[str], k: int, rng: random.Random) -> str:
    """snippet with k of its name occurrences, at distinct random places, each replaced by a different name drawn
    uniformly from vocabulary (a list of name occurrences: drawing from it draws from their distribution)."""
    found = names(snippet)
    if k > len(found):
        raise ValueError(f"cannot replace {k} of {len(found)} names")
    out, end = [], 0
    for m in sorted(rng.sample(found, k), key=lambda m: m.start()):
        while (new := vocabulary[rng.randrange(len(vocabulary))]) == m.group():
            pass
        out += [snippet[end:m.start()], new]
        end = m.end()
    return "".join(out) + snippet[end:]


def replaced_name_examples(text: str, n: int, words: int, seed: int, replaced: int = 1) -> tuple[list[str], list[int]]:
    """n snippets of `words` whitespace-separated chunks of text (as written) and their labels (ORIGINAL or
    REPLACED), half of each; every snippet holds at least `replaced` names."""
    chunks = [m.span() for m in CHUNK.finditer(text)]
    if len(chunks) < 2 * words:
        raise ValueError(f"the text has {len(chunks)} words; snippets of {words} need at least {2 * words}")
    vocabulary = [m.group() for m in names(text)]
    if len(set(vocabulary)) < 2:
        raise ValueError("the text needs two different names to replace one by another")
    rng = random.Random(seed)
    texts, labels = [], balanced_labels(n, rng)
    for label in labels:
        while True:
            start = rng.randrange(len(chunks) - words + 1)
            snippet = text[chunks[start][0]:chunks[start + words - 1][1]]
            if len(names(snippet)) >= replaced:
                break
        texts.append(snippet if label == ORIGINAL else replace_names(snippet, vocabulary, replaced, rng))
    return texts, labels
