"""The ASGI application: MLflow's REST API over Keel's stores.

``create_app`` takes its stores as arguments and keeps no global state, so
tests, ``keel server`` and embedding applications each build their own.
Every endpoint is declared once (:class:`Endpoint`: verb, path, fields,
handler) and mounted under ``/api/2.0/mlflow/`` and, as MLflow's server
does for its web UI, ``/ajax-api/2.0/mlflow/``. The same declarations
produce the OpenAPI document at ``/openapi.json``.

Errors are MLflow's JSON body ``{"error_code", "message"}``. A client
mistake is never a 5xx: the MLflow client retries 5xx answers, which would
repeat a write.

>>> from keel.store import open_store
>>> app = create_app(open_store("sqlite:///:memory:"))
>>> "POST /api/2.0/mlflow/runs/log-batch" in app.state.keel.endpoints
True
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel import __version__
from keel.errors import InvalidParameter, KeelError
from keel.server.config import DEFAULT_MAX_ARTIFACT_BYTES
from keel.server.ui.security import allowed_hosts_from_environment, host_allowed, refusal
from keel.server.wire import Field, parse
from keel.store.base import TrackingStore
from keel.store.registry import RegistryStore

_log = logging.getLogger("keel.server")

API_PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024  # log-batch at its limits is well under 1 MB

Handler = Callable[["ServerContext", dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One RPC: ``method`` and ``path`` (below the API prefix), its fields and handler."""

    method: str
    path: str
    fields: tuple[Field, ...]
    handler: Handler
    summary: str = ""


@dataclass
class ServerContext:
    """What handlers need: the stores, and the endpoint table for introspection."""

    tracking: TrackingStore
    registry: RegistryStore | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    # The artifact proxy (routes_artifacts): its directory, None when off.
    artifacts_destination: str | None = None
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES


ASGIScope = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# Threads for the stores' blocking calls (as many as Starlette's default pool).
_WORKERS = 40


class KeelApp(FastAPI):
    """FastAPI, with the RPC endpoints dispatched straight from the ASGI scope.

    For a one-value write (log-metric), Starlette's routing (a regex match per
    route, tried in order over some 130 routes), its request and middleware
    layers and AnyIO's thread hand-off cost about as much CPU as the write
    itself. Endpoints without path parameters are looked up here by method
    and path in a dict and served by :meth:`_serve` with the same parsing,
    limits, errors and JSON as the mounted routes; everything else (path
    parameters, the artifact proxy, ``/openapi.json``, 404s and 405s) goes
    through FastAPI.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rpc: dict[tuple[str, str], Endpoint] = {}
        self.allowed_hosts: frozenset[str] = frozenset({"*"})
        self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="keel-rpc")

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "http" and not self._host_allowed(scope):
            await self._refuse_host(scope, receive, send)
            return
        if scope["type"] == "http" and not scope.get("root_path"):
            endpoint = self.rpc.get((scope["method"], scope["path"]))
            if endpoint is not None:
                await self._serve(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _host_allowed(self, scope: ASGIScope) -> bool:
        if scope["path"] == "/health":  # load balancers probe by whatever name they have
            return True
        for name, value in scope["headers"]:
            if name == b"host":
                return host_allowed(value.decode("latin-1"), self.allowed_hosts)
        return True

    async def _refuse_host(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        """403 for a Host header the server does not answer (DNS rebinding): a page or JSON."""
        from keel.server import ui

        request = Request(scope, receive)
        message = refusal(request.headers.get("host", ""))
        if scope["path"].startswith(("/api/", "/ajax-api/")):
            response = _error("PERMISSION_DENIED", message, 403)
        else:  # the UI's pages, JSON twins and static files
            response = ui.render.error_page(request, 403, message)
        await response(scope, receive, send)

    async def _serve(
        self, endpoint: Endpoint, scope: ASGIScope, receive: ASGIReceive, send: ASGISend
    ) -> None:
        ctx: ServerContext = self.state.keel
        try:
            args = parse(endpoint.fields, await _request_fields(endpoint, ctx, scope, receive))
            loop = asyncio.get_running_loop()
            status, body = await loop.run_in_executor(
                self._pool, _handle, endpoint.handler, ctx, args
            )
        except _Disconnected:
            return  # nobody to answer
        except Exception as exc:  # answered as the routes' handlers answer
            status, body = _error_body(exc)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _request_fields(
    endpoint: Endpoint, ctx: ServerContext, scope: ASGIScope, receive: ASGIReceive
) -> Any:
    """The request's query (GET) or JSON body, before ``parse`` checks the fields."""
    if endpoint.method == "GET":
        return _query(endpoint, scope["query_string"])
    headers = dict(scope["headers"])
    body = await _read_body(receive, headers.get(b"content-length"), ctx.max_body_bytes)
    return _body_json(body, headers.get(b"content-type", b"").decode("latin-1"))


