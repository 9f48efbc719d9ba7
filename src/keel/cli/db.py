"""``keel db``: see and migrate a database's schema revision.

These commands open the database directly rather than through a store: a
store refuses a database whose schema is out of date, which is exactly the
database ``keel db upgrade`` is for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from keel.cli import TrackingUri
from keel.errors import InvalidParameter, NotFound

if TYPE_CHECKING:
    from keel.store.sql.engine import Database

app = typer.Typer(help="Show and upgrade the database schema.", no_args_is_help=True)

DbUri = Annotated[
    str | None,
    typer.Argument(
        metavar="URI",
        help="Database to use: a SQLite path, sqlite:///path or postgresql://… "
        "Default: the tracking URI (--tracking-uri, $KEEL_TRACKING_URI, "
        "$MLFLOW_TRACKING_URI, ./keel.db).",
        show_default=False,
    ),
]


@contextmanager
def _database(uri: str | None, *, must_exist: bool) -> Iterator[tuple[Database, str]]:
    """The database behind ``uri`` and its printable (password-free) URI."""
    from keel.store.sql.engine import Database
    from keel.uris import redact, resolve_tracking_uri, sqlite_path

    resolved = resolve_tracking_uri(uri)
    shown = redact(resolved)
    if resolved.startswith(("http://", "https://")):
        raise InvalidParameter(
            f"{shown} is a tracking server; run `keel db` on the server's own database."
        )
    path = sqlite_path(resolved)
    if path is not None and must_exist and not path.is_file():
        raise NotFound(f"No database at {path}. Create one with: keel db upgrade {path}")
    if path is not None and not path.parent.is_dir():
        raise InvalidParameter(f"Cannot create {path}: the directory {path.parent} does not exist.")
    db = Database(resolved)
    try:
        yield db, shown
    finally:
        db.dispose()


@app.command("current")
def current(uri: DbUri = None, tracking_uri: TrackingUri = None) -> None:
    """Print the database's schema revision, and whether it is the newest this Keel knows."""
    from keel.store.sql.migrate import current_revision, head_revision

    with _database(uri or tracking_uri, must_exist=True) as (db, _shown):
        revision = current_revision(db)
    head = head_revision()
    if revision is None:
        typer.echo("none (empty database; `keel db upgrade` creates the schema)")
    elif revision == head:
        typer.echo(f"{revision} (head)")
    else:
        typer.echo(f"{revision} (head is {head}: run `keel db upgrade`)")


@app.command("upgrade")
def upgrade(uri: DbUri = None, tracking_uri: TrackingUri = None) -> None:
    """Migrate the database to the newest schema (creating it if empty). Back it up first."""
    from keel.store.sql.migrate import upgrade as migrate

    with _database(uri or tracking_uri, must_exist=False) as (db, shown):
        before, after = migrate(db)
    if before == after:
        typer.echo(f"{shown} is already at head ({after}).")
    else:
        typer.echo(f"Upgraded {shown}: {before or 'empty'} -> {after}")
