"""A translation task generated on the fly: numbers written in digits → English words.

    numbers           "1 2 0 4"          → "one thousand two hundred four"
    numbers-reversed  "4 0 2 1"          → "one thousand two hundred four"   (digits least-significant first:
                      the first words depend on the last source tokens, so the decoder must attend far back)
    numbers-many      "1 2 0 4 , 3 7"    → "one thousand two hundred four , thirty seven"   (2-4 numbers:
                      longer sequences, and each output span must find its own number)

Sources are digits separated by spaces, so both sides are whitespace-tokenised and share one small word
vocabulary (`WordVocab`), which lets the model tie its source and target embeddings. Numbers have 1 to
`max_digits` digits with the digit count drawn uniformly, so short and long numbers are equally common.
The held-out set (`heldout_pairs`) is a fixed seeded sample of examples with at least 4
digits; training examples that collide with it are dropped.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from attnkit.errors import UserError
from attnkit.fsio import atomic_write

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
       "sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
SCALES = ["", "thousand", "million", "billion"]
VARIANTS = ("numbers", "numbers-reversed", "numbers-many")
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0..3: pad, bos, eos, unk


def _below_thousand(n: int) -> list[str]:
    words = []
    if n >= 100:
        words += [ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(TENS[n // 10])
        n %= 10
        if n:
            words.append(ONES[n])
    elif n or not words:
        words.append(ONES[n])
    return words


def number_to_words(n: int) -> str:
    """1204 → "one thousand two hundred four" (American style, no "and"); 0 ≤ n < 10**12."""
    if not 0 <= n < 10 ** 12:
        raise ValueError(f"number out of range: {n}")
    if n == 0:
        return "zero"
    words, scale = [], 0
    while n:
        n, chunk = divmod(n, 1000)
        if chunk:
            words = _below_thousand(chunk) + ([SCALES[scale]] if scale else []) + words
        scale += 1
    return " ".join(words)


def _random_number(rng: random.Random, max_digits: int) -> int:
    digits = rng.randint(1, max_digits)
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10 ** digits - 1)


def make_pair(rng: random.Random, variant: str = "numbers", max_digits: int = 9) -> tuple[str, str]:
    """One (source, target) pair of whitespace-separated tokens."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown numbers variant {variant!r}; choose from {', '.join(VARIANTS)}")
    count = rng.randint(2, 4) if variant == "numbers-many" else 1
    nums = [_random_number(rng, max_digits) for _ in range(count)]
    srcs = [" ".join(str(n)[::-1] if variant == "numbers-reversed" else str(n)) for n in nums]
    return " , ".join(srcs), " , ".join(number_to_words(n) for n in nums)


def heldout_pairs(variant: str, n: int, min_digits: int = 4) -> list[tuple[str, str]]:
    """n distinct generated pairs with at least min_digits digits in all: a fixed set (seed 0, whatever
    --seed is) that training never sees. Shorter examples (0-999) have too few distinct values to hold out;
    they stay in training only."""
    rng, pairs = random.Random(0), {}
    while len(pairs) < n:
        src, tgt = make_pair(rng, variant)
        if sum(c.isdigit() for c in src) >= min_digits:
            pairs[src] = tgt
    return list(pairs.items())


def all_words() -> list[str]:
    """Every token the generator can emit, in a fixed order."""
    words = [str(d) for d in range(10)] + [","] + ONES[10:] + ONES[:10]
    return list(dict.fromkeys(words + [t for t in TENS if t != "_"] + ["hundred"] + SCALES[1:]))


class WordVocab:
    """Whitespace tokens ↔ ids, with <pad>=0, <s>=1, </s>=2, <unk>=3 (the ids EncDecConfig expects)."""

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: list[str]):
        self.itos = SPECIALS + [w for w in words if w not in SPECIALS]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(w, self.unk_id) for w in text.split()]

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.itos[i] for i in ids if i >= len(SPECIALS))

    def save(self, path: Path) -> None:
        atomic_write(path, json.dumps({"kind": "words", "itos": self.itos}))

    @classmethod
    def load(cls, path: Path) -> "WordVocab":
        itos = json.loads(Path(path).read_text())["itos"]
        return cls(itos[len(SPECIALS):])


def numbers_source(text: str, variant: str = "numbers") -> str:
    """A user's prompt ("1204", "1204, 37") in the model's source format ("1 2 0 4 , 3 7")."""
    groups = [g.strip().replace(" ", "") for g in text.split(",")]
    if not all(g.isdigit() for g in groups):
        raise UserError(f"the numbers task translates digits, e.g. --prompt \"1204\"; got {text!r}")
    if variant == "numbers-reversed":
        groups = [g[::-1] for g in groups]
    return " , ".join(" ".join(g) for g in groups)
