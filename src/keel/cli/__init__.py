"""The ``keel`` command line: a thin shell over :class:`keel.Client`.

``main`` builds the app and turns every :class:`~keel.errors.KeelError` into one
line on stderr and exit code 2; each command group has its own module
(``experiments``, ``runs``, ``db``, ``demo``) and ``output`` renders tables and
JSON. This module holds the options every command shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from keel.entities import ViewType
from keel.errors import InvalidParameter

if TYPE_CHECKING:
    from keel.tracking.client import Client

TRACKING_URI_HELP = (
    "Where runs are stored: a SQLite file path, sqlite:///path or "
    "postgresql://user@host/db. Default: $KEEL_TRACKING_URI, else "
    "$MLFLOW_TRACKING_URI, else ./keel.db."
)


def _inherit_root_uri(ctx: typer.Context, value: str | None) -> str | None:
    # `keel --tracking-uri X runs list` and `keel runs list --tracking-uri X`
    # mean the same; the subcommand's own option wins when both are given.
    if value:
        return value
    root = ctx.find_root().params.get("tracking_uri")
    return root if isinstance(root, str) and root else None


# The environment variables are read by keel.uris.resolve_tracking_uri, not by
# click, so that an explicit root option is not overridden by the environment.
TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help=TRACKING_URI_HELP,
        callback=_inherit_root_uri,
        show_default=False,
        metavar="URI",
    ),
]

ShowAll = Annotated[
    bool, typer.Option("--all", help="Include deleted ones as well as active ones.")
]
ShowDeleted = Annotated[bool, typer.Option("--deleted", help="Show only deleted ones.")]


def view_type(show_all: bool, deleted: bool) -> ViewType:
    """The view type chosen by the ``--all`` / ``--deleted`` flags (active by default)."""
    if show_all and deleted:
        raise typer.BadParameter("Pass at most one of --all and --deleted.")
    if show_all:
        return ViewType.ALL
    return ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY


def open_client(tracking_uri: str | None) -> Client:
    """A client for the tracking URI the user chose (or the environment's default)."""
    from keel.tracking.client import Client
    from keel.uris import resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(tracking_uri)
    path = sqlite_path(uri)
    # SQLite creates a missing file but not a missing directory; say so plainly
    # instead of surfacing the driver's "unable to open database file".
    if path is not None and not path.parent.is_dir():
        raise InvalidParameter(
            f"Cannot open the database {path}: the directory {path.parent} does not exist. "
            "Create it, or pass another --tracking-uri."
        )
    return Client(uri)


ModelArgument = Annotated[
    str,
    typer.Argument(
        metavar="MODEL",
        help="models:/name@alias, models:/name/version, runs:/<run_id>/model, or a package path.",
        show_default=False,
    ),
]
