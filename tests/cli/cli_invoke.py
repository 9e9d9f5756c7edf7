"""Shared helpers for the CLI tests: run `attnkit ARGS...` in-process (`invoke` insists it succeeded).

(Importable as `from cli_invoke import invoke`: pytest puts this folder on sys.path for its test files.)
"""
from typer.testing import CliRunner

from attnkit.cli.main import app, main

runner = CliRunner()


def invoke(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def run(argv, capsys):
    """(exit code, stdout, stderr) of `attnkit ARGV` through the real entry point (its error handling)."""
    code = 0
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