async def _read_body(receive: ASGIReceive, declared: bytes | None, limit: int) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge(limit)
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        body += chunk
        if len(body) > limit:
            raise _TooLarge(limit)
        if not message.get("more_body", False):
            return body


class _Disconnected(Exception):
    """The client went away before sending its whole body."""


def _query(endpoint: Endpoint, query_string: bytes) -> dict[str, Any]:
    # As Starlette's QueryParams: the last value of a key wins, list fields take all.
    pairs = urllib.parse.parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    lists = {f.name for f in endpoint.fields if f.kind.endswith("[]")}
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in lists:
            out.setdefault(key, []).append(value)
        else:
            out[key] = value
    return out


def _handle(handler: Handler, ctx: ServerContext, args: dict[str, Any]) -> tuple[int, bytes]:
    """Status and JSON body of one call; run in a worker thread, encoding included."""
    try:
        return 200, _dumps(handler(ctx, args))
    except Exception as exc:  # answered as the routes' handlers answer
        return _error_body(exc)


def _error_body(exc: Exception) -> tuple[int, bytes]:
    if isinstance(exc, KeelError):
        return exc.http_status, _dumps({"error_code": exc.error_code, "message": exc.message})
    if isinstance(exc, _TooLarge):
        return 413, _dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": str(exc)})
    _log.error("Unexpected error serving a request", exc_info=exc)
    return 500, _dumps({"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"})


def create_app(
    tracking: TrackingStore,
    registry: RegistryStore | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    artifacts_destination: str | None = None,
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES,
    allowed_hosts: frozenset[str] | None = None,
) -> KeelApp:
    """A FastAPI app serving the MLflow REST API over ``tracking`` (and ``registry``),
    and the web UI under ``/``. It answers only the Host names in ``allowed_hosts``
    (default: ``KEEL_ALLOWED_HOSTS``), loopback names and IP addresses, which stops
    DNS rebinding (see :mod:`keel.server.ui.security`).

    With ``artifacts_destination`` (a directory) it also proxies artifacts, as
    ``mlflow server --serve-artifacts`` does. Experiments' default locations come
    from the store's artifact root: open it with ``PROXY_ARTIFACT_ROOT``
    (``mlflow-artifacts:/``) so new experiments, and the default one in a new
    database, get ``mlflow-artifacts:/<id>`` and clients upload through the server.
    """
    from keel.server import (
        routes_artifacts,
        routes_logged_models,
        routes_registry,
        routes_tracking,
        ui,
    )

    if registry is None:
        registry = _registry_beside(tracking)

    app = KeelApp(
        title="Keel",
        version=__version__,
        description="MLflow's REST API (tracking and registry), served by Keel.",
        docs_url=None,
        redoc_url=None,
    )
    ctx = ServerContext(
        tracking,
        registry,
        max_body_bytes,
        artifacts_destination=artifacts_destination,
        max_artifact_bytes=max_artifact_bytes,
    )
    app.state.keel = ctx
    for endpoint in routes_tracking.ENDPOINTS:
        _mount(app, ctx, endpoint)
    for endpoint in routes_logged_models.ENDPOINTS:
        _mount(app, ctx, endpoint)
    for endpoint in routes_registry.ENDPOINTS:
        _mount(app, ctx, endpoint)
    routes_artifacts.install(app, ctx)
    _install_error_handlers(app)
    app.allowed_hosts = allowed_hosts or allowed_hosts_from_environment()
    ui.install(app, ctx, app.allowed_hosts)

    @app.get("/health", include_in_schema=False)
    def health() -> Response:
        return Response("OK", media_type="text/plain")

    @app.get("/version", include_in_schema=False)
    def version() -> Response:
        return Response(__version__, media_type="text/plain")

    @app.get("/api/3.0/mlflow/server-info", include_in_schema=False)
    def server_info() -> Response:
        # What the MLflow client probes before artifact transfers: Keel's
        # proxy has neither multipart uploads nor presigned downloads, so the
        # client streams every file through the plain PUT and GET.
        return _json(
            {
                "store_type": "SqlStore",
                "workspaces_enabled": False,
                "trace_archival_enabled": False,
                "multipart_uploads_enabled": False,
                "multipart_downloads_enabled": False,
                "presigned_upload_run_id_supported": False,
                "presigned_upload_model_id_supported": False,
                "features_enabled": {},
            }
        )

    return app


