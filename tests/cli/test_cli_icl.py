"""`--model icl` end to end on its debug flavor: train writes the error-versus-k curves of the transformer and
every baseline on the same prompts, `sample` prints the table and the PNG, and a prompt of the wrong
dimension is a one-line error."""
import json

import pytest
from attnkit.cli.main import main
from cli_invoke import invoke


@pytest.fixture(scope="module")
def icl_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("icl")
    out = invoke("train", "--model", "icl", "--flavor", "debug", "--out", run)
    return run, out


def test_train_reports_error_by_k_beside_the_baselines(icl_run):
    run, out = icl_run
    assert "squared error / d against in-context examples k" in out and "out-of-distribution" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["d"] == 4 and summary["steps"] == 30
    errors = summary["error_by_k"]
    assert set(errors) == {"transformer", "least_squares", "ridge", "knn3", "averaging"}
    assert all(len(curve) == summary["n_points"] == 9 for curve in errors.values())
    assert max(errors["least_squares"][4:]) < 1e-6                 # exact from k = d on: same prompts
    assert set(summary["ood"]) == {"scaled_query", "one_orthant", "noisy_y"}
    assert (run / "error_by_k.png").stat().st_size > 10_000


def test_sample_prints_the_table_and_writes_the_plot(icl_run, tmp_path):
    run, _ = icl_run
    out = invoke("sample", "--run", run, "--out", tmp_path)
    assert "ratio" in out and "(= d)" in out and "averaging" in out
    assert (tmp_path / "error_by_k.png").is_file()
    saved = json.loads((run / "summary.json").read_text())["error_by_k"]["transformer"]
    assert f"{saved[3]:.4f}" in out                               # the reloaded model gives the same curve


def test_sample_answers_a_prompt_and_rejects_a_wrong_dimension(icl_run, capsys):
    run, _ = icl_run
    out = invoke("sample", "--run", run, "--prompt", "1,0,0,0=2; 0,1,0,0=-1; 1,1,0,0")
    assert "least squares 1.0000" in out                            # min-norm: w = (2, -1, 0, 0)
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--run", str(run), "--prompt", "1,0,0=2; 1,1,0"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == "error: prompt point 1 has 3 coordinates; this model reads d = 4"
