"""The ``keel`` app: command groups, ``--version``, and the one place errors are handled.

Every deliberate error (a :class:`~keel.errors.KeelError`) reaches the user as
one line on stderr, ``Error: <message>``, with exit code 2, the code click uses
for bad usage; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from keel import __version__
from keel.cli import TRACKING_URI_HELP, data, db, experiments, models, monitor, registry, runs
from keel.cli.demo import demo
from keel.cli.predict import predict
from keel.cli.serve import serve
from keel.cli.server import server, ui
from keel.errors import KeelError

EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 1


class KeelGroup(TyperGroup):
    """The root command: turns KeelErrors raised by any subcommand into one line."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeelError as exc:
            typer.echo(f"Error: {exc.message}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except Exception as exc:
            # A file that is not a database, a server that refuses connections:
            # the environment's fault, not a bug, so no traceback either.
            problem = _database_problem(exc)
            if problem is None:
                raise
            typer.echo(f"Error: {problem}", err=True)
            raise typer.Exit(EXIT_ENVIRONMENT) from None


def _database_problem(exc: Exception) -> str | None:
    """One line for a database driver error (SQLAlchemy's DBAPIError), else None."""
    from sqlalchemy.exc import DBAPIError

    if not isinstance(exc, DBAPIError):
        return None
    cause = exc.orig if exc.orig is not None else exc
    detail = (str(cause).splitlines() or [type(cause).__name__])[0]
    return (
        f"The database failed: {detail}. Check --tracking-uri and that the database is reachable."
    )


app = typer.Typer(
    cls=KeelGroup,
    name="keel",
    no_args_is_help=True,
    add_completion=False,
    # Plain help text: stable to document (docs/cli.md) and to read in a pipe.
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,
)
app.add_typer(experiments.app, name="experiments")
app.add_typer(runs.app, name="runs")
registry.register_commands(models.app)
app.add_typer(models.app, name="models")
app.add_typer(db.app, name="db")
app.add_typer(data.app, name="data")
app.add_typer(monitor.app, name="monitor")
app.command("demo")(demo)
app.command("server")(server)
app.command("ui")(ui)
app.command("serve")(serve)
app.command("predict")(predict)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"keel {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            help=TRACKING_URI_HELP + " Subcommands accept it too.",
            show_default=False,
            metavar="URI",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the Keel version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Keel: track experiments and runs (an MLflow-compatible tracking API).

    New here? `keel demo` trains and tracks a few models; then try `keel runs list`.
    """


def main() -> None:
    """The ``keel`` console script."""
    app(prog_name="keel")


if __name__ == "__main__":
    main()