def _registry_beside(tracking: TrackingStore) -> RegistryStore | None:
    """The model registry in the tracking store's own database (its engine and writer
    lock), or None when the store keeps no registry: registry calls then answer
    501 NOT_IMPLEMENTED."""
    from keel.store.sql.registry import SqlRegistryStore
    from keel.store.sql.store import SqlTrackingStore

    if isinstance(tracking, SqlTrackingStore):
        return SqlRegistryStore.from_tracking_store(tracking)
    return None


def _mount(app: KeelApp, ctx: ServerContext, endpoint: Endpoint) -> None:
    async def call(request: Request) -> Response:
        args = parse(endpoint.fields, await _request_data(request, endpoint, ctx))
        # Encode in the worker thread too: a 10k-point history is ~30 ms of
        # JSON encoding that would otherwise stall every other connection.
        status, body = await run_in_threadpool(_handle, endpoint.handler, ctx, args)
        return Response(body, status_code=status, media_type="application/json")

    for prefix in API_PREFIXES:
        path = prefix + endpoint.path
        ctx.endpoints.setdefault(f"{endpoint.method} {path}", endpoint)
        if not _PATH_PARAM.search(endpoint.path):
            app.rpc.setdefault((endpoint.method, path), endpoint)
        app.add_api_route(
            path,
            call,
            methods=[endpoint.method],
            summary=endpoint.summary or None,
            include_in_schema=prefix == API_PREFIXES[0],
            openapi_extra=_openapi(endpoint),
            name=f"{endpoint.method} {path}",
        )


async def _request_data(request: Request, endpoint: Endpoint, ctx: ServerContext) -> Any:
    data = await _request_fields(endpoint, ctx, request.scope, request.receive)
    # Segments the endpoint declares (/logged-models/{model_id}) win over the same
    # field in the body; a route's other path parameters are not request fields.
    declared = _PATH_PARAM.findall(endpoint.path)
    if not declared:
        return data
    return {**data, **{name: request.path_params[name] for name in declared}}


