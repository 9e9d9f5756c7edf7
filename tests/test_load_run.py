"""The zoo from Python: `attnkit.load_run(dir)` gives the run's model and tokenizer; `generate` prints what
`attnkit sample` prints for the same seed, and a classifier's `predict` gives the probabilities its task uses.
The README's "The zoo from Python" example runs as written."""
import io
import pathlib
import re

import pytest
import torch
from rich.console import Console

import attnkit
from attnkit.config import SampleConfig
from attnkit.engine.sample import run_sampling
from attnkit.errors import UserError
from attnkit.engine.trainer import run_training
from attnkit.config import TrainConfig

QUIET = Console(file=io.StringIO())


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "gpt"
    run_training(TrainConfig(model="gpt", flavor="debug", max_steps=3, device="cpu", out=str(out)), console=QUIET)
    return out


def test_generate_is_what_sample_prints(gpt_run):
    run = attnkit.load_run(gpt_run)
    assert not run.model.training and run.config.model == "gpt" and run.tokenizer is not None
    for seed, prompt in ((1337, "The "), (7, "My dear")):
        text = run.generate(prompt, max_new_tokens=30, seed=seed)
        printed = run_sampling(SampleConfig(run=str(gpt_run), options={"prompt": prompt}, max_new_tokens=30,
                                            seed=seed, stream=False), QUIET)["samples"]
        assert text == printed[0] and text.startswith(prompt)
        assert len(run.tokenizer.encode(text)) == len(run.tokenizer.encode(prompt)) + 30
    assert run.generate("The ", max_new_tokens=30, seed=1) != run.generate("The ", max_new_tokens=30, seed=2)


def test_a_language_model_does_not_predict_classes(gpt_run):
    with pytest.raises(UserError, match="the gpt model does not classify"):
        attnkit.load_run(gpt_run).predict(torch.zeros(1, 8, 8))


def test_predict_gives_the_vit_tasks_probabilities(tmp_path):
    from attnkit.zoo.tasks.vit import TTA_SHIFTS, predict

    run_training(TrainConfig(model="vit", flavor="debug", max_steps=2, device="cpu", out=str(tmp_path)),
                 console=QUIET)
    run = attnkit.load_run(tmp_path)
    images, labels = run.task.test
    probs = run.predict(images[:32])
    assert probs.shape == (32, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(32))
    # The run's own recipe: test-time augmentation is on by default, so five views a digit.
    torch.testing.assert_close(probs, predict(run.model, images[:32], run.device, shifts=TTA_SHIFTS))
    assert not torch.allclose(probs, predict(run.model, images[:32], run.device))
    with pytest.raises(UserError, match="a vit run does not continue text"):
        run.generate("The ")


def test_readme_example_runs(gpt_run, monkeypatch):
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("## The zoo from Python", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    namespace = {}
    exec(compile(code.replace('"runs/demo"', repr(str(gpt_run))), "README.md", "exec"), namespace)
    want = run_sampling(SampleConfig(run=str(gpt_run), options={"prompt": "My dear Alicia"}, max_new_tokens=50,
                                     stream=False),
                        QUIET)["samples"][0]
    assert namespace["text"] == want


def test_sample_reads_the_run_config_once(gpt_run, monkeypatch):
    """`attnkit sample` checks its options against the run's model and loads the run from one read of
    config.json (it used to read it twice)."""
    reads = []
    read_text = pathlib.Path.read_text

    def counting(path, *args, **kwargs):
        if path.name == "config.json":
            reads.append(path)
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", counting)
    run_sampling(SampleConfig(run=str(gpt_run), max_new_tokens=5, stream=False), QUIET)
    assert reads == [gpt_run / "config.json"]
