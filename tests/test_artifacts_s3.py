"""S3 artifact storage against a real S3-protocol server on loopback (moto's server)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from keel.artifacts.s3 import S3ArtifactRepository  # noqa: E402
from keel.errors import InvalidParameter, NotFound  # noqa: E402


def test_files_and_trees_round_trip(bucket: str, tmp_path: Path) -> None:
    repo = S3ArtifactRepository(f"s3://{bucket}/1/run/artifacts")
    src = tmp_path / "src"
    (src / "model").mkdir(parents=True)
    (src / "model" / "MLmodel").write_text("flavors: {}\n")
    (src / "model" / "model.pkl").write_bytes(os.urandom(1024))
    repo.log_artifacts(src / "model", "model")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * 1024 * 1024))  # multipart upload (over boto3's 8 MB)
    repo.log_artifact(big, "data")
    repo.write_bytes("notes/readme.txt", b"hello")

    assert [(f.path, f.is_dir) for f in repo.list_artifacts()] == [
        ("data", True),
        ("model", True),
        ("notes", True),
    ]
    assert [(f.path, f.file_size) for f in repo.list_artifacts("model")] == [
        ("model/MLmodel", 12),
        ("model/model.pkl", 1024),
    ]
    out = repo.download_artifacts("model", tmp_path / "out")
    assert (out / "model.pkl").read_bytes() == (src / "model" / "model.pkl").read_bytes()
    got = repo.download_artifacts("data/big.bin", tmp_path / "out2")
    assert got.read_bytes() == big.read_bytes()
    assert repo.list_artifacts("nothing") == []
    with pytest.raises(NotFound):
        repo.download_artifacts("nothing", tmp_path / "out3")


def test_keys_from_the_server_never_escape_the_destination(
    bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.put_object(Bucket=bucket, Key="run/artifacts/model/ok.txt", Body=b"ok")
    client.put_object(Bucket=bucket, Key="run/artifacts/model/../../../../evil.txt", Body=b"x")
    repo = S3ArtifactRepository(f"s3://{bucket}/run/artifacts")
    with pytest.raises(InvalidParameter):
        repo.download_artifacts("model", tmp_path / "dst")
    assert not list(tmp_path.rglob("evil.txt"))
    with pytest.raises(InvalidParameter):
        repo.write_bytes("../outside.txt", b"x")


def test_bad_uris_are_refused() -> None:
    with pytest.raises(InvalidParameter, match="s3://bucket/prefix"):
        S3ArtifactRepository("s3:///no-bucket")


def test_runs_with_an_s3_artifact_root_log_and_read_through_the_client(
    bucket: str, tmp_path: Path
) -> None:
    import keel

    client = keel.Client(f"sqlite:///{tmp_path / 'keel.db'}")
    exp = client.create_experiment("s3", artifact_location=f"s3://{bucket}/experiments/s3")
    run = client.create_run(exp)
    assert run.info.artifact_uri.startswith(f"s3://{bucket}/experiments/s3/")
    client.log_text(run.info.run_id, "hello", "notes/a.txt")
    assert [f.path for f in client.list_artifacts(run.info.run_id, "notes")] == ["notes/a.txt"]
    got = client.download_artifacts(run.info.run_id, "notes/a.txt", tmp_path / "dl")
    assert Path(got).read_text() == "hello"


def test_unreachable_or_unconfigured_s3_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from keel.errors import StoreUnavailable

    monkeypatch.setenv("KEEL_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    repo = S3ArtifactRepository("s3://bucket/prefix")
    with pytest.raises(StoreUnavailable, match="KEEL_S3_ENDPOINT_URL"):
        repo.list_artifacts()
    with pytest.raises(StoreUnavailable):
        repo.download_artifacts("model", tmp_path)
