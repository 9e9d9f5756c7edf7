"""`attnkit reproduce`: re-measure the zoo's claims on N seeds; the work is `attnkit.results`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from attnkit.errors import UserError

Opt = typer.Option


def reproduce(
    model: Annotated[Optional[list[str]], Opt("--model", help="A model to re-measure (repeatable).")] = None,
    all_models: Annotated[bool, Opt("--all", help="Every model of the zoo.")] = False,
    seeds: Annotated[int, Opt(help="Seeds per model (0 .. N-1); each arm is trained once per seed.")] = 3,
    flavor: Annotated[Optional[str], Opt(help="One flavor for every arm (debug: seconds, for tests); default: "
                                               "each model's own.")] = None,
    results_dir: Annotated[Path, Opt(help="Where <model>.md, .json and pictures go.")] = Path("docs/results"),
    runs_dir: Annotated[Path, Opt(help="Where the run directories go.")] = Path("runs/reproduce"),
    readme: Annotated[Optional[Path], Opt(help="README whose zoo table (between its marker comments) is "
                                               "regenerated; default flavors only.")] = Path("README.md"),
) -> None:
    """Train each model's arms on N seeds (resumable), check each claim against its goal and write the results."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from attnkit.results.claims import SPECS
    from attnkit.results.report import claim_rows, update_readme, write_model_report
    from attnkit.results.reproduce import Reproduction

    if all_models == bool(model):
        raise UserError("name the models to re-measure with --model NAME (repeatable), or pass --all")
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    models = list(SPECS) if all_models else list(dict.fromkeys(model))
    rep = Reproduction(results_dir=results_dir, runs_dir=runs_dir, seeds=seeds, flavor=flavor)
    plans = {m: rep.jobs(m) for m in models}  # validates every name before anything trains
    console = Console()
    todo = sum(not j.kept for jobs in plans.values() for j in jobs)
    kept = sum(j.kept for jobs in plans.values() for j in jobs)
    console.print(f"{len(models)} model(s), {seeds} seed(s): {todo} run(s) to train, {kept} kept from earlier "
                  f"(same code and flavor)")
    table = Table(title=f"the zoo's claims, {seeds} seed(s)" + (f", flavor {flavor}" if flavor else ""))
    for col in ("model", "claim", "goal", "result", "met / not met", "time (all runs)"):
        table.add_column(col)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("runs", total=todo)
        for m, jobs in plans.items():
            for job in (j for j in jobs if not j.kept):
                progress.update(overall, description=f"{m} · {job.arm} · seed {job.seed} ({job.flavor})")
                row = rep.run(job)
                progress.console.print(f"{m} {job.arm} seed {job.seed}: {row['wall_s']:.0f} s  ({row['command']})")
                progress.advance(overall)
            data = rep.evaluate(m)
            write_model_report(results_dir, rep.stem(m), data, rep.copy_pictures(m))
            for r in claim_rows(data):
                table.add_row(*r)
    console.print(table)
    console.print(f"wrote {', '.join(str(results_dir / (rep.stem(m) + '.md')) for m in models)}")
    if readme is not None and flavor is None and readme.is_file():
        if update_readme(readme, results_dir):
            console.print(f"updated the zoo table in {readme}")
