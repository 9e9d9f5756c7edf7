"""`attnkit` entry point: registers the commands and turns user errors into one line on stderr.

An error prints `error: <message>` on stderr and exits 1; `--debug` (before the command) shows the traceback.
"""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

import attnkit
from attnkit.cli import average, bench, reproduce, sample, tokenize, train
from attnkit.errors import Interrupted, UserError
from attnkit.extras import missing_extra_message

app = typer.Typer(
    name="attnkit",
    help="Fused Triton attention and a transformer model zoo: tokenize, train, sample, average, bench-kernels, reproduce.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("tokenize")(tokenize.tokenize)
app.command("train")(train.train)
app.command("sample")(sample.sample)
app.command("bench-kernels")(bench.bench_kernels)
app.command("average")(average.average)
app.command("reproduce")(reproduce.reproduce)

def _version(value: bool) -> None:
    if value:
        typer.echo(f"attnkit {attnkit.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    # --debug is read by `main` from argv itself, since errors are caught outside the Typer app.
    return None


# Errors a user can act on: printed as one line. Anything else is a bug and keeps its traceback.
USER_ERRORS = (UserError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError)


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Interrupted as e:  # the checkpoint is written; the message says how to go on
        if debug:
            raise
        typer.echo(str(e), err=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the one place that decides how errors look
        try:
            from click import ClickException
        except ImportError:  # typer >= 0.2x vendors click as typer._click
            from typer._click.exceptions import ClickException
        if isinstance(e, ClickException):
            e.show()
            sys.exit(e.exit_code)
        hint = missing_extra_message(e) if isinstance(e, ModuleNotFoundError) else None
        if debug or not (hint or isinstance(e, USER_ERRORS)):
            raise
        msg = hint or (str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        typer.echo(f"error: {msg}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
