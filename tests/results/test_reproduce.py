"""`attnkit reproduce`'s bookkeeping on debug flavors: rows kept across runs, re-trained when the code they
depend on or the flavor changes, resumed after an interruption; claims judged; the README table generated."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from attnkit.cli.main import app, main
from attnkit.results import reproduce as R
from attnkit.results import sources, speedrun
from attnkit.results.claims import SPECS, Claim, value
from attnkit.results.report import END, START, update_readme, zoo_table

runner = CliRunner()


def reproduce(tmp: Path, *args) -> str:
    result = runner.invoke(app, ["reproduce", "--flavor", "debug", "--results-dir", str(tmp / "res"),
                                 "--runs-dir", str(tmp / "runs"), *map(str, args)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.fixture
def trained(monkeypatch):
    """Every (model, arm, seed) the Reproduction trains, in order."""
    calls = []
    real = R.Reproduction.run

    def run(self, job):
        calls.append((job.model, job.arm, job.seed))
        return real(self, job)

    monkeypatch.setattr(R.Reproduction, "run", run)
    return calls


def test_rows_are_kept_until_the_code_changes(tmp_path, trained, monkeypatch):
    out = reproduce(tmp_path, "--model", "vit", "--seeds", 1)
    assert trained == [("vit", "main", 0)]
    data = json.loads((tmp_path / "res" / "vit-debug.json").read_text())
    assert [(r["arm"], r["seed"]) for r in data["rows"]] == [("main", 0)]
    assert data["seeds"] == [0] and data["rows"][0]["code_hash"] == sources.code_hash("vit")
    claim = data["claims"][0]
    assert claim["per_seed"] == [r["summary"]["test_acc"] for r in data["rows"]]
    assert claim["baseline_per_seed"] == [r["summary"]["svm_test_acc"] for r in data["rows"]]
    assert claim["met"] == (claim["mean"] > claim["baseline_mean"])
    assert "1 run(s) to train, 0 kept" in out
    assert (tmp_path / "res" / "vit-debug.md").is_file() and (tmp_path / "res" / "vit-debug-loss.png").is_file()

    # Same code: nothing trains again, and a second seed trains only itself.
    out = reproduce(tmp_path, "--model", "vit", "--seeds", 2)
    assert trained[1:] == [("vit", "main", 1)] and "1 run(s) to train, 1 kept" in out
    rows = json.loads((tmp_path / "res" / "vit-debug.json").read_text())["rows"]
    assert rows[0] == data["rows"][0]  # untouched

    # The code a row depends on changes: every row is trained again.
    monkeypatch.setattr(R, "code_hash", lambda model: "changed")
    reproduce(tmp_path, "--model", "vit", "--seeds", 2)
    assert trained[2:] == [("vit", "main", 0), ("vit", "main", 1)]
    assert {r["code_hash"] for r in json.loads((tmp_path / "res" / "vit-debug.json").read_text())["rows"]} == {"changed"}


def test_gpt_runs_nanogpts_train_py_beside_ours_and_keeps_both_rows(tmp_path, trained, monkeypatch):
    """GPT's arms run as timed processes of their own: our trainer, and nanoGPT's vendored train.py (debug sizes)."""
    runner_file = tmp_path / "runner.py"  # stands for the runners' code (attnkit.results.speedrun.SOURCES)
    runner_file.write_text("x = 1\n")
    monkeypatch.setattr(sources.speedrun, "SOURCES", (*sources.speedrun.SOURCES, runner_file))
    reproduce(tmp_path, "--model", "gpt", "--seeds", 1)
    assert trained == [("gpt", "main", 0), ("gpt", "nanogpt", 0)]
    data = json.loads((tmp_path / "res" / "gpt-debug.json").read_text())
    rows = {r["arm"]: r for r in data["rows"]}
    assert rows["nanogpt"]["command"].endswith("--n_layer=1 --n_embd=32") and " train.py " in rows["nanogpt"]["command"]
    assert "python -m attnkit.cli train --model gpt --flavor debug " in rows["main"]["command"]
    assert [r["step"] for r in rows["nanogpt"]["curve"]] == [0, 2, 4]  # its eval lines, as it printed them
    target, wall = rows["nanogpt"]["summary"]["common_loss"], rows["nanogpt"]["curve"][-1]["wall_s"]
    assert rows["nanogpt"]["curve"][-1]["common_loss"] == target
    ours = rows["main"]["curve"]
    assert [r["step"] for r in ours] == [0, 10, 20] and all(r["common_loss"] > 0 for r in ours[1:])
    assert ours[-1]["common_loss"] == rows["main"]["summary"]["common_loss"]
    reached = [r["wall_s"] for r in ours if r["common_loss"] is not None and r["common_loss"] <= target]
    assert data["claims"][0]["per_seed"] == [wall / reached[0] if reached else None]
    assert (tmp_path / "runs" / "gpt-debug" / "nanogpt" / "seed0.log").read_text().startswith("Overriding config")
    ckpt = torch.load(tmp_path / "runs" / "gpt-debug" / "nanogpt" / "seed0" / "ckpt.pt", weights_only=True)
    assert ckpt["model_args"]["vocab_size"] == len(speedrun.gpt_split(tmp_path / "split")[0].chars)  # our text

    reproduce(tmp_path, "--model", "gpt", "--seeds", 1)  # kept: nothing runs again
    assert len(trained) == 2
    # The runners' sources are part of what gpt's rows depend on (and not vit's): a change there runs both arms again
    vit = sources.code_hash("vit")
    runner_file.write_text("x = 2\n")
    assert sources.code_hash("gpt") != rows["main"]["code_hash"] and sources.code_hash("vit") == vit
    reproduce(tmp_path, "--model", "gpt", "--seeds", 1)
    assert trained[2:] == [("gpt", "main", 0), ("gpt", "nanogpt", 0)]


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, trained, monkeypatch):
    real = R.Reproduction.run  # (already the counting wrapper)

    def fail_on_seed_1(self, job):
        if job.seed == 1:
            raise KeyboardInterrupt
        return real(self, job)

    monkeypatch.setattr(R.Reproduction, "run", fail_on_seed_1)
    with pytest.raises(KeyboardInterrupt):
        rep = R.Reproduction(tmp_path / "res", tmp_path / "runs", seeds=2, flavor="debug")
        for job in rep.jobs("vit"):
            rep.run(job)
    monkeypatch.setattr(R.Reproduction, "run", real)
    reproduce(tmp_path, "--model", "vit", "--seeds", 2)
    assert trained == [("vit", "main", 0), ("vit", "main", 1)]  # seed 0 once, seed 1 after the restart


def test_a_flavor_change_invalidates_a_row(tmp_path):
    rep = R.Reproduction(tmp_path / "res", tmp_path / "runs", seeds=1, flavor="debug")
    (tmp_path / "res").mkdir()
    row = {"arm": "main", "seed": 0, "flavor": "debug", "code_hash": sources.code_hash("vit")}
    rep.json_path("vit").write_text(json.dumps({"model": "vit", "rows": [row]}))
    assert [j.kept for j in rep.jobs("vit")] == [True]
    rep.json_path("vit").write_text(json.dumps({"model": "vit", "rows": [{**row, "flavor": "small"}]}))
    assert [j.kept for j in rep.jobs("vit")] == [False]


def test_a_models_sources_are_its_own_modules_and_the_shared_layers():
    names = {f.relative_to(sources.PACKAGE).as_posix() if f.is_relative_to(sources.PACKAGE) else f.name
             for f in sources.model_sources("bert")}
    assert {"zoo/tasks/bert.py", "zoo/models/bert.py", "zoo/eval/bert.py", "zoo/data/text.py",
            "zoo/data/tokenizer.py", "engine/trainer.py", "nn/layers.py", "ops.py", "attention.py"} <= names
    assert not {"zoo/tasks/vit.py", "zoo/models/vit.py", "zoo/data/rl.py"} & names
    assert not {"results/speedrun.py", "train.py"} & names  # only gpt has an arm that runs outside the trainer
    gpt = {f.relative_to(sources.PACKAGE).as_posix() for f in sources.model_sources("gpt")
           if f.is_relative_to(sources.PACKAGE)}
    assert {"results/speedrun.py", "results/vendor/nanogpt/train.py", "results/vendor/nanogpt/model.py",
            "results/vendor/nanogpt/config/train_shakespeare_char.py", "zoo/tasks/gpt.py"} <= gpt


def test_the_hash_follows_file_contents(tmp_path, monkeypatch):
    files = [tmp_path / "a.py", tmp_path / "b.py"]
    for f in files:
        f.write_text("x = 1\n")
    monkeypatch.setattr(sources, "model_sources", lambda model: files)
    before = sources.code_hash("vit")
    assert sources.code_hash("vit") == before
    files[1].write_text("x = 2\n")
    assert sources.code_hash("vit") != before


@pytest.mark.parametrize("claim, value_, base, met", [
    (Claim("t", "g", "main:a", baseline="main:b"), 0.9, 0.8, True),
    (Claim("t", "g", "main:a", baseline="main:b"), 0.8, 0.9, False),
    (Claim("t", "g", "main:a", baseline="main:b", margin=0.05), 0.84, 0.8, False),
    (Claim("t", "g", "main:a", baseline="main:b", margin=0.05), 0.86, 0.8, True),
    (Claim("t", "g", "main:a", better="lower", baseline="main:b", margin=-0.02), 1.01, 1.0, True),
    (Claim("t", "g", "main:a", better="lower", baseline="main:b", margin=-0.02), 1.03, 1.0, False),
    (Claim("t", "g", "main:a", better="lower", target=0.1), 0.09, None, True),
    (Claim("t", "g", "main:a", target=3.0), 2.9, None, False),
    (Claim("t", "g", "main:a", baseline="main:b"), None, 0.8, None),
])
def test_a_claim_is_met_when_it_beats_its_reference(claim, value_, base, met):
    assert claim.met(value_, base) is met


def test_values_are_read_by_path_and_derived():
    runs = {"main": {"npt": {"accuracy": {"mean": 0.95}}, "flag": True,
                     "curve": [{"wall_s": 10, "val_loss": 1.5, "common_loss": None},
                               {"wall_s": 20, "val_loss": 1.7, "common_loss": 1.5}]},
            "nanogpt": {"curve": [{"wall_s": 30, "val_loss": 1.9}, {"wall_s": 60, "val_loss": 1.4, "common_loss": 1.6}]}}
    assert value(runs, "main:npt.accuracy.mean") == 0.95
    assert value(runs, "main:npt.auroc.mean") is None and value(runs, "main:flag") is None
    # nanoGPT's final 1.6 (common measure) is first reached at 20 s; the printed losses play no part
    assert value(runs, "gpt_speedup") == 60 / 20
    runs["main"]["curve"][1]["common_loss"] = 1.7
    assert value(runs, "gpt_speedup") is None  # never reached


def test_dt_claims_read_the_top_target_and_the_worst_target_up_to_the_best():
    rows = [{"target": 50, "mean": 60, "se": 1}, {"target": 500, "mean": 480, "se": 6},
            {"target": 600, "mean": 480, "se": 0}, {"target": 300, "mean": 270, "se": 2}]
    runs = {"main": {"return_by_target": rows, "dataset_max_return": 500.0}}
    assert value(runs, "dt_top_return") == 480 and value(runs, "dt_top_fraction") == pytest.approx(0.96)
    assert value(runs, "dt_top_se_fraction") == 0  # the top target asked for, even above the best
    assert value(runs, "dt_worst_tracking_gap") == pytest.approx(30 / 500)  # 600 is above the best: not counted


def test_mean_and_std_over_seeds():
    claim = Claim("t", "g", "main:a", baseline="main:b")
    runs = {s: {"main": {"a": a, "b": 0.5}} for s, a in enumerate([0.6, 0.8, 1.0])}
    out = R.evaluate_claim(claim, runs)
    assert out["per_seed"] == [0.6, 0.8, 1.0] and out["mean"] == pytest.approx(0.8)
    assert out["std"] == pytest.approx(0.2) and out["baseline_std"] == 0 and out["met"] is True


def test_the_readme_table_is_generated_between_its_markers(tmp_path):
    res = tmp_path / "res"
    res.mkdir()
    claims = [R.evaluate_claim(c, {0: {"main": {"test_acc": 0.99, "svm_test_acc": 0.98}}}) for c in SPECS["vit"].claims]
    (res / "vit.json").write_text(json.dumps({"model": "vit", "claims": claims}))
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{START}\nstale\n{END}\nafter\n")
    assert update_readme(readme, res)
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n") and text.endswith(f"{END}\nafter\n") and "stale" not in text
    table = text.split(START)[1].split(END)[0]
    assert "| 99.00% ± 0.00 (1 seed) vs 98.00% ± 0.00 | met |" in table
    # Every model has a row; the unmeasured ones say how to measure them.
    assert all(f"| {m} |" in table or f"[{m}]" in table for m in SPECS)
    assert "not measured yet: `attnkit reproduce --model bert`" in table
    assert update_readme(readme, res) and readme.read_text() == text  # idempotent
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert not update_readme(plain, res) and plain.read_text() == "no markers\n"
    assert zoo_table(res) in text


def test_the_repository_readme_holds_the_generated_table(monkeypatch):
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)  # as `attnkit reproduce` runs: its default --results-dir is relative, and so are the links
    text = (root / "README.md").read_text()
    assert text.split(START)[1].split(END)[0].strip() == zoo_table(Path("docs/results")).strip()


@pytest.mark.parametrize("argv, message", [
    (["reproduce"], "error: name the models to re-measure with --model NAME (repeatable), or pass --all"),
    (["reproduce", "--model", "nope"], "error: unknown model 'nope'; choose from"),
    (["reproduce", "--all", "--seeds", "0"], "error: --seeds must be at least 1, got 0"),
    (["reproduce", "--model", "vit", "--model", "gpt", "--flavor", "speedrun"], "error: model vit has no flavor 'speedrun'"),
    (["reproduce", "--model", "gpt", "--flavor", "speedrun"],
     "error: the nanogpt arm of gpt (nanoGPT's own train.py) runs flavor demo or debug, not 'speedrun'"),
])
def test_user_errors_are_one_line(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith(message) and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_an_every_seed_claim_fails_on_one_low_seed_whatever_the_mean():
    claim = Claim("lookup", "≥ 0.99 on every seed", "lookup:corr", target=0.99, every_seed=True)
    runs = {s: {"lookup": {"corr": c}} for s, c in enumerate((0.999, 0.999, 0.985))}
    out = R.evaluate_claim(claim, runs)
    assert out["mean"] > 0.99 and out["met"] is False
    runs[2]["lookup"]["corr"] = 0.991
    assert R.evaluate_claim(claim, runs)["met"] is True
    assert R.evaluate_claim(Claim("mean", "≥ 0.99", "lookup:corr", target=0.99), runs)["met"] is True


def test_a_failed_run_leaves_the_kept_runs_log_as_it_was(tmp_path, monkeypatch):
    rep = R.Reproduction(results_dir=tmp_path / "res", runs_dir=tmp_path / "runs", seeds=1, flavor="debug")
    job = rep.jobs("vit")[0]
    job.run_dir.parent.mkdir(parents=True)
    job.run_dir.with_suffix(".log").write_text("the kept run's log")

    def failing(cfg, console):
        console.print("step 1 failed")
        raise RuntimeError("boom")

    monkeypatch.setattr("attnkit.engine.trainer.run_training", failing)
    with pytest.raises(RuntimeError):
        rep.run(job)
    assert job.run_dir.with_suffix(".log").read_text() == "the kept run's log"
    assert "step 1 failed" in job.run_dir.with_suffix(".log.new").read_text()


def test_commit_is_dirty_for_code_not_for_the_results_reproduce_writes(tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)
    (tmp_path / "attnkit").mkdir()
    (tmp_path / "docs" / "results").mkdir(parents=True)
    for f in ("attnkit/code.py", "docs/results/asr.md", "README.md"):
        (tmp_path / f).write_text("0\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "x")
    monkeypatch.setattr(R, "PACKAGE", tmp_path / "attnkit")
    head = R.git_commit()
    assert len(head) == 12 and "+" not in head
    (tmp_path / "docs/results/asr.md").write_text("1\n")
    (tmp_path / "README.md").write_text("1\n")
    assert R.git_commit() == head                      # reproduce's own outputs
    (tmp_path / "attnkit/code.py").write_text("1\n")
    assert R.git_commit() == head + "+dirty"           # the measured code


def test_each_seed_table_shows_an_arm_against_arm_baseline_in_its_arms_row():
    from attnkit.results.report import model_markdown

    claim = dict(text="local beats full", goal="lower", metric="main:test_bpd", baseline="full:test_bpd",
                 unit="bits/dim", per_seed=[1.49, 1.47], baseline_per_seed=[1.52, 1.57], mean=1.48, std=0.01,
                 baseline_mean=1.545, baseline_std=0.03, measured_seeds=2, met=True, target=None, margin=0,
                 better="lower", every_seed=False)
    rows = [dict(seed=s, arm=a, wall_s=1.0, date="d", commit="c", command="cmd", machine="m")
            for s in (0, 1) for a in ("main", "full")]
    text = model_markdown(dict(model="image", rows=rows, claims=[claim], seeds=[0, 1], wall_s=4.0, command="x"), [])
    assert "| seed | arm | main:test_bpd / full:test_bpd |" in text
    assert "| 1 | full | 1.57 bits/dim |" in text and "| 1 | main | 1.47 bits/dim |" in text


def test_claim_rows_give_the_models_training_time_once():
    from attnkit.results.report import claim_rows

    claim = dict(text="t", goal="g", unit="", mean=1.0, std=0.0, measured_seeds=3, baseline=None, met=True)
    rows = claim_rows(dict(model="vit", wall_s=270.0, claims=[claim, claim]))
    assert [r[-1] for r in rows] == ["4.5 min", ""]
