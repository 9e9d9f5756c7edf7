"""Shared helper for the CLI tests: run `attnkit ARGS...` in-process and insist it succeeded.

(Importable as `from cli_invoke import invoke`: pytest puts this folder on sys.path for its test files.)
"""
from typer.testing import CliRunner

from attnkit.cli.main import app

runner = CliRunner()


def invoke(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output
