"""Artifacts in S3-compatible object storage: ``s3://bucket/prefix``.

Uploads and downloads stream through boto3's transfer manager (multipart for
large files), so no artifact is held whole in memory. The endpoint comes from
``KEEL_S3_ENDPOINT_URL`` or ``MLFLOW_S3_ENDPOINT_URL`` (MinIO, Ceph, R2, a
local test server), credentials from boto3's usual chain (``AWS_*``
variables, profiles, instance roles).

Object keys come from the network: before a download writes a file, the key's
path below the requested prefix goes through :func:`safe_relpath` and must
stay inside the destination directory.

>>> S3ArtifactRepository("s3://bucket/exp/run/artifacts")._key("model/MLmodel")
'exp/run/artifacts/model/MLmodel'
"""

from __future__ import annotations

import functools
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlparse

from keel.artifacts.base import ArtifactRepository, safe_relpath
from keel.entities import FileInfo
from keel.errors import InvalidParameter, KeelError, NotFound, StoreUnavailable, require

ENDPOINT_ENV_VARS = ("KEEL_S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")
_MISSING_CODES = ("404", "NoSuchKey", "NoSuchBucket", "NotFound")
# Refusals caused by what the caller asked for, not by the storage: 400, not 503.
_CLIENT_CODES = ("KeyTooLongError", "EntityTooLarge", "InvalidObjectName")
MAX_KEY_BYTES = 1024  # S3's limit on an object key (UTF-8)

F = TypeVar("F", bound=Callable[..., Any])


