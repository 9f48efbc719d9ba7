"""Stores behind one URI: a small scheme registry (``open_store``), and the model
registry that lives in the same database (``open_registry_store``).

>>> store = open_store("sqlite:///:memory:")
>>> type(store).__name__
'SqlTrackingStore'
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from urllib.parse import urlparse

from keel.errors import InvalidParameter
from keel.store.base import TrackingStore
from keel.store.registry import RegistryStore
from keel.uris import default_artifact_root, redact, resolve_tracking_uri

__all__ = ["RegistryStore", "TrackingStore", "open_registry_store", "open_store", "register_scheme"]

StoreFactory = Callable[[str, str], TrackingStore]
_FACTORIES: dict[str, StoreFactory] = {}
_CACHE: dict[tuple[str, str], TrackingStore] = {}
_CACHE_LOCK = threading.Lock()


def register_scheme(scheme: str, factory: StoreFactory) -> None:
    """Make ``open_store`` build ``factory(uri, artifact_root)`` for ``scheme://`` URIs."""
    _FACTORIES[scheme] = factory


def _sql_factory(uri: str, artifact_root: str) -> TrackingStore:
    from keel.store.sql.store import SqlTrackingStore

    return SqlTrackingStore(uri, artifact_root)


for _scheme in ("sqlite", "postgresql", "postgres", "postgresql+psycopg"):
    register_scheme(_scheme, _sql_factory)


def _rest_factory(uri: str, artifact_root: str) -> TrackingStore:
    # The server decides where artifacts go (each run's artifact_uri says),
    # so a local artifact root has no meaning here and is ignored.
    from keel.errors import require

    require("httpx", "server", f"The HTTP tracking store ({redact(uri)})")
    from keel.store.rest import RestTrackingStore

    return RestTrackingStore(uri)


for _scheme in ("http", "https"):
    register_scheme(_scheme, _rest_factory)

# Schemes whose stores ignore the artifact root: one cached store per URI.
_NO_ARTIFACT_ROOT = ("http", "https")


def open_store(
    uri: str | None = None, artifact_root: str | None = None, *, cached: bool = True
) -> TrackingStore:
    """The store for a tracking URI (resolved as in :mod:`keel.uris`).

    Stores are cached per (URI, artifact root) so every part of a process
    shares one connection pool and, for SQLite, one writer. An ``http(s)://``
    URI opens a :class:`~keel.store.rest.RestTrackingStore`; its server decides
    where artifacts go, so ``artifact_root`` does not apply to it.

    >>> type(open_store("http://127.0.0.1:5000")).__name__
    'RestTrackingStore'
    """
    resolved = resolve_tracking_uri(uri)
    root = artifact_root or default_artifact_root(resolved)
    scheme = urlparse(resolved).scheme
    factory = _FACTORIES.get(scheme)
    if factory is None:
        raise InvalidParameter(f"No store for tracking URI {redact(resolved)!r}.")
    if not cached or resolved == "sqlite:///:memory:" or resolved == "sqlite://":
        return factory(resolved, root)
    with _CACHE_LOCK:
        key = (resolved, "" if scheme in _NO_ARTIFACT_ROOT else root)
        if key not in _CACHE:
            _CACHE[key] = factory(resolved, root)
        return _CACHE[key]


def open_registry_store(uri: str | None = None) -> RegistryStore:
    """The model registry for a tracking URI (resolved as :func:`open_store` does).

    It shares the tracking store's database: the cached store's connection pool
    and, for SQLite, its one writer, so tracking and registry writes queue on
    the same lock. An ``http(s)://`` URI opens a
    :class:`~keel.store.rest_registry.RestRegistryStore` over the tracking
    store's connection pool: the server's registry.

    >>> registry = open_registry_store("sqlite:///:memory:")
    >>> registry.create_registered_model("churn").name
    'churn'
    >>> type(open_registry_store("http://127.0.0.1:5000")).__name__
    'RestRegistryStore'
    """
    from keel.store.sql.registry import SqlRegistryStore
    from keel.store.sql.store import SqlTrackingStore

    resolved = resolve_tracking_uri(uri)
    tracking = open_store(resolved)
    if urlparse(resolved).scheme in _NO_ARTIFACT_ROOT:
        from keel.store.rest import RestTrackingStore
        from keel.store.rest_registry import RestRegistryStore

        if isinstance(tracking, RestTrackingStore):
            # The server's registry, over the tracking store's connection pool.
            return RestRegistryStore(tracking)
    if not isinstance(tracking, SqlTrackingStore):
        raise InvalidParameter(
            f"Tracking URI {redact(resolved)!r} has no model registry in this version of Keel. "
            "Use a SQLite path or a postgresql:// URI."
        )
    # An in-memory database is not cached: this registry is its only user.
    in_memory = resolved in ("sqlite:///:memory:", "sqlite://")
    return SqlRegistryStore(tracking.database, owns_database=in_memory)


def _after_fork_in_child() -> None:
    # SQLite and PostgreSQL connections must not cross a fork: each cached
    # store drops what it inherited and opens its own on first use.
    for store in _CACHE.values():
        store.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def clear_store_cache() -> None:
    """Close every cached store (tests, and processes that change URIs)."""
    with _CACHE_LOCK:
        for store in _CACHE.values():
            store.close()
        _CACHE.clear()
