"""Mistyped commands through the installed `attnkit` entry point (a subprocess, as a user runs it): a usage
error prints Typer's usage line and one error line and exits 2; a user error prints one line and exits 1;
neither prints a traceback. Bugs keep theirs; --debug shows every one."""
import subprocess
import sys
from pathlib import Path

import pytest

from attnkit.cli.main import main
from attnkit.errors import UserError

ATTNKIT = str(Path(sys.executable).parent / "attnkit")  # the console script pip installed
TRAIN = "Usage: attnkit train [OPTIONS]"
SAMPLE = "Usage: attnkit sample [OPTIONS]"
ROOT = "Usage: attnkit [OPTIONS] COMMAND [ARGS]..."
INT = "Input should be a valid integer, unable to parse string as an integer"
NUMBER = "Input should be a valid number, unable to parse string as a number"

# (argv, usage line, error line): the 20 mistakes a new user makes first.
USAGE_ERRORS = [
    ("", ROOT, "error: missing command; choose from tokenize, train, sample, average, bench-kernels, reproduce "
               "(see attnkit --help)"),
    ("trian", ROOT, "error: No such command 'trian'. Did you mean 'train'? (see attnkit --help)"),
    ("sampel", ROOT, "error: No such command 'sampel'. Did you mean 'sample'? (see attnkit --help)"),
    ("--verbose", ROOT, "error: No such option: --verbose (Possible options: --version) (see attnkit --help)"),
    ("train --max_steps 20", TRAIN,
     "error: No such option: --max_steps; flags are spelled with dashes: --max-steps (see attnkit train --help)"),
    ("train --batch_size 8", TRAIN,
     "error: No such option: --batch_size; flags are spelled with dashes: --batch-size (see attnkit train --help)"),
    ("train --modle gpt", TRAIN,
     "error: No such option: --modle (Possible options: --compile, --model) (see attnkit train --help)"),
    ("train -m gpt", TRAIN, "error: No such option: -m (see attnkit train --help)"),
    ("train --max-steps abc", TRAIN, f"error: Invalid value for '--max-steps': {INT} (see attnkit train --help)"),
    ("train --lr fast", TRAIN, f"error: Invalid value for '--lr': {NUMBER} (see attnkit train --help)"),
    ("train --max-steps", TRAIN, "error: Option '--max-steps' requires an argument. (see attnkit train --help)"),
    ("train --compile=3", TRAIN, "error: Option '--compile' does not take a value. (see attnkit train --help)"),
    ("train --resume=yes", TRAIN, "error: Option '--resume' does not take a value. (see attnkit train --help)"),
    ("train gpt", TRAIN, "error: Got unexpected extra argument(s) (gpt) (see attnkit train --help)"),
    ("sample --top-k x", SAMPLE, f"error: Invalid value for '--top-k': {INT} (see attnkit sample --help)"),
    ("sample --temperature hot", SAMPLE,
     f"error: Invalid value for '--temperature': {NUMBER} (see attnkit sample --help)"),
    ("sample --num-samples 1.5", SAMPLE,
     f"error: Invalid value for '--num-samples': {INT} (see attnkit sample --help)"),
    ("average --last two", "Usage: attnkit average [OPTIONS]",
     f"error: Invalid value for '--last': {INT} (see attnkit average --help)"),
    ("tokenize --vocab-size big", "Usage: attnkit tokenize [OPTIONS]",
     f"error: Invalid value for '--vocab-size': {INT} (see attnkit tokenize --help)"),
    ("bench-kernels --bogus", "Usage: attnkit bench-kernels [OPTIONS]",
     "error: No such option: --bogus (see attnkit bench-kernels --help)"),
]


def attnkit(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([ATTNKIT, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("argv, usage, error", USAGE_ERRORS, ids=[a or "bare" for a, _, _ in USAGE_ERRORS])
def test_usage_error_is_the_usage_line_and_one_error_line(argv, usage, error):
    result = attnkit(*argv.split())
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [usage, error]
    assert result.stdout == ""


@pytest.mark.parametrize("argv, error", [
    ("train --model gtp", "error: unknown model 'gtp'; choose from gpt, bert, encdec, music, vit, image, npt, dt, "
                          "asr, icl"),
    ("train --max-steps 0", "error: --max-steps must be positive, got 0"),
    ("train --ema-decay 1.5", "error: --ema-decay must be in [0, 1) (0: off), got 1.5"),
    ("train --model gpt --flavor huge", "error: unknown flavor 'huge' for model 'gpt'; choose from "),
    ("sample --run no/such/run", "error: run directory not found: no/such/run (train one with "
                                 "`attnkit train --out no/such/run`)"),
    ("sample --run no/such/run --opt beam", "error: --opt takes name=value, got 'beam' (see --list-options)"),
    ("train --model npt --flavor lookup --data iris", "error: flavor 'lookup' is the semi-synthetic lookup "
     "experiment and takes no --data; for a table of your own choose a flavor from debug, small, paper "
     "(with --opt probe=lookup to duplicate its rows)"),
])
def test_user_error_is_one_line_exit_1(argv, error, tmp_path):
    result = attnkit(*argv.split(), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(error), result.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_os_error_is_one_line_naming_the_file(tmp_path):
    """A run directory that cannot be made (here: a file stands where its folder must go)."""
    (tmp_path / "afile").write_text("")
    result = attnkit("train", "--model", "gpt", "--flavor", "debug", "--max-steps", "1",
                     "--out", str(tmp_path / "afile" / "run"))
    assert result.returncode == 1
    run = tmp_path / "afile" / "run"  # the run's lock file, beside the run, is the first thing written
    assert result.stderr.splitlines() == [f"error: cannot lock {run}: cannot create {run.parent / '.run.lock'}: "
                                          "File exists (EEXIST)"]


def test_debug_shows_the_traceback_of_a_usage_error():
    result = attnkit("--debug", "trian")
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert result.stderr.strip().endswith("UsageError: No such command 'trian'. Did you mean 'train'?")


def test_a_bug_keeps_its_traceback(monkeypatch):
    """A ValueError deep in the library is a bug, not a user error: main lets it through."""
    import attnkit.engine.sample as sample

    def shape_bug(cfg):
        raise ValueError("shape mismatch (2, 3) vs (3, 2)")

    monkeypatch.setattr(sample, "run_sampling", shape_bug)
    with pytest.raises(ValueError, match="shape mismatch"):
        main(["sample"])


def test_debug_raises_a_user_error(monkeypatch):
    import attnkit.engine.sample as sample

    def user_error(cfg):
        raise UserError("no such run")

    monkeypatch.setattr(sample, "run_sampling", user_error)
    with pytest.raises(UserError, match="no such run"):
        main(["--debug", "sample"])
