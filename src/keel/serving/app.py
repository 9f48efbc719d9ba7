"""The scoring server for one model: MLflow's scoring protocol, checked input, no 5xx for input.

Routes: ``POST /invocations`` (JSON in MLflow's four formats, or CSV),
``GET /ping``, ``/health``, ``/version``, ``/metadata`` and ``/metrics``
(Prometheus text). A plain ASGI callable rather than a framework app: the
path from request to prediction is a few dictionary lookups, which is most of
what keeps the overhead over the model's own ``predict`` small.

Validation policies (``--validation``):

* ``reject`` (default): a request with any problem gets 422 and the list of
  problems, per column, each with a stable code (:mod:`keel.serving.checks`);
* ``warn``: it is served, with ``X-Keel-Validation: warn`` and the problem
  codes in the response headers, and logged;
* ``off``: no checks beyond parsing.

>>> app = ScoringApp(ServedModel.failed("models:/churn@prod", "no such model"))
>>> app.ready
False
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from keel import __version__
from keel.serving.batching import MicroBatcher
from keel.serving.checks import InputChecker, Problem
from keel.serving.metrics import ServingMetrics
from keel.serving.payload import PayloadError, numeric_rows, parse
from keel.serving.prediction_log import LogMeta, PredictionLog
from keel.serving.schema import InputSchema

log = logging.getLogger("keel.serving")

POLICIES = ("reject", "warn", "off")
MAX_BODY_BYTES = 64 << 20
MODEL_ENV = "KEEL_SERVE_MODEL_URI"
POLICY_ENV = "KEEL_SERVE_VALIDATION"
MAX_BODY_ENV = "KEEL_SERVE_MAX_BODY_BYTES"
LOG_ENV = "KEEL_SERVE_LOG_DIR"  # empty: no prediction log
BACKEND_ENV = "KEEL_SERVE_BACKEND"
BACKENDS = ("native", "onnx", "auto")
DRIFT_EVERY = 30.0  # seconds between two drift computations for /metrics
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class ServedModel:
    """The model behind the server, with what it was loaded from and what it expects."""

    uri: str
    model: Any = None
    name: str | None = None
    version: str | None = None
    package: Path | None = None
    schema: InputSchema = field(default_factory=InputSchema)
    profile: Any = None  # keel.data.Profile of the training data, when the package has one
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.model is not None and self.error is None

    @classmethod
    def failed(cls, uri: str, error: str) -> ServedModel:
        return cls(uri, error=error)

    @classmethod
    def load(cls, uri: str, backend: str = "native") -> ServedModel:
        """Resolve ``uri`` (path, ``runs:/``, ``models:/``) and load it with every check.

        ``backend``: ``native`` (the model itself), ``onnx`` (its ONNX twin, which
        must have passed parity), or ``auto`` (the twin when there is one).

        A failure is kept, not raised: the server then answers ``/health`` with
        503 and the reason, which is what an orchestrator's readiness probe reads.
        """
        from keel.errors import KeelError
        from keel.models import load, resolve_model_uri

        name, version = _registered_name(uri)
        try:
            package = resolve_model_uri(uri)
            model = load(package)
        except KeelError as exc:
            return cls(uri, name=name, version=version, error=exc.message)
        except (OSError, ValueError) as exc:
            return cls(uri, name=name, version=version, error=f"{type(exc).__name__}: {exc}")
        root = Path(model.path)
        if backend in ("onnx", "auto"):
            from keel.models.package import ModelRefused, load_twin

            try:
                model = load_twin(root)
            except ModelRefused as exc:
                if backend == "onnx":  # asked for explicitly: say why it cannot be
                    return cls(
                        uri, name=name, version=version, error=f"--backend onnx: {exc.message}"
                    )
        return cls(
            uri,
            model=model,
            name=name,
            version=version if version is not None else _version_of(uri),
            package=root,
            schema=InputSchema.of_package(root),
            profile=model.training_profile(),
        )

    def describe(self) -> dict[str, Any]:
        """``/metadata``: what is served and what it takes."""
        out: dict[str, Any] = {
            "model_uri": self.uri,
            "name": self.name,
            "version": self.version,
            "ready": self.ready,
        }
        if self.error:
            out["error"] = self.error
        if self.model is not None:
            out |= {
                "backend": getattr(self.model, "backend", "native"),
                "flavor": getattr(self.model, "flavor", None),
                "signature": {"inputs": self.schema.to_dict()},
                "training_profile": (
                    {"rows": self.profile.rows, "columns": list(self.profile.columns)}
                    if self.profile is not None
                    else None
                ),
            }
        return out


class ScoringApp:
    """ASGI app serving one :class:`ServedModel`."""

    def __init__(
        self,
        served: ServedModel,
        *,
        validation: str = "reject",
        max_body_bytes: int = MAX_BODY_BYTES,
        prediction_log: PredictionLog | None = None,
    ) -> None:
        if validation not in POLICIES:
            raise ValueError(f"validation must be one of {', '.join(POLICIES)}, not {validation!r}")
        self.served = served
        self.validation = validation
        self.max_body_bytes = max_body_bytes
        self.checker = InputChecker(served.schema, served.profile)
        self.metrics = ServingMetrics()
        self.log = prediction_log
        if prediction_log is not None:
            self.metrics.watch_log(prediction_log)
        # one thread runs the model: predictions never block the event loop,
        # which keeps parsing and answering other requests meanwhile
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keel-predict")
        predict = served.model.predict if served.model is not None else _not_ready
        self.batcher = MicroBatcher(predict, self._executor)
        self.metrics.watch_batcher(self.batcher)
        self._drift_at = -DRIFT_EVERY
        self._routes: dict[tuple[str, str], Callable[[Scope, Receive], Awaitable[_Response]]] = {
            ("POST", "/invocations"): self._invocations,
            ("POST", "/feedback"): self._feedback,
            ("GET", "/ping"): self._ping,
            ("GET", "/health"): self._health,
            ("GET", "/version"): self._version,
            ("GET", "/metadata"): self._metadata,
            ("GET", "/metrics"): self._metrics,
        }

    @property
    def ready(self) -> bool:
        return self.served.ready

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        handler = self._routes.get((scope["method"], scope["path"]))
        if handler is None:
            known = {path for _, path in self._routes}
            response = (
                _error(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"{scope['method']} is not allowed on {scope['path']}.",
                )
                if scope["path"] in known
                else _error(
                    404, "NOT_FOUND", f"No route {scope['path']!r}: POST /invocations scores."
                )
            )
        else:
            try:
                response = await handler(scope, receive)
            except Exception:  # a bug must not leak a traceback to the client
                log.exception("keel serve: unexpected error")
                response = _error(500, "INTERNAL_ERROR", "The server failed; see its log.")
        await response.send(send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        """Finish the predictions in flight and write every queued log entry."""
        self._executor.shutdown(wait=True)
        if self.log is not None:
            self.log.close()

    # -- scoring -------------------------------------------------------------------

    async def _invocations(self, scope: Scope, receive: Receive) -> _Response:
        started = time.perf_counter()
        request_id = _request_id(scope)
        response = await self._score(scope, receive, request_id, started)
        response.headers.append((b"x-request-id", request_id.encode()))
        self.metrics.request(response.status, time.perf_counter() - started)
        return response

    async def _score(
        self, scope: Scope, receive: Receive, request_id: str, started: float
    ) -> _Response:
        if not self.ready:
            return _error(503, "MODEL_NOT_READY", f"The model is not loaded: {self.served.error}")
        body = await _read_body(scope, receive, self.max_body_bytes)
        if isinstance(body, _Response):
            return body
        content_type = _header(scope, b"content-type")
        problems: list[Problem] = []
        model_input: Any = None
        if self.validation != "off" and self.checker.all_numeric:
            # the fast path: numbers straight into a matrix, one vectorised check;
            # anything it declines goes the general way, which explains problems
            matrix = numeric_rows(body, content_type, self.served.schema.columns)
            if matrix is not None:
                model_input = self.checker.check_matrix(matrix)
        if model_input is not None:
            # the log keeps the array: the writer thread, not the request, makes it a table
            frame = matrix
        else:
            try:
                frame = parse(body, content_type)
            except PayloadError as exc:
                self.metrics.payload_error(exc.code)
                return _error(exc.status, exc.code, exc.detail)
            model_input = frame
            if self.validation != "off":
                model_input, problems = self.checker.check(frame)
                self.metrics.problems(problems)
        self.metrics.rows(len(frame))
        if problems and self.validation == "reject":
            return _invalid(problems)
        if problems:
            log.warning(
                "request %s served despite %d problem(s): %s",
                request_id,
                len(problems),
                "; ".join(p.message for p in problems),
            )
        try:
            predictions = await self.batcher.predict(model_input)

        except Exception as exc:  # the model refused this input: the client's to fix
            self.metrics.prediction_failed()
            return _error(422, "PREDICTION_FAILED", f"The model could not score this input: {exc}")
        self.metrics.predictions(predictions)
        response = _Response(200, _dumps({"predictions": predictions}))
        codes = ",".join(sorted({f"{p.column}:{p.code}" for p in problems}))[:1024]
        if self.log is not None:
            outcome = "warn" if problems else "off" if self.validation == "off" else "passed"
            meta = LogMeta(request_id, time.perf_counter() - started, outcome, codes)
            self.log.submit(frame, predictions, meta, self.served.schema.columns)
        if problems:
            response.headers += [
                (b"x-keel-validation", b"warn"),
                (b"x-keel-problems", codes.encode()),
            ]
        else:
            response.headers.append((b"x-keel-validation", self.validation.encode()))
        return response

    async def _feedback(self, scope: Scope, receive: Receive) -> _Response:
        """True values for logged predictions: ``{"request_id", "actual"}`` or ``"actuals"``.

        A list of such objects is accepted too; ``"row"`` says which row of the
        request the first value is for (default 0). Answers 202: the values are
        queued for the log, and joined with the predictions by the monitoring report.
        """
        if self.log is None:
            return _error(
                409,
                "NO_PREDICTION_LOG",
                "This server keeps no prediction log "
                "(--no-log), so feedback has nothing to be joined with.",
            )
        body = await _read_body(scope, receive, self.max_body_bytes)
        if isinstance(body, _Response):
            return body
        try:
            entries = _feedback_entries(body)
        except PayloadError as exc:
            return _error(exc.status, exc.code, exc.detail)
        accepted = 0
        for request_id, first_row, actuals in entries:
            if self.log.feedback(request_id, actuals, first_row):
                accepted += len(actuals)
        return _Response(202, _dumps({"accepted": accepted}))

    # -- the rest ------------------------------------------------------------------

    async def _ping(self, scope: Scope, receive: Receive) -> _Response:
        return _Response(200 if self.ready else 503, b"\n", content_type=b"text/plain")

    async def _health(self, scope: Scope, receive: Receive) -> _Response:
        if self.ready:
            return _Response(200, _dumps({"status": "ready", "model_uri": self.served.uri}))
        return _Response(
            503,
            _dumps(
                {"status": "not ready", "model_uri": self.served.uri, "reason": self.served.error}
            ),
        )

    async def _version(self, scope: Scope, receive: Receive) -> _Response:
        s = self.served
        return _Response(
            200,
            _dumps({"keel": __version__, "model_uri": s.uri, "name": s.name, "version": s.version}),
        )

    async def _metadata(self, scope: Scope, receive: Receive) -> _Response:
        return _Response(200, _dumps(self.served.describe() | {"validation": self.validation}))

    async def _metrics(self, scope: Scope, receive: Receive) -> _Response:
        self._refresh_drift()
        return _Response(200, self.metrics.exposition(), content_type=self.metrics.content_type)

    def _refresh_drift(self) -> None:
        """This hour's inputs against the training profile, at most every DRIFT_EVERY seconds."""
        if self.log is None or self.served.profile is None:
            return
        now = time.monotonic()
        if now - self._drift_at < DRIFT_EVERY:
            return
        current = self.log.current_profile
        if current is None:
            return
        self._drift_at = now
        from keel.data.drift_report import drift
        from keel.data.frames import DataError
        from keel.serving.monitor import inputs_profile

        inputs = inputs_profile(current)
        shared = [c for c in self.served.profile.columns if c in inputs.columns]
        try:
            report = drift(self.served.profile, inputs, columns=shared) if shared else None
        except DataError:
            return  # types that do not compare (served under "off"): no scores, not wrong ones
        if report is not None:
            self.metrics.drift(report)


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def send(self, send: Send) -> None:
        headers = [
            (b"content-type", self.content_type),
            (b"content-length", str(len(self.body)).encode()),
            *self.headers,
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def _error(status: int, code: str, message: str) -> _Response:
    return _Response(status, _dumps({"error_code": code, "message": message}))


def _invalid(problems: list[Problem]) -> _Response:
    columns = sorted({p.column for p in problems})
    message = f"The input has {len(problems)} problem(s) in {', '.join(columns)}: " + " ".join(
        p.message for p in problems[:5]
    )
    body = {
        "error_code": "INVALID_INPUT",
        "message": message,
        "problems": [p.to_dict() for p in problems],
    }
    return _Response(422, _dumps(body))


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | _Response:
    declared = _header(scope, b"content-length")
    if declared.isdigit() and int(declared) > limit:
        return _error(413, "PAYLOAD_TOO_LARGE", f"The body is over the {limit:,}-byte limit.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return _error(400, "CLIENT_DISCONNECTED", "The client went away mid-request.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return _error(413, "PAYLOAD_TOO_LARGE", f"The body is over the {limit:,}-byte limit.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _not_ready(model_input: Any) -> Any:
    raise RuntimeError("the model is not loaded")


def _feedback_entries(body: bytes) -> list[tuple[str, int, list[Any]]]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise PayloadError("MALFORMED_JSON", f"The body is not valid JSON: {exc}.") from None
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise PayloadError("BAD_FEEDBACK", "The body holds no feedback.")
    entries = []
    for i, item in enumerate(items):
        where = f"feedback {i}" if isinstance(doc, list) else "the feedback"
        if not isinstance(item, dict):
            raise PayloadError("BAD_FEEDBACK", f"{where} must be an object with request_id.")
        request_id, row = item.get("request_id"), item.get("row", 0)
        if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
            raise PayloadError(
                "BAD_FEEDBACK",
                f"{where} needs the request_id of a scoring response (X-Request-Id).",
            )
        if not isinstance(row, int) or isinstance(row, bool) or row < 0:
            raise PayloadError("BAD_FEEDBACK", f"{where}: row must be a whole number >= 0.")
        if "actuals" in item:
            actuals = item["actuals"]
            if not isinstance(actuals, list) or not actuals:
                raise PayloadError("BAD_FEEDBACK", f"{where}: actuals must be a non-empty list.")
        elif "actual" in item:
            actuals = [item["actual"]]
        else:
            raise PayloadError("BAD_FEEDBACK", f"{where} needs actual (or actuals, one per row).")
        if not all(isinstance(v, str | int | float | bool) for v in actuals):
            raise PayloadError(
                "BAD_FEEDBACK", f"{where}: each actual must be a number, string or boolean."
            )
        entries.append((request_id, row, actuals))
    return entries


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _request_id(scope: Scope) -> str:
    given = _header(scope, b"x-request-id")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def _dumps(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY, default=_default)


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # pandas / numpy values orjson does not know natively
        return value.tolist()
    return str(value)


def _registered_name(uri: str) -> tuple[str | None, str | None]:
    if not uri.startswith("models:/"):
        return None, None
    rest = uri[len("models:/") :].strip("/")
    if "@" in rest:
        return rest.split("@", 1)[0], None
    name, _, version = rest.partition("/")
    return name, version if version.isdigit() else None


def _version_of(uri: str) -> str | None:
    """The registered version a ``models:/name@alias`` or ``/stage`` URI points at now."""
    if not uri.startswith("models:/"):
        return None
    from keel.tracking.client import Client

    try:
        return str(Client().registry.resolve(uri).version)
    except Exception:  # the model loaded, so this only costs the version in /version
        return None


def app_from_environment() -> ScoringApp:
    """The app ``keel serve`` runs in each worker, configured through the environment."""
    served = ServedModel.load(os.environ[MODEL_ENV], os.environ.get(BACKEND_ENV, "native"))
    log_dir = os.environ.get(LOG_ENV, "")
    prediction_log = (
        PredictionLog(log_dir, model_name=served.name, model_version=served.version)
        if log_dir and served.ready
        else None
    )
    return ScoringApp(
        served,
        validation=os.environ.get(POLICY_ENV, "reject"),
        max_body_bytes=int(os.environ.get(MAX_BODY_ENV, MAX_BODY_BYTES)),
        prediction_log=prediction_log,
    )
