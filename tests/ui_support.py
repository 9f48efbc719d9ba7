"""Helpers for the web UI's tests: a real server on loopback over a real store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from keel.server.app import create_app
from keel.store.base import TrackingStore
from live_server import serve


@contextlib.contextmanager
def ui_client(store: TrackingStore, **app_options: object) -> Iterator[httpx.Client]:
    """An httpx client bound to a live Keel server (API and UI) over ``store``."""
    app = create_app(store, **app_options)  # type: ignore[arg-type]
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def fragment(client: httpx.Client, url: str, **params: object) -> httpx.Response:
    """What htmx gets for ``url``: the page's content block only."""
    return client.get(url, params=params, headers={"HX-Request": "true"})
