"""Run directories never lose data: each failure mode leaves RUN byte-identical, prints one line, exits 1;
Ctrl-C checkpoints and exits 130, and --resume then reproduces the uninterrupted run exactly."""
import json
import os
import shutil
import signal
import sys

import pytest
import torch
from safetensors.torch import load_file

from attnkit.cli.main import main
from attnkit.zoo.tasks.gpt import GPTTask

from cli_invoke import run  # tests/cli is on sys.path

DEBUG = ["--flavor", "debug", "--max-steps", "4", "--eval-interval", "2", "--eval-batches", "1"]


def snapshot(root):
    """Every file's bytes and every link's target under root (what a failed command must not change)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = "-> " + os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    out[rel] = f.read()
    return out


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "gpt"
    main(["train", *DEBUG, "--out", str(run_dir)])
    return run_dir


@pytest.fixture
def copy(gpt_run, tmp_path):
    dst = tmp_path / "runs" / "gpt"
    shutil.copytree(gpt_run, dst, symlinks=True)
    return dst


def one_line(err):
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def fails_cleanly(argv, run_dir, capsys, code=1):
    existed, before = run_dir.parent.exists(), snapshot(run_dir.parent)
    got, _, err = run(argv, capsys)
    assert got == code, err
    assert snapshot(run_dir.parent) == before  # byte-identical, nothing added beside it either
    assert run_dir.parent.exists() == existed  # not even an empty parent directory
    return one_line(err)


def test_resume_with_another_model_is_refused(copy, capsys):
    err = fails_cleanly(["train", "--out", copy, "--resume", "--model", "bert"], copy, capsys)
    assert err == (f"error: {copy} holds a gpt run (flavor debug); --resume cannot change --model to bert "
                   f"(train a new run into another --out)")


def test_training_over_a_run_is_refused(copy, capsys):
    err = fails_cleanly(["train", "--model", "vit", "--flavor", "debug", "--out", copy], copy, capsys)
    assert err == f"error: {copy} already holds a gpt run; pass --resume to continue it or --overwrite to replace it"


def test_resume_that_would_build_another_model_is_refused(copy, capsys):
    err = fails_cleanly(["train", "--out", copy, "--resume", "--opt", "position=rotary"], copy, capsys)
    assert "build a different model (position 'learned' → 'rotary')" in err


def test_failed_overwrite_keeps_the_old_run(copy, capsys):
    err = fails_cleanly(["train", *DEBUG, "--out", copy, "--overwrite", "--block-size", "200000"], copy, capsys)
    assert "block size 200000 is larger than the data" in err


def test_overwrite_replaces_the_run(copy, capsys):
    code, _, err = run(["train", *DEBUG, "--max-steps", "2", "--out", copy, "--overwrite"], capsys)
    assert code == 0, err
    assert [json.loads(s)["step"] for s in (copy / "metrics.jsonl").read_text().splitlines()] == [0, 2]
    assert sorted(p.name for p in copy.parent.iterdir()) == ["gpt", "latest"]  # no staging left behind


@pytest.mark.parametrize("damage,argv,message", [
    ("truncate-weights", ["sample", "--run", "{run}"], "{run}/model.safetensors is corrupt or truncated"),
    ("truncate-step", ["train", "--out", "{run}", "--resume", "--max-steps", "6"],
     "{run}/checkpoints/step_0000004.safetensors is corrupt or truncated"),
    ("truncate-state", ["train", "--out", "{run}", "--resume", "--max-steps", "6"],
     "{run}/checkpoints/step_0000004.state.pt is corrupt or truncated"),
    ("config", ["sample", "--run", "{run}"], "{run}/config.json is corrupt (not JSON: Expecting value"),
    ("config", ["train", "--out", "{run}", "--resume"], "{run}/config.json is corrupt (not JSON: Expecting value"),
    ("config-field", ["sample", "--run", "{run}"], "{run}/config.json is corrupt: field 'model' is missing"),
    ("saved-type", ["train", "--out", "{run}", "--resume"],
     "{run}/config.json: train.max_steps must be an integer, got 'many'"),
    ("latest-and-step", ["train", "--out", "{run}", "--resume"],
     "{run}/checkpoints/latest.json is corrupt (not JSON"),
])
def test_damaged_files_are_named(copy, capsys, damage, argv, message):
    ckpt = copy / "checkpoints"
    if damage == "truncate-weights":
        (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes()[:1000])
    elif damage == "truncate-step":
        p = ckpt / "step_0000004.safetensors"
        p.write_bytes(p.read_bytes()[:-100])
    elif damage == "truncate-state":
        p = ckpt / "step_0000004.state.pt"
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    elif damage == "config":
        (copy / "config.json").write_text("")
    elif damage == "config-field":
        (copy / "config.json").write_text(json.dumps({"task": "gpt", "train": {}}))
    elif damage == "saved-type":
        saved = json.loads((copy / "config.json").read_text())
        saved["train"]["max_steps"] = "many"
        (copy / "config.json").write_text(json.dumps(saved))
    elif damage == "latest-and-step":
        (ckpt / "latest.json").write_text("{")
        (ckpt / "step_0000004.state.pt").write_bytes(b"")
    err = fails_cleanly([a.format(run=copy) for a in argv], copy, capsys)
    assert err.startswith("error: " + message.format(run=copy)), err
    if damage.startswith("truncate-s") or damage == "latest-and-step":  # no older checkpoint to fall back on
        assert err.endswith("and no older checkpoint is kept; start again with --overwrite"), err


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory):
    """A debug run keeping its last two step checkpoints (2 and 4)."""
    run_dir = tmp_path_factory.mktemp("kept") / "gpt"
    main(["train", *DEBUG, "--keep-last", "2", "--out", str(run_dir)])
    return run_dir


@pytest.mark.parametrize("damage", ["weights", "state", "latest"])
def test_resume_falls_back_to_the_newest_intact_checkpoint(kept_run, tmp_path, capsys, damage):
    run_dir = tmp_path / "gpt"
    shutil.copytree(kept_run, run_dir, symlinks=True)
    ckpt = run_dir / "checkpoints"
    if damage == "latest":  # latest.json unreadable: the newest step checkpoint on disk is intact
        (ckpt / "latest.json").write_text("{")
        resumed_from, broken = 4, ckpt / "latest.json"
    else:
        broken = ckpt / ("step_0000004.safetensors" if damage == "weights" else "step_0000004.state.pt")
        broken.write_bytes(broken.read_bytes()[:100])
        resumed_from = 2
    code, out, err = run(["train", "--out", run_dir, "--resume", "--max-steps", "6"], capsys)
    assert code == 0, err
    assert one_line(err).startswith(f"note: {broken} is corrupt")
    assert err.strip().endswith(f"resuming from step {resumed_from}, the newest intact checkpoint")
    assert f"steps {resumed_from}→6" in out
    assert json.loads((ckpt / "latest.json").read_text()) == {"step": 6}


def test_resume_refuses_when_no_checkpoint_is_intact(kept_run, tmp_path, capsys):
    run_dir = tmp_path / "gpt"
    shutil.copytree(kept_run, run_dir, symlinks=True)
    for step in (2, 4):
        p = run_dir / "checkpoints" / f"step_{step:07d}.state.pt"
        p.write_bytes(p.read_bytes()[:100])
    err = fails_cleanly(["train", "--out", run_dir, "--resume"], run_dir, capsys)
    assert err.startswith(f"error: {run_dir}/checkpoints/step_0000004.state.pt is corrupt or truncated")
    assert err.endswith("and no older intact checkpoint is kept; start again with --overwrite")


def test_a_run_killed_before_its_first_checkpoint_is_no_trap(gpt_run, copy, capsys):
    """What a kill before the first checkpoint leaves: config, metrics and plot, no weights."""
    shutil.rmtree(copy / "checkpoints")
    for name in ("model.safetensors", "summary.json"):
        (copy / name).unlink()
    err = fails_cleanly(["train", *DEBUG, "--out", copy], copy, capsys)
    assert err == (f"error: {copy} already holds a gpt run that stopped before its first checkpoint; pass "
                   f"--resume to start it again with its saved config or --overwrite to replace it")
    code, _, err = run(["train", "--out", copy, "--resume"], capsys)
    assert code == 0 and one_line(err) == (f"note: {copy} has no checkpoint yet (it stopped before its first): "
                                           f"starting it again from step 0 with its saved config")
    a, b = load_file(str(gpt_run / "model.safetensors")), load_file(str(copy / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same run as a fresh one


def test_resume_of_nothing_points_at_the_way_out(tmp_path, capsys):
    err = fails_cleanly(["train", "--out", tmp_path / "runs" / "none", "--resume"], tmp_path / "runs" / "none", capsys)
    assert err == (f"error: nothing to resume: {tmp_path / 'runs' / 'none'} does not exist; drop --resume to "
                   f"start a new run there")


def test_toml_value_of_the_wrong_type(tmp_path, capsys):
    (tmp_path / "c.toml").write_text("[train]\nmax_steps = 'many'\n")
    err = fails_cleanly(["train", "--config", tmp_path / "c.toml", "--out", tmp_path / "runs" / "x"],
                        tmp_path / "runs" / "x", capsys)
    assert err == f"error: {tmp_path / 'c.toml'}: max_steps must be an integer, got 'many'"


def interrupt_at(monkeypatch, train_call, sig=signal.SIGINT):
    """Deliver a real signal to this process during the train_call-th training batch."""
    calls = {"n": 0}
    real = GPTTask.get_batch

    def get_batch(self, split, batch_size, generator):
        if split == "train":
            calls["n"] += 1
            if calls["n"] == train_call:
                signal.raise_signal(sig)
        return real(self, split, batch_size, generator)

    monkeypatch.setattr(GPTTask, "get_batch", get_batch)


def test_ctrl_c_checkpoints_and_resume_is_exact(tmp_path, capsys, monkeypatch):
    argv = ["train", "--flavor", "debug", "--max-steps", "8", "--eval-interval", "4", "--eval-batches", "1",
            "--opt", "position=rotary", "--dropout", "0.1"]
    full, split = tmp_path / "runs" / "full", tmp_path / "runs" / "split"
    assert run(argv + ["--out", full], capsys)[0] == 0
    with monkeypatch.context() as m:
        interrupt_at(m, 6)  # during step 6, between the checkpoints at 4 and 8
        code, _, err = run(argv + ["--out", split], capsys)
    assert code == 130 and err == "interrupted at step 6; continue with --resume\n"
    assert json.loads((split / "checkpoints" / "latest.json").read_text()) == {"step": 6}
    assert os.readlink(tmp_path / "runs" / "latest") == "split"
    code, _, err = run(["train", "--out", split, "--resume"], capsys)
    assert code == 0, err
    a, b = load_file(str(full / "model.safetensors")), load_file(str(split / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)

    def strip(path):
        return [{k: v for k, v in json.loads(s).items() if k not in ("tokens_per_s", "wall_s")}
                for s in (path / "metrics.jsonl").read_text().splitlines()]

    assert strip(full) == strip(split)


def test_sigterm_checkpoints_too(tmp_path, capsys, monkeypatch):
    interrupt_at(monkeypatch, 3, signal.SIGTERM)
    code, _, err = run(["train", *DEBUG, "--out", tmp_path / "run"], capsys)
    assert code == 130 and err == "interrupted at step 3; continue with --resume\n"
    assert json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text()) == {"step": 3}
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after training


def test_latest_is_the_default_of_sample_and_average(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(["train", *DEBUG, "--keep-last", "2"], capsys)[0] == 0  # into runs/gpt
    assert os.readlink("runs/latest") == "gpt"
    code, out, err = run(["sample", "--prompt", "The", "--max-new-tokens", "5"], capsys)
    assert code == 0 and out.startswith("The"), err
    code, out, err = run(["sample", "--prompt", "The", "--target-return", "1,2"], capsys)  # another model's flag
    assert code == 1 and err == ("error: --target-return does not apply to a gpt run; its model-specific sample "
                                 "settings: --prompt, --top-p, --opt compile=VALUE\n")
    code, _, err = run(["average", "--last", "2", "--out", "avg.safetensors"], capsys)
    assert code == 0, err


def test_missing_extra_names_it(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")] or ["sklearn"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import sklearn...` now raises ModuleNotFoundError
    err = fails_cleanly(["train", "--model", "npt", "--flavor", "debug", "--out", tmp_path / "runs" / "npt"],
                        tmp_path / "runs" / "npt", capsys)
    assert err == "error: this command needs sklearn, part of the 'zoo' extra: pip install 'attnkit[zoo]'"


def test_list_options(capsys):
    code, out, _ = run(["train", "--model", "npt", "--list-options"], capsys)
    assert code == 0 and "folds" in out and "cross-validation splits" in out and "10" in out
    code, _, err = run(["train", "--model", "npt", "--opt", "fold=2"], capsys)
    assert code == 1 and one_line(err).endswith("valid options: target, folds, probe, target_shift, noise, column_types")
