"""The tracking store over HTTP: MLflow's REST API, spoken to a Keel or MLflow server.

``open_store("http://host:5000")`` returns a :class:`RestTrackingStore`. It keeps
the :class:`~keel.store.base.TrackingStore` contract of the SQL store: the same
entities, the same exceptions (mapped back from the server's ``error_code``,
with the server's message), and the same limits, checked here before anything
is sent so that a bad batch fails identically everywhere.

How it talks (research/mlflow-wire.md §2–4):

- GET fields go in the query string, other verbs send a JSON body; doubles
  travel as numbers or ``"NaN"`` / ``"Infinity"`` / ``"-Infinity"``, int64 as
  JSON numbers;
- one pooled ``httpx.Client`` per store (thread-safe: the background metric
  writer shares it), created on first use, dropped in a forked child;
- reads (GETs and searches) are retried with exponential backoff on dropped
  connections and on 408/429/502/503/504; writes are retried only when the
  connection could not be opened, i.e. when the server never saw the request.
  Retrying a write the server may have applied could create a second run or
  experiment, so that case surfaces as :class:`~keel.errors.StoreUnavailable`
  saying so.

Environment:

=========================================================  ===========================
``KEEL_TRACKING_TOKEN`` / ``MLFLOW_TRACKING_TOKEN``        ``Authorization: Bearer``
``KEEL_``/``MLFLOW_TRACKING_USERNAME`` and ``_PASSWORD``   HTTP Basic (wins over a token)
``KEEL_``/``MLFLOW_HTTP_REQUEST_TIMEOUT``                  seconds per request (120)
``KEEL_``/``MLFLOW_HTTP_REQUEST_MAX_RETRIES``              retries (4)
``KEEL_``/``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``           first retry delay in s (0.25)
``KEEL_``/``MLFLOW_TRACKING_INSECURE_TLS``                 ``true``: skip TLS checks
``KEEL_``/``MLFLOW_TRACKING_SERVER_CERT_PATH``             CA bundle for the server
=========================================================  ===========================

Credentials are read when the connection pool is created and never appear in
messages or logs; a ``user:password@`` in the URL is used for Basic auth and
redacted the same way.

>>> store = RestTrackingStore("http://127.0.0.1:5000/")
>>> store.url
'http://127.0.0.1:5000'
>>> store.close()
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from keel import __version__
from keel.entities import (
    Dataset,
    DatasetInput,
    Experiment,
    ExperimentTag,
    InputTag,
    LifecycleStage,
    Metric,
    PagedList,
    Param,
    Run,
    RunData,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from keel.errors import (
    AlreadyExists,
    InvalidParameter,
    InvalidState,
    KeelError,
    NotFound,
    StoreUnavailable,
)
from keel.mlflow_json import (
    dataset_input_json,
    double_from_json,
    int_from_json,
    key_values_from_json,
    metric_from_json,
    metric_json,
    model_links_from_json,
)
from keel.search.filter import parse_filter
from keel.search.order import parse_order_by
from keel.store import base, validation
from keel.store.base import TrackingStore
from keel.store.rest_logged_models import RestLoggedModels
from keel.uris import redact

API_PREFIX = "/api/2.0/mlflow"
DEFAULT_TIMEOUT = 120.0  # seconds, MLflow's client default
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 4
DEFAULT_BACKOFF_FACTOR = 0.25  # 0.25, 0.5, 1, 2 s: a server restart fits, a typo fails fast
MAX_BACKOFF = 10.0
MAX_RETRY_AFTER = 60.0

# Answers worth asking again, for reads only: the server or a proxy in front of
# it says "not now". 500 is not among them: Keel answers 500 only for a bug,
# which a retry repeats.
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})

_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")
_EXISTS = ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS")
_INVALID = ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_REQUEST", "MALFORMED_REQUEST")
_STATE = ("INVALID_STATE", "ABORTED", "RESOURCE_CONFLICT")
_AUTH = ("UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED", "PERMISSION_DENIED")
_BUSY = (
    "TEMPORARILY_UNAVAILABLE",
    "REQUEST_LIMIT_EXCEEDED",
    "RESOURCE_EXHAUSTED",
    "DEADLINE_EXCEEDED",
)
_STATUS_NUMBERS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _env_number(suffix: str, default: float) -> float:
    raw = _env(f"KEEL_{suffix}", f"MLFLOW_{suffix}")
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise InvalidParameter(f"KEEL_{suffix}/MLFLOW_{suffix}={raw!r} is not a number.") from None


def _env_flag(suffix: str) -> bool:
    return (_env(f"KEEL_{suffix}", f"MLFLOW_{suffix}") or "").strip().lower() in ("1", "true")


# -- the wire format -------------------------------------------------------------


def _int_or_none(raw: Any) -> int | None:
    return None if raw is None or raw == "" else int(raw)


def _key_value_list(items: Sequence[RunTag | Param | ExperimentTag | InputTag]) -> list[Any]:
    return [{"key": t.key, "value": t.value} for t in items]


def experiment_from_json(d: Mapping[str, Any]) -> Experiment:
    """An :class:`Experiment` from its MLflow JSON object."""
    return Experiment(
        experiment_id=str(d["experiment_id"]),
        name=str(d.get("name", "")),
        artifact_location=str(d.get("artifact_location", "")),
        lifecycle_stage=LifecycleStage(d.get("lifecycle_stage") or "active"),
        tags=key_values_from_json(d.get("tags")),
        creation_time=_int_or_none(d.get("creation_time")),
        last_update_time=_int_or_none(d.get("last_update_time")),
    )


def _run_status(raw: Any) -> RunStatus:
    if isinstance(raw, int) or (isinstance(raw, str) and raw.isdigit()):
        raw = _STATUS_NUMBERS.get(int(raw), raw)
    return RunStatus(raw or "RUNNING")


def run_info_from_json(d: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> RunInfo:
    """A :class:`RunInfo` from MLflow's ``run_info`` JSON (``run_uuid`` for old servers)."""
    return RunInfo(
        run_id=str(d.get("run_id") or d.get("run_uuid") or ""),
        experiment_id=str(d.get("experiment_id", "")),
        run_name=str(d.get("run_name") or (tags or {}).get("mlflow.runName", "")),
        user_id=str(d.get("user_id", "")),
        status=_run_status(d.get("status")),
        start_time=int_from_json(d.get("start_time")),
        end_time=_int_or_none(d.get("end_time")),
        artifact_uri=str(d.get("artifact_uri", "")),
        lifecycle_stage=LifecycleStage(d.get("lifecycle_stage") or "active"),
    )


