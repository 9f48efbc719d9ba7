"""RestTrackingStore: what only the HTTP store has (the contract itself is in test_store_parity).

Two kinds of server: a live Keel server over a SQLite file (``rest_server_url``
from conftest), and a scripted ASGI app (``fake``) that answers what a test
tells it to and records every request, for errors, retries, auth and the wire
format. Failures below HTTP (refused connections, timeouts) go through an
``httpx.MockTransport``.
"""

from __future__ import annotations

import base64
import json
import math
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

import keel  # noqa: E402
from keel.artifacts import get_repository  # noqa: E402
from keel.entities import Metric, Param, RunStatus, RunTag  # noqa: E402
from keel.errors import (  # noqa: E402
    AlreadyExists,
    FilterSyntaxError,
    InvalidParameter,
    InvalidState,
    KeelError,
    NotFound,
    StoreUnavailable,
)
from keel.store import open_store  # noqa: E402
from keel.store.rest import RestTrackingStore  # noqa: E402
from keel.store.sql.store import SqlTrackingStore  # noqa: E402
from keel.tracking.writer import BackgroundWriteError, MetricWriter  # noqa: E402
from live_server import serve  # noqa: E402

RUN_ID = "a" * 32
RUN_JSON = {
    "info": {
        "run_id": RUN_ID,
        "experiment_id": "0",
        "run_name": "r",
        "user_id": "ana",
        "status": "RUNNING",
        "start_time": 1,
        "artifact_uri": "/tmp/a",
        "lifecycle_stage": "active",
    },
    "data": {},
}


@pytest.fixture
def rest(rest_server_url: str) -> Iterator[RestTrackingStore]:
    """A RestTrackingStore on a live Keel server, retrying quickly."""
    store = RestTrackingStore(rest_server_url, backoff_factor=0.01)
    try:
        yield store
    finally:
        store.close()


# -- a scripted server ---------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Answer = tuple[int, "dict[str, Any] | str"]