def _s3_errors(method: F) -> F:
    """Turn boto3/botocore failures into Keel's errors, naming the bucket and what to check."""

    @functools.wraps(method)
    def wrapper(self: S3ArtifactRepository, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except KeelError:
            raise
        except Exception as exc:
            if type(exc).__module__.split(".")[0] not in ("botocore", "boto3", "s3transfer"):
                raise
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in _MISSING_CODES:
                raise NotFound(f"{self.root_uri}: {code} ({exc}).") from exc
            if code in _CLIENT_CODES:
                raise InvalidParameter(f"{self.root_uri}: {code} ({exc}).") from exc
            raise StoreUnavailable(
                f"S3 at {endpoint_url() or 'AWS'} failed for {self.root_uri}: {exc}. Check the "
                "bucket, the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile) "
                "and KEEL_S3_ENDPOINT_URL for S3-compatible servers."
            ) from exc

    return wrapper  # type: ignore[return-value]


def endpoint_url() -> str | None:
    """The S3 endpoint to use instead of AWS's, if one is configured."""
    for name in ENDPOINT_ENV_VARS:
        value = os.environ.get(name)
        if value:
            return value
    return None


@dataclass(frozen=True)
class S3Object:
    """An object being read: ``body`` streams it (``read(n)``, ``close()``)."""

    body: Any
    size: int
    mtime: float
    etag: str | None


class S3ArtifactRepository(ArtifactRepository):
    """Files under ``s3://bucket/prefix``; directories are key prefixes ending in ``/``."""

    def __init__(self, root_uri: str) -> None:
        super().__init__(root_uri)
        parsed = urlparse(root_uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InvalidParameter(f"Invalid S3 URI {root_uri!r}: expected s3://bucket/prefix.")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self._client_cache: Any = None

    @property
    def _client(self) -> Any:
        if self._client_cache is None:
            require("boto3", "s3", "Artifacts in S3")
            import boto3

            self._client_cache = boto3.client("s3", endpoint_url=endpoint_url())
        return self._client_cache

    def _key(self, rel: str | None) -> str:
        path = safe_relpath(rel)
        return "/".join(p for p in (self.prefix, path) if p)

    @_s3_errors
    def log_artifact(self, local_file: Path, artifact_path: str | None = None) -> None:
        local_file = Path(local_file)
        if not local_file.is_file():
            raise NotFound(f"Cannot log {str(local_file)!r}: no such file.")
        rel = safe_relpath(artifact_path)
        self._client.upload_file(
            str(local_file),
            self.bucket,
            self._key(f"{rel}/{local_file.name}" if rel else local_file.name),
        )

    @_s3_errors
    def log_artifacts(self, local_dir: Path, artifact_path: str | None = None) -> None:
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise NotFound(f"Cannot log {str(local_dir)!r}: no such directory.")
        base = safe_relpath(artifact_path)
        for src in sorted(local_dir.rglob("*")):
            if src.is_file():
                rel = src.relative_to(local_dir).as_posix()
                self._client.upload_file(
                    str(src), self.bucket, self._key(f"{base}/{rel}" if base else rel)
                )

    @_s3_errors
    def write_bytes(self, artifact_file: str, data: bytes) -> None:
        if not safe_relpath(artifact_file):
            raise InvalidParameter("An artifact file name is required.")
        self._client.put_object(Bucket=self.bucket, Key=self._key(artifact_file), Body=data)

    @_s3_errors
    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        rel = safe_relpath(path)
        prefix = self._key(rel)
        prefix = f"{prefix}/" if prefix else ""
        out: list[FileInfo] = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(prefix) :].rstrip("/")
                out.append(FileInfo(f"{rel}/{name}" if rel else name, True, None))
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix) :]
                if name:
                    out.append(FileInfo(f"{rel}/{name}" if rel else name, False, obj["Size"]))
        return sorted(out, key=lambda f: f.path)

    @_s3_errors
    def download_artifacts(self, artifact_path: str, dst_path: Path) -> Path:
        rel = safe_relpath(artifact_path)
        key = self._key(rel)
        dst_path = Path(dst_path)
        dst_path.mkdir(parents=True, exist_ok=True)
        name = posixpath.basename(rel) if rel else "artifacts"
        if rel and self._is_file(key):
            dest = dst_path / name
            self._client.download_file(self.bucket, key, str(dest))
            return dest
        prefix = f"{key}/" if key else ""
        dest_dir = (dst_path / name).resolve()
        found = False
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                below = obj["Key"][len(prefix) :]
                if not below or below.endswith("/"):
                    continue
                target = (dest_dir / safe_relpath(below)).resolve()
                if dest_dir not in target.parents:
                    raise InvalidParameter(
                        f"The object key {obj['Key']!r} would be written outside {dest_dir}."
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                self._client.download_file(self.bucket, obj["Key"], str(target))
                found = True
        if not found:
            raise NotFound(f"Artifact {artifact_path!r} does not exist under {self.root_uri}.")
        return dest_dir

    def _file_key(self, rel: str) -> str:
        key = self._key(rel)
        if not safe_relpath(rel):
            raise InvalidParameter("An artifact file name is required.")
        if len(key.encode()) > MAX_KEY_BYTES:
            raise InvalidParameter(
                f"Artifact path {rel!r} is too long for S3 (keys are at most "
                f"{MAX_KEY_BYTES} bytes, with the prefix {self.prefix!r})."
            )
        return key

    @_s3_errors
    def open_stream(self, rel: str) -> S3Object:
        """The object at ``rel``, to be read in chunks and closed; NotFound if none."""
        resp = self._client.get_object(Bucket=self.bucket, Key=self._file_key(rel))
        return S3Object(
            resp["Body"],
            int(resp["ContentLength"]),
            resp["LastModified"].timestamp(),
            resp.get("ETag"),
        )

    @_s3_errors
    def upload_stream(self, fileobj: IO[bytes], rel: str) -> None:
        """Store what ``fileobj`` reads as ``rel`` (multipart when large, never whole in memory)."""
        self._client.upload_fileobj(fileobj, self.bucket, self._file_key(rel))

    @_s3_errors
    def has_children(self, rel: str) -> bool:
        """Whether ``rel`` is a directory: some object's key starts with ``rel/``."""
        key = self._key(rel)
        resp = self._client.list_objects_v2(
            Bucket=self.bucket, Prefix=f"{key}/" if key else "", MaxKeys=1
        )
        return bool(resp.get("KeyCount") or resp.get("Contents"))

    @_s3_errors
    def delete(self, rel: str) -> None:
        """Delete the object ``rel`` and every object under ``rel/``; nothing there is fine."""
        key = self._file_key(rel)
        self._client.delete_object(Bucket=self.bucket, Key=key)
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{key}/"):
            objects = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if not objects:
                continue
            resp = self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )
            if resp.get("Errors"):
                first = resp["Errors"][0]
                raise StoreUnavailable(
                    f"S3 refused to delete {len(resp['Errors'])} object(s) under "
                    f"{self.root_uri}/{safe_relpath(rel)}, e.g. {first.get('Key')!r}: "
                    f"{first.get('Code')} {first.get('Message')}."
                )

    def _is_file(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True
