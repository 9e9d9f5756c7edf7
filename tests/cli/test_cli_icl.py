"""`--model icl` end to end on its debug flavor: train writes the error-versus-k curves of the transformer and
every baseline on the same prompts, `sample` prints the table and the PNG, the sparse class adds Lasso, and a
prompt of the wrong dimension or an unknown function class is a one-line error."""
import json

import pytest

from cli_invoke import invoke, run


@pytest.fixture(scope="module")
def icl_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("icl")
    out = invoke("train", "--model", "icl", "--flavor", "debug", "--out", run_dir)
    return run_dir, out


def test_train_reports_error_by_k_beside_the_baselines(icl_run):
    run_dir, out = icl_run
    assert "squared error / d against in-context examples k" in out and "out-of-distribution" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["d"] == 4 and summary["steps"] == 30
    errors = summary["error_by_k"]
    assert set(errors) == {"transformer", "least_squares", "ridge", "knn3", "averaging"}
    assert all(len(curve) == summary["n_points"] == 9 for curve in errors.values())
    assert max(errors["least_squares"][4:]) < 1e-6                 # exact from k = d on: same prompts
    assert set(summary["ood"]) == {"scaled_query", "one_orthant", "noisy_y"}
    assert (run_dir / "error_by_k.png").stat().st_size > 10_000
    agreement = summary["agreement_by_k"]                          # Akyürek et al.'s probe, one list each
    assert set(agreement) == {"gd_one_step", "ridge_fitted", "least_squares", "knn3"}
    first = agreement["least_squares"][0]                          # k = 0: every algorithm predicts 0
    assert all(len(a) == 9 and a[0] == pytest.approx(first) for a in agreement.values()) and first > 0
    assert "which algorithm?" in out and (run_dir / "agreement_by_k.png").stat().st_size > 10_000
    assert 0 < summary["error_at_2d_se"] < summary["error_at_2d"] and "standard error over 64 prompts" in out


def test_sample_prints_the_table_and_writes_the_plot(icl_run, tmp_path):
    run_dir, _ = icl_run
    out = invoke("sample", "--run", run_dir, "--out", tmp_path)
    assert "ratio" in out and "(= d)" in out and "averaging" in out
    assert (tmp_path / "error_by_k.png").is_file()
    assert (tmp_path / "agreement_by_k.png").is_file() and "which algorithm?" in out
    saved = json.loads((run_dir / "summary.json").read_text())["error_by_k"]["transformer"]
    assert f"{saved[3]:.4f}" in out                               # the reloaded model gives the same curve


def test_sample_answers_a_prompt_and_rejects_a_wrong_dimension(icl_run, capsys):
    run_dir, _ = icl_run
    out = invoke("sample", "--run", run_dir, "--prompt", "1,0,0,0=2; 0,1,0,0=-1; 1,1,0,0")
    assert "least squares 1.0000" in out                            # min-norm: w = (2, -1, 0, 0)
    code, _, err = run(["sample", "--run", run_dir, "--prompt", "1,0,0=2; 1,1,0"], capsys)
    assert code == 1 and err.strip() == "error: prompt point 1 has 3 coordinates; this model reads d = 4"


def test_sparse_linear_adds_lasso_and_an_unknown_class_is_one_line(tmp_path, capsys):
    invoke("train", "--model", "icl", "--flavor", "debug", "--opt", "function=sparse_linear", "--opt", "sparsity=2",
           "--max-steps", 4, "--out", tmp_path / "sparse")
    summary = json.loads((tmp_path / "sparse" / "summary.json").read_text())
    assert summary["function"] == "sparse_linear" and {"lasso", "bayes_optimal"} <= set(summary["error_by_k"])
    lasso, ls = summary["error_by_k"]["lasso"], summary["error_by_k"]["least_squares"]
    assert lasso[3] < ls[3]                                           # sparsity helps below k = d
    assert max(summary["error_by_k"]["bayes_optimal"][3:]) < 1e-10    # exact once k > sparsity = 2
    code, _, err = run(["train", "--model", "icl", "--flavor", "debug", "--opt", "function=trees",
                        "--out", tmp_path / "bad"], capsys)
    assert code == 1 and err.strip() == "error: unknown function class 'trees'; choose from linear, sparse_linear"
    assert not (tmp_path / "bad").exists()                            # a failed command leaves nothing behind
