"""`attnkit train --model M --list-options` lists the model's options and its flavors: what each sets (model,
training, options) and what it fixes (`Flavor.fixed`, settings no flag or option changes)."""
import pytest

from attnkit.cli.main import main
from attnkit.zoo.tasks import TASKS, get_task


def flavor_table(out: str) -> dict[str, dict[str, str]]:
    """The printed flavors table as {flavor: {part: settings}}; a cell wrapped over lines is joined again
    (Rich wraps between words)."""
    table: dict[str, dict[str, str]] = {}
    flavor = part = None
    for line in out.split("flavors:", 1)[1].splitlines():
        if not line.startswith("│"):
            continue
        name, what, text = (cell.strip() for cell in line.split("│")[1:4])
        flavor, part = name or flavor, what or part
        cell = table.setdefault(flavor, {})
        cell[part] = f"{cell[part]} {text}" if part in cell else text
    return table


@pytest.mark.parametrize("model", list(TASKS))
def test_list_options_shows_every_flavor(model, capsys):
    main(["train", "--model", model, "--list-options"])  # returns: exit 0
    out = capsys.readouterr().out
    task_cls = get_task(model)
    assert f"{model} flavors: --flavor NAME (default {task_cls.default_flavor})" in out
    table = flavor_table(out)
    assert list(table) == list(task_cls.flavors)
    for name, preset in task_cls.flavors.items():  # a part is listed exactly when the flavor sets something
        assert [p for p, v in zip(("model", "training", "options", "fixed"),
                                  (preset.model, preset.train, preset.options, preset.fixed)) if v] == list(table[name])
    assert "…" not in out.split("flavors:", 1)[1]  # nothing cut off on an 80-column terminal


def test_a_flavors_options_are_listed(capsys):
    main(["train", "--model", "npt", "--list-options"])
    lookup = flavor_table(capsys.readouterr().out)["lookup"]
    assert lookup["options"] == "probe=lookup noise=6.0"
    assert "max_steps=5000" in lookup["training"].split() and "embed_dim=16" in lookup["model"].split()


def test_a_flavors_fixed_settings_are_listed(capsys):
    """NPT's masking objective and ICL's curriculum (nested: dotted names) are shown; GPT fixes nothing."""
    main(["train", "--model", "npt", "--list-options"])
    npt = flavor_table(capsys.readouterr().out)
    assert npt["debug"]["fixed"] == "feature_mask=0.15 target_mask=0.3 target_weight=0.5"
    assert npt["paper"]["fixed"] == "feature_mask=0.15 target_mask=0.1 target_weight=0.5"
    assert "fixed" not in npt["lookup"]  # the semi-synthetic experiment has no masking objective
    main(["train", "--model", "icl", "--list-options"])
    icl = flavor_table(capsys.readouterr().out)
    assert icl["debug"]["fixed"] == ("curriculum.d_start=2 curriculum.n_start=5 curriculum.interval=5 "
                                     "curriculum.points_step=2 test_prompts=64")
    main(["train", "--model", "gpt", "--list-options"])
    assert all("fixed" not in parts for parts in flavor_table(capsys.readouterr().out).values())
