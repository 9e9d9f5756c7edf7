"""Packed GPT training (attnkit.zoo.data.documents, `--opt pack=true`): packed rows hold only real predictions,
each document's positions restart, and attention never crosses a document: a packed row gives each document
exactly the logits it gets alone. Padded rows hold one document each; the python-functions corpus is
deterministic."""
from __future__ import annotations

import pytest
import torch

from attnkit.config import TrainConfig
from attnkit.zoo.data.documents import IGNORE, DocumentPacker, pad_rows
from attnkit.zoo.data.text import FUNCTION_CHARS, load_documents
from attnkit.zoo.models.gpt import GPT, GPTConfig
from attnkit.zoo.tasks.gpt import GPTOptions, GPTTask


def _docs(n=12, V=30, seed=0, longest=20):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, V, (int(torch.randint(2, longest, (1,), generator=g)),), generator=g) for _ in range(n)]


def _segments(row: dict, r: int):
    """(start, end) of each document in row r, from its document ids."""
    ids = row["document_ids"][r].tolist()
    cuts = [0] + [i for i in range(1, len(ids)) if ids[i] != ids[i - 1]] + [len(ids)]
    return list(zip(cuts[:-1], cuts[1:]))


def test_packed_rows_are_whole_documents_with_restarting_positions_and_no_padding():
    docs = _docs()
    batch = DocumentPacker(docs, 32).rows(4, torch.Generator().manual_seed(1))
    assert all(t.shape == (4, 32) for t in batch.values())
    assert not (batch["y"] == IGNORE).any()  # every position is a real prediction
    for r in range(4):
        segs = _segments(batch, r)
        assert len(segs) > 1 and batch["document_ids"][r].tolist() == sorted(batch["document_ids"][r].tolist())
        for k, (a, b) in enumerate(segs):
            x, y = batch["x"][r, a:b], batch["y"][r, a:b]
            assert batch["document_ids"][r, a] == k
            assert torch.equal(batch["positions"][r, a:b], torch.arange(b - a))  # positions restart
            # inputs and targets are a prefix of one document, shifted by one (the last one may be cut)
            assert any(len(d) > b - a and torch.equal(d[:b - a], x) and torch.equal(d[1:b - a + 1], y) for d in docs)
            if b < 32:  # a document that ends inside the row is whole
                assert any(len(d) == b - a + 1 and torch.equal(d[:-1], x) for d in docs)


