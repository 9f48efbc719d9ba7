"""Where Keel keeps things: tracking URIs and artifact roots. No I/O beyond os.environ.

Resolution order for the tracking URI: an explicit ``set_tracking_uri``, then
``KEEL_TRACKING_URI``, then ``MLFLOW_TRACKING_URI``, then ``./keel.db`` in the
working directory. A plain path means a SQLite file.

>>> resolve_tracking_uri("runs.db").startswith("sqlite:////")
True
>>> default_artifact_root("sqlite:////data/keel.db")
'/data/keel-artifacts'
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from keel.errors import InvalidParameter

ENV_TRACKING_URI = "KEEL_TRACKING_URI"
ENV_MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_ARTIFACT_ROOT = "KEEL_ARTIFACT_ROOT"
DEFAULT_DB_FILE = "keel.db"
DEFAULT_ARTIFACT_DIR = "keel-artifacts"

_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg", "http", "https", "file")


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Turn what the user gave (or the environment says) into an absolute URI."""
    raw = uri or os.environ.get(ENV_TRACKING_URI) or os.environ.get(ENV_MLFLOW_TRACKING_URI)
    if not raw:
        raw = DEFAULT_DB_FILE
    scheme = urlparse(raw).scheme
    if not scheme or len(scheme) == 1:  # no scheme, or a Windows drive letter
        return "sqlite:///" + str(Path(raw).expanduser().resolve())
    if scheme == "file":
        path = Path(unquote(urlparse(raw).path)).expanduser().resolve()
        if path.suffix != ".db":
            path = path / DEFAULT_DB_FILE
        return "sqlite:///" + str(path)
    if scheme == "sqlite":
        path_part = raw[len("sqlite:///") :] if raw.startswith("sqlite:///") else ""
        if path_part in ("", ":memory:"):
            return raw
        return "sqlite:///" + str(Path(path_part).expanduser().resolve())
    if scheme not in _SCHEMES:
        raise InvalidParameter(
            f"Unsupported tracking URI {raw!r}. Use a path to a SQLite file, sqlite:///path, "
            "postgresql://user@host/db or http(s)://server."
        )
    return raw


def sqlite_path(uri: str) -> Path | None:
    """The file behind a sqlite:/// URI, or None for other stores and :memory:."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///") :]
    return None if rest in ("", ":memory:") else Path(rest)


def default_artifact_root(tracking_uri: str) -> str:
    """``KEEL_ARTIFACT_ROOT``, else ``keel-artifacts`` beside the SQLite file, else in the cwd."""
    env = os.environ.get(ENV_ARTIFACT_ROOT)
    if env:
        return env if urlparse(env).scheme not in ("", "file") else str(Path(env).resolve())
    db_file = sqlite_path(tracking_uri)
    base = db_file.parent if db_file is not None else Path.cwd()
    return str(base / DEFAULT_ARTIFACT_DIR)


def redact(uri: str) -> str:
    """The URI with any password replaced, safe for logs and error messages.

    >>> redact("postgresql://bob:s3cret@db/keel")
    'postgresql://bob:***@db/keel'
    """
    parsed = urlparse(uri)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
        return parsed._replace(netloc=netloc).geturl()
    return uri
