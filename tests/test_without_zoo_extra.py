"""`pip install attnkit` without the zoo extra still trains and samples GPT on the embedded text."""
import subprocess
import sys

# Runs attnkit's CLI with the zoo extra's packages hidden: imports fail and find_spec says "not installed".
HIDE_ZOO = """
import sys
from importlib.machinery import PathFinder
ZOO = {"music21", "matplotlib", "sklearn", "scipy", "sacrebleu", "gymnasium", "jiwer", "espeakng_loader",
       "pocketsphinx"}
_find = PathFinder.find_spec.__func__
PathFinder.find_spec = classmethod(
    lambda cls, name, path=None, target=None: None if name.split(".")[0] in ZOO else _find(cls, name, path, target))
from attnkit.cli.main import main
main(sys.argv[1:])
"""


def attnkit_without_zoo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE_ZOO, *args], capture_output=True, text=True, timeout=300)


def test_gpt_trains_and_samples_without_the_zoo_extra(tmp_path):
    run = tmp_path / "gpt"
    train = attnkit_without_zoo("train", "--model", "gpt", "--flavor", "debug", "--max-steps", "2",
                                "--out", str(run), "--device", "cpu")
    assert train.returncode == 0, train.stderr
    assert (run / "model.safetensors").is_file() and (run / "summary.json").is_file()
    assert not (run / "loss.png").exists()  # the one thing that needs matplotlib
    sample = attnkit_without_zoo("sample", "--run", str(run), "--prompt", "The ", "--max-new-tokens", "10",
                                 "--no-stream", "--device", "cpu")
    assert sample.returncode == 0, sample.stderr
    assert "The " in sample.stdout


def test_a_zoo_model_without_the_extra_names_the_extra(tmp_path):
    vit = attnkit_without_zoo("train", "--model", "vit", "--flavor", "debug", "--out", str(tmp_path / "v"))
    assert vit.returncode == 1
    assert vit.stderr.strip() == ("error: this command needs sklearn, part of the 'zoo' extra: "
                                    "pip install 'attnkit[zoo]'")
    assert not (tmp_path / "v").exists()
