"""``keel serve``: one model behind MLflow's scoring protocol, with its input checked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from keel.cli import ModelArgument, TrackingUri
from keel.errors import require


def serve(
    model_uri: ModelArgument,
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port to listen on.", min=0, max=65535)] = 5001,
    workers: Annotated[
        int, typer.Option(help="Worker processes, each with its own copy of the model.", min=1)
    ] = 1,
    validation: Annotated[
        str,
        typer.Option(
            help="reject: answer 422 with the problems of bad input; warn: score it anyway, "
            "flagged in the X-Keel-Validation header and the log; off: no checks.",
            metavar="POLICY",
        ),
    ] = "reject",
    backend: Annotated[
        str,
        typer.Option(
            help="native: the model itself; onnx: its ONNX twin (it must have passed parity "
            "when saved), which scores a row in microseconds; auto: the twin when there is one.",
            metavar="BACKEND",
        ),
    ] = "native",
    max_body_mb: Annotated[
        int, typer.Option(help="The largest request body accepted (MB); larger gets 413.", min=1)
    ] = 64,
    log_dir: Annotated[
        str,
        typer.Option(
            "--log-dir",
            help="Where the prediction log goes: Parquet files of every scored row (query them "
            "with DuckDB) and hourly profiles of inputs and predictions.",
            metavar="DIR",
        ),
    ] = "keel-predictions",
    no_log: Annotated[bool, typer.Option("--no-log", help="Keep no prediction log.")] = False,
    tracking_uri: TrackingUri = None,
) -> None:
    """Serve a model: POST /invocations scores, /health says when it is ready.

    Accepts MLflow's JSON formats (dataframe_split, dataframe_records, instances,
    inputs) and CSV, and returns {"predictions": [...]}, so clients of `mlflow
    models serve` work unchanged. Input is checked against the model's signature
    and its training data's profile: missing or extra columns, wrong types,
    missing values where training had none, values far out of the training
    range, categories training never saw. /metrics speaks Prometheus.
    """
    require("uvicorn", "server", "keel serve")
    require("orjson", "server", "keel serve")
    import uvicorn

    from keel.server.protocol import http_protocol
    from keel.serving.app import (
        BACKEND_ENV,
        BACKENDS,
        LOG_ENV,
        MAX_BODY_ENV,
        MODEL_ENV,
        POLICIES,
        POLICY_ENV,
        ServedModel,
    )
    from keel.uris import resolve_tracking_uri

    if backend not in BACKENDS:
        raise typer.BadParameter(f"use one of {', '.join(BACKENDS)}", param_hint="--backend")
    if validation not in POLICIES:
        raise typer.BadParameter(f"use one of {', '.join(POLICIES)}", param_hint="--validation")
    os.environ["KEEL_TRACKING_URI"] = resolve_tracking_uri(tracking_uri)
    # Load once here first: a model that cannot load fails the command with the
    # reason, instead of starting workers that only answer 503.
    served = ServedModel.load(model_uri, backend)
    if not served.ready:
        typer.echo(f"Error: cannot serve {model_uri}: {served.error}", err=True)
        raise typer.Exit(1)
    os.environ[MODEL_ENV] = model_uri
    os.environ[BACKEND_ENV] = backend
    os.environ[POLICY_ENV] = validation
    os.environ[MAX_BODY_ENV] = str(max_body_mb << 20)
    os.environ[LOG_ENV] = "" if no_log else str(Path(log_dir).resolve())
    logged = "no prediction log" if no_log else f"logging to {os.environ[LOG_ENV]}"
    typer.echo(
        f"Keel serving {model_uri} at http://{host}:{port}/invocations (validation: {validation}, "
        f"{logged}, {workers} worker{'s' if workers > 1 else ''}); Ctrl-C stops it.",
        err=True,
    )
    uvicorn.run(
        "keel.serving.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        http=http_protocol(),
    )
