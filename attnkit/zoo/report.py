"""What a task returns instead of printing: metrics, tables, text lines and files, as plain data.

`Task.report` (after training) and `Task.sample` return a Report; the engine renders it
(`attnkit.engine.render`: Rich tables on the terminal, metrics into summary.json) and owns eval/train mode,
no_grad and timing. Tasks never print, so the same results serve the CLI, `attnkit reproduce` and tests.

    rep = Report(metrics={"accuracy": 0.91})
    rep.table("accuracy beside baselines", ["model", "accuracy"], [["vit", 0.91], ["svm", 0.87]])
    rep.line("the transformer beats the SVM by 4 points")
    rep.file("confusion matrix", run_dir / "confusion.png")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

# Streamed text (GPT's tokens as they are generated): a task writes pieces through an Echo the engine gives it.
Echo = Callable[[str], None]
# Long work inside a task (speech synthesis, rollouts): progress(what, done, total); the engine draws the bars.
Progress = Callable[[str, int, int], None]


def no_echo(text: str) -> None:
    """An Echo that drops the text (tests, `attnkit.load_run(...).generate`)."""


@dataclass
class Table:
    """Rows under a header; cells are str, int or float (the renderer formats numbers). `note` goes under it."""
    title: str
    header: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    note: str = ""

    def column(self, name: str) -> list[Any]:
        i = self.header.index(name)
        return [row[i] for row in self.rows]


@dataclass
class Report:
    metrics: dict[str, Any] = field(default_factory=dict)  # JSON-able; report(): merged into summary.json
    tables: list[Table] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # plain text, shown as is (no markup)
    files: dict[str, Path] = field(default_factory=dict)  # what → where it was written

    def table(self, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]] = (), note: str = "") -> Table:
        t = Table(title, list(header), [list(r) for r in rows], note)
        self.tables.append(t)
        return t

    def line(self, text: str) -> None:
        self.lines.append(text)

    def file(self, what: str, path: str | Path) -> None:
        self.files[what] = Path(path)

    def extend(self, other: "Report") -> "Report":
        """Append other's tables, lines and files and merge its metrics (other's win); returns self."""
        self.metrics.update(other.metrics)
        self.tables += other.tables
        self.lines += other.lines
        self.files.update(other.files)
        return self
