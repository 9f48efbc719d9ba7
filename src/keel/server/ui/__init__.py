"""The web UI: server-rendered pages (Jinja2) with htmx and uPlot, under ``/``.

Each page lives in its own ``pages_*.py`` module with a ``register(ui)``
function that adds its routes through :meth:`UI.page` and :meth:`UI.change`.
Pages read the stores directly (they are the server's edge, like the REST
routes) and hand :func:`keel.server.ui.render.respond` a plain dict: the
page's JSON twin.

>>> from keel.store import open_store
>>> from keel.server.app import create_app
>>> app = create_app(open_store("sqlite:///:memory:"))
>>> "/static/{name}" in {r.path for r in app.routes}
True
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from keel.errors import KeelError
from keel.server.ui import render, security

if TYPE_CHECKING:
    from fastapi import FastAPI

    from keel.server.app import ServerContext

_log = logging.getLogger("keel.server.ui")

PageHandler = Callable[..., Response]


@dataclass
class UI:
    """What page modules register against: the app, the stores, the allowed hosts."""

    app: FastAPI
    ctx: ServerContext
    allowed_hosts: frozenset[str]

    def page(self, path: str) -> Callable[[PageHandler], PageHandler]:
        """Register a GET page: host check, CSRF cookie, errors rendered as pages."""
        return self._route(path, "GET", change=False)

    def change(self, path: str, method: str = "POST") -> Callable[[PageHandler], PageHandler]:
        """Register a state-changing request: JSON body and CSRF token required."""
        return self._route(path, method, change=True)

    def _route(
        self, path: str, method: str, *, change: bool
    ) -> Callable[[PageHandler], PageHandler]:
        def decorate(handler: PageHandler) -> PageHandler:
            @functools.wraps(handler)
            def endpoint(request: Request, **kwargs: Any) -> Response:
                token, new = security.csrf_token(request)
                request.state.csrf_token = token
                try:
                    security.check_host(request, self.allowed_hosts)
                    if change:
                        security.check_change(request)
                    response = handler(self, request, **kwargs)
                except security.Refused as exc:
                    response = render.error_page(request, exc.status, str(exc))
                except KeelError as exc:
                    response = render.error_page(request, exc.http_status, str(exc))
                if new:
                    response.set_cookie(
                        security.CSRF_COOKIE, token, httponly=True, samesite="strict", path="/"
                    )
                return response

            # FastAPI reads the signature: the request plus the path parameters.
            params = [
                inspect.Parameter(
                    "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
                )
            ]
            params += [
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=str)
                for name in _path_parameters(path)
            ]
            endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
            self.app.add_api_route(
                path, endpoint, methods=[method], include_in_schema=False, response_model=None
            )
            return handler

        return decorate


def is_page_request(request: Request) -> bool:
    """A browser asking for a page (not an API client): answer errors as pages."""
    path = request.url.path
    if path.startswith(("/api/", "/ajax-api/", "/static/")):
        return False
    return "text/html" in request.headers.get("accept", "")


def _path_parameters(path: str) -> list[str]:
    import re

    return [m.split(":")[0] for m in re.findall(r"{([^}]+)}", path)]


def install(app: FastAPI, ctx: ServerContext, allowed_hosts: frozenset[str] | None = None) -> UI:
    """Mount the UI's pages and static files on ``app``."""
    from keel.server.ui import (
        pages_compare,
        pages_data,
        pages_experiments,
        pages_registry,
        pages_run,
        pages_runs,
    )

    ui = UI(app, ctx, allowed_hosts or security.allowed_hosts_from_environment())
    _install_static(app)
    modules = (pages_experiments, pages_runs, pages_run, pages_compare, pages_registry, pages_data)
    for module in modules:
        module.register(ui)
    return ui


_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@functools.cache
def _static_files() -> dict[str, tuple[bytes, bytes, str, str]]:
    """Each static file: body, gzipped body, media type, ETag (read once per process)."""
    import gzip
    import hashlib

    files: dict[str, tuple[bytes, bytes, str, str]] = {}
    for path in render.STATIC.iterdir():
        if path.suffix in _STATIC_TYPES:
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            files[path.name] = (body, gzip.compress(body, 9), _STATIC_TYPES[path.suffix], etag)
    return files


def _install_static(app: FastAPI) -> None:
    """Serve the static files from memory, gzipped for browsers that take it.

    A fixed set of names read at start: nothing else on disk is reachable,
    and no request waits on a file read.
    """
    files = _static_files()

    def static(request: Request, name: str) -> Response:
        found = files.get(name)
        if found is None:
            return Response("Not found", status_code=404, media_type="text/plain")
        body, zipped, media, etag = found
        headers = {
            "Cache-Control": "public, max-age=3600",
            "ETag": etag,
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
        }
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            body = zipped
        return Response(body, media_type=media, headers=headers)

    app.add_api_route("/static/{name}", static, methods=["GET"], include_in_schema=False)
