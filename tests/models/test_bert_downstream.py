"""BERT's downstream tasks: replaced-word and replaced-name detection and word order (adjacent or not), built
from any text; the file-wise split of a corpus of files."""
from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from attnkit.errors import UserError
from attnkit.zoo.data.mlm import split_files
from attnkit.zoo.data.replaced_name import names, replace_names, replaced_name_examples
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


@pytest.mark.parametrize("task,corrupt", [(t, 1) for t in DOWNSTREAM if t != "swapped_line"]  # lines: code only, below
                         + [("replaced_word", 4), ("word_order", 4)])
def test_bag_of_words_stays_near_chance(task, corrupt):
    """Word order keeps the words; a replaced word is distributed like the one it removes: no count tells."""
    text = zipf_text(20000, 300, seed=0)
    train = downstream_examples(task, text, 400, 12, seed=0, corrupt=corrupt)
    test = downstream_examples(task, text, 2000, 12, seed=1, corrupt=corrupt)
    assert abs(bag_of_words_accuracy(*train, *test) - 0.5) < 0.05  # 2000 test passages: ± 4.5 standard errors


def code_text(n_functions: int, seed: int) -> str:
    """Python-like source: functions whose names are used consistently (assigned, then read)."""
    r = random.Random(seed)
    out = []
    for f in range(n_functions):
        a, b = r.sample([f"v{i}" for i in range(40)], 2)
        out.append(f"def f{f}({a}, {b}):\n    if {a} is None:\n        return {b}\n    {a}.update(k{f % 9})\n"
                   f"    return {a} + {b}\n\n")
    return "".join(out)


@pytest.mark.parametrize("k", [1, 2])
def test_replaced_name_snippets_keep_the_code_as_written_but_k_names(k):
    text = code_text(300, seed=0)
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    windows = [text[spans[i][0]:spans[i + 11][1]] for i in range(len(spans) - 11)]  # every run of 12 chunks

    def skeleton(code):  # the code with each name blanked: what a replacement must leave alone
        return "".join(code[i:m.start()] + "#" for i, m in zip([0] + [m.end() for m in names(code)], names(code)))

    by_skeleton = {}
    for w in windows:
        by_skeleton.setdefault(skeleton(w), []).append(w)
    texts, labels = replaced_name_examples(text, 101, 12, seed=3, replaced=k)
    assert Counter(labels) == {ORIGINAL: 51, REPLACED: 50}
    for t, y in zip(texts, labels):
        # An original snippet is a run of the source as written (line breaks, indentation); a replaced one is a run
        # with exactly k names changed, everything else kept.
        changed = min(sum(a.group() != b.group() for a, b in zip(names(w), names(t))) for w in by_skeleton[skeleton(t)])
        assert changed == (0 if y == ORIGINAL else k) and (t in windows) == (y == ORIGINAL)
    assert replaced_name_examples(text, 101, 12, seed=3, replaced=k) == (texts, labels)  # deterministic given the seed


def test_names_leave_keywords_and_numbers_alone():
    assert [m.group() for m in names("if x1 is not None: return 0x1f + self.y")] == ["x1", "self", "y"]  # None is a keyword
    r = random.Random(0)
    for _ in range(50):
        out = replace_names("for i in range(n):", ["a", "b", "i"], 1, r)
        assert out.startswith("for ") and " in " in out and out != "for i in range(n):"
    with pytest.raises(ValueError, match="cannot replace 2 of 1 names"):
        replace_names("return x", ["a"], 2, r)


def test_bag_of_words_stays_near_chance_on_replaced_names():
    text = code_text(2000, seed=0)
    train = replaced_name_examples(text, 400, 12, seed=0)
    test = replaced_name_examples(text, 2000, 12, seed=1)
    assert abs(bag_of_words_accuracy(*train, *test) - 0.5) < 0.05  # 2000 test passages: ± 4.5 standard errors