def _dataset_input_from_json(d: Mapping[str, Any]) -> DatasetInput:
    ds = d.get("dataset") or {}
    dataset = Dataset(
        name=str(ds.get("name", "")),
        digest=str(ds.get("digest", "")),
        source_type=str(ds.get("source_type", "")),
        source=str(ds.get("source", "")),
        schema=ds.get("schema"),
        profile=ds.get("profile"),
    )
    tags = tuple(InputTag(str(t["key"]), str(t.get("value", ""))) for t in d.get("tags") or ())
    return DatasetInput(dataset, tags)


def run_from_json(d: Mapping[str, Any]) -> Run:
    """A :class:`Run` from its MLflow JSON object (info, data, inputs)."""
    data = d.get("data") or {}
    tags = key_values_from_json(data.get("tags"))
    metrics = {
        str(m["key"]): double_from_json(m.get("value", 0.0)) for m in data.get("metrics", ())
    }
    inputs = (d.get("inputs") or {}).get("dataset_inputs") or ()
    return Run(
        info=run_info_from_json(d.get("info") or {}, tags),
        data=RunData(metrics=metrics, params=key_values_from_json(data.get("params")), tags=tags),
        inputs=tuple(_dataset_input_from_json(i) for i in inputs),
        models=model_links_from_json(d),
    )


def _page_fields(
    max_results: int, page_token: str | None, order_by: Sequence[str] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"max_results": max_results}
    if order_by:
        out["order_by"] = list(order_by)
    if page_token:
        out["page_token"] = page_token
    return out


def _is_experiment_id(value: object) -> bool:
    # MLflow experiment ids are decimal integers; the server rejects anything
    # else with 400, where the store contract says "does not exist".
    return isinstance(value, str) and value.isascii() and value.isdigit()


