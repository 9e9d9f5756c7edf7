"""Encoder-decoder Transformer: positions, padding, KV-cache decoding, beam search, the numbers data, metrics,
and the Noam schedule of its training recipe."""
import math
import random

import pytest
import torch

from attnkit.generation.beam import beam_search, greedy_decode, length_penalty, sequence_logprob
from attnkit.errors import UserError
from attnkit.zoo.data.numbers import WordVocab, all_words, make_pair, number_to_words, numbers_source
from attnkit.zoo.metrics import bleu, exact_match
from attnkit.zoo.models.encdec import EncDec, EncDecConfig, sinusoidal_positions
from attnkit.engine.optim import lr_at
from attnkit.engine.resolve import resolve_config


def tiny(pre_ln=False, shared=True, **kw):
    cfg = EncDecConfig(src_vocab_size=24, tgt_vocab_size=24 if shared else 30, shared_vocab=shared, n_enc_layer=2,
                       n_dec_layer=2, n_head=2, d_model=32, d_ff=64, dropout=0.0, pre_ln=pre_ln, max_len=32, **kw)
    return EncDec(cfg).eval()


def sources(B=6, L=7, V=24):
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, V, (B, L), generator=g)
    for b in range(B):  # ragged lengths, right-padded with 0
        src[b, L - b % 4:] = 0
    return src


def test_sinusoidal_positions_follow_the_paper():
    pe = sinusoidal_positions(50, 16)
    p, i = 37, 3
    assert pe[p, 2 * i].item() == pytest.approx(math.sin(p / 10000 ** (2 * i / 16)), abs=1e-6)
    assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(p / 10000 ** (2 * i / 16)), abs=1e-6)


def test_shared_vocabulary_ties_all_three_matrices():
    m = tiny()
    assert m.src_embed is m.tgt_embed and m.lm_head.weight is m.tgt_embed.weight
    m2 = tiny(shared=False)
    assert m2.src_embed is not m2.tgt_embed and m2.lm_head.weight is m2.tgt_embed.weight
    assert m2(sources(), torch.ones(6, 3, dtype=torch.long)).shape == (6, 3, 30)


