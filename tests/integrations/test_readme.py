"""The README's "Use attnkit inside your own model or inside transformers" examples run as written."""
import pathlib
import re

import pytest

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
    if index == 0:
        assert namespace["layer"].qkv.weight.grad is not None  # the compiled backward ran
    else:
        assert namespace["tokens"].shape == (2, 20)
