"""The README's "Use attnkit inside your own model or inside transformers" examples run as written."""
import pathlib
import re

import pytest
import torch

SECTION = "## Use attnkit inside your own model or inside transformers"


def _examples():
    text = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_both_examples():
    blocks = _examples()
    assert len(blocks) == 2 and "attnkit.attention" in blocks[0] and "attnkit.integrations.hf" in blocks[1]


@pytest.mark.parametrize("index", [0, 1], ids=["own_model", "transformers"])
def test_readme_example_runs(index):
    code = _examples()[index]
    if "transformers" in code:
        pytest.importorskip("transformers")
    namespace = {}
    exec(compile(code, f"README.md example {index}", "exec"), namespace)
    if index == 0:  # the inductor-compiled layer: forward and backward equal the eager module's
        layer = namespace["layer"]
        assert layer.qkv.weight.grad is not None
        x, kpm = torch.randn(2, 16, 64), torch.ones(2, 16, dtype=torch.bool)
        kpm[1, :5] = False
        grads = []
        for module in (layer, layer._orig_mod):
            x_ = x.clone().requires_grad_()
            out = module(x_, kpm)
            grads.append((out, *torch.autograd.grad(out.square().sum(), (x_, layer.qkv.weight))))
        for got, want in zip(*grads):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    else:
        assert namespace["tokens"].shape == (2, 20)
