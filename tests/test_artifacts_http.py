"""Keel's client reading and writing artifacts through a server's proxy (``mlflow-artifacts:``).

A real Keel server (uvicorn on 127.0.0.1, ephemeral port) over a real SQLite
file and a real destination directory, started as ``keel server
--artifacts-destination`` would; no mocks. Hostile listings come from a tiny
Starlette app on loopback.
"""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

import keel  # noqa: E402
from keel.artifacts import get_repository  # noqa: E402
from keel.artifacts.http import HttpArtifactRepository  # noqa: E402
from keel.errors import InvalidParameter, NotFound, StoreUnavailable  # noqa: E402
from keel.server import create_app  # noqa: E402
from keel.server.config import PROXY_ARTIFACT_ROOT  # noqa: E402
from keel.store.sql.store import SqlTrackingStore  # noqa: E402
from live_server import serve  # noqa: E402

BIG = 20 * 1024 * 1024


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "destination"


@pytest.fixture
def server(tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
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
    monkeypatch.setenv("KEEL_HTTP_REQUEST_MAX_RETRIES", "0")
    store = SqlTrackingStore(f"sqlite:///{tmp_path / 'server.db'}", PROXY_ARTIFACT_ROOT)
    app = create_app(store, artifacts_destination=str(dest), max_artifact_bytes=64 << 20)
    try:
        with serve(app) as url:
            keel.set_tracking_uri(url)
            yield url
    finally:
        keel.set_tracking_uri(None)
        store.close()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_fluent_logging_round_trips_through_the_proxy(
    server: str, dest: Path, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    (local / "nested" / "deeper").mkdir(parents=True)
    (local / "top.bin").write_bytes(bytes(range(256)) * 3)
    (local / "nested" / "a.txt").write_text("alpha\n")
    (local / "nested" / "deeper" / "b.json").write_text('{"b": 1}')
    single = tmp_path / "notes.txt"
    single.write_bytes(b"caf\xc3\xa9 \x00 binary-safe")

    keel.set_experiment("proxied")
    with keel.start_run() as run:
        keel.log_artifact(single)
        keel.log_artifact(single, "docs/more")
        keel.log_text("hello, proxy", "texts/hello.txt")
        keel.log_dict({"a": 1, "b": [1, 2]}, "config/params.json")
        keel.log_artifacts(local, "tree")
    run_id = run.info.run_id

    client = keel.Client()
    info = client.get_run(run_id).info
    assert info.artifact_uri.startswith("mlflow-artifacts:/")
    repo = client._repo(run_id)
    assert isinstance(repo, HttpArtifactRepository)

    assert [(f.path, f.is_dir) for f in client.list_artifacts(run_id)] == [
        ("config", True),
        ("docs", True),
        ("notes.txt", False),
        ("texts", True),
        ("tree", True),
    ]
    assert [(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run_id, "tree")] == [
        ("tree/nested", True, None),
        ("tree/top.bin", False, 768),
    ]
    assert client.list_artifacts(run_id, "no/such/dir") == []

    # The server stored exactly the bytes, under <exp>/<run>/artifacts.
    stored = dest / info.artifact_uri[len("mlflow-artifacts:/") :]
    assert (stored / "notes.txt").read_bytes() == single.read_bytes()
    assert (stored / "texts" / "hello.txt").read_text() == "hello, proxy"
    assert json.loads((stored / "config" / "params.json").read_text()) == {"a": 1, "b": [1, 2]}

    out = tmp_path / "out"
    got = Path(client.download_artifacts(run_id, "tree", out))
    assert got == (out / "tree").resolve()
    assert _tree(got) == _tree(local)
    got_file = Path(client.download_artifacts(run_id, "docs/more/notes.txt", out))
    assert got_file == out / "notes.txt"
    assert got_file.read_bytes() == single.read_bytes()
    everything = Path(client.download_artifacts(run_id, "", tmp_path / "all"))
    assert everything.name == "artifacts"
    assert _tree(everything) == _tree(stored)
    # No temporary files are left behind.
    assert not [p for p in (tmp_path / "all").rglob(".tmp-*")]


def test_an_explicit_client_url_wins_over_the_current_tracking_uri(
    server: str, tmp_path: Path
) -> None:
    client = keel.Client(server)
    exp = client.create_experiment("explicit")
    run_id = client.create_run(exp).info.run_id
    keel.set_tracking_uri(str(tmp_path / "elsewhere.db"))
    client.log_text(run_id, "x", "a.txt")
    assert [f.path for f in client.list_artifacts(run_id)] == ["a.txt"]
    # Without a server, the bare URI cannot be resolved: a clear error.
    uri = client.get_run(run_id).info.artifact_uri
    unresolved = get_repository(uri)  # resolved on first use, not when constructed
    with pytest.raises(InvalidParameter, match=r"not an http:// or https://"):
        unresolved.list_artifacts()
    # With the host in the URI it can.
    host = server.split("://", 1)[1]
    hosted = get_repository(uri.replace("mlflow-artifacts:/", f"mlflow-artifacts://{host}/"))
    assert [f.path for f in hosted.list_artifacts()] == ["a.txt"]


def test_a_20_mb_file_streams_both_ways(server: str, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        for i in range(BIG // (1 << 20)):
            fh.write(hashlib.sha256(str(i).encode()).digest() * (1 << 15))
    assert big.stat().st_size == BIG
    client = keel.Client()
    with keel.start_run() as run:
        client.list_artifacts(run.info.run_id)  # the connection pool is open before measuring
        tracemalloc.start()
        try:
            keel.log_artifact(big, "blobs")
            up_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            got = Path(client.download_artifacts(run.info.run_id, "blobs/big.bin", tmp_path / "dl"))
            down_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # Streamed both ways: far less than the file is ever held (the server, in this
    # process too, streams in chunks as well).
    assert up_peak < BIG // 2, up_peak
    assert down_peak < BIG // 2, down_peak
    [entry] = client.list_artifacts(run.info.run_id, "blobs")
    assert (entry.path, entry.file_size) == ("blobs/big.bin", BIG)
    assert got.stat().st_size == BIG
    assert _sha256(got) == _sha256(big)


def test_sklearn_model_logs_and_loads_through_the_proxy(server: str) -> None:
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    import keel.models
    import keel.sklearn

    X = [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.9, 0.1]]
    y = [0, 1, 0, 1]
    model = LogisticRegression().fit(X, y)
    with keel.start_run() as run:
        uri = keel.sklearn.log_model(model, "model", input_example=X, onnx=False)
    assert uri == f"runs:/{run.info.run_id}/model"
    names = {f.path for f in keel.Client().list_artifacts(run.info.run_id, "model")}
    assert "model/MLmodel" in names
    loaded = keel.models.load(f"runs:/{run.info.run_id}/model")
    assert list(loaded.predict(X)) == list(model.predict(X))


def test_missing_artifacts_are_not_found(server: str, tmp_path: Path) -> None:
    with keel.start_run() as run:
        keel.log_text("x", "present.txt")
    client = keel.Client()
    with pytest.raises(NotFound, match=r"absent\.txt"):
        client.download_artifacts(run.info.run_id, "absent.txt", tmp_path / "o")
    with pytest.raises(NotFound):
        client.download_artifacts(run.info.run_id, "no/such/dir", tmp_path / "o")
    assert not (tmp_path / "o" / "absent.txt").exists()
    assert not list((tmp_path / "o").glob(".tmp-*"))


def test_paths_are_checked_before_anything_is_sent(server: str, tmp_path: Path) -> None:
    with keel.start_run() as run:
        pass
    client = keel.Client()
    with pytest.raises(InvalidParameter, match="must not contain"):
        client.log_text(run.info.run_id, "x", "../escape.txt")
    with pytest.raises(InvalidParameter):
        client.download_artifacts(run.info.run_id, "../../etc/passwd", tmp_path)
    with pytest.raises(InvalidParameter):
        client.list_artifacts(run.info.run_id, "/etc")


def test_an_unreachable_server_names_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("KEEL_HTTP_REQUEST_MAX_RETRIES", "0")
    repo = get_repository(f"mlflow-artifacts://127.0.0.1:{port}/1/r/artifacts")
    with pytest.raises(StoreUnavailable, match=rf"127\.0\.0\.1:{port}.*mlflow-artifacts"):
        repo.list_artifacts()


# -- hostile listings ---------------------------------------------------------------------


def _crafted(listing: dict[str, Any]) -> Any:
    """An ASGI app that answers every listing with ``listing`` and every GET with bytes."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    seen: list[str] = []

    async def list_files(request: Request) -> Response:
        path = request.query_params.get("path", "")
        seen.append(f"LIST {path}")
        return JSONResponse(listing.get(path, {}))

    async def get_file(request: Request) -> Response:
        seen.append(f"GET {request.path_params['path']}")
        return Response(b"pwned")

    app = Starlette(
        routes=[
            Route("/api/2.0/mlflow-artifacts/artifacts", list_files),
            Route("/api/2.0/mlflow-artifacts/artifacts/{path:path}", get_file),
        ]
    )
    app.state.seen = seen
    return app


@pytest.mark.parametrize(
    "name",
    ["../../outside.txt", "/etc/passwd", "..", ".", "a/../../b", "a\\..\\b", ""],
)
def test_traversal_in_a_server_listing_is_refused(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_HTTP_REQUEST_MAX_RETRIES", "0")
    listing = {
        "1/r/artifacts/model": {
            "files": [
                {"path": "MLmodel", "is_dir": False, "file_size": 5},
                {"path": name, "is_dir": False, "file_size": 5},
            ]
        }
    }
    app = _crafted(listing)
    with serve(app) as url:
        repo = get_repository("mlflow-artifacts:/1/r/artifacts", url)
        dst = tmp_path / "dst"
        with pytest.raises(InvalidParameter):
            repo.download_artifacts("model", dst)
        with pytest.raises(InvalidParameter):
            repo.list_artifacts("model")
    # Nothing was fetched or written, inside the destination or beside it.
    assert not [s for s in app.state.seen if s.startswith("GET")]
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_nested_listing_escaping_through_a_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_HTTP_REQUEST_MAX_RETRIES", "0")
    listing = {
        "1/r/artifacts/model": {"files": [{"path": "sub", "is_dir": True}]},
        "1/r/artifacts/model/sub": {"files": [{"path": "../../../x", "is_dir": False}]},
    }
    app = _crafted(listing)
    with serve(app) as url:
        repo = get_repository("mlflow-artifacts:/1/r/artifacts", url)
        with pytest.raises(InvalidParameter):
            repo.download_artifacts("model", tmp_path / "dst")
    assert not [s for s in app.state.seen if s.startswith("GET")]
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_well_formed_crafted_listing_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control for the refusals above: the same server, honest names.
    monkeypatch.setenv("KEEL_HTTP_REQUEST_MAX_RETRIES", "0")
    listing = {
        "1/r/artifacts/model": {
            "files": [{"path": "MLmodel", "is_dir": False}, {"path": "sub", "is_dir": True}]
        },
        "1/r/artifacts/model/sub": {"files": [{"path": "w.bin", "is_dir": False}]},
    }
    with serve(_crafted(listing)) as url:
        repo = get_repository("mlflow-artifacts:/1/r/artifacts", url)
        got = repo.download_artifacts("model", tmp_path / "dst")
    assert _tree(got) == {"MLmodel": b"pwned", "sub/w.bin": b"pwned"}
