"""`attnkit train --model M --list-options` lists the model's options and its flavors with what each sets."""
import pytest

from attnkit.cli.main import main
from attnkit.zoo.tasks import TASKS, get_task


@pytest.mark.parametrize("model", list(TASKS))
def test_list_options_shows_every_flavor(model, capsys):
    main(["train", "--model", model, "--list-options"])  # returns: exit 0
    out = capsys.readouterr().out
    task_cls = get_task(model)
    assert f"{model} flavors: --flavor NAME (default {task_cls.default_flavor})" in out
    rows = [line.split("│")[1].strip() for line in out.split("flavors:", 1)[1].splitlines() if line.startswith("│")]
    assert [r for r in rows if r] == list(task_cls.flavors)


def test_a_flavors_options_are_listed(capsys):
    main(["train", "--model", "npt", "--list-options"])
    lookup = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("│ lookup"))
    assert "probe=lookup" in lookup and "max_steps=5000" in lookup
