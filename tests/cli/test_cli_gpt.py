"""The GPT slice through the real entry point (`attnkit.cli.main.main`): tokenize, train, sample,
average; user errors are one line on stderr with exit code 1 and no traceback; kill -9 then --resume."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from attnkit.cli.main import main

from cli_invoke import run  # tests/cli is on sys.path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "gpt"
    main(["train", "--flavor", "debug", "--max-steps", "12", "--eval-interval", "4", "--keep-last", "3",
          "--out", str(run_dir)])  # returns normally on success
    return run_dir


def test_train_writes_the_run(trained):
    metrics = [json.loads(s) for s in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 4, 8, 12]
    assert json.loads((trained / "summary.json").read_text())["steps"] == 12


def test_sample_streams_the_prompt_and_is_seeded(trained, capsys):
    args = ["sample", "--run", trained, "--prompt", "Lady Susan", "--max-new-tokens", "40"]
    code, out1, _ = run(args + ["--seed", "1"], capsys)
    assert code == 0 and out1.startswith("Lady Susan") and len(out1.rstrip("\n")) >= len("Lady Susan") + 40
    _, out2, _ = run(args + ["--seed", "1"], capsys)
    _, out3, _ = run(args + ["--seed", "2"], capsys)
    assert out1 == out2 and out1 != out3
    _, quiet, _ = run(args + ["--seed", "1", "--no-stream"], capsys)
    assert quiet.strip() == out1.strip()



def test_sample_opt_is_the_flag_of_that_name(trained, capsys):
    args = ["sample", "--run", trained, "--max-new-tokens", "20", "--seed", "3"]
    _, by_flag, _ = run(args + ["--prompt", "Lady Susan", "--top-p", "0.9"], capsys)
    code, by_opt, _ = run(args + ["--opt", "prompt=Lady Susan", "--opt", "top_p=0.9"], capsys)
    assert code == 0 and by_opt == by_flag and by_opt.startswith("Lady Susan")
    code, _, err = run(args + ["--opt", "beam=2"], capsys)
    assert code == 1 and err == "error: --beam does not apply to a gpt run; its model-specific sample settings: " \
                                "--prompt, --top-p, --opt compile=VALUE\n"
    code, _, err = run(args + ["--opt", "top_p=most"], capsys)
    assert code == 1 and err == ("error: --opt top_p must be a number, got 'most' (valid sample options: prompt, "
                                 "top_p, compile)\n")


@pytest.mark.slow
def test_sample_with_a_compiled_decode_step_gives_the_same_text(trained, capsys):
    args = ["sample", "--run", trained, "--max-new-tokens", "12", "--temperature", "0", "--prompt", "Lady"]
    _, eager, _ = run(args, capsys)
    code, compiled, err = run(args + ["--opt", "compile=true"], capsys)
    assert code == 0 and compiled == eager, err


def test_sample_list_options_lists_the_runs_model(trained, capsys):
    code, out, _ = run(["sample", "--run", trained, "--list-options"], capsys)
    assert code == 0 and "gpt sample options: --opt NAME=VALUE" in out
    rows = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert [r for r in rows if r] == ["prompt", "top_p", "compile"]


def test_average_command(trained, tmp_path, capsys):
    code, out, err = run(["average", "--run", trained, "--last", "3", "--out", tmp_path / "avg.safetensors"], capsys)
    assert code == 0, err
    steps = [load_file(str(trained / "checkpoints" / f"step_{s:07d}.safetensors")) for s in (4, 8, 12)]
    avg = load_file(str(tmp_path / "avg.safetensors"))
    for k in avg:
        torch.testing.assert_close(avg[k], sum(sd[k] for sd in steps) / 3)
    code, _, err = run(["average", "--run", trained, "--last", "9"], capsys)
    assert code == 1 and "fewer than --last 9" in err


def test_tokenize_prints_a_table(tmp_path, capsys):
    data = tmp_path / "data.txt"
    data.write_text("the quick brown fox jumps over the lazy dog. " * 200 + "\nünïcödé\n")
    code, out, err = run(["tokenize", "--input", data, "--vocab-size", "300", "--model-type", "bpe",
                          "--out", tmp_path / "tok.model"], capsys)
    assert code == 0, err
    assert "chars / token" in out and "coverage" in out and "yes" in out
    assert (tmp_path / "tok.model").is_file()


def test_train_with_sentencepiece_and_toml_config(tmp_path, capsys):
    run(["tokenize", "--vocab-size", "400", "--out", tmp_path / "sp.model"], capsys)
    (tmp_path / "cfg.toml").write_text('[train]\nflavor = "debug"\nmax_steps = 50\n[options]\nposition = "rotary"\n')
    code, _, err = run(["train", "--config", tmp_path / "cfg.toml", "--max-steps", "3", "--eval-interval", "3",
                        "--tokenizer", tmp_path / "sp.model", "--out", tmp_path / "run"], capsys)
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["max_steps"] == 3  # the flag wins over the file
    assert saved["model"]["position"] == "rotary" and saved["model"]["vocab_size"] == 400
    code, out, _ = run(["sample", "--run", tmp_path / "run", "--prompt", "My dear ünï", "--max-new-tokens", "5"],
                       capsys)
    assert code == 0 and out.startswith("My dear ünï")


def test_packed_training_on_python_functions(tmp_path, capsys):
    code, _, err = run(["train", "--flavor", "debug", "--opt", "pack=true", "--max-steps", "2", "--eval-interval", "2",
                        "--block-size", "64", "--out", tmp_path / "run"], capsys)
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["options"]["pack"] is True
    code, out, _ = run(["train", "--model", "gpt", "--list-options"], capsys)
    assert code == 0 and "pack" in out


@pytest.mark.parametrize("argv,message", [
    (["train", "--data", "{tmp}/missing.txt"], "data not found"),
    (["train", "--data", "{tmp}/empty.txt"], "data is empty"),
    (["train", "--max-steps", "-5"], "--max-steps must be positive"),
    (["train", "--flavor", "debug", "--block-size", "200000"], "block size 200000 is larger than the data"),
    (["train", "--model", "nope"], "unknown model 'nope'"),
    (["train", "--flavor", "debug", "--opt", "pack=maybe"], "pack"),
    (["train", "--flavor", "debug", "--opt", "pack=true", "--data", "austen"], "pack=true packs documents"),
    (["train", "--flavor", "huge"], "unknown flavor 'huge'"),
    (["train", "--flavor", "debug", "--resume"], "nothing to resume"),
    (["sample", "--run", "{tmp}/no-such-run"], "run directory not found"),
    (["tokenize", "--vocab-size", "10", "--out", "{tmp}/t.model"], "vocab size 10 is too small"),
])
def test_user_errors_are_one_line(argv, message, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    argv = [a.format(tmp=tmp_path) for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path / "run")]
    code, _, err = run(argv, capsys)
    assert code == 1
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow
def test_kill_9_mid_run_then_resume(tmp_path, capsys):
    """A SIGKILL loses at most the steps since the last checkpoint; --resume finishes the run."""
    run_dir = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "attnkit.cli", "train", "--flavor", "debug", "--max-steps",
                             "100000", "--eval-interval", "5", "--eval-batches", "1", "--out", str(run_dir)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = run_dir / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (latest.is_file() and json.loads(latest.read_text())["step"] >= 10):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = json.loads(latest.read_text())["step"]
    assert step >= 10 and step % 5 == 0
    code, _, err = run(["train", "--out", run_dir, "--resume", "--max-steps", step + 5], capsys)
    assert code == 0, err
    metrics = [json.loads(s) for s in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(0, step + 6, 5))
