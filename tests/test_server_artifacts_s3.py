"""The artifact proxy with an ``s3://bucket/prefix`` destination.

A real uvicorn server on 127.0.0.1 over a real SQLite file, proxying to moto's
S3 server on loopback (as tests/test_artifacts_s3.py), driven by the unmodified
mlflow client and by raw HTTP; what lands in the bucket is checked with boto3.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
mlflow = pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402

from keel.server import create_app  # noqa: E402
from keel.server.config import PROXY_ARTIFACT_ROOT  # noqa: E402
from keel.store.sql.store import SqlTrackingStore  # noqa: E402
from live_server import serve  # noqa: E402

LIMIT = 32 * 1024 * 1024
API = "/api/2.0/mlflow-artifacts"
PREFIX = "keel/proxied"


def _aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    monkeypatch.setenv("KEEL_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a 5xx must fail the test
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")


@pytest.fixture(autouse=True)
def _mlflow_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _aws_env(monkeypatch, s3_endpoint)


@pytest.fixture
def server_url(tmp_path: Path, bucket: str) -> Iterator[str]:
    store = SqlTrackingStore(f"sqlite:///{tmp_path / 'server.db'}", PROXY_ARTIFACT_ROOT)
    app = create_app(
        store, artifacts_destination=f"s3://{bucket}/{PREFIX}", max_artifact_bytes=LIMIT
    )
    try:
        with serve(app) as url:
            mlflow.set_tracking_uri(url)
            yield url
    finally:
        mlflow.set_tracking_uri(None)
        store.close()


def _objects(s3: Any, bucket: str) -> dict[str, bytes]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _below(objects: dict[str, bytes], prefix: str) -> dict[str, bytes]:
    return {k[len(prefix) + 1 :]: v for k, v in objects.items() if k.startswith(prefix + "/")}


def _raw(url: str, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    """A request with ``path`` sent verbatim (httpx would normalise ``..`` away)."""
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_mlflow_client_round_trips_through_s3(
    server_url: str, bucket: str, s3: Any, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / "top.txt").write_text("top\n")
    (src / "nested" / "data.bin").write_bytes(bytes(range(256)) * 40)
    (src / "nested" / "deeper" / "MLmodel").write_text("flavors: {}\n")
    single = tmp_path / "weights.bin"
    single.write_bytes(os.urandom(300_000))

    mlflow.set_experiment("s3-artifacts")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(single))
        mlflow.log_text("héllo\n", "notes/hello.txt")
        mlflow.log_artifacts(str(src), artifact_path="tree")
    run_id, exp_id = run.info.run_id, run.info.experiment_id
    assert run.info.artifact_uri == f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts"

    objects = _objects(s3, bucket)
    assert all(key.startswith(PREFIX + "/") for key in objects)
    stored = _below(objects, f"{PREFIX}/{exp_id}/{run_id}/artifacts")
    assert stored == {
        "weights.bin": single.read_bytes(),
        "notes/hello.txt": "héllo\n".encode(),
        **{f"tree/{k}": v for k, v in _tree(src).items()},
    }

    c = MlflowClient(tracking_uri=server_url)
    top = c.list_artifacts(run_id)
    assert [(f.path, f.is_dir, f.file_size) for f in top] == [
        ("notes", True, None),
        ("tree", True, None),
        ("weights.bin", False, 300_000),
    ]
    nested = mlflow.artifacts.list_artifacts(artifact_uri=f"{run.info.artifact_uri}/tree/nested")
    assert [(f.path, f.is_dir, f.file_size) for f in nested] == [
        ("nested/data.bin", False, 10240),
        ("nested/deeper", True, None),
    ]
    assert mlflow.artifacts.load_text(f"{run.info.artifact_uri}/notes/hello.txt") == "héllo\n"
    everything = Path(c.download_artifacts(run_id, "", str(tmp_path / "all")))
    assert _tree(everything) == stored
    subtree = Path(c.download_artifacts(run_id, "tree", str(tmp_path / "sub")))
    assert _tree(subtree) == _tree(src)

    listing = httpx.get(f"{server_url}{API}/artifacts", params={"path": "nothing/here"})
    assert listing.status_code == 200 and listing.json() == {}
    a_file = httpx.get(f"{server_url}{API}/artifacts", params={"path": f"{exp_id}/{run_id}"})
    assert a_file.json() == {"files": [{"path": "artifacts", "is_dir": True}]}


def test_a_20_mb_file_round_trips_byte_identical(
    server_url: str, bucket: str, s3: Any, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * 1024 * 1024))
    c = MlflowClient(tracking_uri=server_url)
    run_id = c.create_run("0").info.run_id
    c.log_artifact(run_id, str(big), "blobs")
    key = f"{PREFIX}/0/{run_id}/artifacts/blobs/big.bin"
    assert _sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) == _sha256(
        big.read_bytes()
    )
    got = Path(c.download_artifacts(run_id, "blobs/big.bin", str(tmp_path / "dl")))
    assert _sha256(got.read_bytes()) == _sha256(big.read_bytes())
    response = httpx.get(f"{server_url}{API}/artifacts/0/{run_id}/artifacts/blobs/big.bin")
    assert response.headers["content-length"] == str(20 * 1024 * 1024)
    assert response.headers["content-disposition"] == "attachment; filename=big.bin"


def test_delete_removes_a_key_or_a_prefix(server_url: str, bucket: str, s3: Any) -> None:
    for path in ("d/a.txt", "d/sub/b.txt", "d/sub/c.txt", "keep.txt", "d2/x.txt"):
        put = httpx.put(f"{server_url}{API}/artifacts/{path}", content=path.encode())
        assert put.status_code == 200, put.text
    assert httpx.delete(f"{server_url}{API}/artifacts/d/a.txt").json() == {}
    assert sorted(_below(_objects(s3, bucket), PREFIX)) == [
        "d/sub/b.txt",
        "d/sub/c.txt",
        "d2/x.txt",
        "keep.txt",
    ]
    assert httpx.delete(f"{server_url}{API}/artifacts/d").json() == {}
    assert sorted(_below(_objects(s3, bucket), PREFIX)) == ["d2/x.txt", "keep.txt"]
    assert httpx.delete(f"{server_url}{API}/artifacts/never/was").json() == {}
    # A directory's name cannot become a file.
    clash = httpx.put(f"{server_url}{API}/artifacts/d2", content=b"x")
    assert clash.status_code == 400 and clash.json()["error_code"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize(
    "path",
    [
        "../escape.txt",
        "a/../../escape.txt",
        "%2E%2E/escape.txt",
        "a/%252E%252E/%252E%252E/escape.txt",
        "a\\..\\escape.txt",
        "/abs.txt",
        "%2Fabs.txt",
        "C:/x.txt",
        "a/b#c.txt",
    ],
)
def test_traversal_probes_are_400_and_write_nothing(
    server_url: str, bucket: str, s3: Any, path: str
) -> None:
    for method in ("PUT", "GET", "DELETE"):
        status, body = _raw(server_url, method, f"{API}/artifacts/{path}", b"evil")
        assert status in (400, 404), (method, status, body)  # the router may not match
        if status == 400:
            assert b"INVALID_PARAMETER_VALUE" in body
    status, body = _raw(server_url, "GET", f"{API}/artifacts?path={path}")
    assert status == 400 and b"Invalid path" in body
    assert _objects(s3, bucket) == {}


def test_traversal_puts_are_refused_with_invalid_path(
    server_url: str, bucket: str, s3: Any
) -> None:
    for path in ("probe/%2E%2E/%2E%2E/x.txt", "probe/%252E%252E/x.txt", "probe/a%5Cb.txt"):
        status, body = _raw(server_url, "PUT", f"{API}/artifacts/{path}", b"x")
        assert status == 400 and b"Invalid path" in body, (path, status, body)
    assert _objects(s3, bucket) == {}


def test_missing_is_404_and_too_large_is_413(server_url: str, bucket: str, s3: Any) -> None:
    missing = httpx.get(f"{server_url}{API}/artifacts/0/nope/artifacts/x.txt")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    too_big = httpx.put(f"{server_url}{API}/artifacts/big.bin", content=b"x" * (LIMIT + 1))
    assert too_big.status_code == 413
    mpu = httpx.post(f"{server_url}{API}/mpu/create/a.bin", json={"path": "a.bin"})
    assert mpu.status_code == 501
    assert httpx.get(f"{server_url}{API}/presigned/a.bin").status_code == 501
    long_name = "d/" + "x" * 1100 + ".txt"
    too_long = httpx.put(f"{server_url}{API}/artifacts/{long_name}", content=b"x")
    assert too_long.status_code == 400, too_long.text
    assert _objects(s3, bucket) == {}


def test_an_unreachable_s3_is_503_not_500(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    _aws_env(monkeypatch, f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = SqlTrackingStore(f"sqlite:///{tmp_path / 'server.db'}", PROXY_ARTIFACT_ROOT)
    app = create_app(store, artifacts_destination="s3://bucket/prefix")
    try:
        with serve(app) as url:
            for method, path, body in [
                ("GET", f"{API}/artifacts?path=0", None),
                ("GET", f"{API}/artifacts/0/x.txt", None),
                ("PUT", f"{API}/artifacts/0/x.txt", b"hello"),
                ("DELETE", f"{API}/artifacts/0/x.txt", None),
            ]:
                response = httpx.request(method, f"{url}{path}", content=body, timeout=30)
                assert response.status_code == 503, (method, path, response.text)
                assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
            # Client mistakes are still 400 before S3 is asked.
            status, _ = _raw(url, "PUT", f"{API}/artifacts/%2E%2E/x.txt", b"x")
            assert status == 400
    finally:
        store.close()


def test_keel_server_accepts_an_s3_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from keel.cli.main import app
    from keel.server.config import ARTIFACTS_ENV, BACKEND_ENV, MAX_ARTIFACT_ENV

    for name in (ARTIFACTS_ENV, BACKEND_ENV, MAX_ARTIFACT_ENV):  # the command sets them
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    result = CliRunner().invoke(app, ["server", "--artifacts-destination", "s3://bucket/x/"])
    assert result.exit_code == 0, result.output
    assert calls and os.environ[ARTIFACTS_ENV] == "s3://bucket/x"
    assert "s3://bucket/x" in result.output
    bad = CliRunner().invoke(app, ["server", "--artifacts-destination", "s3:///no-bucket"])
    assert bad.exit_code == 2 and "s3://bucket/prefix" in bad.output


def test_registry_gates_read_packages_behind_an_s3_destination(
    server_url: str, tmp_path: Path
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    import keel

    db_uri = f"sqlite:///{tmp_path / 'server.db'}"
    signed = tmp_path / "signed"
    signed.mkdir()
    (signed / "MLmodel").write_text(
        'flavors: {}\nsignature:\n  inputs: \'[{"type": "double", "name": "x"}]\'\n'
    )
    unsigned = tmp_path / "unsigned"
    unsigned.mkdir()
    (unsigned / "MLmodel").write_text("flavors: {}\n")
    runs = []
    mlflow.set_experiment("gated-s3")  # not an experiment id left over from another server
    for src in (unsigned, signed):
        with mlflow.start_run() as run:
            mlflow.log_artifact(str(src / "MLmodel"), "model")
        runs.append(run.info.run_id)
    c = MlflowClient(tracking_uri=server_url)
    c.create_registered_model("clf")
    for run_id in runs:
        c.create_model_version("clf", f"runs:/{run_id}/model", run_id=run_id)
    keel.Client(db_uri).set_promotion_gates("clf", "champion", ["signature"])
    with pytest.raises(MlflowException, match="no signature"):
        c.set_registered_model_alias("clf", "champion", "1")
    c.set_registered_model_alias("clf", "champion", "2")
    assert c.get_registered_model("clf").aliases == {"champion": "2"}
