"""Artifact repositories by URI scheme (local paths now; object stores with the server)."""

from __future__ import annotations

from urllib.parse import urlparse

from keel.artifacts.base import ArtifactRepository, safe_relpath
from keel.artifacts.local import LocalArtifactRepository
from keel.errors import InvalidParameter

__all__ = ["ArtifactRepository", "LocalArtifactRepository", "get_repository", "safe_relpath"]


def get_repository(root_uri: str) -> ArtifactRepository:
    """The repository for an artifact URI such as a run's ``artifact_uri``.

    >>> type(get_repository("/tmp/x")).__name__
    'LocalArtifactRepository'
    """
    scheme = urlparse(root_uri).scheme
    if scheme in ("", "file") or len(scheme) == 1:
        return LocalArtifactRepository(root_uri)
    if scheme == "s3":
        from keel.artifacts.s3 import S3ArtifactRepository

        return S3ArtifactRepository(root_uri)
    if scheme in ("mlflow-artifacts", "http", "https"):
        # A tracking server that proxies artifacts (MLflow's default) hands
        # out these URIs; Keel's client cannot upload through it yet.
        raise InvalidParameter(
            f"Artifact URI {root_uri!r} is served by the tracking server's artifact proxy, "
            "which this version of Keel cannot read or write yet. Metrics, params and tags "
            "still work against that server; for artifacts, use a server whose runs get a "
            "local or shared path (e.g. an experiment created with artifact_location=...)."
        )
    raise InvalidParameter(
        f"Artifact URI {root_uri!r}: the {scheme!r} scheme is not supported by this version "
        "of Keel (local paths, file:// and s3:// are)."
    )