@pytest.mark.parametrize("pre_ln", [False, True])
def test_padding_is_invisible(pre_ln):
    """Extra source padding changes nothing for the real tokens: padded keys are masked everywhere."""
    m = tiny(pre_ln)
    src = sources()
    tgt = torch.randint(3, 24, (6, 5))
    padded = torch.cat((src, torch.zeros(6, 4, dtype=torch.long)), dim=1)
    torch.testing.assert_close(m(padded, tgt), m(src, tgt), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pre_ln", [False, True])
def test_cached_decoding_matches_teacher_forcing(pre_ln):
    m = tiny(pre_ln)
    src, tgt = sources(), torch.randint(3, 24, (6, 6))
    full = m(src, tgt)  # (B, T, V)
    memory, mask = m.encode(src)
    caches = m.new_caches()
    steps = [m.decode(tgt[:, t:t + 1], memory, mask, caches) for t in range(tgt.shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_pre_ln_and_post_ln_are_different_models():
    torch.manual_seed(0)
    a = tiny(False)
    torch.manual_seed(0)
    b = tiny(True)
    src, tgt = sources(), torch.randint(3, 24, (6, 4))
    assert not torch.allclose(a(src, tgt), b(src, tgt))


@pytest.mark.parametrize("pre_ln", [False, True])
def test_beam_of_one_is_greedy(pre_ln):
    m = tiny(pre_ln)
    src = sources()
    greedy = greedy_decode(m, src, max_len=12)
    beam = beam_search(m, src, beam=1, max_len=12, alpha=0.0)
    assert [h.tokens for h in greedy] == [nb[0].tokens for nb in beam]
    for g, nb in zip(greedy, beam):
        assert g.logprob == pytest.approx(nb[0].logprob, abs=1e-4)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_scores_are_length_normalised_log_probabilities_in_order(alpha):
    m = tiny()
    src = sources()
    nbest = beam_search(m, src, beam=4, max_len=10, alpha=alpha)
    for b, hyps in enumerate(nbest):
        assert len(hyps) == 4
        assert len({tuple(h.tokens) for h in hyps}) == 4  # distinct hypotheses
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        for h in hyps:
            # the cached beam's log-probability is the model's, recomputed without any cache
            assert h.logprob == pytest.approx(sequence_logprob(m, src[b:b + 1], h.tokens), abs=1e-4)
            assert h.score == pytest.approx(h.logprob / length_penalty(len(h.tokens) + 1, alpha))
        if alpha == 0.0:  # scores are log-probabilities: the best beam is at least as likely as greedy's
            g = greedy_decode(m, src[b:b + 1], max_len=10)[0]
            assert hyps[0].logprob >= g.logprob - 1e-5


def test_gnmt_length_penalty():
    assert length_penalty(1, 0.6) == pytest.approx(1.0)
    assert length_penalty(11, 1.0) == pytest.approx(16 / 6)
    assert length_penalty(7, 0.0) == 1.0


def test_number_words():
    cases = {0: "zero", 7: "seven", 13: "thirteen", 40: "forty", 105: "one hundred five",
             1204: "one thousand two hundred four", 1000001: "one million one",
             999999999: "nine hundred ninety nine million nine hundred ninety nine thousand nine hundred ninety nine"}
    for n, words in cases.items():
        assert number_to_words(n) == words


def test_numbers_variants_and_vocab():
    rng = random.Random(3)
    vocab = WordVocab(all_words())
    src, tgt = make_pair(rng, "numbers-reversed")
    assert number_to_words(int(src.replace(" ", "")[::-1])) == tgt
    src, tgt = make_pair(random.Random(5), "numbers-many")
    assert src.count(",") == tgt.count(",") >= 1
    assert vocab.decode(vocab.encode(tgt)) == tgt and vocab.unk_id not in vocab.encode(src)
    assert numbers_source("1204, 37", "numbers-reversed") == "4 0 2 1 , 7 3"
    with pytest.raises(UserError, match=r'translates digits, e.g. --prompt "1204"; got \'twelve\''):
        numbers_source("twelve")


def test_metrics():
    assert exact_match(["a b", "c"], ["a  b", "d"]) == 0.5
    assert bleu(["one thousand two hundred four"], ["one thousand two hundred four"]) == pytest.approx(100.0)
    assert bleu(["nine"], ["one thousand two hundred four"]) < 1.0


def test_noam_schedule_values():
    """The paper's lrate = d^-0.5 · min(s^-0.5, s · w^-1.5); attnkit's peak lr is the value at s = w."""
    d, w = 512, 4000
    peak = d ** -0.5 * w ** -0.5  # ≈ 6.99e-4
    for step in (0, 1, 999, 3999, 4000, 15999, 99999):
        s = step + 1
        paper = d ** -0.5 * min(s ** -0.5, s * w ** -1.5)
        assert lr_at(step, schedule="noam", lr=peak, min_lr=0.0, warmup_steps=w, max_steps=100_000) == \
            pytest.approx(paper, rel=1e-9)
    assert lr_at(3999, schedule="noam", lr=1e-3, min_lr=0.0, warmup_steps=w, max_steps=1) == pytest.approx(1e-3)
    assert lr_at(4 * w - 1, schedule="noam", lr=1e-3, min_lr=0.0, warmup_steps=w, max_steps=1) == pytest.approx(5e-4)


def test_generated_task_never_trains_on_heldout_sources(tmp_path):
    from attnkit.config import TrainConfig
    from attnkit.zoo.tasks.encdec import EncDecTask

    task = EncDecTask(resolve_config(TrainConfig(model="encdec", flavor="debug", data="numbers-reversed")))
    task.prepare(tmp_path)
    held = {s for s, _ in task.val}
    assert all(sum(c.isdigit() for c in s) >= 4 for s in held)
    batch = task.get_batch("train", 256, torch.Generator().manual_seed(0))
    for src, tin, tout in zip(batch["src"], batch["tgt_in"], batch["tgt_out"]):
        n = int((tout != 0).sum())
        assert tin[0] == task.vocab.bos_id and tout[n - 1] == task.vocab.eos_id
        assert torch.equal(tin[1:n], tout[:n - 1])  # teacher forcing: the input is the output shifted right
        source = task.vocab.decode(src.tolist())
        assert source not in held
        assert number_to_words(int(source.replace(" ", "")[::-1])) == task.vocab.decode(tout.tolist())


def test_parallel_files_with_char_tokenizer(tmp_path):
    from attnkit.config import TrainConfig
    from attnkit.zoo.tasks.encdec import EncDecTask

    src = [f"{i} {'ab' * (i % 3)}".strip() for i in range(40)]
    tgt = [f"<{i}>" for i in range(40)]
    (tmp_path / "s.txt").write_text("\n".join(src) + "\n")
    (tmp_path / "t.txt").write_text("\n".join(tgt) + "\n")
    cfg = resolve_config(TrainConfig(model="encdec", flavor="debug", data=f"{tmp_path}/s.txt,{tmp_path}/t.txt"))
    task = EncDecTask(cfg)
    task.prepare(tmp_path)
    assert len(task.val) == 4 and len(task.train_pairs) == 36
    assert set(task.val).isdisjoint(task.train_pairs) and set(task.val) | set(task.train_pairs) == set(zip(src, tgt))
    assert all(task.vocab.decode(task.vocab.encode(s)) == s for s in src + tgt)
    loaded = EncDecTask.load(tmp_path, cfg)
    assert loaded.vocab.encode(src[7]) == task.vocab.encode(src[7])


def test_sample_without_prompt_translates_heldout_sources(tmp_path):
    import io

    from rich.console import Console

    from attnkit.config import SampleConfig, TrainConfig
    from attnkit.engine.render import render
    from attnkit.zoo.report import no_echo
    from attnkit.zoo.tasks.encdec import EncDecTask, heldout_pairs

    cfg = resolve_config(TrainConfig(model="encdec", flavor="debug"))
    task = EncDecTask(cfg)
    task.prepare(tmp_path)
    loaded = EncDecTask.load(tmp_path, cfg)
    model = EncDecTask.build_model(task.model_config()).eval()  # as `attnkit sample` hands it over
    with torch.inference_mode():
        report = loaded.sample(model, SampleConfig(run=str(tmp_path), num_samples=12), no_echo)
    r = report.metrics
    pairs = heldout_pairs(task.data, 32)[:12]
    assert [(h["source"], h["reference"]) for h in r["heldout"]] == pairs
    assert set(pairs) <= set(task.val)  # the sources really are the held-out ones
    hits = [h["translation"] == h["reference"] for h in r["heldout"]]
    assert r["exact_match"] == sum(hits) / len(hits)
    assert report.tables[0].column("exact") == ["✓" if hit else "✗" for hit in hits]
    out = io.StringIO()
    render(report, Console(file=out, width=200))
    assert "held-out" in out.getvalue() and f"exact match on these 12: {100 * r['exact_match']:.1f}%" in out.getvalue()


def test_report_tabulates_greedy_and_beam_for_the_final_and_the_averaged_weights(tmp_path):
    from attnkit.config import TrainConfig
    from attnkit.zoo.tasks.encdec import EncDecTask

    task = EncDecTask(resolve_config(TrainConfig(model="encdec", flavor="debug")))
    task.prepare(tmp_path)
    model = EncDecTask.build_model(task.model_config()).eval()  # dropout 0.1: eval mode matters
    modes = []

    class Checkpoints:  # three kept steps whose mean is the final weights
        def steps(self):
            return [10, 20, 30]

        def load_average(self, averaged, steps):
            averaged.load_state_dict(model.state_dict())
            averaged.dropout.register_forward_pre_hook(lambda m, args: modes.append(m.training))

    task.checkpoints = Checkpoints()
    with torch.no_grad():
        report = task.report(model, tmp_path)
    m, (table,) = report.metrics, report.tables
    assert modes and not any(modes)  # the task's own averaged copy decodes in eval mode too
    assert m["averaged_checkpoints"] == "avg of 3 (steps 10-30)" and m["heldout_examples"] == len(task.val) == 32
    assert table.header == ["weights", "decoding", "exact match", "BLEU", "decode s"]
    assert [row[:2] for row in table.rows] == [["final", "greedy"], ["final", "beam 4"],
                                               [m["averaged_checkpoints"], "greedy"], [m["averaged_checkpoints"], "beam 4"]]
    for row, key in zip(table.rows, ("greedy", "beam", "averaged_greedy", "averaged_beam")):
        assert row[2:4] == [f"{100 * m[f'{key}_exact_match']:.1f}%", f"{m[f'{key}_bleu']:.2f}"]
    # the same weights decode the same way
    assert (m["greedy_bleu"], m["beam_bleu"]) == (m["averaged_greedy_bleu"], m["averaged_beam_bleu"])
    assert "--last 3" in table.note


@pytest.mark.parametrize("flavor", ["small", "small-preln"])
def test_small_flavors_average_checkpoints_from_the_end_of_the_run(flavor):
    """As in the paper, the averaged checkpoints come from the end of the run (here its last 10%), not from a
    stretch where the model is still learning (averaging steps 800-1000 of 1000 cost seed 0 16 points)."""
    from attnkit.zoo.tasks.encdec import EncDecTask

    train = EncDecTask.flavors[flavor].train
    first_averaged = train["max_steps"] - (train["keep_last"] - 1) * train["eval_interval"]
    assert train["keep_last"] >= 2  # something to average
    assert first_averaged >= 0.9 * train["max_steps"]
