"""The one renderer: a task's Report becomes text lines, Rich tables and file lines; progress becomes bars."""
import io

from rich.console import Console

from attnkit.engine.render import ProgressBars, format_cell, render
from attnkit.zoo.report import Report


def _console():
    return Console(file=io.StringIO(), width=100, color_system=None)


def test_numbers_are_formatted_one_way():
    assert [format_cell(v) for v in (0.123456, 1234.5, 12345, True, None, "42.0%")] == \
        ["0.1235", "1,234", "12,345", "yes", "–", "42.0%"]


def test_a_report_renders_lines_then_tables_then_files(tmp_path):
    rep = Report(metrics={"accuracy": 0.5})
    rep.table("scores", ["model", "accuracy"], [["vit", 0.91], ["svm", 0.875]], note="n = 360")
    rep.line("[red]not markup[/red]")
    rep.file("confusion matrix", tmp_path / "c.png")
    console = _console()
    render(rep, console)
    out = console.file.getvalue()
    assert out.index("[red]not markup[/red]") < out.index("scores") < out.index("confusion matrix")
    assert "0.9100" in out and "0.8750" in out and "n = 360" in out and f"→ {tmp_path / 'c.png'}" in out
    assert rep.tables[0].column("accuracy") == [0.91, 0.875]


def test_progress_draws_only_what_is_reported():
    console = _console()
    with ProgressBars(console):
        pass
    assert console.file.getvalue() == ""
    with ProgressBars(console) as progress:
        for i in range(3):
            progress("synthesising", i + 1, 3)
    assert "synthesising" in console.file.getvalue() and "3/3" in console.file.getvalue()
    quiet = _console()
    with ProgressBars(quiet, enabled=False) as progress:
        progress("synthesising", 1, 3)
    assert quiet.file.getvalue() == ""