def _body_json(body: bytes, content_type: str) -> Any:
    if not body.strip():
        return {}
    content_type = content_type.split(";")[0].strip().lower()
    if content_type != "application/json":
        raise InvalidParameter(
            "Bad Request. Content-Type must be one of ['application/json'], "
            f"not {content_type or 'none'!r}."
        )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson is strict; Python's json also takes what Python clients send
        # for non-finite floats (NaN, Infinity), which the wire format allows.
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise InvalidParameter(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidParameter("The request body must be a JSON object.")
    return data


class _TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body exceeds the server's limit of {limit} bytes.")


def _dumps(data: Any) -> bytes:
    # orjson: a 100-run search page encodes in 0.13 ms instead of json's 1.6 ms.
    # wire.py has already turned non-finite doubles into strings, so the
    # output is strict JSON.
    return orjson.dumps(data)


def _json(data: Any, status: int = 200) -> Response:
    return Response(_dumps(data), status_code=status, media_type="application/json")


def _error(code: str, message: str, status: int) -> Response:
    return _json({"error_code": code, "message": message}, status)


def _install_error_handlers(app: FastAPI) -> None:
    from keel.server import ui

    @app.exception_handler(KeelError)
    @app.exception_handler(_TooLarge)
    async def client_error(request: Request, exc: Exception) -> Response:
        status, body = _error_body(exc)
        return Response(body, status_code=status, media_type="application/json")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and ui.is_page_request(request):
            return ui.render.error_page(request, 404, f"There is no page at {request.url.path}.")
        if exc.status_code == 404:
            return _error("ENDPOINT_NOT_FOUND", f"No API endpoint at {request.url.path}.", 404)
        if exc.status_code == 405:
            return _error(
                "BAD_REQUEST", f"{request.method} is not allowed on {request.url.path}.", 405
            )
        return _error("BAD_REQUEST", str(exc.detail), exc.status_code)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> Response:
        # A bug, not the client's doing: the one case that answers 5xx.
        status, body = _error_body(exc)
        return Response(body, status_code=status, media_type="application/json")


_PATH_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def _openapi(endpoint: Endpoint) -> dict[str, Any]:
    in_path = set(_PATH_PARAM.findall(endpoint.path))
    parameters = [
        {"name": f.name, "in": "path", "required": True, "schema": f.json_schema()}
        for f in endpoint.fields
        if f.name in in_path
    ]
    rest = [f for f in endpoint.fields if f.name not in in_path]
    if endpoint.method == "GET" or not rest:
        parameters += [
            {"name": f.name, "in": "query", "required": f.required, "schema": f.json_schema()}
            for f in rest
        ]
        return {"parameters": parameters} if parameters else {}
    schema = {
        "type": "object",
        "properties": {f.name: f.json_schema() for f in rest},
        "required": [f.name for f in rest if f.required],
    }
    body = {"requestBody": {"content": {"application/json": {"schema": schema}}}}
    return {"parameters": parameters, **body} if parameters else body


def endpoint_table(endpoints: Sequence[Endpoint]) -> list[str]:
    """``METHOD /path`` for each endpoint (documentation and tests)."""
    return [f"{e.method} {API_PREFIXES[0]}{e.path}" for e in endpoints]


def _warm_ui(tracking: TrackingStore) -> None:
    """Read the busiest experiments' column keys in the background, so first pages are fast."""
    import threading

    from keel.server.ui.pages_runs import warm_columns
    from keel.store.sql.store import SqlTrackingStore

    if isinstance(tracking, SqlTrackingStore):

        def warm() -> None:
            try:
                warm_columns(tracking)
            except Exception:  # a cache warm-up must never stop the server
                _log.warning("Could not warm the runs table's column cache", exc_info=True)

        threading.Thread(target=warm, name="keel-ui-warm", daemon=True).start()


def app_from_environment() -> FastAPI:
    """The app ``keel server`` runs in each worker, from the options it put in the environment."""
    import os

    from keel.server.config import (
        ARTIFACTS_ENV,
        BACKEND_ENV,
        MAX_ARTIFACT_ENV,
        PROXY_ARTIFACT_ROOT,
    )
    from keel.store import open_store

    uri = os.environ.get(BACKEND_ENV)
    destination = os.environ.get(ARTIFACTS_ENV) or None
    limit = os.environ.get(MAX_ARTIFACT_ENV)
    # Proxying: new experiments get mlflow-artifacts:/<id>, as MLflow's --serve-artifacts.
    tracking = open_store(uri, PROXY_ARTIFACT_ROOT if destination else None)
    # The registry shares the tracking store's database (engine, writer lock).
    app = create_app(
        tracking,
        artifacts_destination=destination,
        max_artifact_bytes=int(limit) if limit else DEFAULT_MAX_ARTIFACT_BYTES,
    )
    _warm_ui(tracking)
    # Everything imported and built so far lives as long as the process: out
    # of the collector's sight, full collections stop walking it (gc.freeze).
    gc.collect()
    gc.freeze()
    return app
