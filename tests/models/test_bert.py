"""BERT: the 80/10/10 masking statistics, the model's padding and loss, and the task's examples."""
import pytest
import torch

from attnkit.config import TrainConfig
from attnkit.zoo.models.bert import BERT, IGNORE, BERTConfig, mask_tokens
from attnkit.zoo.data.mlm import encode_masked_prompt
from attnkit.zoo.tasks.bert import BERTTask
from attnkit.engine.resolve import resolve_config


def test_masking_statistics():
    g = torch.Generator().manual_seed(0)
    V, MASK = 1000, 3
    ids = torch.randint(10, V, (256, 512), generator=g)  # 131k tokens
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = maskable[:, -1] = False  # [CLS] / [SEP]
    random_ids = torch.arange(10, V)
    inputs, labels = mask_tokens(ids, maskable=maskable, mask_id=MASK, random_ids=random_ids, generator=g)
    selected = labels != IGNORE
    n = selected.sum().item()
    assert n / maskable.sum().item() == pytest.approx(0.15, abs=0.004)
    assert not selected[~maskable].any()                     # specials are never chosen
    assert torch.equal(labels[selected], ids[selected])       # the target is the original token
    assert torch.equal(inputs[~selected], ids[~selected])     # everything else is untouched
    became_mask = (inputs[selected] == MASK).float().mean().item()
    unchanged = (inputs[selected] == ids[selected]).float().mean().item()
    replaced = inputs[selected][(inputs[selected] != MASK) & (inputs[selected] != ids[selected])]
    assert became_mask == pytest.approx(0.8, abs=0.01)
    # a random replacement equals the original with probability 1/990, which counts as "unchanged"
    assert unchanged == pytest.approx(0.1 + 0.1 / 990, abs=0.008)
    assert len(replaced) / n == pytest.approx(0.1, abs=0.008)
    assert ((replaced >= 10) & (replaced < V)).all()           # replacements come from random_ids
    # deterministic given the generator
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = mask_tokens(ids, maskable=maskable, mask_id=MASK, random_ids=random_ids, generator=g1)
    b = mask_tokens(ids, maskable=maskable, mask_id=MASK, random_ids=random_ids, generator=g2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def tiny(**kw):
    return BERT(BERTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, d_model=32, d_ff=64, dropout=0.0,
                           **kw)).eval()


