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


# ---- the README and docs/ as documents: links that resolve, an architecture picture that matches the tree ----
ROOT = pathlib.Path(__file__).parents[2]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")  # [text](target) and ![alt](target), an optional "title"


def _prose(text: str) -> str:
    """Markdown without its code: fenced blocks (indented ones too) and inline code hold examples, not links."""
    text = re.sub(r"^[ \t]*```.*?^[ \t]*```[^\n]*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def relative_links(text: str) -> list[str]:
    """The file part of every relative link (no scheme, no bare #anchor)."""
    targets = LINK.findall(_prose(text))
    return [t.split("#", 1)[0] for t in targets if not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|#", t)]


def test_relative_links_are_found_outside_code_only():
    text = ("See [ops](docs/ops.md#contract), ![a plot](../x.png \"title\") and [web](https://example.com), [top](#top).\n"
            "`[not](a-link.md)`\n```python\nx = y[i](z)\n```\n  ```\n  [indented](code.md)\n  ```\n")
    assert relative_links(text) == ["docs/ops.md", "../x.png"]


DOCUMENTS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_an_existing_file(path):
    missing = [t for t in relative_links(path.read_text()) if not (path.parent / t).exists()]
    assert not missing, f"{path.relative_to(ROOT)} links to files that do not exist: {missing}"


def _layout_sections() -> dict[str, str]:
    """The README's architecture picture, one text per directory entry ('kernels/', 'nn/', ...): its line and the
    description lines under it (indented deeper)."""
    section = (ROOT / "README.md").read_text().split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```\n(.*?)```", section, flags=re.S)[0]
    sections: dict[str, str] = {}
    parent, current = None, None
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        first = line.split()[0]
        if indent == 0:
            parent, current = first, first
            sections[current] = line
        elif indent == 2:
            current = f"{parent}{first}" if first.endswith("/") else parent
            sections[current] = sections.get(current, "") + "\n" + line
        else:
            sections[current] += "\n" + line
    return sections


def test_the_architecture_picture_matches_the_tree():
    sections = _layout_sections()
    for top in ("kernels/", "attnkit/", "cli/", "tests/", "benchmarks/", "docs/"):
        assert top in sections and (ROOT / top).is_dir(), top
    packages = {"kernels/": ROOT / "kernels", "attnkit/": ROOT / "attnkit"}
    packages |= {f"attnkit/{d.name}/": d for d in (ROOT / "attnkit").iterdir() if (d / "__init__.py").is_file()}
    for name, directory in packages.items():
        assert name in sections, f"the README's architecture picture has no entry for {name}"
        text = sections[name]
        modules = {f.name for f in directory.glob("*.py") if f.name != "__init__.py"}
        subpackages = {f"{d.name}/" for d in directory.iterdir() if (d / "__init__.py").is_file()}
        if name == "attnkit/":  # its subpackages have entries of their own, checked above
            subpackages = set()
        unlisted = {m for m in modules | subpackages if not re.search(rf"(?<![\w/]){re.escape(m)}", text)}
        assert not unlisted, f"{name} in the README's architecture picture misses {sorted(unlisted)}"
        stale = set(re.findall(r"(?<![\w/])(\w+\.py)\b", text)) - modules
        assert not stale, f"{name} in the README's architecture picture names files that do not exist: {sorted(stale)}"


def test_the_readme_is_one_screen_of_essentials():
    """Issue 23: at most 250 lines, and install, the main command and the op API within the first screen."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move write-ups to docs/"
    first_screen = "\n".join(lines[:50])
    missing = [s for s in ("make demo", "make test", "pip install attnkit", "attnkit.attention(") if s not in first_screen]
    assert not missing, f"not in the README's first 50 lines: {missing}"