def test_split_files_holds_whole_files_out():
    files = [f"file {i}" for i in range(25)]
    parts = split_files(files)
    assert parts["val"] == "file 9\nfile 19"
    assert parts["train"].split("\n") == [f for f in files if f not in ("file 9", "file 19")]
    with pytest.raises(UserError, match="3 files are too few"):
        split_files(files[:3])


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
    assert zero_shot_auc(Fives(), ids, torch.tensor([1, 1, 0, 0]))["mean"] == 1.0
    assert zero_shot_auc(Fives(), ids, torch.tensor([0, 0, 1, 1]))["mean"] == 0.0
    # original rows 0 and 2 against corrupted 1 and 3: 0 > 1, 0 > 3, 2 > 3 but not 2 > 1
    assert zero_shot_auc(Fives(), ids, torch.tensor([1, 0, 1, 0]))["mean"] == 0.75


def test_masked_pseudo_log_likelihood_hides_each_token_from_its_own_prediction():
    """A model that copies its input is sure of every token it can see, and of none it cannot."""
    import torch

    from attnkit.zoo.eval.bert import token_log_probs

    PAD, CLS, SEP, MASK, V = 0, 1, 2, 3, 8

    class Copy(torch.nn.Module):
        cfg = type("cfg", (), {"pad_id": PAD})

        def forward(self, ids):
            return torch.nn.functional.one_hot(ids, V).float() * 10  # (B, L, V)

    ids = torch.tensor([[CLS, 4, 5, 6, 7, 4, 5, SEP, PAD], [CLS, 6, 7, 4, 5, 6, 7, 4, SEP]])
    inner = ids > SEP  # the passages' own tokens
    logits = torch.zeros(V)
    logits[0] = 10.0
    sure = logits.log_softmax(0)[0]  # the token copied is the true one
    unsure = logits.log_softmax(0)[1]  # [MASK] is copied instead
    torch.testing.assert_close(token_log_probs(Copy(), ids), torch.full(ids.shape, sure.item()))
    for stride in (1, 3, 20):
        hidden = token_log_probs(Copy(), ids, mask_id=MASK, stride=stride)
        torch.testing.assert_close(hidden[inner], torch.full((int(inner.sum()),), unsure.item()))  # each while masked
        assert (hidden[~inner] == 0).all()  # [CLS], [SEP] and [PAD] are not scored


@pytest.mark.parametrize("k", [1, 2])
def test_swapped_line_snippets_are_runs_of_lines_with_k_code_lines_from_elsewhere(k):
    from attnkit.zoo.data.swapped_line import is_code_line, swapped_line_examples

    text = code_text(300, seed=0)
    lines = text.split("\n")
    code = set(filter(is_code_line, lines))
    texts, labels = swapped_line_examples(text, 101, 12, seed=3, swapped=k)
    assert Counter(labels) == {ORIGINAL: 51, REPLACED: 50}
    for t, y in zip(texts, labels):
        snippet = t.split("\n")
        # Against every run of as many lines: an original is one of them, a swapped one differs from the nearest in
        # exactly k lines after its first, each now a code line of the text.
        runs = [lines[s:s + len(snippet)] for s in range(len(lines) - len(snippet) + 1)]
        nearest = min(runs, key=lambda r: sum(a != b for a, b in zip(r, snippet)))
        changed = [i for i, (a, b) in enumerate(zip(nearest, snippet)) if a != b]
        assert len(changed) == (0 if y == ORIGINAL else k) and 0 not in changed
        assert len("\n".join(nearest).split()) >= 12 and len("\n".join(nearest[:-1]).split()) < 12  # whole lines
        assert all(snippet[i] in code and is_code_line(nearest[i]) for i in changed)
    assert swapped_line_examples(text, 101, 12, seed=3, swapped=k) == (texts, labels)  # deterministic given the seed


@pytest.mark.parametrize("swapped", [1, 2])
def test_bag_of_words_stays_near_chance_on_swapped_lines(swapped):
    text = code_text(2000, seed=0)
    train = downstream_examples("swapped_line", text, 400, 12, seed=0, corrupt=swapped)
    test = downstream_examples("swapped_line", text, 2000, 12, seed=1, corrupt=swapped)
    assert abs(bag_of_words_accuracy(*train, *test) - 0.5) < 0.05  # 2000 test passages: ± 4.5 standard errors
