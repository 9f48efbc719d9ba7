"""Keel's server: MLflow's REST API (tracking, registry, artifact proxy) over Keel's stores.

>>> from keel.store import open_store
>>> from keel.server import create_app
>>> create_app(open_store("sqlite:///:memory:")).title
'Keel'
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # FastAPI loads only when an app is built: `keel --help` stays fast.
    if name == "create_app":
        from keel.server.app import create_app

        return create_app
    raise AttributeError(f"module 'keel.server' has no attribute {name!r}")
