"""Music Transformer on Bach chorales: the encoding's round trip, the cache, the model, the sampler's MIDI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnkit.config import SampleConfig, TrainConfig
from attnkit.zoo.data import chorales as ch
from attnkit.zoo.models.music import MusicConfig, MusicTransformer
from attnkit.ops import relative_attention
from attnkit.zoo.tasks.music import MusicTask, _aligned_start, mean_nll
from attnkit.engine.resolve import resolve_config
from attnkit.zoo.report import no_echo

ROUND_TRIP = ("bach/bwv269", "bach/bwv347")  # chorales no. 1 and 2: a 3/4 and a 4/4 one, with ties


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private chorale cache for this module (the user's ~/.cache is never touched)."""
    path = tmp_path_factory.mktemp("attnkit-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("ATTNKIT_CACHE", str(path))
    yield path
    mp.undo()


def _notes(part):
    """[(offset, midi, quarterLength)] of a part with ties merged, rests left out."""
    return [(float(n.offset), n.pitch.midi, float(n.quarterLength))
            for n in part.stripTies().flatten().notes]


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_round_trip_chorale_tokens_chorale(name):
    from music21 import corpus

    original = corpus.parse(name)
    grid = ch.chorale_to_grid(original)
    assert grid.shape == (original.highestTime * 4, 4)
    tokens = ch.grid_to_tokens(grid)
    assert tokens[0] == ch.BOS and tokens[-1] == ch.EOS and len(tokens) == 4 * len(grid) + 2
    assert (tokens[1:5] == grid[0]).all()  # raster scan: S, A, T, B of step 0 first
    decoded = ch.grid_to_score(ch.tokens_to_grid(tokens))
    assert [p.partName for p in decoded.parts] == list(ch.VOICES)
    for voice, (mine, theirs) in enumerate(zip(decoded.parts, original.parts)):
        assert _notes(mine) == _notes(theirs), ch.VOICES[voice]
    assert decoded.highestTime == original.highestTime
    np.testing.assert_array_equal(ch.chorale_to_grid(decoded), grid)  # and back to the same tokens


def test_ties_are_holds_and_repeated_notes_are_not():
    from music21 import note, stream, tie

    score = stream.Score()
    for v in range(4):
        part = stream.Part()
        a, b, c = note.Note(60 + v, quarterLength=1), note.Note(60 + v, quarterLength=0.5), note.Note(60 + v, quarterLength=0.5)
        a.tie = tie.Tie("start")
        b.tie = tie.Tie("stop")  # a + b: one note of 1.5 quarters; c: the same pitch struck again
        for n in (a, b, c, note.Rest(quarterLength=0.25)):
            part.append(n)
        score.insert(0, part)
    grid = ch.chorale_to_grid(score)
    P = ch.pitch_token(60)
    assert grid[:, 0].tolist() == [P] + [ch.HOLD] * 5 + [P, ch.HOLD, ch.REST]


def test_skips_what_is_not_four_clean_voices():
    from music21 import chord, note, stream

    three = stream.Score([stream.Part([note.Note(60)]) for _ in range(3)])
    with pytest.raises(ch.ChoraleSkipped, match="3 parts"):
        ch.chorale_to_grid(three)
    parts = [stream.Part([note.Note(60)]) for _ in range(3)] + [stream.Part([chord.Chord([48, 52])])]
    with pytest.raises(ch.ChoraleSkipped, match="chord"):
        ch.chorale_to_grid(stream.Score(parts))
    parts = [stream.Part([note.Note(60, quarterLength=1 / 3)]) for _ in range(4)]
    with pytest.raises(ch.ChoraleSkipped, match="16th"):
        ch.chorale_to_grid(stream.Score(parts))


def test_any_sampled_tokens_decode():
    """The sampler may write HOLD after a rest or at the start; decoding must still give 4 voices."""
    rng = np.random.default_rng(0)
    grid = rng.integers(0, ch.VOCAB_SIZE, size=(40, 4)).astype(np.int16)
    grid[0, 0] = ch.HOLD
    score = ch.grid_to_score(grid)
    assert len(score.parts) == 4
    for v, part in enumerate(score.parts):
        assert sum(float(e.quarterLength) for e in part.flatten().notesAndRests) == 10.0
        starts = [(float(n.offset), n.pitch.midi) for n in part.flatten().notes]
        expected = [(t / 4, ch.token_pitch(int(tok))) for t, tok in enumerate(grid[:, v]) if tok >= ch.PITCH0]
        assert starts == expected


def test_cache_serves_the_second_load_without_parsing(cache, monkeypatch):
    first = ch.load_chorales([1, 2], progress=False)
    assert [c.number for c in first] == [1, 2] and ch.cache_path().parent == cache
    import music21.corpus

    def no_parse(*a, **k):
        raise AssertionError("parsed again instead of reading the cache")
    monkeypatch.setattr(music21.corpus, "parse", no_parse)
    second = ch.load_chorales([2, 1], progress=False)
    for a, b in zip(first, second):
        assert a.name == b.name
        np.testing.assert_array_equal(a.grid, b.grid)
    assert ch.split_of(10) == "test" and ch.split_of(11) == "val" and ch.split_of(12) == "train"


@pytest.mark.parametrize("position", ["absolute", "relative", "both"])
def test_cached_decoding_matches_full_forward(position):
    model = MusicTransformer(MusicConfig(n_layer=2, n_head=2, d_model=32, block_size=16, dropout=0.0,
                                         position=position, max_relative=8)).eval()
    idx = torch.randint(0, ch.VOCAB_SIZE, (2, 12))
    full, _ = model(idx)  # (2, 12, V)
    caches = model.make_caches()
    steps = [model(idx[:, :5], caches=caches)[0]] + [model(idx[:, t:t + 1], caches=caches)[0] for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_relative_model_has_no_absolute_position():
    """Relative-only attention sees distances, not positions: the same tokens placed at offset 0 or 6
    give the same logits. The absolute arm's timing signal makes them differ."""
    idx = torch.randint(5, ch.VOCAB_SIZE, (1, 10))
    for position, same in (("relative", True), ("absolute", False), ("both", False)):
        model = MusicTransformer(MusicConfig(n_layer=2, n_head=2, d_model=32, block_size=16, dropout=0.0,
                                             position=position)).eval()

        def logits_at(offset):
            x = model.embed(idx, offset)
            for block in model.blocks:
                x = block(x)
            return model.head(model.ln_f(x))

        torch.testing.assert_close(logits_at(0), model(idx)[0])
        assert torch.allclose(logits_at(0), logits_at(6), atol=1e-5) == same, position


def test_attention_maps_are_the_ops_weights():
    """attention_maps (for the heatmap) must be exactly the weights relative_attention applies."""
    model = MusicTransformer(MusicConfig(n_layer=2, n_head=2, d_model=32, block_size=16, dropout=0.0,
                                         position="relative", max_relative=6)).eval()
    idx = torch.randint(0, ch.VOCAB_SIZE, (1, 14))
    maps = model.attention_maps(idx, layer=1)  # (1, H, L, L)
    assert maps.shape == (1, 2, 14, 14)
    torch.testing.assert_close(maps.sum(-1), torch.ones(1, 2, 14))
    assert (maps.triu(1) == 0).all()  # causal
    attn = model.blocks[1].attn
    h = model.blocks[1].ln_1(model.blocks[0](model.embed(idx)))
    q = attn._heads(attn.q_proj(h), 2)
    k, v = attn.kv_proj(h).split(32, dim=2)
    k, v = attn._heads(k, 2), attn._heads(v, 2)
    torch.testing.assert_close(maps @ v, relative_attention(q, k, v, attn.rel, causal=True), atol=1e-5, rtol=1e-5)


def test_aligned_start_keeps_voice_phase():
    for n in range(1, 60):
        s = _aligned_start(n, 16)
        assert s % 4 == 0 and n - s <= 16 and (s == 0 or n - s > 12)


@pytest.fixture(scope="module")
def prepared(cache, tmp_path_factory):
    run = tmp_path_factory.mktemp("music-run")
    cfg = resolve_config(TrainConfig(model="music", flavor="debug", out=str(run)))
    task = MusicTask(cfg)
    task.prepare(run)
    return task, cfg, run


def test_prepare_splits_and_batches(prepared):
    task, cfg, _ = prepared
    numbers = task.numbers
    assert numbers["test"] == [10] and 1 in numbers["val"] and 11 not in numbers["val"]  # no. 11 has 9 parts
    assert not set(numbers["train"]) & (set(numbers["val"]) | set(numbers["test"]))
    g = torch.Generator().manual_seed(0)
    b = task.get_batch("train", 6, g)
    assert b["x"].shape == b["y"].shape == (6, cfg.block_size)
    torch.testing.assert_close(b["x"][:, 1:], b["y"][:, :-1].clamp(min=0))  # y is x shifted by one
    # Every window starts on a time step (a multiple of 4 into its chorale), so voices keep their phase.
    for row in b["x"]:
        real = row[row != ch.PAD].numpy()
        found = [s for seq in task.seqs["train"] for s in range(0, len(seq) - len(real) + 1)
                 if np.array_equal(seq[s:s + len(real)], real)]
        assert any(s % 4 == 0 for s in found)
    b2 = task.get_batch("train", 6, torch.Generator().manual_seed(0))
    assert torch.equal(b["x"], b2["x"])


def test_training_lowers_exact_val_nll(prepared):
    task, cfg, _ = prepared
    model = MusicTask.build_model(task.model_config())
    before = mean_nll(model, task.seqs["val"], cfg.block_size, torch.device("cpu"))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        loss = task.loss(model, task.get_batch("train", 8, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = mean_nll(model, task.seqs["val"], cfg.block_size, torch.device("cpu"))
    assert after < before - 0.5, (before, after)  # measured: 2.16 -> 1.20


def test_sample_writes_midi_with_four_voices_and_the_right_length(prepared, tmp_path):
    from music21 import converter

    task, cfg, run = prepared
    loaded = MusicTask.load(run, cfg)  # reads only the assets prepare wrote
    model = MusicTask.build_model(task.model_config())
    scfg = SampleConfig(run=str(run), out=str(tmp_path), max_new_tokens=38, seed=3,
                        options={"prompt": "test:0:16", "attention_png": True})
    result = loaded.sample(model, scfg, no_echo).metrics["samples"][0]
    assert result["primer_steps"] == 16 and result["steps"] == 16 + 10  # 38 tokens round up to 10 steps
    tokens = result["tokens"]
    assert tokens[0] == ch.BOS and len(tokens) == 1 + 4 * result["steps"]
    assert not set(tokens[1:]) & {ch.BOS, ch.EOS, ch.PAD}
    primer = np.array(loaded.primers[0]["grid"], dtype=np.int16)[:16]
    np.testing.assert_array_equal(ch.tokens_to_grid(tokens)[:16], primer)
    for key in ("midi", "piano_roll", "attention_png"):
        assert (tmp_path / result[key].split("/")[-1]).stat().st_size > 0
    parsed = converter.parse(result["midi"])
    assert len(parsed.parts) == 4
    # MIDI stores no rests, so the piece ends where the last note ends; music21 splits notes at barlines
    # when it reads MIDI back, and stripTies joins them again.
    grid = ch.tokens_to_grid(tokens)
    last_end = max(s + n for v in range(4) for s, n, p in ch.voice_events(grid[:, v]) if p is not None)
    assert max(float(n.offset + n.quarterLength) for n in parsed.flatten().notes) == last_end / 4
    for v, part in enumerate(parsed.parts):
        expected = [(s / 4, n / 4, p) for s, n, p in ch.voice_events(grid[:, v]) if p is not None]
        assert [(float(n.offset), float(n.quarterLength), n.pitch.midi)
                for n in part.stripTies().flatten().notes] == expected


def test_sample_from_scratch_and_bad_prompts(prepared, tmp_path):
    from attnkit.errors import UserError

    task, cfg, run = prepared
    loaded = MusicTask.load(run, cfg)
    model = MusicTask.build_model(task.model_config())
    scfg = SampleConfig(run=str(run), out=str(tmp_path), options={"prompt": "scratch"}, max_new_tokens=80)
    r = loaded.sample(model, scfg, no_echo).metrics["samples"][0]
    assert r["primer_steps"] == 0 and r["steps"] == 20  # 80 tokens > block_size 64: the window slid
    for bad in ("test:99", "nonexistent.mid", "test:x"):
        with pytest.raises(UserError):
            loaded.sample(model, SampleConfig(run=str(run), out=str(tmp_path), options={"prompt": bad}), no_echo)
    with pytest.raises(UserError, match="missing"):
        MusicTask.load(tmp_path, cfg)
