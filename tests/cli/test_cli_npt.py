"""NPT end to end through the CLI on its debug flavor (iris, 3 folds): train with baselines, sample, probes,
and a one-line error for a CSV without the target column."""
import csv
import json

import pytest

from attnkit.cli.main import main
from cli_invoke import invoke


@pytest.fixture(scope="module")
def npt_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("npt")
    out = invoke("train", "--model", "npt", "--flavor", "debug", "--data", "iris", "--opt", "folds=3", "--out", run)
    return run, out


def test_debug_flavor_reports_npt_beside_baselines_on_the_same_splits(npt_run):
    run, out = npt_run
    for name in ("NPT (debug)", "GradientBoosting", "RandomForest", "kNN", "LogisticRegression", "AUROC"):
        assert name in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["folds"] == 3 and summary["rows"] == 150 and summary["steps"] == 12
    for model in [summary["npt"], *summary["baselines"].values()]:
        assert len(model["accuracy"]["per_fold"]) == 3
        assert 0 <= model["accuracy"]["mean"] <= 1 and 0 <= model["auroc"]["mean"] <= 1 and model["nll"]["mean"] > 0
    assert summary["baselines"]["LogisticRegression"]["accuracy"]["mean"] > 0.9
    assert summary["npt"]["accuracy"]["mean"] > 1 / 3                       # better than chance after 12 steps
    with (run / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["row"]) for r in rows) == list(range(150))          # every row held out exactly once
    assert {r["true"] for r in rows} == {"setosa", "versicolor", "virginica"}


def test_sample_prints_predictions_and_the_same_metrics(npt_run):
    run, _ = npt_run
    out = invoke("sample", "--run", run)
    assert "predictions for fold 0's test rows" in out and "predicted" in out
    assert "LogisticRegression" in out
    summary = json.loads((run / "summary.json").read_text())
    acc = summary["npt"]["accuracy"]
    assert f"{100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} %" in out   # the reloaded folds agree


def test_corruption_probe_reports_the_drop(tmp_path):
    out = invoke("train", "--model", "npt", "--flavor", "debug", "--data", "iris", "--opt", "folds=2",
                 "--max-steps", 4, "--opt", "probe=corruption", "--out", tmp_path)
    assert "corruption probe" in out and "drop" in out
    corruption = json.loads((tmp_path / "summary.json").read_text())["corruption"]
    assert set(corruption["drop"]) == {"accuracy", "auroc", "nll"}
    assert len(corruption["corrupted"]["accuracy"]["per_fold"]) == 2


def test_lookup_probe_reports_a_correlation(tmp_path):
    out = invoke("train", "--model", "npt", "--flavor", "debug", "--data", "iris", "--opt", "folds=2",
                 "--max-steps", 4, "--opt", "probe=lookup", "--opt", "target_shift=1", "--out", tmp_path)
    assert "lookup probe (target shift 1)" in out
    lookup = json.loads((tmp_path / "summary.json").read_text())["lookup"]
    assert lookup["target_shift"] == 1 and -1 <= lookup["correlation"]["mean"] <= 1


def test_csv_without_the_target_column_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2,x\n3,4,y\n5,6,x\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "npt", "--flavor", "debug", "--data", str(path), "--opt", "target=price",
              "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: target column 'price' is not in t; columns: a, b, label"


def test_bad_column_type_override_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2,x\n3,4,y\n5,6,x\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "npt", "--flavor", "debug", "--data", str(path), "--opt", "column_types=a=float",
              "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 1 and not (tmp_path / "run").exists()
    assert capsys.readouterr().err == ("error: column type override 'a=float': expected NAME=numeric "
                                       "or NAME=categorical\n")


def test_lookup_without_data_runs_the_semi_synthetic_experiment(tmp_path):
    out = invoke("train", "--model", "npt", "--flavor", "debug", "--opt", "probe=lookup", "--out", tmp_path)
    assert "NPT lookup on duplicated rows" in out and "corruption probe" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rows"] == 10_000 and summary["data"].startswith("friedman1")
    assert -1 <= summary["lookup_correlation"] <= 1
    corruption = summary["corruption"]
    assert set(corruption) == {"rows", "clean", "corrupted", "drop"} and corruption["rows"] == 256
    assert corruption["drop"]["r2"] == pytest.approx(corruption["clean"]["r2"] - corruption["corrupted"]["r2"])
    assert summary["features_only_gbm"]["r2"] > 0.5                        # the features alone explain a part
    assert (tmp_path / "datapoint_attention.png").stat().st_size > 10_000