def _require_experiment_id(experiment_id: str) -> str:
    if not _is_experiment_id(experiment_id):
        raise NotFound(
            f"Experiment with id {experiment_id!r} does not exist. "
            "List experiments with `keel experiments list`."
        )
    return experiment_id


# -- the transport -------------------------------------------------------------------


def _split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without ``user:password@`` and the credentials it carried."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, (parts.username or "", parts.password or "")


class RestTrackingStore(RestLoggedModels, TrackingStore):
    """The tracking store behind an ``http(s)://`` Keel or MLflow tracking server.

    ``url`` is the server's base URL (a path prefix such as ``/mlflow`` behind a
    reverse proxy is kept). ``timeout``, ``max_retries`` and ``backoff_factor``
    default to the environment (see the module docs), then to 120 s, 4 and
    0.25 s. ``transport`` replaces httpx's network transport (tests, custom
    proxies).

    >>> store = RestTrackingStore("https://ana:s3cret@tracking.example.com/mlflow")
    >>> store
    RestTrackingStore('https://tracking.example.com/mlflow')
    >>> store.close()
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        backoff_factor: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise InvalidParameter(
                f"RestTrackingStore needs an http:// or https:// URL, not {redact(url)!r}."
            )
        bare, self._url_credentials = _split_credentials(url)
        self.url = bare.rstrip("/")
        self.timeout = (
            timeout if timeout is not None else _env_number("HTTP_REQUEST_TIMEOUT", DEFAULT_TIMEOUT)
        )
        self.max_retries = int(
            max_retries
            if max_retries is not None
            else _env_number("HTTP_REQUEST_MAX_RETRIES", DEFAULT_MAX_RETRIES)
        )
        self.backoff_factor = (
            backoff_factor
            if backoff_factor is not None
            else _env_number("HTTP_REQUEST_BACKOFF_FACTOR", DEFAULT_BACKOFF_FACTOR)
        )
        self._transport = transport
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"RestTrackingStore({self.url!r})"

    # -- connection lifecycle --------------------------------------------------------

    def _http(self) -> httpx.Client:
        if self._pid != os.getpid():
            # A forked child that was not told (an uncached store): sockets
            # shared with the parent must not be used from here.
            self.after_fork()
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> httpx.Client:
        headers = {"User-Agent": f"keel/{__version__}", "Accept": "application/json"}
        auth: httpx.Auth | None = None
        username = _env("KEEL_TRACKING_USERNAME", "MLFLOW_TRACKING_USERNAME")
        password = _env("KEEL_TRACKING_PASSWORD", "MLFLOW_TRACKING_PASSWORD")
        token = _env("KEEL_TRACKING_TOKEN", "MLFLOW_TRACKING_TOKEN")
        if self._url_credentials is not None:
            auth = httpx.BasicAuth(*self._url_credentials)
        elif username and password:  # MLflow's precedence: Basic, then the token
            auth = httpx.BasicAuth(username, password)
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        verify: ssl.SSLContext | bool = True
        cert_path = _env("KEEL_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_SERVER_CERT_PATH")
        if _env_flag("TRACKING_INSECURE_TLS"):
            verify = False
        elif cert_path:
            verify = ssl.create_default_context(cafile=cert_path)
        return httpx.Client(
            headers=headers,
            auth=auth,
            verify=verify,
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, DEFAULT_CONNECT_TIMEOUT)),
            transport=self._transport,
            follow_redirects=False,
        )

    def after_fork(self) -> None:
        """Forget the parent's connections without closing them (they are the parent's)."""
        self._lock = threading.Lock()  # may have been held by a parent thread at fork time
        self._client = None
        self._pid = os.getpid()

    def close(self) -> None:
        """Close pooled connections; a later call opens new ones."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- one RPC -----------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        fields: Mapping[str, Any] | None = None,
        *,
        read: bool = False,
    ) -> dict[str, Any]:
        """Send one RPC and return its JSON object; errors become Keel exceptions.

        ``read`` marks an RPC that changes nothing, so it may be repeated after
        a dropped connection or a 408/429/502/503/504.
        """
        url = f"{self.url}{API_PREFIX}{path}"
        request: dict[str, Any] = {}
        if method == "GET":
            request["params"] = _query(fields or {})
        else:
            # allow_nan=False: every double went through double_to_json, so a
            # bare NaN here would be a bug, and strict JSON is what servers parse.
            request["content"] = json.dumps(fields or {}, allow_nan=False).encode()
            request["headers"] = {"Content-Type": "application/json"}
        attempt = 0
        while True:
            try:
                response = self._http().request(method, url, **request)
            except httpx.TransportError as exc:
                never_sent = isinstance(
                    exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
                )
                slow = isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout))
                if (never_sent or (read and not slow)) and attempt < self.max_retries:
                    self._backoff(attempt, None)
                    attempt += 1
                    continue
                raise self._unreachable(
                    method, path, exc, maybe_applied=not never_sent and not read
                ) from exc
            if read and response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                self._backoff(attempt, response.headers.get("Retry-After"))
                attempt += 1
                continue
            return self._result(method, path, response)

    def _backoff(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.backoff_factor * 2**attempt, MAX_BACKOFF)
        # Retry-After in seconds wins; an HTTP date (rare from API servers) is ignored.
        with contextlib.suppress(ValueError, TypeError):
            delay = min(max(float(retry_after or ""), 0.0), MAX_RETRY_AFTER)
        # Jitter: many workers retrying one server should not arrive in lockstep.
        time.sleep(delay * (1 + 0.1 * random.random()))

    def _unreachable(
        self, method: str, path: str, exc: httpx.TransportError, *, maybe_applied: bool
    ) -> StoreUnavailable:
        reason = (str(exc) or type(exc).__name__).rstrip(". ")
        call = f"{method} {API_PREFIX}{path}"
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            hint = (
                f"The server did not answer within {self.timeout:g} s; if it is just slow, "
                "raise KEEL_HTTP_REQUEST_TIMEOUT."
            )
        else:
            hint = (
                "Check that the server is running (`keel server`), that the host and port "
                "in the tracking URI are right, and that no firewall or proxy is in the way."
            )
        applied = (
            " The request had been sent, so the server may have applied it: check before "
            "repeating it (a repeated create makes a second run or experiment)."
            if maybe_applied
            else ""
        )
        return StoreUnavailable(
            f"Cannot reach the tracking server at {self.url} ({call}): {reason}. {hint}{applied}"
        )

    def _result(self, method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        body: Any = None
        try:
            body = response.json() if response.content.strip() else {}
        except ValueError:
            body = None
        if response.is_success:
            if isinstance(body, dict):
                return body
            if response.text.strip() in ("", "200 OK"):  # MLflow's client accepts these too
                return {}
            raise KeelError(
                f"The tracking server at {self.url} answered {method} {API_PREFIX}{path} with "
                f"something that is not a JSON object: {_snippet(response.text)!r}. Check that "
                "the tracking URI points at a Keel or MLflow tracking server."
            )
        if isinstance(body, dict) and isinstance(body.get("error_code"), str):
            code = body["error_code"]
            message = str(body.get("message") or code)
        else:
            code = ""
            message = _snippet(response.text) or response.reason_phrase
        raise self._error(method, path, response.status_code, code, message)

    def _error(self, method: str, path: str, status: int, code: str, message: str) -> KeelError:
        """The Keel exception for an error answer; the server's message is kept verbatim
        for the errors the contract names, so callers see what the SQL store would say."""
        call = f"{method} {API_PREFIX}{path}"
        said = message.rstrip(". ")  # the server's words, inside a sentence of ours
        if code in _NOT_FOUND:
            return NotFound(message)
        if code in _EXISTS:
            return AlreadyExists(message)
        if code in _INVALID:
            return InvalidParameter(message)
        if code in _STATE:
            return InvalidState(message)
        if code in _AUTH or status in (401, 403):
            return StoreUnavailable(
                f"The tracking server at {self.url} refused {call} (HTTP {status}"
                f"{' ' + code if code else ''}): {said}. Check the credentials: "
                "KEEL_TRACKING_TOKEN or MLFLOW_TRACKING_TOKEN (Bearer), or "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (Basic)."
            )
        if code == "ENDPOINT_NOT_FOUND" or (status in (404, 405) and not code):
            return StoreUnavailable(
                f"The server at {self.url} has no endpoint {call} (HTTP {status}). Check that "
                "the tracking URI is the base URL of a Keel or MLflow tracking server (no "
                "/api or UI path), and that the server is recent enough for this call."
            )
        if code in _BUSY or status in RETRY_STATUSES:
            return StoreUnavailable(
                f"The tracking server at {self.url} is unavailable for {call} (HTTP {status}"
                f"{' ' + code if code else ''}): {said}. Try again later; if it persists, "
                "check the server's logs and its database."
            )
        if status == 400:  # a 400 the server did not classify is still the caller's mistake
            return InvalidParameter(message)
        return KeelError(
            f"The tracking server at {self.url} failed on {call} (HTTP {status}"
            f"{' ' + code if code else ''}): {message}"
        )

    # -- experiments ---------------------------------------------------------------------

    def create_experiment(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: Sequence[ExperimentTag] = (),
    ) -> str:
        validation.validate_experiment_name(name)
        for tag in tags:
            validation.validate_tag(tag, base.MAX_EXPERIMENT_TAG_VALUE_LENGTH)
        fields: dict[str, Any] = {"name": name, "tags": _key_value_list(tags)}
        if artifact_location:
            fields["artifact_location"] = artifact_location
        return str(self._call("POST", "/experiments/create", fields)["experiment_id"])

    def get_experiment(self, experiment_id: str) -> Experiment:
        _require_experiment_id(experiment_id)
        answer = self._call("GET", "/experiments/get", {"experiment_id": experiment_id}, read=True)
        return experiment_from_json(answer["experiment"])

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        try:
            answer = self._call(
                "GET", "/experiments/get-by-name", {"experiment_name": name}, read=True
            )
        except NotFound:
            return None
        return experiment_from_json(answer["experiment"])

    def search_experiments(
        self,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Experiment]:
        # Checked here as the SQL store checks them: the same exceptions
        # (FilterSyntaxError with its position) whatever the server is.
        validation.validate_max_results(max_results, base.MAX_RESULTS_EXPERIMENTS, "experiments")
        parse_filter(filter_string, "experiments")
        parse_order_by(order_by, "experiments")
        fields = {
            "view_type": ViewType(view_type).value,
            **_page_fields(max_results, page_token, order_by),
        }
        if filter_string:
            fields["filter"] = filter_string
        answer = self._call("POST", "/experiments/search", fields, read=True)
        return PagedList(
            [experiment_from_json(e) for e in answer.get("experiments", ())],
            answer.get("next_page_token") or None,
        )

    def delete_experiment(self, experiment_id: str) -> None:
        _require_experiment_id(experiment_id)
        self._call("POST", "/experiments/delete", {"experiment_id": experiment_id})

    def restore_experiment(self, experiment_id: str) -> None:
        _require_experiment_id(experiment_id)
        self._call("POST", "/experiments/restore", {"experiment_id": experiment_id})

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        validation.validate_experiment_name(new_name)
        _require_experiment_id(experiment_id)
        self._call(
            "POST", "/experiments/update", {"experiment_id": experiment_id, "new_name": new_name}
        )

    def set_experiment_tag(self, experiment_id: str, tag: ExperimentTag) -> None:
        validation.validate_tag(tag, base.MAX_EXPERIMENT_TAG_VALUE_LENGTH)
        _require_experiment_id(experiment_id)
        self._call(
            "POST",
            "/experiments/set-experiment-tag",
            {"experiment_id": experiment_id, "key": tag.key, "value": tag.value},
        )

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        _require_experiment_id(experiment_id)
        self._call(
            "POST",
            "/experiments/delete-experiment-tag",
            {"experiment_id": experiment_id, "key": key},
        )

    # -- runs ------------------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        user_id: str,
        start_time: int,
        tags: Sequence[RunTag],
        run_name: str | None,
    ) -> Run:
        _require_experiment_id(experiment_id)
        if run_name is not None:
            validation.validate_run_name(run_name)
        for tag in tags:
            validation.validate_tag(tag)
        validation.validate_int64("start_time", start_time)
        fields: dict[str, Any] = {
            "experiment_id": experiment_id,
            "user_id": user_id,
            "start_time": start_time,
            "tags": _key_value_list(tags),
        }
        if run_name:
            fields["run_name"] = run_name
        return run_from_json(self._call("POST", "/runs/create", fields)["run"])

    def get_run(self, run_id: str) -> Run:
        # run_uuid as well: older MLflow servers know only that name.
        answer = self._call("GET", "/runs/get", {"run_id": run_id, "run_uuid": run_id}, read=True)
        return run_from_json(answer["run"])

    def update_run_info(
        self,
        run_id: str,
        status: RunStatus | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        fields: dict[str, Any] = {"run_id": run_id, "run_uuid": run_id}
        if status is not None:
            fields["status"] = RunStatus(status).value
        if end_time is not None:
            validation.validate_int64("end_time", end_time)
            fields["end_time"] = end_time
        if run_name is not None:
            validation.validate_run_name(run_name)
            fields["run_name"] = run_name
        answer = self._call("POST", "/runs/update", fields)
        return run_info_from_json(answer["run_info"])

    def delete_run(self, run_id: str) -> None:
        self._call("POST", "/runs/delete", {"run_id": run_id})

    def restore_run(self, run_id: str) -> None:
        self._call("POST", "/runs/restore", {"run_id": run_id})

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        # The SQL store's checks, before sending: a batch over the limits
        # fails with the same message here as there, and never half-written.
        validation.validate_batch(metrics, params, tags)
        if not (metrics or params or tags):
            return
        fields: dict[str, Any] = {"run_id": run_id}
        if metrics:
            fields["metrics"] = [metric_json(m) for m in metrics]
        if params:
            fields["params"] = _key_value_list(params)
        if tags:
            fields["tags"] = _key_value_list(tags)
        self._call("POST", "/runs/log-batch", fields)

    def delete_tag(self, run_id: str, key: str) -> None:
        self._call("POST", "/runs/delete-tag", {"run_id": run_id, "key": key})

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        if not datasets:
            return
        self._call(
            "POST",
            "/runs/log-inputs",
            {"run_id": run_id, "datasets": [dataset_input_json(d) for d in datasets]},
        )

    def get_metric_history(
        self,
        run_id: str,
        key: str,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> PagedList[Metric]:
        validation.validate_max_results(
            max_results or base.MAX_RESULTS_METRIC_HISTORY,
            base.MAX_RESULTS_METRIC_HISTORY,
            "metric history",
        )
        fields: dict[str, Any] = {"run_id": run_id, "run_uuid": run_id, "metric_key": key}
        if max_results:
            fields["max_results"] = max_results
        if page_token:
            fields["page_token"] = page_token
        answer = self._call("GET", "/metrics/get-history", fields, read=True)
        points = [metric_from_json(m, key) for m in answer.get("metrics", ())]
        return PagedList(points, answer.get("next_page_token") or None)

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        run_view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Run]:
        validation.validate_max_results(max_results, base.MAX_RESULTS_RUNS, "runs")
        if isinstance(experiment_ids, str):
            experiment_ids = [experiment_ids]
        parse_filter(filter_string, "runs")
        parse_order_by(order_by, "runs")
        # An id that is not an integer names no experiment: the SQL store
        # matches nothing for it, servers answer 400. Match nothing here too.
        ids = [i for i in experiment_ids if _is_experiment_id(i)]
        if not ids:
            return PagedList([], None)
        fields = {
            "experiment_ids": ids,
            "run_view_type": ViewType(run_view_type).value,
            **_page_fields(max_results, page_token, order_by),
        }
        if filter_string:
            fields["filter"] = filter_string
        answer = self._call("POST", "/runs/search", fields, read=True)
        return PagedList(
            [run_from_json(r) for r in answer.get("runs", ())],
            answer.get("next_page_token") or None,
        )


def _query(fields: Mapping[str, Any]) -> dict[str, str | list[str]]:
    """Query-string values: lists become repeated keys, numbers decimal text."""
    out: dict[str, str | list[str]] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out[key] = [str(v) for v in value]
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
