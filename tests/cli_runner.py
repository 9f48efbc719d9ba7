"""Running ``keel`` commands in-process for the CLI tests."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from keel.cli.main import app

# A wide virtual terminal, so tables never shorten what the tests look for.
runner = CliRunner(env={"COLUMNS": "200"})


def keel_cli(*args: str) -> Result:
    return runner.invoke(app, list(args), prog_name="keel")


def ok(*args: str) -> str:
    """Run a command that must succeed; return its stdout."""
    result = keel_cli(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(*args: str, code: int = 2) -> str:
    """Run a command that must fail cleanly; return its stderr."""
    result = keel_cli(*args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.stderr
