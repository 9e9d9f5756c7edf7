"""The Music Transformer end to end through the CLI on its debug flavor: train, then sample MIDI + pictures."""
import json
import re

import pytest

from attnkit.cli.main import app
from cli_invoke import invoke, runner


@pytest.fixture(scope="module")
def music_run(tmp_path_factory):
    """Debug flavor: 12 chorales (parsed into a private cache), 20 steps, relative attention."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ATTNKIT_CACHE", str(tmp_path_factory.mktemp("attnkit-cache")))
    run = tmp_path_factory.mktemp("music")
    invoke("train", "--model", "music", "--flavor", "debug", "--out", run)
    yield run
    mp.undo()


def test_debug_flavor_trains_and_reports_exact_val_nll(music_run):
    summary = json.loads((music_run / "summary.json").read_text())
    assert summary["steps"] == 20
    by_length = summary["val_nll_by_length"]
    assert set(by_length) == {"64", "128", "256"}  # 1x, 2x, 4x the debug block size
    assert all(0 < v < 4.5 for v in by_length.values())  # below uniform over 93 tokens (ln 93 = 4.53)
    assert summary["val_nll"] == by_length["64"]
    saved = json.loads((music_run / "config.json").read_text())
    assert saved["model"]["position"] == "relative" and saved["train"]["data"] == "chorales:12"


def test_sample_prints_paths_and_summary_and_writes_a_readable_midi(music_run, tmp_path):
    from music21 import converter

    out = invoke("sample", "--run", music_run, "--out", tmp_path, "--max-new-tokens", 32, "--attention-png")
    assert "pitch range" in out and "MIDI" in out
    assert "(32 primer + 8 generated)" in out.replace("\n", " ") or "32 primer + 8" in out
    for name in ("music_sample.mid", "music_sample_roll.png", "music_sample_attention.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    score = converter.parse(tmp_path / "music_sample.mid")
    assert len(score.parts) == 4
    assert score.highestTime <= 40 / 4 + 4  # 40 steps of a 16th = 10 quarters, padded to a whole bar at most
    assert re.search(r"MIDI \d+–\d+", out)
    assert re.search(r"composing 8 steps .* 32/32 ", out)  # the engine's bar, one tick per new token


def test_composing_several_pieces_draws_one_bar_over_all_their_tokens(music_run, tmp_path):
    out = invoke("sample", "--run", music_run, "--out", tmp_path, "--max-new-tokens", 8, "--num-samples", 2)
    assert re.search(r"composing 2 steps × 2 pieces .* 16/16 ", out)
    assert (tmp_path / "music_sample_1.mid").stat().st_size > 0


def test_bad_position_is_one_line_error(tmp_path):
    result = runner.invoke(app, ["train", "--model", "music", "--flavor", "debug", "--out", str(tmp_path),
                                 "--opt", "position=rotary"])
    assert result.exit_code != 0
    assert "absolute, relative or both" in str(result.exception) + result.output
