"""NPT end to end through the CLI on its debug flavor (iris, 3 folds): train with baselines, sample, probes,
and a one-line error for a CSV without the target column."""
import csv
import json

import numpy as np
import pytest

from attnkit.cli.main import main
from attnkit.engine.sample import load_run
from attnkit.zoo.tasks.npt_lookup import NPTLookupTask
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
        assert model["accuracy"]["mean"] == pytest.approx(sum(model["accuracy"]["per_fold"]) / 3)
    assert summary["baselines"]["LogisticRegression"]["accuracy"]["mean"] > 0.9
    assert summary["npt"]["accuracy"]["mean"] > 1 / 3                       # better than chance after 12 steps
    with (run / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["row"]) for r in rows) == list(range(150))          # every row held out exactly once
    assert {r["true"] for r in rows} == {"setosa", "versicolor", "virginica"}
    # The summary's NPT accuracy is the saved predictions' accuracy, fold by fold.
    for k, acc in enumerate(summary["npt"]["accuracy"]["per_fold"]):
        fold = [r for r in rows if int(r["fold"]) == k]
        assert acc == pytest.approx(sum(r["true"] == r["predicted"] for r in fold) / len(fold), abs=1e-9)


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
    lookup = json.loads((tmp_path / "summary.json").read_text())["lookup"]
    corr = lookup["correlation"]
    assert lookup["target_shift"] == 1
    assert (f"lookup probe (target shift 1): correlation of prediction and true target {corr['mean']:.4f} ± "
            f"{corr['std']:.4f}") in " ".join(out.split())  # the line as printed, however the terminal wraps it
    # Each fold's correlation is that of its saved out-of-fold class probabilities (4 decimals in the CSV)
    # with the one-hot true class, all classes pooled.
    with (tmp_path / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    classes = ["setosa", "versicolor", "virginica"]
    for k, fold_corr in enumerate(corr["per_fold"]):
        fold = [r for r in rows if int(r["fold"]) == k]
        prob = np.array([[float(r[f"p_{c}"]) for c in classes] for r in fold])           # (R, 3)
        onehot = np.array([[r["true"] == c for c in classes] for r in fold], dtype=float)  # (R, 3)
        assert fold_corr == pytest.approx(np.corrcoef(prob.ravel(), onehot.ravel())[0, 1], abs=1e-3)
    assert corr["mean"] == pytest.approx(np.mean(corr["per_fold"]))
    # Pinned (seed 1337, 4 steps): the debug model has barely begun to use the duplicates.
    assert corr["per_fold"] == pytest.approx([0.1001, 0.2064], abs=2e-3)


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
    assert summary == {**summary, **json.loads((tmp_path / "lookup_metrics.json").read_text())}
    # Pinned (seed 1337, 12 steps): the debug model predicts from the row's own features and has not found
    # the duplicates: its predictions ignore the intervention, so they still follow the true target.
    assert summary["lookup_correlation"] == pytest.approx(0.0228, abs=2e-3)
    assert summary["intervened_correlation_with_own_target"] == pytest.approx(summary["clean"]["correlation"],
                                                                              abs=2e-3)
    assert summary["clean"]["correlation"] == pytest.approx(0.6602, abs=2e-3)
    corruption = summary["corruption"]
    assert set(corruption) == {"rows", "clean", "corrupted", "drop"} and corruption["rows"] == 256
    assert corruption["drop"]["r2"] == pytest.approx(corruption["clean"]["r2"] - corruption["corrupted"]["r2"])
    assert summary["features_only_gbm"]["r2"] == pytest.approx(0.7139, abs=1e-3)  # the features explain a part
    png = (tmp_path / "datapoint_attention.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 825 and int.from_bytes(png[20:24], "big") == 275  # one ABD panel
    # The saved config reloads as the lookup experiment: `sample` shows the same probes again.
    again = invoke("sample", "--run", tmp_path, "--out", tmp_path / "again")
    assert "NPT lookup on duplicated rows" in again and f"{summary['lookup_correlation']:.4f}" in again
    assert (tmp_path / "again" / "datapoint_attention.png").read_bytes() == png
    # One model name on disk; `Task.for_config` picks the lookup task when the run is loaded.
    assert json.loads((tmp_path / "config.json").read_text())["task"] == "npt"
    assert type(load_run(tmp_path).task) is NPTLookupTask
