"""The artifact proxy (``mlflow-artifacts``): the unmodified mlflow client, and raw HTTP.

A real uvicorn server on 127.0.0.1 (ephemeral port) over a real SQLite file
and a real destination directory; no mocks. The store's artifact root is
``mlflow-artifacts:/``, as ``keel server --artifacts-destination`` opens it, so
experiments get proxied locations and the client uploads through the server.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
mlflow = pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from keel.server import create_app  # noqa: E402
from keel.server.config import PROXY_ARTIFACT_ROOT  # noqa: E402
from keel.store.sql.store import SqlTrackingStore  # noqa: E402
from live_server import serve  # noqa: E402

LIMIT = 32 * 1024 * 1024
API = "/api/2.0/mlflow-artifacts"


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "destination"


@pytest.fixture
def server_url(tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a 5xx must fail the test
    # mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID, which Keel's fluent API
    # reads too: undo it when the test ends (setenv records it, delenv clears it).
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    store = SqlTrackingStore(f"sqlite:///{tmp_path / 'server.db'}", PROXY_ARTIFACT_ROOT)
    app = create_app(store, artifacts_destination=str(dest), max_artifact_bytes=LIMIT)
    try:
        with serve(app) as url:
            mlflow.set_tracking_uri(url)
            yield url
    finally:
        mlflow.set_tracking_uri(None)
        store.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _everything(root: Path) -> list[str]:
    for _ in range(50):
        try:
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
        except FileNotFoundError:  # the server removed a directory while we walked
            time.sleep(0.01)
    raise AssertionError(f"{root} keeps changing")


def _raw(url: str, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    """A request with ``path`` sent verbatim (httpx would normalise ``..`` away)."""
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# -- the mlflow client, unchanged ---------------------------------------------


def test_experiments_and_runs_get_proxied_locations(server_url: str) -> None:
    c = MlflowClient(tracking_uri=server_url)
    assert c.get_experiment("0").artifact_location == "mlflow-artifacts:/0"
    exp_id = c.create_experiment("proxied")
    assert c.get_experiment(exp_id).artifact_location == f"mlflow-artifacts:/{exp_id}"
    run = c.create_run(exp_id)
    assert run.info.artifact_uri == f"mlflow-artifacts:/{exp_id}/{run.info.run_id}/artifacts"
    custom = c.create_experiment("custom", artifact_location="mlflow-artifacts:/custom-a")
    assert c.get_experiment(custom).artifact_location == "mlflow-artifacts:/custom-a"


def test_fluent_logging_round_trips_through_the_proxy(
    server_url: str, dest: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / "top.txt").write_text("top\n")
    (src / "nested" / "data.bin").write_bytes(bytes(range(256)) * 40)
    (src / "nested" / "deeper" / "MLmodel").write_text("flavors: {}\n")
    single = tmp_path / "weights.bin"
    single.write_bytes(os.urandom(300_000))

    mlflow.set_experiment("fluent-artifacts")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(single))
        mlflow.log_artifact(str(single), artifact_path="copies/a")
        mlflow.log_text("héllo\n", "notes/hello.txt")
        mlflow.log_dict({"lr": 0.1, "layers": [1, 2]}, "config/params.json")
        mlflow.log_artifacts(str(src), artifact_path="tree")
    run_id = run.info.run_id
    exp_id = run.info.experiment_id
    on_disk = dest / exp_id / run_id / "artifacts"
    assert (on_disk / "weights.bin").read_bytes() == single.read_bytes()
    assert (on_disk / "copies" / "a" / "weights.bin").read_bytes() == single.read_bytes()
    assert (on_disk / "notes" / "hello.txt").read_text(encoding="utf-8") == "héllo\n"
    assert _tree(on_disk / "tree") == _tree(src)

    c = MlflowClient(tracking_uri=server_url)
    top = c.list_artifacts(run_id)
    assert [(f.path, f.is_dir) for f in top] == [
        ("config", True),
        ("copies", True),
        ("notes", True),
        ("tree", True),
        ("weights.bin", False),
    ]
    assert top[-1].file_size == 300_000 and top[0].file_size is None
    # Below the root the runs:/ repository also asks logged-models/search (MLflow 3),
    # and the proxy itself is listed through the mlflow-artifacts:/ URI.
    nested = mlflow.artifacts.list_artifacts(artifact_uri=f"{run.info.artifact_uri}/tree/nested")
    assert [(f.path, f.is_dir, f.file_size) for f in nested] == [
        ("nested/data.bin", False, 10240),
        ("nested/deeper", True, None),
    ]
    below = c.list_artifacts(run_id, "tree/nested")
    assert [(f.path, f.is_dir) for f in below] == [
        ("tree/nested/data.bin", False),
        ("tree/nested/deeper", True),
    ]
    assert mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/config/params.json") == {
        "lr": 0.1,
        "layers": [1, 2],
    }
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes/hello.txt") == "héllo\n"

    everything = Path(c.download_artifacts(run_id, "", str(tmp_path / "all")))
    assert _tree(everything) == _tree(on_disk)
    subtree = Path(c.download_artifacts(run_id, "tree", str(tmp_path / "sub")))
    assert _tree(subtree) == _tree(src)
    one = Path(c.download_artifacts(run_id, "weights.bin", str(tmp_path / "one")))
    assert one.read_bytes() == single.read_bytes()


def test_a_large_file_streams_both_ways_without_buffering(
    server_url: str, dest: Path, tmp_path: Path
) -> None:
    size = 20 * 1024 * 1024
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        for _ in range(size // (1 << 20)):
            fh.write(os.urandom(1 << 20))
    c = MlflowClient(tracking_uri=server_url)
    run_id = c.create_run("0").info.run_id
    c.log_text(run_id, "warm-up", "warm.txt")  # lazy imports out of the measurement
    c.download_artifacts(run_id, "warm.txt", str(tmp_path / "warm"))

    # The server runs in this process (a thread): tracemalloc sees its allocations.
    tracemalloc.start()
    try:
        c.log_artifact(run_id, str(big), "blobs")
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        got = Path(c.download_artifacts(run_id, "blobs/big.bin", str(tmp_path / "dl")))
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _sha256(got) == _sha256(big)
    assert _sha256(dest / "0" / run_id / "artifacts" / "blobs" / "big.bin") == _sha256(big)
    assert upload_peak < size // 2, f"upload peaked at {upload_peak} bytes"
    assert download_peak < size // 2, f"download peaked at {download_peak} bytes"
    assert not [p for p in dest.rglob(".tmp-*")]


def test_multipart_negotiation_falls_back_to_plain_put(
    server_url: str, dest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As MLflow's server with a local destination: mpu/create answers 501, the
    # client uploads with a plain PUT; presigned download 501, a proxied GET.
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", "1")
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_DOWNLOAD_MINIMUM_FILE_SIZE", "1")
    payload = tmp_path / "part.bin"
    payload.write_bytes(os.urandom(4096))
    c = MlflowClient(tracking_uri=server_url)
    run_id = c.create_run("0").info.run_id
    c.log_artifact(run_id, str(payload))
    assert (dest / "0" / run_id / "artifacts" / "part.bin").read_bytes() == payload.read_bytes()
    got = Path(c.download_artifacts(run_id, "part.bin", str(tmp_path / "dl")))
    assert got.read_bytes() == payload.read_bytes()


def test_missing_artifacts_raise_resource_does_not_exist(server_url: str) -> None:
    c = MlflowClient(tracking_uri=server_url)
    run = c.create_run("0")
    with pytest.raises(MlflowException):
        mlflow.artifacts.load_text(f"{run.info.artifact_uri}/nope.txt")
    with httpx.Client(base_url=server_url, timeout=10) as http:
        rel = run.info.artifact_uri.removeprefix("mlflow-artifacts:/")
        missing = http.get(f"{API}/artifacts/{rel}/model")
        assert missing.status_code == 404
        assert missing.json() == {
            "error_code": "RESOURCE_DOES_NOT_EXIST",
            "message": f"No such artifact: '{rel}/model'",
        }


# -- raw HTTP -------------------------------------------------------------------


def test_raw_put_get_list_delete_match_mlflow(server_url: str, dest: Path) -> None:
    with httpx.Client(base_url=server_url, timeout=10) as http:
        put = http.put(f"{API}/artifacts/probe/dir/a.txt", content=b"hello")
        assert (put.status_code, put.content) == (200, b"")
        assert (dest / "probe" / "dir" / "a.txt").read_bytes() == b"hello"
        http.put(f"{API}/artifacts/probe/dir/b.png", content=b"\x89PNG")
        http.put(f"{API}/artifacts/probe/report.html", content=b"<p>x</p>")

        assert http.get(f"{API}/artifacts", params={"path": "probe"}).json() == {
            "files": [
                {"path": "dir", "is_dir": True},
                {"path": "report.html", "is_dir": False, "file_size": 8},
            ]
        }
        assert http.get(f"{API}/artifacts", params={"path": "probe/dir"}).json() == {
            "files": [
                {"path": "a.txt", "is_dir": False, "file_size": 5},
                {"path": "b.png", "is_dir": False, "file_size": 4},
            ]
        }
        # A file, or a missing path, lists as {}; no path lists the destination.
        assert http.get(f"{API}/artifacts", params={"path": "probe/dir/a.txt"}).json() == {}
        assert http.get(f"{API}/artifacts", params={"path": "probe/nope"}).json() == {}
        assert http.get(f"{API}/artifacts").json() == {"files": [{"path": "probe", "is_dir": True}]}

        got = http.get(f"{API}/artifacts/probe/dir/a.txt")
        assert got.status_code == 200 and got.content == b"hello"
        assert got.headers["content-type"] == "text/plain"
        assert got.headers["content-disposition"] == "attachment; filename=a.txt"
        assert got.headers["content-length"] == "5"
        assert got.headers["x-content-type-options"] == "nosniff"
        assert "etag" in got.headers and "last-modified" in got.headers
        assert http.get(f"{API}/artifacts/probe/dir/b.png").headers["content-type"] == "image/png"
        html = http.get(f"{API}/artifacts/probe/report.html")
        assert html.headers["content-disposition"].startswith("attachment")

        # The /ajax-api mirror, as MLflow's server has for its web UI.
        ajax = http.get("/ajax-api/2.0/mlflow-artifacts/artifacts/probe/dir/a.txt")
        assert ajax.content == b"hello"

        deleted = http.delete(f"{API}/artifacts/probe/dir/a.txt")
        assert (deleted.status_code, deleted.json()) == (200, {})
        assert not (dest / "probe" / "dir" / "a.txt").exists()
        assert http.get(f"{API}/artifacts/probe/dir/a.txt").status_code == 404
        assert http.delete(f"{API}/artifacts/probe/dir/a.txt").status_code == 200  # idempotent
        assert http.delete(f"{API}/artifacts/probe").status_code == 200  # a whole directory
        assert not (dest / "probe").exists()


def test_odd_but_legal_names_round_trip(server_url: str, dest: Path) -> None:
    with httpx.Client(base_url=server_url, timeout=10) as http:
        for name in ("with space.txt", "100%.txt", "ünïcode.bin", 'quote".bin'):
            put = http.put(f"{API}/artifacts/odd/{name}", content=name.encode())
            assert put.status_code == 200, (name, put.text)
            got = http.get(f"{API}/artifacts/odd/{name}")
            assert got.content == name.encode()
            assert got.headers["content-disposition"].startswith("attachment; filename")
        listed = http.get(f"{API}/artifacts", params={"path": "odd"}).json()["files"]
        assert sorted(f["path"] for f in listed) == sorted(p.name for p in (dest / "odd").iterdir())


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        "a/../../x",
        "a/../b",  # MLflow refuses any '..' component
        "%2E%2E/x",
        "a%2F..%2F..%2Fx",
        "%252E%252E/x",  # double-encoded
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "a%5C..%5Cx",  # backslashes
        "C:/x",
        "a%00b",
        "a%0Ab",  # the router matches no newline: 404 ENDPOINT_NOT_FOUND there
        "a%23b",  # '#'
    ],
)
def test_traversal_is_invalid_path_and_writes_nothing(
    server_url: str, dest: Path, tmp_path: Path, path: str
) -> None:
    before = _everything(tmp_path)
    for method, prefix in [
        ("PUT", f"{API}/artifacts/"),
        ("GET", f"{API}/artifacts/"),
        ("DELETE", f"{API}/artifacts/"),
        ("GET", f"{API}/presigned/"),
    ]:
        status, body = _raw(server_url, method, prefix + path, b"x" if method == "PUT" else None)
        if "%0A" in path:
            assert status == 404 and b"ENDPOINT_NOT_FOUND" in body, (method, path, body)
            continue
        assert status == 400, (method, path, body)
        assert body == b'{"error_code":"INVALID_PARAMETER_VALUE","message":"Invalid path"}'
    status, body = _raw(server_url, "GET", f"{API}/artifacts?path={path}")
    assert status == 400, (path, body)
    assert _everything(tmp_path) == before


def test_symlinks_out_of_the_destination_are_invalid_paths(
    server_url: str, dest: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "link").symlink_to(outside, target_is_directory=True)
    (dest / "file-link").symlink_to(outside / "secret.txt")
    with httpx.Client(base_url=server_url, timeout=10) as http:
        assert http.put(f"{API}/artifacts/link/new.txt", content=b"x").status_code == 400
        assert http.put(f"{API}/artifacts/link/sub/new.txt", content=b"x").status_code == 400
        assert http.get(f"{API}/artifacts/link/secret.txt").status_code == 400
        assert http.get(f"{API}/artifacts/file-link").status_code == 400
        assert http.get(f"{API}/artifacts", params={"path": "link"}).status_code == 400
        assert http.delete(f"{API}/artifacts/link/secret.txt").status_code == 400
        assert http.get(f"{API}/artifacts").json() == {}  # the links are not listed
        # Writing over the link itself replaces the link, never its target.
        assert http.put(f"{API}/artifacts/file-link", content=b"mine").status_code == 200
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"
    assert (dest / "file-link").read_bytes() == b"mine" and not (dest / "file-link").is_symlink()


def test_oversize_uploads_get_413_and_leave_nothing(server_url: str, dest: Path) -> None:
    too_big = b"x" * (LIMIT + 1)
    with httpx.Client(base_url=server_url, timeout=30) as http:
        declared = http.put(f"{API}/artifacts/big/declared.bin", content=too_big)
        assert declared.status_code == 413
        assert declared.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert str(LIMIT) in declared.json()["message"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: the limit is counted
            for start in range(0, len(too_big), 1 << 20):
                yield too_big[start : start + (1 << 20)]

        streamed = http.put(f"{API}/artifacts/big/streamed.bin", content=chunked())
        assert streamed.status_code == 413 and str(LIMIT) in streamed.json()["message"]
        assert http.put(f"{API}/artifacts/big/fits.bin", content=b"y" * LIMIT).status_code == 200
    assert _everything(dest) == ["big", "big/fits.bin"]


def test_an_interrupted_upload_is_never_visible(server_url: str, dest: Path) -> None:
    host, port = server_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    try:
        sock.sendall(
            f"PUT {API}/artifacts/cut/half.bin HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 4000000\r\n\r\n".encode()
        )
        sock.sendall(b"z" * 1_000_000)
        deadline = time.monotonic() + 10
        while not any(".tmp-" in p for p in _everything(dest)):  # the upload is under way ...
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.02)
        with httpx.Client(base_url=server_url, timeout=10) as http:  # ... and invisible
            assert http.get(f"{API}/artifacts/cut/half.bin").status_code == 404
            assert http.get(f"{API}/artifacts", params={"path": "cut"}).json() == {}
    finally:
        sock.close()
    deadline = time.monotonic() + 10
    while _everything(dest):  # the temporary file and the directory made for it go
        assert time.monotonic() < deadline, _everything(dest)
        time.sleep(0.02)


def test_bad_requests_are_4xx_never_5xx(server_url: str, dest: Path) -> None:
    with httpx.Client(base_url=server_url, timeout=10) as http:
        http.put(f"{API}/artifacts/f/file.txt", content=b"x")
        # A file where a directory is needed, a directory where a file is.
        under_file = http.put(f"{API}/artifacts/f/file.txt/inner.txt", content=b"x")
        assert under_file.status_code == 400
        assert http.put(f"{API}/artifacts/f", content=b"x").status_code == 400
        assert http.get(f"{API}/artifacts/f").status_code == 404  # a directory
        assert http.get(f"{API}/artifacts/f/file.txt/inner.txt").status_code == 404
        assert http.put(f"{API}/artifacts/f/trailing/", content=b"x").status_code == 400
        for whole in (f"{API}/artifacts/.", f"{API}/artifacts/", f"{API}/artifacts/a/.."):
            assert _raw(server_url, "DELETE", whole)[0] == 400  # never the whole destination
        assert http.post(f"{API}/artifacts/f/file.txt").status_code == 405
    assert _everything(dest) == ["f", "f/file.txt"]


def test_multipart_and_presigned_answer_501_as_mlflow(server_url: str) -> None:
    upload_msg = "Multipart upload is not supported for the current artifact repository"
    download_msg = "Multipart download is not supported for the current artifact repository"
    with httpx.Client(base_url=server_url, timeout=10) as http:
        bodies = {
            "create": {"path": "/client/tmp/big.bin", "num_parts": 2},
            "complete": {"path": "big.bin", "upload_id": "x", "parts": []},
            "abort": {"path": "big.bin", "upload_id": "x"},
        }
        for kind, body in bodies.items():
            for prefix in (API, "/ajax-api/2.0/mlflow-artifacts"):
                answer = http.post(f"{prefix}/mpu/{kind}/probe/big.bin", json=body)
                assert answer.status_code == 501
                assert answer.json() == {"error_code": "NOT_IMPLEMENTED", "message": upload_msg}
        presigned = http.get(f"{API}/presigned/probe/dir/a.txt")
        assert presigned.status_code == 501
        assert presigned.json() == {"error_code": "NOT_IMPLEMENTED", "message": download_msg}
        # As MLflow's server: the path and the request fields are checked first.
        assert http.post(f"{API}/mpu/create/probe/%2E%2E/x", json=bodies["create"]).json() == {
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": "Invalid path",
        }
        missing = http.post(f"{API}/mpu/create/probe/big.bin", json={"num_parts": 2})
        assert missing.status_code == 400 and "'path'" in missing.json()["message"]


def test_openapi_lists_the_artifact_routes(server_url: str) -> None:
    spec = httpx.get(f"{server_url}/openapi.json", timeout=10).json()
    assert {"put", "get", "delete"} <= set(spec["paths"][f"{API}/artifacts/{{path}}"])
    assert "get" in spec["paths"][f"{API}/artifacts"]
    assert not any(p.startswith("/ajax-api/2.0/mlflow-artifacts") for p in spec["paths"])


# -- without a destination, and `keel server` --------------------------------


def test_without_a_destination_the_proxy_says_how_to_turn_it_on(tmp_path: Path) -> None:
    store = SqlTrackingStore(f"sqlite:///{tmp_path / 'plain.db'}", str(tmp_path / "artifacts"))
    try:
        with serve(create_app(store)) as url:
            answer = httpx.put(f"{url}{API}/artifacts/0/x.txt", content=b"x", timeout=10)
            assert answer.status_code == 501
            assert answer.json()["error_code"] == "NOT_IMPLEMENTED"
            assert "--artifacts-destination" in answer.json()["message"]
            exp = httpx.get(
                f"{url}/api/2.0/mlflow/experiments/get", params={"experiment_id": "0"}
            ).json()
            assert exp["experiment"]["artifact_location"] == str(tmp_path / "artifacts" / "0")
    finally:
        store.close()
    assert not (tmp_path / "artifacts").exists()


def test_app_from_environment_proxies_when_given_a_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.server.app import app_from_environment
    from keel.server.config import ARTIFACTS_ENV, BACKEND_ENV, MAX_ARTIFACT_ENV

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv(BACKEND_ENV, f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv(ARTIFACTS_ENV, str(tmp_path / "served"))
    monkeypatch.setenv(MAX_ARTIFACT_ENV, "1000")
    app = app_from_environment()
    try:
        with serve(app) as url:
            c = MlflowClient(tracking_uri=url)
            assert c.get_experiment("0").artifact_location == "mlflow-artifacts:/0"
            exp_id = c.create_experiment("env")
            run_id = c.create_run(exp_id).info.run_id
            c.log_text(run_id, "via env", "n.txt")
            assert (tmp_path / "served" / exp_id / run_id / "artifacts" / "n.txt").exists()
            too_big = httpx.put(f"{url}{API}/artifacts/x.bin", content=b"x" * 1001, timeout=10)
            assert too_big.status_code == 413
    finally:
        app.state.keel.tracking.close()


def test_keel_server_rejects_a_bad_size_and_a_remote_destination(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from keel.cli.main import app
    from keel.server.config import ARTIFACTS_ENV, BACKEND_ENV, MAX_ARTIFACT_ENV

    for name in (ARTIFACTS_ENV, BACKEND_ENV, MAX_ARTIFACT_ENV):  # the command sets them
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    runner = CliRunner()
    bad_size = runner.invoke(app, ["server", "--max-artifact-size", "lots"])
    assert bad_size.exit_code == 2 and "--max-artifact-size" in bad_size.output
    remote = runner.invoke(app, ["server", "--artifacts-destination", "gs://bucket/x"])
    assert remote.exit_code == 2 and "local directory" in remote.output
