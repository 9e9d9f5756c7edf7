"""The Decision Transformer end to end on its debug flavor: generate data, train DT + BC + %BC, roll out, sample."""
import dataclasses
import json
import os

import numpy as np
import pytest
from rich.console import Console

from attnkit.config import SampleConfig, TrainConfig
from attnkit.data.rl import DATA_FILE, load_or_generate
from attnkit.errors import UserError
from attnkit.sample import load_run
from attnkit.tasks.dt import DTOptions, DTTask
from cli_invoke import invoke

SUMMARY_KEYS = {"return_by_target", "bc_return", "pct_bc_return", "dataset_max_return", "dataset_mean_return",
                "env"}


@pytest.fixture(scope="module")
def dt_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("dt")
    out = invoke("train", "--model", "dt", "--flavor", "debug", "--out", run)
    return run, out


def sample(run, tmp_path, **fields):
    """task.sample on the trained run, with SampleConfig fields the CLI may not have yet (target_return)."""
    task, model, _ = load_run(run)
    cfg = SampleConfig(run=str(run), out=str(tmp_path))
    for k, v in fields.items():
        setattr(cfg, k, v)
    console = Console(record=True, width=120)
    result = task.sample(model, cfg, console)
    return result, console.export_text()


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
    for r in summary["return_by_target"] + [{"mean": summary["bc_return"], "std": 0}]:
        assert set(r) >= {"mean", "std"} and 8 <= r["mean"] <= 500 and r["std"] >= 0  # CartPole's range
    for name in ("offline dataset", "BC (all episodes)", "%BC (best 10%)", "rank correlation"):
        assert name in out
    for png in ("dataset_returns.png", "return_tracking.png", "loss.png"):
        assert (run / png).stat().st_size > 10_000
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"val_dt_loss", "val_bc_loss", "val_pct_bc_loss"} <= set(metrics[-1])


def test_cached_dataset_is_reused_not_regenerated(dt_run):
    run, _ = dt_run
    path = run / DATA_FILE
    before = path.stat().st_mtime_ns
    data = load_or_generate(run, "CartPole-v1", 40, 0)
    assert path.stat().st_mtime_ns == before
    assert data.returns().tolist() == json.loads((run / "dataset.json").read_text())["returns"]


def test_sample_rolls_out_each_target_beside_the_baselines_on_the_same_seeds(dt_run, tmp_path):
    run, _ = dt_run
    summary = json.loads((run / "summary.json").read_text())
    result, text = sample(run, tmp_path)  # the env's default targets, seed and episodes: as in training
    assert result["return_by_target"] == summary["return_by_target"]
    assert result["bc_return"] == summary["bc_return"] and result["pct_bc_return"] == summary["pct_bc_return"]
    result, text = sample(run, tmp_path, target_return="100,400", num_samples=3)
    assert [r["target"] for r in result["return_by_target"]] == [100, 400] and result["eval_episodes"] == 3
    assert "mean ± std over 3" in text and "%BC (best 10%)" in text
    assert (tmp_path / "return_tracking.png").stat().st_size > 10_000


def test_bad_target_return_is_a_one_line_error(dt_run, tmp_path):
    run, _ = dt_run
    with pytest.raises(UserError, match=r"^--target-return must be comma-separated numbers, e\.g\. "
                                        r"100,200,300; got '100,lots'$"):
        sample(run, tmp_path, target_return="100,lots")
    assert not os.listdir(tmp_path)


def test_unknown_environment_is_a_one_line_error():
    cfg = DTTask.resolve(TrainConfig(model="dt", flavor="debug"))
    with pytest.raises(UserError, match=r"^unknown environment 'Pong-v5' for the Decision Transformer; "
                                        r"choose from CartPole-v1, Acrobot-v1 \(.*\)$"):
        DTTask(cfg, dataclasses.replace(DTOptions(), env="Pong-v5"))
