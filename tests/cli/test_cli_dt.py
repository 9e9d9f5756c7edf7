"""The Decision Transformer end to end on its debug flavor: generate data, train DT + BC + %BC, roll out, sample."""
import json
import re

import numpy as np
import pytest

from attnkit.cli.main import main
from attnkit.config import SampleConfig
from attnkit.zoo.data.rl import DATA_FILE, load_or_generate
from attnkit.engine.sample import load_run
from attnkit.zoo.report import no_echo
from cli_invoke import invoke

SUMMARY_KEYS = {"return_by_target", "bc_return", "pct_bc_return", "dataset_max_return", "dataset_mean_return",
                "env"}


@pytest.fixture(scope="module")
def dt_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("dt")
    out = invoke("train", "--model", "dt", "--flavor", "debug", "--out", run)
    return run, out


def test_debug_run_generates_data_trains_three_policies_and_reports_the_paper_keys(dt_run):
    run, out = dt_run
    summary = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and summary["env"] == "CartPole-v1" and summary["steps"] == 20
    stats = json.loads((run / "dataset.json").read_text())
    assert stats["episodes"] == 40 and len(stats["returns"]) == 40
    assert summary["dataset_max_return"] == max(stats["returns"]) == 500
    assert summary["dataset_mean_return"] == pytest.approx(np.mean(stats["returns"]))
    targets = [r["target"] for r in summary["return_by_target"]]
    assert targets == [50, 100, 150, 200, 250, 300, 350, 400, 450, 500]
    # Pinned (seed 1337, 2 seeded episodes each): after 20 steps the DT does not yet read its target, so every
    # target gets the same two episodes (11 steps each) and the rank correlation is undefined (None). tests/models/test_dt.py checks the rollouts and the correlation on
    # scripted policies.
    assert summary["eval_episodes"] == 2
    assert [(r["mean"], r["std"], r["se"]) for r in summary["return_by_target"]] == [(11.0, 0.0, 0.0)] * 10
    assert (summary["bc_return"], summary["bc_return_std"]) == (11.0, 0.0)
    assert (summary["pct_bc_return"], summary["pct_bc_return_std"]) == (28.0, 11.0)
    assert summary["return_rank_correlation"] is None and "rank correlation" not in out
    for name in ("offline dataset", "BC (all episodes)", "%BC (best 10%)"):
        assert name in out
    # The dataset's table comes once, after the run's start line and before the first step; the rollouts
    # after training draw the engine's bars, each policy's ending at the episode limit.
    assert out.count("offline dataset") == 1
    assert out.index("dt flavor debug") < out.index("offline dataset") < out.index("step      0")
    assert f"cachedin{run / 'trajectories.npz'}" in re.sub(r"\s", "", out)  # the run's path, not the staging one
    for bar in ("DT rollouts (10 targets × 2 episodes)", "BC rollouts (2 episodes)", "%BC rollouts (2 episodes)"):
        assert re.search(re.escape(bar) + r".* 500/500 ", out), bar
    for png in ("dataset_returns.png", "return_tracking.png", "loss.png"):
        assert (run / png).stat().st_size > 10_000
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"val_dt_loss", "val_bc_loss", "val_pct_bc_loss"} <= set(metrics[-1])


def test_cached_dataset_is_reused_not_regenerated(dt_run, tmp_path, monkeypatch):
    run, _ = dt_run
    path = run / DATA_FILE
    before = path.stat().st_mtime_ns
    monkeypatch.setattr("attnkit.zoo.data.rl.generate", None)  # any regeneration would fail
    data = load_or_generate(run, "CartPole-v1", 40, 0)
    assert path.stat().st_mtime_ns == before
    assert data.returns().tolist() == json.loads((run / "dataset.json").read_text())["returns"]
    # --resume prepares in a fresh staging directory: the run's own cache is found and copied there.
    again = load_or_generate(tmp_path, "CartPole-v1", 40, 0, cached_in=run)
    assert (tmp_path / DATA_FILE).read_bytes() == path.read_bytes()
    assert np.array_equal(again.observations, data.observations)


def test_sample_rolls_out_each_target_beside_the_baselines_on_the_same_seeds(dt_run, tmp_path):
    run, _ = dt_run
    summary = json.loads((run / "summary.json").read_text())
    run_ = load_run(run)
    task, model = run_.task, run_.model  # the env's default targets, seed and episodes: as in training
    result = task.sample(model, SampleConfig(run=str(run), out=str(tmp_path)), no_echo).metrics
    assert result["return_by_target"] == summary["return_by_target"]
    assert result["bc_return"] == summary["bc_return"] and result["pct_bc_return"] == summary["pct_bc_return"]
    # Each episode has its own seed and generator: a target alone gives what it gave beside the others.
    alone = task.sample(model, SampleConfig(run=str(run), out=str(tmp_path), options={"target_return": "400"}), no_echo).metrics
    assert alone["return_by_target"] == [r for r in summary["return_by_target"] if r["target"] == 400]
    out = invoke("sample", "--run", run, "--target-return", "100,400", "--num-samples", 3, "--out", tmp_path)
    dt_rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│ DT ")]
    assert [row[1] for row in dt_rows] == ["100", "400"]  # the targets asked for, and no others
    for text in ("BC (all episodes)", "%BC (best 10%)", "mean ± std over 3", "DT rollouts (2 targets × 3 episodes)"):
        assert text in out
    assert (tmp_path / "return_tracking.png").stat().st_size > 10_000


def one_line_error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    assert exit_info.value.code == 1
    return capsys.readouterr().err.strip()


def test_bad_target_return_is_a_one_line_error(dt_run, tmp_path, capsys):
    run, _ = dt_run
    err = one_line_error(capsys, "sample", "--run", run, "--target-return", "100,lots", "--out", tmp_path / "s")
    assert err == "error: --target-return must be comma-separated numbers, e.g. 100,200,300; got '100,lots'"
    assert not (tmp_path / "s").exists()


def test_unknown_environment_is_a_one_line_error(tmp_path, capsys):
    err = one_line_error(capsys, "train", "--model", "dt", "--flavor", "debug", "--opt", "env=Pong-v5",
                         "--out", tmp_path / "run")
    assert err == ("error: unknown environment 'Pong-v5' for the Decision Transformer; choose from CartPole-v1, "
                   "Acrobot-v1 (each needs a data-generating controller)")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("opts, message", [
    (["env=Acrobot-v1", "quit=true"], "Acrobot-v1 has no quitter to play from a quit step; use --opt quit=false"),
    (["end_share=1.5"], "--opt end_share must be in [0, 1], got 1.5"),
    (["return_embedding=log"], "--opt return_embedding must be one of linear, symlog, got 'log'"),
])
def test_bad_data_and_model_options_are_one_line_errors(opts, message, tmp_path, capsys):
    argv = ["train", "--model", "dt", "--flavor", "debug", "--out", tmp_path / "run"]
    err = one_line_error(capsys, *argv, *[x for o in opts for x in ("--opt", o)])
    assert err == f"error: {message}" and not (tmp_path / "run").exists()
