"""Hybrid CTC/attention pieces: the 4x stem, CTC best path and scores (attnkit.zoo.eval.ctc), joint rescoring."""
import itertools
import math

import pytest
import torch

from attnkit.zoo.eval.ctc import attention_logprob, ctc_greedy, ctc_logprob, joint_rescore, joint_scores
from attnkit.zoo.models.asr import PAD_FRAME
from asr_tiny import padded, tiny_asr


def tiny(**kw):
    return tiny_asr(**dict(dict(subsample=4, ctc_head=True), **kw))


def test_4x_stem_quarters_frames_and_padding_does_not_change_the_real_positions():
    model = tiny()
    a, b = torch.randn(80, 37), torch.randn(80, 61)
    alone, mask_alone = model.encode(a[None])
    assert alone.shape == (1, 10, 32) and mask_alone.all()          # ceil(37 / 4)
    batch, mask = model.encode(padded(a, b))
    assert batch.shape == (2, 16, 32) and mask[0].sum() == 10 and mask[1].all()
    torch.testing.assert_close(batch[0, :10], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.ctc_log_probs(batch)[0, :10], model.ctc_log_probs(alone)[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="subsample"):
        tiny(subsample=3)
    with pytest.raises(ValueError, match="no CTC head"):
        tiny(ctc_head=False).ctc_log_probs(alone)


def one_hot_path(path, V=6):
    """A (1, T, V) log-prob tensor whose argmax follows `path` (prob 0.9 on it)."""
    p = torch.full((len(path), V), 0.1 / (V - 1))
    p[torch.arange(len(path)), torch.tensor(path)] = 0.9
    return p.log()[None]


def test_best_path_merges_repeats_then_drops_blanks_and_stops_at_the_length():
    lp = one_hot_path([0, 3, 3, 0, 3, 4, 4, 0, 5, 5])
    assert ctc_greedy(lp, torch.tensor([10]), blank=0) == [[3, 3, 4, 5]]
    assert ctc_greedy(lp, torch.tensor([6]), blank=0) == [[3, 3, 4]]


def test_ctc_logprob_sums_every_alignment():
    torch.manual_seed(1)
    T, V, blank, target = 4, 3, 0, [1, 2]
    lp = torch.randn(1, T, V).log_softmax(-1)
    total = 0.0
    for path in itertools.product(range(V), repeat=T):   # brute force: every path that collapses to target
        collapsed = [k for i, k in enumerate(path) if k != blank and (i == 0 or k != path[i - 1])]
        if collapsed == target:
            total += math.exp(sum(lp[0, t, k].item() for t, k in enumerate(path)))
    got = ctc_logprob(lp, torch.tensor([T]), [target], blank)
    assert got.shape == (1,) and got.item() == pytest.approx(math.log(total), abs=1e-5)
    # three tokens with a repeat need 4 positions; 3 cannot align them
    assert ctc_logprob(lp[:, :3], torch.tensor([3]), [[1, 1, 2]], blank).item() == -math.inf


def test_joint_scores_weigh_ctc_and_attention():
    ctc, att = torch.tensor([-1.0, -10.0, -math.inf]), torch.tensor([-5.0, -1.0, 0.0])
    assert joint_scores(ctc, att, 0.3).tolist()[:2] == pytest.approx([-0.3 - 3.5, -3.0 - 0.7])
    assert joint_scores(ctc, att, 0.3)[2] == -math.inf


def test_joint_rescoring_returns_the_best_jointly_scored_candidate():
    model = tiny()
    mel = padded(torch.randn(80, 60), torch.randn(80, 44))
    nbest = [[[3, 4, 5], [6, 7], [3]], [[8], [9, 10]]]
    best = joint_rescore(model, mel, nbest, ctc_weight=0.5)
    memory, mask = model.encode(mel)
    lp = model.ctc_log_probs(memory)
    greedy = ctc_greedy(lp, mask.sum(1), 0)
    for b in range(2):
        cands = [list(c) for c in dict.fromkeys(tuple(c) for c in [*nbest[b], greedy[b]])]
        rows = torch.full((len(cands),), b)
        score = joint_scores(ctc_logprob(lp[rows], mask.sum(1)[rows], cands, 0),
                             attention_logprob(model, memory[rows], mask[rows], cands), 0.5)
        assert best[b] == cands[int(score.argmax())]
        # the attention score is the teacher-forced log-probability, one clip at a time too
        one = mel[b:b + 1, :, : int((mel[b, 0] != PAD_FRAME).sum())]
        from attnkit.generation.beam import sequence_logprob
        assert attention_logprob(model, *model.encode(one), [cands[0]]).item() == \
            pytest.approx(sequence_logprob(model, one, cands[0]), abs=1e-4)


def test_prefix_scores_of_a_complete_transcript_equal_its_ctc_probability():
    from attnkit.zoo.eval.ctc import CTCPrefixScorer

    torch.manual_seed(2)
    V, blank, eos = 6, 0, 2
    lp = torch.randn(2, 7, V).log_softmax(-1)
    lengths = torch.tensor([7, 5])
    targets = [[3, 3, 4], [5, 4]]
    scorer = CTCPrefixScorer(lp, lengths, blank, eos)
    prefix_scores = []
    for i in range(3):
        psi, new_n, new_b = scorer.extend()
        if i == 2:
            break
        tok = torch.tensor([t[i] for t in targets])
        prefix_scores.append(psi.gather(1, tok[:, None])[:, 0])
        scorer.select(torch.arange(2), tok, new_n, new_b)
    # row 1 is complete after 2 tokens: its EOS score is log P_ctc(target)
    assert psi[1, eos].item() == pytest.approx(ctc_logprob(lp[1:], lengths[1:], [targets[1]], blank).item(), abs=1e-5)
    tok = torch.tensor([4, 4])
    psi3 = psi.gather(1, tok[:, None])[:, 0]
    scorer.select(torch.arange(2), tok, new_n, new_b)
    psi, _, _ = scorer.extend()
    assert psi[0, eos].item() == pytest.approx(ctc_logprob(lp[:1], lengths[:1], [targets[0]], blank).item(), abs=1e-5)
    # a prefix's probability only falls as it grows, and covers its completion
    assert prefix_scores[0][0] >= prefix_scores[1][0] >= psi3[0] >= psi[0, eos]
    assert psi[:, blank].eq(float("-inf")).all()


def test_joint_beam_search_scores_what_it_returns_and_never_loses_to_greedy():
    from attnkit.generation.beam import greedy_decode, sequence_logprob
    from attnkit.zoo.eval.ctc import joint_beam_search

    model = tiny()
    mel = padded(torch.randn(80, 60), torch.randn(80, 44), torch.randn(80, 90))
    one = lambda b: mel[b:b + 1, :, : int((mel[b, 0] != PAD_FRAME).sum())]
    # λ = 0, beam 1: the greedy path is always in the search, so its result scores at least as well
    found = joint_beam_search(model, mel, 1, 12, ctc_weight=0.0)
    for b, hyp in enumerate(greedy_decode(model, mel, 12)):
        assert sequence_logprob(model, one(b), found[b][0]) >= hyp.logprob - 1e-4
    # λ = 0.5, beam 4: the score it reports is the transcript's joint score, computed from scratch
    found = joint_beam_search(model, mel, 4, 12, ctc_weight=0.5)
    memory, mask = model.encode(mel)
    lp = model.ctc_log_probs(memory)
    for b, (tokens, score) in enumerate(found):
        ctc = ctc_logprob(lp[b:b + 1], mask.sum(1)[b:b + 1], [tokens], 0).item()
        assert score == pytest.approx(0.5 * ctc + 0.5 * sequence_logprob(model, one(b), tokens), abs=1e-3)
        assert score > float("-inf")


@pytest.mark.parametrize("opts,message", [(dict(subsample=3), "subsample must be 2 or 4"),
                                          (dict(ctc_weight=1.0), r"ctc_weight must be in \[0, 1\)"),
                                          (dict(augment="heavy"), r"augment must be light or full or full\+vtlp")])
def test_recipe_options_are_checked_by_the_task(opts, message):
    from attnkit.config import TrainConfig
    from attnkit.engine.resolve import resolve_config
    from attnkit.errors import UserError
    from attnkit.zoo.tasks.asr import ASRTask

    cfg = resolve_config(TrainConfig(model="asr", flavor="debug"))
    with pytest.raises(UserError, match=message):
        ASRTask(cfg, ASRTask.Options(**opts))
    task = ASRTask(cfg, ASRTask.Options(ctc_weight=0.3, subsample=4, augment="full"))
    assert (task.ctc_weight, task.subsample, task.augment) == (0.3, 4, "full")


def test_formant_warp_recipe_shares_full_recipes_corpus_and_light_keeps_its_own():
    """A run's cached speech resumes only under an equal spec: full+vtlp synthesises exactly full's corpus (its warp
    is drawn per batch), and light's spec has stayed as it was before full existed."""
    from attnkit.config import TrainConfig
    from attnkit.engine.resolve import resolve_config
    from attnkit.zoo.tasks.asr import ASRTask

    cfg = resolve_config(TrainConfig(model="asr", flavor="debug"))
    spec = lambda augment: ASRTask(cfg, ASRTask.Options(augment=augment, synths="espeak"))._spec()
    assert spec("full+vtlp") == spec("full") != spec("light")
    assert sorted(spec("light")) == ["heldout_voices", "seed", "seen_voices", "test_clips", "train_clips"]
    assert ASRTask(cfg).augment == "light" and ASRTask.flavors["small"].options["augment"] == "full+vtlp"
