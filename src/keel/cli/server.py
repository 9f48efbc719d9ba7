"""``keel server``: MLflow's REST API over a Keel store, for teams and the mlflow client."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from keel.errors import require
from keel.server.config import (
    ARTIFACTS_ENV,
    BACKEND_ENV,
    MAX_ARTIFACT_ENV,
    is_local_destination,
    is_s3_destination,
    local_path_of,
    parse_size,
)
from keel.uris import redact

BackendStoreUri = Annotated[
    str | None,
    typer.Option(
        "--backend-store-uri",
        help="sqlite:///path/keel.db or postgresql://user@host/db (default: the tracking "
        "URI in effect, ./keel.db).",
        metavar="URI",
    ),
]


def server(
    backend_store_uri: BackendStoreUri = None,
    artifacts_destination: Annotated[
        str | None,
        typer.Option(
            "--artifacts-destination",
            help="Proxy artifacts (as mlflow server --serve-artifacts): keep them under PATH, a "
            "directory or s3://bucket/prefix (endpoint from KEEL_S3_ENDPOINT_URL, credentials "
            "from AWS_* or a profile); new experiments get mlflow-artifacts:/<id> locations and "
            "clients upload through the server. Without it, experiments get local paths "
            "(keel-artifacts beside the database) that clients must reach themselves.",
            metavar="PATH",
        ),
    ] = None,
    max_artifact_size: Annotated[
        str,
        typer.Option(
            "--max-artifact-size",
            help="The largest artifact upload the proxy accepts: bytes, or a number with "
            "K, M, G or T.",
            metavar="SIZE",
        ),
    ] = "10G",
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port to listen on.", min=0, max=65535)] = 5000,
    workers: Annotated[
        int, typer.Option(help="Worker processes (each opens its own connections).", min=1)
    ] = 1,
    allowed_hosts: Annotated[
        str | None,
        typer.Option(
            "--allowed-hosts",
            help="Host names the web UI answers to besides localhost and 127.0.0.1 "
            "(comma-separated; * for any). Other Host headers are refused, which stops "
            "DNS-rebinding pages from reading the UI. The address given with --host is "
            "added for you.",
            metavar="NAMES",
        ),
    ] = None,
) -> None:
    """Serve MLflow's REST API: point MLFLOW_TRACKING_URI (or KEEL_TRACKING_URI) at it.

    export MLFLOW_TRACKING_URI=http://127.0.0.1:5000 and existing mlflow
    scripts log to Keel unchanged.
    """
    require("uvicorn", "server", "keel server")
    require("fastapi", "server", "keel server")
    import uvicorn

    from keel.server.protocol import http_protocol
    from keel.server.ui.security import ALLOWED_HOSTS_ENV
    from keel.uris import resolve_tracking_uri

    # Workers are separate processes: they rebuild the app from the environment.
    os.environ[BACKEND_ENV] = resolve_tracking_uri(backend_store_uri)
    hosts = [h for h in (allowed_hosts or "").split(",") if h.strip()]
    if host not in ("0.0.0.0", "::"):
        hosts.append(host)
    os.environ[ALLOWED_HOSTS_ENV] = ",".join(hosts)
    try:
        os.environ[MAX_ARTIFACT_ENV] = str(parse_size(max_artifact_size))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-artifact-size") from None
    proxy = ""
    if artifacts_destination:
        if is_s3_destination(artifacts_destination):
            os.environ[ARTIFACTS_ENV] = artifacts_destination.rstrip("/")
        elif is_local_destination(artifacts_destination):
            os.environ[ARTIFACTS_ENV] = str(local_path_of(artifacts_destination).resolve())
        else:
            raise typer.BadParameter(
                "only a local directory (or file:// URI) or s3://bucket/prefix is supported "
                "for now.",
                param_hint="--artifacts-destination",
            )
        proxy = f", proxying artifacts to {os.environ[ARTIFACTS_ENV]}"
    typer.echo(
        f"Keel {_version()} serving {redact(os.environ[BACKEND_ENV])} at http://{host}:{port} "
        f"({workers} worker{'s' if workers > 1 else ''}{proxy}); web UI at "
        f"http://{_browser_host(host)}:{port}/ ; Ctrl-C stops it.",
        err=True,
    )
    uvicorn.run(
        "keel.server.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        http=http_protocol(),
    )


def ui(
    backend_store_uri: BackendStoreUri = None,
    port: Annotated[int, typer.Option(help="The port to listen on.", min=0, max=65535)] = 5000,
    open_browser: Annotated[
        bool, typer.Option("--open/--no-open", help="Open the UI in the default web browser.")
    ] = False,
) -> None:
    """Open the web UI on this machine's runs: keel server on 127.0.0.1, embedded store.

    The same server as keel server (the MLflow REST API included), listening on
    loopback only; use keel server --host to share it with a team.
    """
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(f"http://127.0.0.1:{port}/",)).start()
    server(backend_store_uri=backend_store_uri, host="127.0.0.1", port=port)


def _browser_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _version() -> str:
    from keel import __version__

    return __version__
