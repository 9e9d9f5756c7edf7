"""ViT and the Image Transformer end to end through the CLI on their debug flavors: train, then sample."""
import json
import math

import pytest

from cli_invoke import invoke, run


def png_size(path):
    """(height, width) in pixels of a PNG file."""
    import matplotlib.image

    return matplotlib.image.imread(path).shape[:2]


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("vit")
    out = invoke("train", "--model", "vit", "--flavor", "debug", "--out", run)
    return run, out


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("image")
    out = invoke("train", "--model", "image", "--flavor", "debug", "--opt", "attention=local2d", "--out", run)
    return run, out


def test_vit_trains_and_reports_accuracy_beside_baselines(vit_run):
    run, out = vit_run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["n_test"] == 360
    # Pinned (seed 1337; the same on 1 and 2 threads): after 20 debug steps the ViT is still at chance, 36 of 360.
    assert summary["test_acc"] * 360 == pytest.approx(36)
    # Same split, same run: the scikit-learn baselines are strong on these digits.
    assert summary["logreg_test_acc"] > 0.9 and summary["svm_test_acc"] > 0.95
    assert "logistic regression" in out and "SVM" in out


def test_vit_tta_changes_inference_only(vit_run, tmp_path):
    """--opt tta=false trains the same weights and classifies each digit from itself alone."""
    run, out = vit_run
    tta = json.loads((run / "summary.json").read_text())
    assert "the digit alone" in out and "5 views a digit" in out
    one = invoke("train", "--model", "vit", "--flavor", "debug", "--opt", "tta=false", "--out", tmp_path / "one")
    single = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert single["test_acc"] == single["test_acc_one_view"] == tta["test_acc_one_view"]
    assert "the digit alone" not in one and "1 view a digit" in one


def test_vit_sample_prints_predictions_and_writes_pngs(vit_run, tmp_path):
    run, _ = vit_run
    out = invoke("sample", "--run", run, "--out", tmp_path)
    assert "accuracy on 360 held-out digits" in out
    summary = json.loads((run / "summary.json").read_text())
    assert f"{100 * summary['test_acc']:.2f}%" in out  # the same model gives the same accuracy
    for name in ("predictions.png", "attention.png"):
        assert str(tmp_path / name) in out.replace("\n", "")
        h, w = png_size(tmp_path / name)
        assert h > 200 and w > 100


def test_image_trains_and_reports_bits_per_dim_and_pattern_cost(image_run):
    run, out = image_run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["attention"] == "local2d"
    assert 0 < summary["test_bpd"] < math.log2(17)  # better than uniform over 17 levels after 20 steps
    pattern = summary["pattern"]
    assert pattern["local2d"]["entries"] < pattern["full"]["entries"]
    assert pattern["local2d"]["tiles_64x64"] <= pattern["full"]["tiles_64x64"]
    assert "test bits/dim" in out


def test_image_sample_draws_one_row_per_class(image_run, tmp_path):
    run, _ = image_run
    out = invoke("sample", "--run", run, "--out", tmp_path, "--num-samples", 3)
    path = tmp_path / "samples.png"
    assert str(path) in out.replace("\n", "")
    h, w = png_size(path)
    assert h > w  # 10 rows (classes) of 3 samples


def test_image_sample_with_label_draws_that_class(image_run, tmp_path):
    run, _ = image_run
    out = invoke("sample", "--run", run, "--out", tmp_path, "--label", 3, "--num-samples", 6)
    h, w = png_size(tmp_path / "samples_label3.png")
    assert w > h  # one row of 6
    assert len([line for line in out.splitlines() if len(line) == 16]) >= 8  # the ASCII digit, 8 rows × 2 chars


def test_bad_options_are_one_line_errors(image_run, tmp_path, capsys):
    run_dir, _ = image_run
    code, out, err = run(["sample", "--run", run_dir, "--label", "12"], capsys)
    assert (code, out, err) == (1, "", "error: --label must be a class in 0..9, got 12\n")
    code, out, err = run(["train", "--model", "image", "--flavor", "debug", "--out", tmp_path / "run",
                          "--opt", "attention=sparse"], capsys)
    assert (code, out) == (1, "")
    assert err == "error: attention must be one of full, local1d, local2d for the image model, got 'sparse'\n"
    assert not (tmp_path / "run").exists()