def test_padding_is_invisible_and_loss_covers_masked_positions_only():
    m = tiny(nsp=True)
    ids = torch.randint(5, 50, (3, 10))
    padded = torch.cat((ids, torch.zeros(3, 6, dtype=torch.long)), dim=1)
    torch.testing.assert_close(m(padded)[:, :10], m(ids), atol=1e-5, rtol=1e-5)
    labels = torch.full_like(ids, IGNORE)
    labels[0, 2], labels[2, 7] = 11, 12
    out = m(ids, torch.zeros_like(ids), labels, torch.tensor([0, 1, 0]))
    logits = m(ids)
    expected = torch.nn.functional.cross_entropy(torch.stack((logits[0, 2], logits[2, 7])), torch.tensor([11, 12]))
    assert out["mlm"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["logits"].shape == (2, 50) and out["nsp_logits"].shape == (3, 2) and out["nsp"].item() > 0


def test_mlm_head_is_tied_to_the_embedding():
    m = tiny()
    assert m.mlm.embedding.weight is m.embed.tok.weight


@pytest.mark.parametrize("flavor", ["debug", "debug-nsp"])
def test_task_examples(tmp_path, flavor):
    task = BERTTask(resolve_config(TrainConfig(model="bert", flavor=flavor)))
    task.prepare(tmp_path)
    assert (tmp_path / "tokenizer.model").is_file()
    batch = task.get_batch("train", 4, torch.Generator().manual_seed(0))
    ids, labels = batch["input_ids"], batch["labels"]
    L = task.cfg.block_size
    assert ids.shape == labels.shape == (4, L)
    assert (ids[:, 0] == task.cls_id).all() and (ids[:, -1] == task.sep_id).all()
    assert (labels[:, 0] == IGNORE).all() and (labels[:, -1] == IGNORE).all()
    assert (labels != IGNORE).any()
    if flavor == "debug-nsp":
        seps = (ids == task.sep_id).sum(1)
        assert (seps == 2).all()  # [CLS] A [SEP] B [SEP]
        first_b = batch["segments"].argmax(1)
        assert (ids[torch.arange(4), first_b - 1] == task.sep_id).all()
        assert set(batch["is_next"].tolist()) <= {0, 1}
    loss = task.loss(BERTTask.build_model(task.model_config()), batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    # fill-mask prompts: the [MASK] absorbs the space before it, as sentencepiece pieces carry it
    prompt = encode_masked_prompt(task.tok.encode, "She was [MASK] to see him.", task.cls_id, task.sep_id, task.mask_id)
    assert prompt[0] == task.cls_id and prompt[-1] == task.sep_id and prompt.count(task.mask_id) == 1
    before = prompt[1:prompt.index(task.mask_id)]
    assert task.tok.decode(before) == "She was"


class _Oracle(torch.nn.Module):
    """Knows the held-out sentences: puts all probability on the true token of every position."""

    def __init__(self, task, block_size):
        super().__init__()
        self.cfg = BERTConfig(block_size=block_size)
        self.sentences = [[task.cls_id, *task.tok.encode(s)[:block_size - 2], task.sep_id] for s in task.heldout]
        self.mask_id, self.vocab, self.w = task.mask_id, task.tok.vocab_size, torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids):
        row = ids[0].tolist()
        true = next(s for s in self.sentences if len(s) == len(row) and
                    all(a == b or a == self.mask_id for a, b in zip(row, s)))
        return torch.nn.functional.one_hot(torch.tensor([true]), self.vocab).float() * 50


def test_sample_without_prompt_fills_heldout_sentences(tmp_path):
    from attnkit.config import SampleConfig
    from attnkit.zoo.report import no_echo

    cfg = resolve_config(TrainConfig(model="bert", flavor="debug"))
    BERTTask(cfg).prepare(tmp_path)
    task = BERTTask.load(tmp_path, cfg)
    assert len(task.heldout) >= 5
    sample_cfg = SampleConfig(run=str(tmp_path), num_samples=5, seed=0)
    oracle = task.sample(_Oracle(task, cfg.block_size), sample_cfg, no_echo)
    assert oracle.metrics["accuracy"] == 1.0 and len(oracle.metrics["heldout"]) >= 5
    table = oracle.tables[0]
    assert table.title == "held-out sentences, masked and filled" and len(table.rows) == len(oracle.metrics["heldout"])
    assert table.column("true") == table.column("top guess") and set(table.column("")) == {"✓"}
    assert oracle.lines == [f"top-1 accuracy on these {len(table.rows)} masked tokens: 100.0%"]
    untrained = task.sample(BERTTask.build_model(dict(task.flavors["debug"].model, vocab_size=task.tok.vocab_size,
                                                      block_size=cfg.block_size)), sample_cfg, no_echo).metrics
    assert [r["true"] for r in untrained["heldout"]] == [r["true"] for r in oracle.metrics["heldout"]]  # same masks
    assert untrained["accuracy"] < 0.5


def test_the_config_line_names_the_tokenizer_bert_trains(tmp_path):
    """The default --tokenizer char means "train a sentencepiece model"; the printed config says so."""
    from attnkit.engine.resolve import describe

    cfg = resolve_config(TrainConfig(model="bert", flavor="debug"))
    assert "tokenizer=char" in describe(cfg)
    task = BERTTask(cfg)
    task.prepare(tmp_path)
    line = describe(cfg, task.shown_settings())
    assert f"tokenizer=sentencepiece(bpe,vocab={task.tok.vocab_size},trained-on-data)" in line
    assert "tokenizer=char" not in line


def test_mask_prob_sets_the_training_rate_and_evaluation_keeps_bert_s(tmp_path):
    task = BERTTask(resolve_config(TrainConfig(model="bert", flavor="debug", options={"mask_prob": 0.4})))
    task.prepare(tmp_path)
    g = torch.Generator().manual_seed(0)
    rate = {split: (task.get_batch(split, 256, g)["labels"] != IGNORE).float().mean().item() * 32 / 30
            for split in ("train", "val")}  # 30 maskable tokens between [CLS] and [SEP]
    assert rate["train"] == pytest.approx(0.4, abs=0.01) and rate["val"] == pytest.approx(0.15, abs=0.01)


def test_pre_ln_option_builds_a_pre_ln_encoder(tmp_path):
    task = BERTTask(resolve_config(TrainConfig(model="bert", flavor="debug", options={"pre_ln": True})))
    task.prepare(tmp_path)
    model = BERTTask.build_model(task.model_config())
    assert model.cfg.pre_ln and isinstance(model.final_norm, torch.nn.LayerNorm)
    task = BERTTask(resolve_config(TrainConfig(model="bert", flavor="debug")))
    task.prepare(tmp_path)
    assert "pre_ln" not in task.model_config()  # the default keeps the saved config as before


def test_rotary_option_drops_learned_positions_and_keeps_order_and_padding(tmp_path):
    task = BERTTask(resolve_config(TrainConfig(model="bert", flavor="debug", options={"position": "rotary"})))
    task.prepare(tmp_path)
    model = BERTTask.build_model(task.model_config()).eval()
    assert model.cfg.position == "rotary" and model.embed.pos is None
    assert all(block.attn.position == "rotary" for block in model.layers)
    ids = torch.randint(5, 50, (2, 10))
    padded = torch.cat((ids, torch.full((2, 4), task.pad_id)), dim=1)
    torch.testing.assert_close(model(padded)[:, :10], model(ids), atol=1e-5, rtol=1e-5)
    # Without any position an encoder is permutation-equivariant (up to float error, ~1e-7); rotary attention is
    # not. Queries and keys scaled up so attention is far from uniform, as after training.
    with torch.no_grad():
        for block in model.layers:
            block.attn.q_proj.weight.mul_(30)
            block.attn.kv_proj.weight.mul_(30)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    assert (model(ids)[:, perm] - model(ids[:, perm])).abs().max() > 1e-2
    with pytest.raises(ValueError, match="BERT position must be one of"):
        BERTConfig(position="alibi")
