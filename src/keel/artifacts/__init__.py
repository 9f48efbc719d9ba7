"""Artifact repositories by URI scheme: local paths, ``s3://``, and a tracking
server's artifact proxy (``mlflow-artifacts:``)."""

from __future__ import annotations

from urllib.parse import urlparse

from keel.artifacts.base import ArtifactRepository, safe_relpath
from keel.artifacts.local import LocalArtifactRepository
from keel.errors import InvalidParameter

__all__ = ["ArtifactRepository", "LocalArtifactRepository", "get_repository", "safe_relpath"]


def get_repository(root_uri: str, tracking_uri: str | None = None) -> ArtifactRepository:
    """The repository for an artifact URI such as a run's ``artifact_uri``.

    ``tracking_uri`` is the tracking server that ``mlflow-artifacts:/`` URIs
    resolve against (default: the current tracking URI).

    >>> type(get_repository("/tmp/x")).__name__
    'LocalArtifactRepository'
    """
    scheme = urlparse(root_uri).scheme
    if scheme in ("", "file") or len(scheme) == 1:
        return LocalArtifactRepository(root_uri)
    if scheme == "s3":
        from keel.artifacts.s3 import S3ArtifactRepository

        return S3ArtifactRepository(root_uri)
    if scheme == "mlflow-artifacts":
        # A tracking server that proxies artifacts (MLflow's default).
        from keel.artifacts.http import HttpArtifactRepository

        return HttpArtifactRepository(root_uri, tracking_uri)
    if scheme in ("http", "https"):
        raise InvalidParameter(
            f"Artifact URI {root_uri!r}: plain http(s) artifact locations are not supported "
            "by this version of Keel. A tracking server's artifact proxy is reached through "
            "mlflow-artifacts:/ URIs (or mlflow-artifacts://host:port/...), which work."
        )
    raise InvalidParameter(
        f"Artifact URI {root_uri!r}: the {scheme!r} scheme is not supported by this version "
        "of Keel (local paths, file://, s3:// and mlflow-artifacts: are)."
    )
