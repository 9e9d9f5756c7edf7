"""Turns a task's Report (attnkit.zoo.report) into terminal output: the one place results are printed."""
from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from attnkit.zoo.report import Report, Table


def format_cell(value: Any) -> str:
    """Numbers the way every table shows them: 4 significant decimals below 100, thousands separators above."""
    if isinstance(value, bool) or value is None:
        return "–" if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def rich_table(table: Table) -> RichTable:
    out = RichTable(title=table.title, caption=table.note or None)
    for i, name in enumerate(table.header):
        out.add_column(name, justify="left" if i == 0 else "right")
    for row in table.rows:
        out.add_row(*(format_cell(v) for v in row))
    return out


class ProgressBars:
    """A task's `progress(what, done, total)` as Rich bars, one per `what`, drawn while the with-block runs.

    The display starts at the first report, so work that reports nothing prints nothing.
    """

    def __init__(self, console: Console, enabled: bool = True):
        self.console, self.enabled, self.bars, self.display = console, enabled, {}, None

    def __call__(self, what: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.display is None:
            self.display = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), console=self.console)
            self.display.start()
        if what not in self.bars:
            self.bars[what] = self.display.add_task(what, total=total)
        self.display.update(self.bars[what], completed=done, total=total)

    def __enter__(self) -> "ProgressBars":
        return self

    def __exit__(self, *exc) -> None:
        if self.display is not None:
            self.display.stop()
            self.display, self.bars = None, {}


def render(report: Report, console: Console) -> None:
    for line in report.lines:
        console.print(line, markup=False, highlight=False)
    for table in report.tables:
        console.print(rich_table(table))
    for what, path in report.files.items():
        console.print(f"{what} → {path}", markup=False, highlight=False)
