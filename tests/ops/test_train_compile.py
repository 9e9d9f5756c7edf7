"""`attnkit train --compile` end to end on CPU: the compiled GPT trains with no graph break and logs the same
losses as the eager run with the same seed."""
import json

import torch
from typer.testing import CliRunner

from attnkit.cli.main import app


def _train(out, *flags):
    result = CliRunner().invoke(app, ["train", "--model", "gpt", "--flavor", "debug", "--max-steps", "6",
                                      "--eval-interval", "3", "--out", str(out), *flags])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_compile_matches_eager_without_graph_breaks(tmp_path):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = _train(tmp_path / "compiled", "--compile")
    breaks = dict(torch._dynamo.utils.counters["graph_break"])
    assert breaks == {}, breaks
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it really went through dynamo
    assert (tmp_path / "compiled" / "model.safetensors").exists()
    eager = _train(tmp_path / "eager")
    assert [m["step"] for m in compiled] == [m["step"] for m in eager] == [3, 6]
    for c, e in zip(compiled, eager):
        assert abs(c["train_loss"] - e["train_loss"]) < 1e-4 and abs(c["val_loss"] - e["val_loss"]) < 1e-4
