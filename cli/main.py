"""`attnkit` entry point: registers the commands and turns user errors into one line on stderr.

Errors by kind:
    usage error (unknown flag or command, a value of the wrong type, no command): the usage line and one
        `error:` line on stderr, exit 2, no traceback;
    user error (attnkit.errors.UserError: bad file, bad option, missing extra) and OSError (full disk,
        read-only folder, permission): one `error:` line naming the thing to fix, exit 1;
    anything else is a bug and keeps its traceback. `--debug` (before the command) shows the traceback of every kind.
"""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

import attnkit
from attnkit.cli import average, bench, sample, tokenize, train
from attnkit.errors import Interrupted, UserError
from attnkit.extras import missing_extra_message

try:  # typer >= 0.20 raises its bundled click's exceptions, whether or not click itself is installed
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # older typer raises click's
    from click.exceptions import ClickException, UsageError

PROG = "attnkit"
COMMANDS = ("tokenize", "train", "sample", "average", "bench-kernels")

app = typer.Typer(
    name="attnkit",
    help="Fused Triton attention and a transformer model zoo: tokenize, train, sample, average, bench-kernels.",
    no_args_is_help=False,  # a bare `attnkit` is a usage error: the usage line and the commands, exit 2
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("tokenize")(tokenize.tokenize)
app.command("train")(train.train)
app.command("sample")(sample.sample)
app.command("bench-kernels")(bench.bench_kernels)
app.command("average")(average.average)

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


def usage_error(e: ClickException, argv: list[str]) -> tuple[str, str]:
    """(usage line, one error line) of a usage error: an unknown flag or command, a value of the wrong type,
    a missing command. The hint names the --help that lists what is valid."""
    ctx = getattr(e, "ctx", None) or _context(argv)
    usage = ctx.get_usage().strip().splitlines()[0] if ctx else f"Usage: {PROG} [OPTIONS] COMMAND [ARGS]..."
    message = e.format_message().strip().replace("\n", " ") or "missing command"
    dashed = (getattr(e, "option_name", "") or "").replace("_", "-")
    if "_" in (getattr(e, "option_name", "") or "") and dashed in (getattr(e, "possibilities", None) or ()):
        message = f"No such option: {e.option_name}; flags are spelled with dashes: {dashed}"
    if message == "Missing command.":
        message = f"missing command; choose from {', '.join(COMMANDS)}"
    where = ctx.command_path if ctx else PROG
    return usage, f"error: {message} (see {where} --help)"


def _context(argv: list[str]):
    """The click context of the command named in argv (errors raised while parsing a value carry none)."""
    group = typer.main.get_command(app)
    name = next((a for a in argv if a in COMMANDS), None)
    root = group.make_context(PROG, [], resilient_parsing=True)
    return group.get_command(root, name).make_context(name, [], parent=root, resilient_parsing=True) if name else root


def os_error_line(e: OSError) -> str:
    """One line naming the file and the cause: `error: cannot write runs/x/model.safetensors: No space left on
    device`. The operating system's words (strerror) say what to fix: a full disk, a read-only folder, a permission."""
    path = e.filename if e.filename is not None else None
    cause = e.strerror or type(e).__name__
    if path is None:
        return f"error: {cause}"
    other = f" → {e.filename2}" if e.filename2 is not None else ""
    return f"error: {path}{other}: {cause}"


def main(argv: list[str] | None = None) -> None:
    """The `attnkit` entry point. Exit codes: 0 done, 1 a user error (one line), 2 a usage error (usage line
    and one error line), 130 interrupted. Bugs raise with their traceback; `--debug` always shows it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        app(args=argv, prog_name=PROG, standalone_mode=False)
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
    except UsageError as e:  # typer's own (bundled) click's: no traceback unless --debug
        if debug:
            raise
        for line in usage_error(e, argv):
            typer.echo(line, err=True)
        sys.exit(2)
    except ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (UserError, OSError, ModuleNotFoundError) as e:
        hint = missing_extra_message(e) if isinstance(e, ModuleNotFoundError) else None
        if debug or (isinstance(e, ModuleNotFoundError) and hint is None):  # a missing required module: a bug
            raise
        if isinstance(e, UserError):
            line = f"error: {_first_line(e)}"
        elif isinstance(e, OSError):
            line = os_error_line(e)
        else:
            line = f"error: {hint}"
        typer.echo(line, err=True)
        sys.exit(1)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


if __name__ == "__main__":
    main()