class FakeServer:
    """An ASGI app answering ``handler(request)``: a JSON object, or text sent as HTML."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.handler: Callable[[Seen], Answer] = lambda seen: (200, {})

    def answer(self, *answers: Answer) -> None:
        """Answer with these in turn, then keep repeating the last one."""
        queue = list(answers)
        self.handler = lambda seen: queue.pop(0) if len(queue) > 1 else queue[0]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen = Seen(
            scope["method"],
            scope["path"],
            parse_qs(scope["query_string"].decode()),
            {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body,
        )
        self.requests.append(seen)
        status, payload = self.handler(seen)
        if isinstance(payload, dict):
            data, ctype = json.dumps(payload).encode(), b"application/json"
        else:
            data, ctype = payload.encode(), b"text/html"
        headers = [(b"content-type", ctype), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})


@pytest.fixture
def fake() -> Iterator[tuple[FakeServer, str]]:
    app = FakeServer()
    with serve(app) as url:
        yield app, url


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _clean_tracking_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "KEEL_TRACKING_TOKEN",
        "MLFLOW_TRACKING_TOKEN",
        "KEEL_TRACKING_USERNAME",
        "MLFLOW_TRACKING_USERNAME",
        "KEEL_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_PASSWORD",
        "KEEL_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    ):
        monkeypatch.delenv(var, raising=False)


# -- errors ----------------------------------------------------------------------------


def test_errors_map_back_to_keel_exceptions_with_the_servers_message(
    rest: RestTrackingStore,
) -> None:
    with pytest.raises(NotFound, match=f"Run '{'0' * 32}' does not exist"):
        rest.get_run("0" * 32)
    rest.create_experiment("dup")
    with pytest.raises(AlreadyExists, match="'dup' already exists"):
        rest.create_experiment("dup")
    run_id = rest.create_run("0", "ana", 0, [], "r").info.run_id
    rest.log_param(run_id, Param("lr", "0.1"))
    with pytest.raises(InvalidParameter, match=r"'0\.1'.*'0\.2'"):
        rest.log_param(run_id, Param("lr", "0.2"))
    rest.delete_run(run_id)
    with pytest.raises(InvalidState, match=r"is deleted.*keel runs restore"):
        rest.log_metric(run_id, Metric("m", 1.0, 0, 0))
    assert rest.get_experiment_by_name("nope") is None
    # Not an integer: the server would answer 400, the contract says NotFound.
    with pytest.raises(NotFound, match="'abc' does not exist"):
        rest.get_experiment("abc")
    # Filters are parsed before sending: the same FilterSyntaxError as locally.
    with pytest.raises(FilterSyntaxError) as err:
        rest.search_runs(["0"], "metrics.acc > > 1")
    assert err.value.position is not None


@pytest.mark.parametrize(
    ("status", "payload", "error", "fragments"),
    [
        (
            404,
            {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run with id=x not found"},
            NotFound,
            ["Run with id=x not found"],
        ),
        (
            400,
            {"error_code": "RESOURCE_ALREADY_EXISTS", "message": "Experiment(name=e) exists"},
            AlreadyExists,
            ["Experiment(name=e) exists"],
        ),
        (400, {"error_code": "BAD_REQUEST", "message": "FOREIGN KEY"}, InvalidParameter, ["KEY"]),
        (500, {"error_code": "INVALID_STATE", "message": "deleted run"}, InvalidState, ["deleted"]),
        (409, {"error_code": "RESOURCE_CONFLICT", "message": "busy"}, InvalidState, ["busy"]),
        (
            503,
            {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "database is locked"},
            StoreUnavailable,
            ["{url}", "database is locked", "HTTP 503", "Try again later"],
        ),
        (
            401,
            {"error_code": "UNAUTHENTICATED", "message": "bad credentials"},
            StoreUnavailable,
            ["{url}", "refused", "bad credentials", "MLFLOW_TRACKING_TOKEN"],
        ),
        (
            404,
            "<html><h1>Not Found</h1></html>",
            StoreUnavailable,
            ["{url}", "has no endpoint POST /api/2.0/mlflow/runs/delete", "base URL"],
        ),
        (
            500,
            {"error_code": "INTERNAL_ERROR", "message": "boom"},
            KeelError,
            ["{url}", "HTTP 500 INTERNAL_ERROR", "boom"],
        ),
        (502, "<html>Bad Gateway</html>", StoreUnavailable, ["HTTP 502", "Bad Gateway"]),
        (400, "plain words", InvalidParameter, ["plain words"]),
        (200, "<html>a web page</html>", KeelError, ["not a JSON object", "a web page"]),
    ],
)
def test_error_answers_on_a_write(
    fake: tuple[FakeServer, str],
    status: int,
    payload: dict[str, Any] | str,
    error: type[KeelError],
    fragments: list[str],
) -> None:
    app, url = fake
    app.answer((status, payload))
    store = RestTrackingStore(url, backoff_factor=0)
    with pytest.raises(error) as raised:
        store.delete_run(RUN_ID)
    assert type(raised.value) is error
    for fragment in fragments:
        assert fragment.format(url=url) in raised.value.message
    # A write is sent once, whatever came back: the server may have applied it.
    assert len(app.requests) == 1
    store.close()


def test_a_missing_endpoint_is_not_a_missing_experiment(fake: tuple[FakeServer, str]) -> None:
    # get_experiment_by_name turns NotFound into None, and set_experiment then
    # creates the experiment: a wrong URL must not look like "no such name".
    app, url = fake
    app.answer((404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "No API endpoint"}))
    with pytest.raises(StoreUnavailable, match="has no endpoint GET"):
        RestTrackingStore(url, max_retries=0).get_experiment_by_name("x")


# -- connections and retries -------------------------------------------------------------


def test_connection_refused_names_the_url_and_what_to_check() -> None:
    url = _closed_port_url()
    store = RestTrackingStore(url, max_retries=1, backoff_factor=0)
    with pytest.raises(StoreUnavailable) as err:
        store.get_run(RUN_ID)
    message = err.value.message
    assert url in message
    assert "GET /api/2.0/mlflow/runs/get" in message
    assert "server is running" in message and "host and port" in message
    # Never sent, so nothing can have been applied and the message does not say so.
    with pytest.raises(StoreUnavailable) as err:
        store.create_experiment("x")
    assert "may have applied" not in err.value.message


def test_open_store_gives_the_rest_store_for_http_urls(fake: tuple[FakeServer, str]) -> None:
    _, url = fake
    store = open_store(url)
    assert isinstance(store, RestTrackingStore)
    # The artifact root does not apply over HTTP: one cached store per URL.
    assert open_store(url, artifact_root="/somewhere/else") is store
    assert isinstance(
        open_store(url.replace("http://", "https://"), cached=False), RestTrackingStore
    )


class Flaky:
    """A MockTransport handler: raise each exception in turn, then answer ``ok``."""

    def __init__(self, *failures: type[Exception], ok: dict[str, Any] | None = None) -> None:
        self.failures = list(failures)
        self.ok = ok or {}
        self.calls = 0

    def __call__(self, request: Any) -> Any:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)("simulated", request=request)
        return httpx.Response(200, json=self.ok)


def _mock_store(handler: Flaky, retries: int = 3) -> RestTrackingStore:
    transport = httpx.MockTransport(handler)
    return RestTrackingStore(
        "http://tracking.test", max_retries=retries, backoff_factor=0, transport=transport
    )


def test_writes_are_retried_only_when_never_sent() -> None:
    # Refused / timed out while connecting: the server never saw it, so retry.
    handler = Flaky(httpx.ConnectError, httpx.ConnectTimeout, ok={"experiment_id": "7"})
    assert _mock_store(handler).create_experiment("e") == "7"
    assert handler.calls == 3
    # Dropped or timed out after sending: it may have been applied; say so, once.
    for failure in (httpx.ReadTimeout, httpx.RemoteProtocolError):
        handler = Flaky(failure, ok={"experiment_id": "7"})
        with pytest.raises(StoreUnavailable, match="may have applied it") as err:
            _mock_store(handler).create_experiment("e")
        assert handler.calls == 1
        assert "http://tracking.test" in err.value.message


def test_reads_are_retried_after_dropped_connections_but_not_timeouts() -> None:
    handler = Flaky(httpx.RemoteProtocolError, httpx.ReadError, ok={"run": RUN_JSON})
    assert _mock_store(handler).get_run(RUN_ID).info.run_id == RUN_ID
    assert handler.calls == 3
    # A read that timed out would most likely time out again: fail at once.
    handler = Flaky(httpx.ReadTimeout, ok={"run": RUN_JSON})
    with pytest.raises(StoreUnavailable, match="KEEL_HTTP_REQUEST_TIMEOUT"):
        _mock_store(handler).get_run(RUN_ID)
    assert handler.calls == 1
    # Retries run out: the last failure is reported.
    handler = Flaky(*[httpx.ConnectError] * 5)
    with pytest.raises(StoreUnavailable):
        _mock_store(handler, retries=2).get_run(RUN_ID)
    assert handler.calls == 3


def test_5xx_is_retried_for_reads_and_never_for_writes(fake: tuple[FakeServer, str]) -> None:
    app, url = fake
    busy = (503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "restarting"})
    store = RestTrackingStore(url, max_retries=3, backoff_factor=0)
    app.answer(busy, busy, (200, {"run": RUN_JSON}))
    assert store.get_run(RUN_ID).info.run_name == "r"
    assert len(app.requests) == 3
    for write in (
        lambda: store.create_run("0", "ana", 0, [], None),
        lambda: store.log_batch(RUN_ID, metrics=[Metric("m", 1.0, 0, 0)]),
        lambda: store.update_run_info(RUN_ID, RunStatus.FINISHED),
    ):
        app.requests.clear()
        app.answer(busy, (200, {"run": RUN_JSON, "run_info": RUN_JSON["info"]}))
        with pytest.raises(StoreUnavailable, match="restarting"):
            write()
        assert len(app.requests) == 1
    # 500 is a server bug, deterministic: not retried even for a read.
    app.requests.clear()
    app.answer((500, {"error_code": "INTERNAL_ERROR", "message": "bug"}), (200, {"run": RUN_JSON}))
    with pytest.raises(KeelError, match="bug"):
        store.get_run(RUN_ID)
    assert len(app.requests) == 1
    store.close()


# -- the wire format -----------------------------------------------------------------------


def test_nan_and_infinities_round_trip(rest: RestTrackingStore) -> None:
    run_id = rest.create_run("0", "ana", 0, [], None).info.run_id
    values = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]
    rest.log_batch(run_id, metrics=[Metric("v", x, 100, i) for i, x in enumerate(values)])
    rest.log_metric(run_id, Metric("n", math.nan, 0, 0))
    rest.log_metric(run_id, Metric("i", -math.inf, 0, 0))
    got = [m.value for m in rest.get_metric_history(run_id, "v")]
    assert math.isnan(got[0])
    assert got[1:] == values[1:]
    metrics = rest.get_run(run_id).data.metrics
    assert math.isnan(metrics["n"])
    assert metrics["i"] == -math.inf
    assert metrics["v"] == values[-1]


def test_wire_format_of_requests(fake: tuple[FakeServer, str]) -> None:
    app, url = fake
    store = RestTrackingStore(url + "/behind/a/proxy/")
    big = 2**63 - 1
    store.log_batch(
        RUN_ID,
        metrics=[Metric("v", math.nan, big, -(2**63)), Metric("w", math.inf, 0, 0)],
        params=[Param("p", "1")],
        tags=[RunTag("t", "x")],
    )
    seen = app.requests[-1]
    assert (seen.method, seen.path) == ("POST", "/behind/a/proxy/api/2.0/mlflow/runs/log-batch")
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["user-agent"].startswith("keel/")
    body = seen.json()
    assert body["metrics"][0] == {"key": "v", "value": "NaN", "timestamp": big, "step": -(2**63)}
    assert body["metrics"][1]["value"] == "Infinity"
    assert b'"timestamp": 9223372036854775807' in seen.body  # int64 as a JSON number
    assert body["params"] == [{"key": "p", "value": "1"}]
    app.answer((200, {"metrics": [], "next_page_token": "tok2"}))
    page = store.get_metric_history(RUN_ID, "v", max_results=10, page_token="tok1")
    assert page.next_page_token == "tok2"
    seen = app.requests[-1]
    assert seen.method == "GET"
    assert seen.query == {
        "run_id": [RUN_ID],
        "run_uuid": [RUN_ID],
        "metric_key": ["v"],
        "max_results": ["10"],
        "page_token": ["tok1"],
    }
    store.close()


def test_answers_in_proto3_json_variants_are_understood(fake: tuple[FakeServer, str]) -> None:
    # int64 as strings, enums as numbers, run_uuid only: what other servers send.
    app, url = fake
    info = {
        "run_uuid": RUN_ID,
        "experiment_id": "3",
        "status": 3,
        "start_time": "17",
        "end_time": "18",
        "artifact_uri": "mlflow-artifacts:/3/x/artifacts",
        "lifecycle_stage": "deleted",
    }
    tags = [{"key": "mlflow.runName", "value": "from-tag"}]
    app.answer((200, {"run": {"info": info, "data": {"tags": tags}, "inputs": {}}}))
    run = RestTrackingStore(url).get_run(RUN_ID)
    assert (run.info.run_id, run.info.run_name, run.info.status) == (
        RUN_ID,
        "from-tag",
        RunStatus.FINISHED,
    )
    assert (run.info.start_time, run.info.end_time) == (17, 18)
    app.answer((200, {"metrics": [{"key": "m", "value": "-Infinity", "timestamp": "5"}]}))
    [point] = RestTrackingStore(url).get_metric_history(RUN_ID, "m")
    assert (point.value, point.timestamp, point.step) == (-math.inf, 5, 0)


def test_checks_happen_before_anything_is_sent(fake: tuple[FakeServer, str]) -> None:
    app, url = fake
    store = RestTrackingStore(url)
    with pytest.raises(InvalidParameter, match="at most 1000 metrics"):
        store.log_batch(RUN_ID, metrics=[Metric(f"m{i}", 1.0, 0, 0) for i in range(1001)])
    with pytest.raises(InvalidParameter, match="64-bit"):
        store.log_metric(RUN_ID, Metric("m", 1.0, 0, 2**63))
    with pytest.raises(InvalidParameter, match="50000"):
        store.search_runs(["0"], max_results=50001)
    assert store.search_runs(["x", "not-an-id"]).items == []
    store.log_batch(RUN_ID)  # nothing to log: nothing sent, as the SQL store does nothing
    assert app.requests == []


# -- auth ---------------------------------------------------------------------------------


def test_bearer_token_from_the_environment(
    fake: tuple[FakeServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, url = fake
    _clean_tracking_env(monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "mlflow-t0ken")
    monkeypatch.setenv("KEEL_TRACKING_TOKEN", "keel-t0ken")
    store = RestTrackingStore(url)
    store.delete_run(RUN_ID)
    assert app.requests[-1].headers["authorization"] == "Bearer keel-t0ken"
    app.answer((401, {"error_code": "UNAUTHENTICATED", "message": "token expired"}))
    with pytest.raises(StoreUnavailable) as err:
        store.delete_run(RUN_ID)
    assert "t0ken" not in err.value.message
    store.close()


def test_basic_auth_from_the_environment_or_the_url(
    fake: tuple[FakeServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, url = fake
    _clean_tracking_env(monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "ignored")  # Basic wins, as in MLflow
    RestTrackingStore(url).delete_run(RUN_ID)
    expected = "Basic " + base64.b64encode(b"ana:s3cret").decode()
    assert app.requests[-1].headers["authorization"] == expected
    _clean_tracking_env(monkeypatch)
    with_credentials = url.replace("http://", "http://bob:pa55w0rd@")
    store = RestTrackingStore(with_credentials)
    assert "pa55w0rd" not in repr(store) and "pa55w0rd" not in store.url
    store.delete_run(RUN_ID)
    assert app.requests[-1].headers["authorization"].startswith("Basic ")
    app.answer((403, {"error_code": "PERMISSION_DENIED", "message": "no"}))
    with pytest.raises(StoreUnavailable) as err:
        store.delete_run(RUN_ID)
    assert "pa55w0rd" not in err.value.message
    assert "pa55w0rd" not in str(open_store(with_credentials))


def test_no_auth_header_without_credentials(
    fake: tuple[FakeServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, url = fake
    _clean_tracking_env(monkeypatch)
    RestTrackingStore(url).delete_run(RUN_ID)
    assert "authorization" not in app.requests[-1].headers


# -- the fluent API, the metric writer, processes ----------------------------------------


@pytest.fixture
def fluent_to(
    rest_server_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """The fluent API pointed at the live server, with a clean slate."""
    monkeypatch.chdir(tmp_path)
    for var in (
        "KEEL_TRACKING_URI",
        "MLFLOW_TRACKING_URI",
        "KEEL_EXPERIMENT_NAME",
        "MLFLOW_EXPERIMENT_NAME",
        "KEEL_EXPERIMENT_ID",
        "MLFLOW_EXPERIMENT_ID",
    ):
        monkeypatch.delenv(var, raising=False)
    keel.set_tracking_uri(rest_server_url)
    try:
        yield rest_server_url
    finally:
        keel.set_tracking_uri(None)


def test_fluent_api_end_to_end_over_http(fluent_to: str, tmp_path: Path) -> None:
    keel.set_experiment("over-http")
    with keel.start_run(run_name="rf", tags={"team": "risk"}) as run:
        keel.log_params({"lr": 0.1, "depth": 4})
        for step in range(300):  # queued, written by the background writer over HTTP
            keel.log_metric("loss", 1 / (step + 1), step=step)
        keel.log_metrics({"acc": 0.9, "nan": math.nan})
        keel.set_tag("stage", "baseline")
        with keel.start_run(run_name="fold", nested=True):
            keel.log_metric("acc", 0.7)
    runs = keel.search_runs(
        filter_string="params.lr = '0.1' and metrics.acc > 0.8", output_format="list"
    )
    assert [r.info.run_id for r in runs] == [run.info.run_id]
    df = keel.search_runs(order_by=["metrics.acc DESC"])
    assert list(df["tags.mlflow.runName"]) == ["rf", "fold"]
    assert df.loc[0, "params.depth"] == "4"
    got = keel.get_run(run.info.run_id)
    assert got.info.status is RunStatus.FINISHED
    assert got.data.metrics["loss"] == 1 / 300
    assert math.isnan(got.data.metrics["nan"])
    assert got.data.tags["stage"] == "baseline"
    history = keel.Client().get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(300))
    # It went over HTTP: the server's own database has it.
    server_side = SqlTrackingStore(f"sqlite:///{tmp_path / 'server.db'}", str(tmp_path / "a"))
    try:
        assert server_side.get_run(run.info.run_id).data.params == {"lr": "0.1", "depth": "4"}
    finally:
        server_side.close()


def test_metric_writer_batches_through_the_rest_store(rest: RestTrackingStore) -> None:
    runs = [rest.create_run("0", "ana", 0, [], None).info.run_id for _ in range(2)]
    writer = MetricWriter(rest, flush_interval=0.05)

    def log(run_id: str, offset: int) -> None:
        for i in range(1250):
            writer.submit(run_id, [Metric("m", float(i), 0, offset + i)])

    threads = [threading.Thread(target=log, args=(r, k * 10_000)) for r in runs for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.flush()
    for run_id in runs:
        assert len(rest.get_all_metric_history(run_id, "m")) == 2500
    writer.close()


def test_metric_writer_reports_an_unreachable_server() -> None:
    url = _closed_port_url()
    writer = MetricWriter(RestTrackingStore(url, max_retries=0), flush_interval=0.01)
    writer.submit(RUN_ID, [Metric("m", 1.0, 0, 0)])
    with pytest.raises(BackgroundWriteError, match=f"1 points for run {RUN_ID}.*{url}"):
        writer.flush()
    writer.close()


def test_close_and_after_fork_drop_the_connection_pool(rest: RestTrackingStore) -> None:
    rest.get_experiment("0")
    pool = rest._client
    assert pool is not None
    rest.after_fork()
    assert rest._client is None  # dropped, not closed: the parent still uses it
    assert not pool.is_closed
    assert rest.get_experiment("0").name == "Default"
    rest.close()
    assert rest._client is None
    assert rest.get_experiment("0").name == "Default"  # a closed store reopens on use


def _child_logs(url: str, run_id: str, offset: int) -> None:
    store = open_store(url)
    store.log_batch(run_id, metrics=[Metric("m", float(i), 0, offset + i) for i in range(100)])


# The live server runs in a thread of this process; the child never touches it.
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_forked_children_use_their_own_connections(rest_server_url: str) -> None:
    import multiprocessing as mp

    store = open_store(rest_server_url)
    run_id = store.create_run("0", "ana", 0, [], None).info.run_id  # the parent's pool is busy
    ctx = mp.get_context("fork")
    procs = [
        ctx.Process(target=_child_logs, args=(rest_server_url, run_id, k * 100)) for k in (0, 1)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(store.get_metric_history(run_id, "m")) == 200


# -- artifacts -----------------------------------------------------------------------------


def test_proxied_artifact_uris_need_an_http_tracking_server() -> None:
    # Against a database there is no server to proxy through (tests/test_artifacts_http.py
    # covers the proxy itself).
    with pytest.raises(InvalidParameter, match=r"artifact proxy.*not an http:// or https://"):
        get_repository("mlflow-artifacts:/1/0123/artifacts", "sqlite:///keel.db").list_artifacts()
