"""BERT's downstream task on source code: is this snippet as written, or was one of its lines swapped in from
elsewhere?

Built from any Python source, offline: a snippet is whole consecutive lines of the code, kept as written (line
breaks and indentation included), from a random line on until it holds at least `words` whitespace-separated
chunks; half the snippets (chosen at random, exactly balanced) get `swapped` of their code lines (a line holding a
name; not the first line, which has no context before it) replaced by a different code line drawn uniformly from
the whole text. Label 1 = original, 0 = swapped.

The inserted line is distributed like the line it removes (both are a uniformly random code line of the text), so
a bag-of-words model has nothing to count: it stays near chance (50%). Telling the snippets apart takes reading
the line against its context: names the snippet never defines, an indentation the line before does not open, a
statement that does not follow. A masked LM of code practises exactly that. With the corpus split by file
(`attnkit.zoo.data.mlm.split_files`), test snippets come from files never seen in pretraining or fine-tuning, and
so do the lines swapped into them.
"""
from __future__ import annotations

import random

from attnkit.zoo.data.replaced_name import names
from attnkit.zoo.data.replaced_word import ORIGINAL, balanced_labels


def is_code_line(line: str) -> bool:
    """A line with a name on it that is not a comment."""
    return not line.lstrip().startswith("#") and bool(names(line))


def swapped_line_examples(text: str, n: int, words: int, seed: int, swapped: int = 1) -> tuple[list[str], list[int]]:
    """n snippets of whole lines of text (at least `words` chunks each) and their labels (ORIGINAL or 0), half of
    each; every snippet holds at least `swapped` code lines after its first."""
    lines = text.split("\n")
    code = [line for line in lines if is_code_line(line)]
    if len(set(code)) < 2 or len(text.split()) < 2 * words:
        raise ValueError(f"the text needs two different code lines and at least {2 * words} words for snippets of {words}")
    rng = random.Random(seed)
    texts, labels = [], balanced_labels(n, rng)
    for label in labels:
        while True:
            start, end, chunks = rng.randrange(len(lines)), None, 0
            for end in range(start, len(lines)):
                chunks += len(lines[end].split())
                if chunks >= words:
                    break
            snippet = lines[start:end + 1]
            places = [i for i in range(1, len(snippet)) if is_code_line(snippet[i])]
            if chunks >= words and len(places) >= swapped:
                break
        if label != ORIGINAL:
            for i in rng.sample(places, swapped):
                while (new := code[rng.randrange(len(code))]) == snippet[i]:
                    pass
                snippet[i] = new
        texts.append("\n".join(snippet))
    return texts, labels
