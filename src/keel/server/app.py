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

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel import __version__
from keel.errors import InvalidParameter, KeelError
from keel.server.config import DEFAULT_MAX_ARTIFACT_BYTES
from keel.server.wire import Field, parse
from keel.store.base import TrackingStore
from keel.store.registry import RegistryStore

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


def create_app(
    tracking: TrackingStore,
    registry: RegistryStore | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    artifacts_destination: str | None = None,
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES,
) -> FastAPI:
    """A FastAPI app serving the MLflow REST API over ``tracking`` (and ``registry``).

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
    )

    if registry is None:
        registry = _registry_beside(tracking)

    app = FastAPI(
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


def _mount(app: FastAPI, ctx: ServerContext, endpoint: Endpoint) -> None:
    async def call(request: Request) -> Response:
        args = parse(endpoint.fields, await _request_data(request, endpoint, ctx))
        # Encode in the worker thread too: a 10k-point history is ~30 ms of
        # json.dumps that would otherwise stall every other connection.
        return await run_in_threadpool(_handle, endpoint.handler, ctx, args)

    for prefix in API_PREFIXES:
        path = prefix + endpoint.path
        ctx.endpoints.setdefault(f"{endpoint.method} {path}", endpoint)
        app.add_api_route(
            path,
            call,
            methods=[endpoint.method],
            summary=endpoint.summary or None,
            include_in_schema=prefix == API_PREFIXES[0],
            openapi_extra=_openapi(endpoint),
            name=f"{endpoint.method} {path}",
        )


def _handle(handler: Handler, ctx: ServerContext, args: dict[str, Any]) -> Response:
    return _json(handler(ctx, args))


async def _request_data(request: Request, endpoint: Endpoint, ctx: ServerContext) -> Any:
    data = await _query_or_body(request, endpoint, ctx)
    # Segments the endpoint declares (/logged-models/{model_id}) win over the same
    # field in the body; a route's other path parameters are not request fields.
    declared = _PATH_PARAM.findall(endpoint.path)
    if not declared:
        return data
    return {**data, **{name: request.path_params[name] for name in declared}}


async def _query_or_body(request: Request, endpoint: Endpoint, ctx: ServerContext) -> Any:
    if endpoint.method == "GET":
        query = request.query_params
        lists = {f.name for f in endpoint.fields if f.kind.endswith("[]")}
        return {key: query.getlist(key) if key in lists else query.get(key) for key in query}
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > ctx.max_body_bytes:
        raise _TooLarge(ctx.max_body_bytes)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > ctx.max_body_bytes:
            raise _TooLarge(ctx.max_body_bytes)
    if not body.strip():
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise InvalidParameter(
            "Bad Request. Content-Type must be one of ['application/json'], "
            f"not {content_type or 'none'!r}."
        )
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


def _json(data: Any, status: int = 200) -> Response:
    # allow_nan=False: wire.py already turned non-finite doubles into strings,
    # and strict JSON is what every client can parse.
    body = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json")


def _error(code: str, message: str, status: int) -> Response:
    return _json({"error_code": code, "message": message}, status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(KeelError)
    async def keel_error(request: Request, exc: KeelError) -> Response:
        return _error(exc.error_code, exc.message, exc.http_status)

    @app.exception_handler(_TooLarge)
    async def too_large(request: Request, exc: _TooLarge) -> Response:
        return _error("INVALID_PARAMETER_VALUE", str(exc), 413)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error("ENDPOINT_NOT_FOUND", f"No API endpoint at {request.url.path}.", 404)
        if exc.status_code == 405:
            return _error(
                "BAD_REQUEST", f"{request.method} is not allowed on {request.url.path}.", 405
            )
        return _error("BAD_REQUEST", str(exc.detail), exc.status_code)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's doing: the one case that answers 5xx.
        return JSONResponse(
            {"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"},
            status_code=500,
        )


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
    return create_app(
        tracking,
        artifacts_destination=destination,
        max_artifact_bytes=int(limit) if limit else DEFAULT_MAX_ARTIFACT_BYTES,
    )