def test_padded_rows_hold_one_document_each():
    docs = _docs()
    batch = pad_rows(docs, torch.tensor([3, 0, 7]), 16, pad_id=5)
    for r, i in enumerate([3, 0, 7]):
        n = min(len(docs[i]), 17) - 1
        assert torch.equal(batch["x"][r, :n], docs[i][:n]) and torch.equal(batch["y"][r, :n], docs[i][1:n + 1])
        assert (batch["y"][r, n:] == IGNORE).all() and (batch["x"][r, n:] == 5).all()


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_attention_never_crosses_a_document(position):
    """Each document of a packed row gets the logits of the document run alone (positions from 0)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, block_size=32, n_layer=2, n_head=2, n_embd=32, position=position)).eval()
    batch = DocumentPacker(_docs(), 32).rows(2, torch.Generator().manual_seed(2))
    with torch.no_grad():
        packed, _ = model(batch["x"], batch["y"], document_ids=batch["document_ids"], positions=batch["positions"])
        for r in range(2):
            for a, b in _segments(batch, r):
                alone, _ = model(batch["x"][r:r + 1, a:b], batch["y"][r:r + 1, a:b])
                torch.testing.assert_close(packed[r, a:b], alone[0], atol=1e-5, rtol=1e-5)
        unmasked, _ = model(batch["x"], batch["y"], positions=batch["positions"])
    assert not torch.allclose(unmasked, packed, atol=1e-3)  # without document ids, documents would mix


def test_short_documents_are_refused():
    with pytest.raises(ValueError, match="at least 2 tokens"):
        DocumentPacker([torch.tensor([1])], 4)


def test_python_functions_corpus_is_deterministic_and_bounded():
    a, b = load_documents("python-functions"), load_documents("python-functions")
    assert a == b and len(a) > 1000
    assert all(FUNCTION_CHARS[0] <= len(d) <= FUNCTION_CHARS[1] for d in a)
    assert all(d.startswith(("def ", "async def ")) for d in a)
    assert load_documents("austen") is None


def test_best_fit_cuts_only_a_gap_no_pooled_document_fits():
    """Long and short documents: rows are filled with whole documents; a cut one fills only a gap shorter than the
    short documents (cutting each row's last document would cut most of the long ones)."""
    g = torch.Generator().manual_seed(3)
    docs = [torch.randint(0, 30, (41 if i % 2 else 5,), generator=g) for i in range(20)]  # 40 or 4 predictions
    batch = DocumentPacker(docs, 50).rows(8, torch.Generator().manual_seed(4))
    for r in range(8):
        segs = _segments(batch, r)
        lengths = [b - a for a, b in segs]
        assert all(n in (4, 40) for n in lengths[:-1])  # whole documents
        assert lengths[-1] in (4, 40) or lengths[-1] < 4


def _long_share(batches) -> float:
    """Of the documents started in `batches`, the share that are long (their first token is 1)."""
    firsts = torch.cat([b["x"][b["positions"] == 0] for b in batches])
    return float((firsts == 1).float().mean())


def test_packed_documents_are_uniform_draws_as_in_padded_rows():
    """Half the documents are long (40 predictions, first token 1), half short (4, first token 2): padded rows
    start as many of each, and so must packed rows over many batches. A pool drawn afresh for each batch and
    dropped after it (the first packer) places its long documents first and drops short ones."""
    g = torch.Generator().manual_seed(3)
    docs = [torch.cat([torch.tensor([1 if i % 2 else 2]), torch.randint(3, 30, (40 if i % 2 else 4,), generator=g)])
            for i in range(20)]
    packer, g = DocumentPacker(docs, 50), torch.Generator().manual_seed(6)
    carried = [packer.rows(4, g) for _ in range(150)]
    afresh = [DocumentPacker(docs, 50).rows(4, g) for _ in range(150)]
    assert abs(_long_share(carried) - 0.5) < 0.03
    assert _long_share(afresh) < 0.4  # what carrying the pool over fixes


@pytest.mark.parametrize("T,longest", [(32, 20), (512, 300)])
def test_a_packed_rows_gradient_is_the_sum_of_its_documents_gradients(T, longest):
    """T = 512 runs the CPU path's SDPA in two checkpointed 256-query chunks (pack_speed.py's block)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, block_size=T, n_layer=2, n_head=2, n_embd=32))
    batch = DocumentPacker(_docs(longest=longest), T).rows(2, torch.Generator().manual_seed(5))

    def summed_loss(logits, y):
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 30), y.reshape(-1), reduction="sum")

    logits, _ = model(batch["x"], batch["y"], document_ids=batch["document_ids"], positions=batch["positions"])
    summed_loss(logits, batch["y"]).backward()
    packed = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    for r in range(2):
        for a, b in _segments(batch, r):
            alone, _ = model(batch["x"][r:r + 1, a:b], batch["y"][r:r + 1, a:b])
            summed_loss(alone, batch["y"][r:r + 1, a:b]).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(packed[n], p.grad, atol=1e-4, rtol=1e-4)


def test_packed_loss_equals_the_padded_loss_of_the_same_documents():
    """Both layouts average the cross-entropy over real predictions: a packed batch and the same documents padded
    one per row (the cut one as the prefix the row holds) give the same loss, for learned and reset positions."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    packed = DocumentPacker(_docs(), 32).rows(2, torch.Generator().manual_seed(7))
    segments = [torch.cat([packed["x"][r, a:b], packed["y"][r, b - 1:b]])  # each document as the row holds it
                for r in range(2) for a, b in _segments(packed, r)]
    padded = pad_rows(segments, torch.arange(len(segments)), 32)
    with torch.no_grad():
        _, packed_loss = model(packed["x"], packed["y"], document_ids=packed["document_ids"],
                               positions=packed["positions"])
        _, padded_loss = model(padded["x"], padded["y"])
    assert int((padded["y"] != IGNORE).sum()) == packed["y"].numel()  # the same predictions
    torch.testing.assert_close(packed_loss, padded_loss, atol=1e-5, rtol=1e-5)


def _generator_at(state: torch.Tensor) -> torch.Generator:
    g = torch.Generator()
    g.set_state(state)
    return g


def test_a_restored_packer_draws_the_rows_the_uninterrupted_one_draws():
    """The pool carries over between batches, so it is state: restored with the generator, the rows continue."""
    docs = _docs()
    packer, g = DocumentPacker(docs, 32), torch.Generator().manual_seed(8)
    packer.rows(3, g)
    state, g_state = packer.state_dict(), g.get_state()
    later = [packer.rows(3, g) for _ in range(2)]
    resumed, g = DocumentPacker(docs, 32), _generator_at(g_state)
    resumed.load_state_dict(state)
    for a in later:
        b = resumed.rows(3, g)
        assert all(torch.equal(a[k], b[k]) for k in a)
    unrestored = DocumentPacker(docs, 32).rows(3, _generator_at(g_state))
    assert not torch.equal(unrestored["x"], later[0]["x"])


def test_packed_and_padded_runs_validate_alike(tmp_path):
    """Validation is one held-out document per row in both layouts: the same model gets the same val loss (a
    packed run's own rows would weigh long documents more). Training rows are packed only with pack=true."""
    cfg = TrainConfig(model="gpt", flavor="debug", data="python-functions", tokenizer="char", block_size=512,
                      batch_size=4, dropout=0.0)
    tasks = [GPTTask(cfg, GPTOptions(pack=pack)) for pack in (False, True)]
    for task in tasks:
        task.prepare(tmp_path)
    torch.manual_seed(0)
    model = GPTTask.build_model(tasks[0].model_config())
    padded, packed = (task.evaluate(model, "val", 2, torch.device("cpu"))["val_loss"] for task in tasks)
    assert padded == packed
    val = tasks[1].get_batch("val", 4, torch.Generator().manual_seed(0))
    train = tasks[1].get_batch("train", 4, torch.Generator().manual_seed(0))
    assert "document_ids" not in val and (val["y"] == IGNORE).any()
    assert "document_ids" in train and not (train["y"] == IGNORE).any()
