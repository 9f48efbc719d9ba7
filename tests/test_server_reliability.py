"""``keel server`` under load and under ``kill -9``: every acknowledged write is kept, once.

The server is what a team points many clients at, so its guarantees are the
store's guarantees seen through HTTP:

- Many client processes, each with its own connection, log per-call metrics
  with unique steps to the same run and key (the worst case for the metrics
  table and the latest-value upsert): 8 clients × 2,500 points into SQLite,
  16 into PostgreSQL. Every point the server answered 200 for is in the
  history exactly once. This is tests/test_concurrency.py one layer up: the
  request handling, thread pool and connection pool sit in between.
- The server process is SIGKILLed in the middle of a write burst, ten times
  over one SQLite file: after each restart every acknowledged metric, param
  and tag is there, no metric point is doubled, and ``PRAGMA integrity_check``
  says ``ok``. A 200 must mean "committed", never "queued".

The server is the real ``keel server`` console script in a subprocess (its own
process group, so a kill reaches uvicorn's worker processes too), on loopback.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import pytest

if TYPE_CHECKING:
    import httpx
else:
    httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

API = "/api/2.0/mlflow"
POINTS_PER_CLIENT = 2500
KILL_CYCLES = 10
# Importing the server cold (no bytecode cache) takes a few seconds on a busy
# CI machine; 60 s is a hung server, not a slow one.
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0


# -- the server subprocess -------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(backend_uri: str, workdir: Path, *, workers: int = 1, tag: str = "") -> Server:
    """``keel server`` on a free loopback port; returns once /health answers."""
    port = _free_port()
    keel = Path(sys.executable).parent / "keel"
    log = workdir / f"server{tag}.log"
    command = [
        *(str(keel), "server", "--backend-store-uri", backend_uri),
        *("--artifacts-destination", str(workdir / "artifacts")),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
    ]
    # A file, not a pipe: nobody reads the pipe during the burst, and a full
    # pipe would block the server's logging and look like a hang.
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches the workers
            env={k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "MLFLOW_"))},
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/health", timeout=2).text == "OK":
                return server
        if proc.poll() is not None:
            raise AssertionError(f"keel server exited with {proc.returncode}:\n{server.log_text()}")
        if time.monotonic() > deadline:
            _stop(server, signal.SIGKILL)
            raise AssertionError(f"keel server did not answer within {START_TIMEOUT_S:g} s")
        time.sleep(0.05)


def _stop(server: Server, sig: signal.Signals = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.proc.pid, sig)
    server.proc.wait(timeout=30)


@contextlib.contextmanager
def _running(backend_uri: str, workdir: Path, *, workers: int = 1) -> Iterator[Server]:
    server = _start_server(backend_uri, workdir, workers=workers)
    try:
        yield server
    finally:
        _stop(server)


def _create_run(client: httpx.Client) -> str:
    answer = client.post("/runs/create", json={"experiment_id": "0", "run_name": "reliability"})
    assert answer.status_code == 200, answer.text
    run_id: str = answer.json()["run"]["info"]["run_id"]
    return run_id


def _history_steps(client: httpx.Client, run_id: str, key: str) -> list[int]:
    """Every step of the metric's history, following page tokens if the server pages."""
    steps: list[int] = []
    token: str | None = None
    for _ in range(10_000):  # a token that never ends is a bug, not an infinite test
        params: dict[str, Any] = {"run_id": run_id, "metric_key": key}
        if token:
            params["page_token"] = token
        answer = client.get("/metrics/get-history", params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        steps.extend(int(m["step"]) for m in body.get("metrics", ()))
        token = body.get("next_page_token") or None
        if token is None:
            return steps
    raise AssertionError("metrics/get-history kept returning page tokens")


# -- many clients at once ----------------------------------------------------------------


def _raw_client(url: str, run_id: str, worker: int, n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """Per-call ``runs/log-metric`` over one keep-alive connection, as the MLflow client."""
    acked: list[int] = []
    errors: list[str] = []
    try:
        with httpx.Client(base_url=url + API, timeout=REQUEST_TIMEOUT_S) as client:
            for i in range(n):
                step = worker * 1_000_000 + i
                body = {
                    "run_id": run_id,
                    "key": "loss",
                    "value": float(step),
                    "timestamp": 1_700_000_000_000 + i,
                    "step": step,
                }
                try:
                    answer = client.post("/runs/log-metric", json=body)
                except httpx.HTTPError as exc:
                    errors.append(f"step {step}: {type(exc).__name__}: {exc}")
                    continue
                if answer.status_code == 200:
                    acked.append(step)
                else:
                    errors.append(f"step {step}: {answer.status_code} {answer.text[:300]}")
            done = {"run_id": run_id, "key": f"worker-{worker}", "value": "done"}
            answer = client.post("/runs/log-parameter", json=done)
            if answer.status_code != 200:
                errors.append(f"param: {answer.status_code} {answer.text[:300]}")
    finally:
        out.put((worker, acked, errors))


def _rest_store_client(url: str, run_id: str, worker: int, n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """Keel's own REST store: ``log_metric`` per point, as the fluent API without batching."""
    from keel.entities import Metric, Param
    from keel.errors import KeelError
    from keel.store.rest import RestTrackingStore

    store = RestTrackingStore(url, timeout=REQUEST_TIMEOUT_S)
    acked: list[int] = []
    errors: list[str] = []
    try:
        for i in range(n):
            step = worker * 1_000_000 + i
            try:
                store.log_metric(run_id, Metric("loss", float(step), 1_700_000_000_000 + i, step))
            except KeelError as exc:
                errors.append(f"step {step}: {type(exc).__name__}: {exc}")
                continue
            acked.append(step)
        store.log_param(run_id, Param(f"worker-{worker}", "done"))
    except KeelError as exc:
        errors.append(f"param: {type(exc).__name__}: {exc}")
    finally:
        out.put((worker, acked, errors))
        store.close()


def _hammer(server: Server, clients: int, target: Any) -> tuple[str, list[int]]:
    """``clients`` spawned processes log POINTS_PER_CLIENT points each; the acknowledged steps."""
    with httpx.Client(base_url=server.url + API, timeout=REQUEST_TIMEOUT_S) as client:
        run_id = _create_run(client)
    ctx = mp.get_context("spawn")  # no inherited sockets or locks: each a fresh client
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [
        ctx.Process(target=target, args=(server.url, run_id, w, POINTS_PER_CLIENT, out))
        for w in range(clients)
    ]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    errors = [e for _, _, errs in results for e in errs]
    # Under load the server may be slow but must not refuse or fail a write.
    assert not errors, f"{len(errors)} writes failed, e.g. {errors[:5]}\n{server.log_text()}"
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    acked = sorted(step for _, steps, _ in results for step in steps)
    assert len(acked) == clients * POINTS_PER_CLIENT
    return run_id, acked


def _check_history(steps: list[int], acked: list[int]) -> None:
    assert len(steps) == len(set(steps)), "a point was written twice"
    missing = sorted(set(acked) - set(steps))
    assert not missing, f"{len(missing)} acknowledged points are missing, e.g. {missing[:10]}"
    assert sorted(steps) == acked, "the history holds points nobody logged"


@pytest.mark.slow
def test_eight_http_clients_into_one_sqlite_file(tmp_path: Path) -> None:
    with _running(f"sqlite:///{tmp_path / 'keel.db'}", tmp_path) as server:
        run_id, acked = _hammer(server, 8, _raw_client)
        with httpx.Client(base_url=server.url + API, timeout=REQUEST_TIMEOUT_S) as client:
            _check_history(_history_steps(client, run_id, "loss"), acked)
            run = client.get("/runs/get", params={"run_id": run_id}).json()["run"]
    latest = {m["key"]: m for m in run["data"]["metrics"]}
    assert latest["loss"]["value"] == float(max(acked))
    params = {p["key"] for p in run["data"].get("params", ())}
    assert {f"worker-{w}" for w in range(8)} <= params


@pytest.mark.slow
@pytest.mark.postgres
def test_sixteen_http_clients_into_postgres(empty_postgres_url: str, tmp_path: Path) -> None:
    from keel.store.rest import RestTrackingStore

    # Two worker processes, as a team would run it in front of PostgreSQL: the
    # points of one run arrive through two connection pools at once.
    with _running(empty_postgres_url, tmp_path, workers=2) as server:
        run_id, acked = _hammer(server, 16, _rest_store_client)
        store = RestTrackingStore(server.url)
        try:
            history = store.get_all_metric_history(run_id, "loss")
            run = store.get_run(run_id)
        finally:
            store.close()
    _check_history([m.step for m in history], acked)
    assert run.data.metrics["loss"] == float(max(acked))
    assert len([k for k in run.data.params if k.startswith("worker-")]) == 16


# -- kill -9 during a write burst --------------------------------------------------------


@dataclass
class Acked:
    """What the server answered 200 for, per run."""

    steps: dict[str, list[int]] = field(default_factory=dict)
    params: dict[str, dict[str, str]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)


def _burst(url: str, run_id: str, acked: Acked, first_ack: threading.Event, log: TextIO) -> None:
    """Write until the server dies: metrics, params, tags and batches, recording each 200."""
    steps = acked.steps.setdefault(run_id, [])
    params = acked.params.setdefault(run_id, {})
    tags = acked.tags.setdefault(run_id, {})
    with httpx.Client(base_url=url + API, timeout=REQUEST_TIMEOUT_S) as client:
        for i in range(1_000_000):
            metric = {"key": "m", "value": float(i), "timestamp": 1_700_000_000_000 + i, "step": i}
            kind = i % 4
            body: dict[str, Any]
            try:
                if kind == 0:
                    answer = client.post("/runs/log-metric", json={"run_id": run_id, **metric})
                elif kind == 1:
                    body = {"run_id": run_id, "key": f"p{i}", "value": str(i)}
                    answer = client.post("/runs/log-parameter", json=body)
                elif kind == 2:
                    body = {"run_id": run_id, "key": f"t{i}", "value": str(i)}
                    answer = client.post("/runs/set-tag", json=body)
                else:
                    body = {
                        "run_id": run_id,
                        "metrics": [metric],
                        "params": [{"key": f"p{i}", "value": str(i)}],
                        "tags": [{"key": f"t{i}", "value": str(i)}],
                    }
                    answer = client.post("/runs/log-batch", json=body)
            except httpx.HTTPError as exc:
                # The kill: whatever was in flight is unacknowledged, either outcome is fine.
                print(f"write {i}: {type(exc).__name__}", file=log)
                return
            if answer.status_code != 200:
                print(f"write {i}: {answer.status_code} {answer.text[:300]}", file=log)
                return
            if kind in (0, 3):
                steps.append(i)
            if kind in (1, 3):
                params[f"p{i}"] = str(i)
            if kind in (2, 3):
                tags[f"t{i}"] = str(i)
            first_ack.set()


def _check_acked(server: Server, acked: Acked) -> None:
    with httpx.Client(base_url=server.url + API, timeout=REQUEST_TIMEOUT_S) as client:
        for run_id, steps in acked.steps.items():
            answer = client.get("/runs/get", params={"run_id": run_id})
            assert answer.status_code == 200, answer.text
            data = answer.json()["run"]["data"]
            stored_params = {p["key"]: p["value"] for p in data.get("params", ())}
            stored_tags = {t["key"]: t["value"] for t in data.get("tags", ())}
            params, tags = acked.params[run_id].items(), acked.tags[run_id].items()
            lost_params = {k: v for k, v in params if stored_params.get(k) != v}
            lost_tags = {k: v for k, v in tags if stored_tags.get(k) != v}
            assert not lost_params, f"run {run_id}: acknowledged params lost: {lost_params}"
            assert not lost_tags, f"run {run_id}: acknowledged tags lost: {lost_tags}"
            history = _history_steps(client, run_id, "m")
            assert len(history) == len(set(history)), f"run {run_id}: a point was written twice"
            lost = sorted(set(steps) - set(history))
            assert not lost, f"run {run_id}: acknowledged metric steps lost: {lost[:20]}"


def _integrity(db: Path) -> str:
    # Read-only and with the server stopped or live alike: WAL readers never block it.
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.slow
def test_kill_9_during_a_write_burst_loses_no_acknowledged_write(tmp_path: Path) -> None:
    db = tmp_path / "keel.db"
    uri = f"sqlite:///{db}"
    rng = random.Random(20240917)  # fixed: the same kill delays on every CI run
    acked = Acked()
    burst_log = tmp_path / "bursts.log"
    with burst_log.open("w") as log:
        for cycle in range(KILL_CYCLES):
            # One cycle with two workers: the supervisor and its children all die at once.
            workers = 2 if cycle == KILL_CYCLES // 2 else 1
            server = _start_server(uri, tmp_path, workers=workers, tag=f"-{cycle}")
            try:
                _check_acked(server, acked)  # the previous cycles' writes survived the kill
                assert _integrity(db) == "ok"
                with httpx.Client(base_url=server.url + API, timeout=REQUEST_TIMEOUT_S) as c:
                    run_id = _create_run(c)
                first_ack = threading.Event()
                writer = threading.Thread(
                    target=_burst, args=(server.url, run_id, acked, first_ack, log), daemon=True
                )
                print(f"cycle {cycle}: run {run_id}, {workers} worker(s)", file=log)
                writer.start()
                assert first_ack.wait(timeout=30), f"no write acknowledged:\n{server.log_text()}"
                time.sleep(rng.uniform(0.05, 0.5))
            finally:
                _stop(server, signal.SIGKILL)
            writer.join(timeout=REQUEST_TIMEOUT_S + 5)
            assert not writer.is_alive(), "the writer did not notice the server had died"
            assert acked.steps[run_id], "the burst was killed before it wrote anything"
    with _running(uri, tmp_path) as server:
        _check_acked(server, acked)
    assert _integrity(db) == "ok"
    assert len(acked.steps) == KILL_CYCLES
