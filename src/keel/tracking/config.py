"""The process's tracking URI: set explicitly, else from the environment, else ``./keel.db``."""

from __future__ import annotations

import os

from keel.uris import resolve_tracking_uri

_tracking_uri: str | None = None


def set_tracking_uri(uri: str | os.PathLike[str] | None) -> None:
    """Where runs go from now on: a SQLite path, ``sqlite:///…`` or ``postgresql://…``.

    ``None`` goes back to the environment variables and the default.

    >>> set_tracking_uri("sqlite:///:memory:"); get_tracking_uri()
    'sqlite:///:memory:'
    >>> set_tracking_uri(None)
    """
    global _tracking_uri
    _tracking_uri = resolve_tracking_uri(os.fspath(uri)) if uri is not None else None


def get_tracking_uri() -> str:
    """The tracking URI in effect (explicit, else environment, else ``./keel.db``)."""
    return _tracking_uri or resolve_tracking_uri(None)
