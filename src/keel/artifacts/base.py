"""The artifact repository contract: a tree of files under one root URI.

Paths given to a repository are relative, ``/``-separated, and never escape the
root: :func:`safe_relpath` is applied to every one of them before any I/O.
"""

from __future__ import annotations

import abc
import posixpath
from pathlib import Path

from keel.entities import FileInfo
from keel.errors import InvalidParameter


def safe_relpath(path: str | None) -> str:
    """Normalise an artifact path; reject absolute paths and ``..`` escapes.

    >>> safe_relpath("plots//a.png")
    'plots/a.png'
    >>> safe_relpath("../../etc/passwd")
    Traceback (most recent call last):
    ...
    keel.errors.InvalidParameter: Invalid artifact path '../../etc/passwd': ...
    """
    if path is None or path in ("", ".", "/"):
        return ""
    if "\\" in path or "\x00" in path:
        raise InvalidParameter(f"Invalid artifact path {path!r}: use '/' as the separator.")
    norm = posixpath.normpath(path)
    if path.startswith("/") or norm == ".." or norm.startswith("../"):
        raise InvalidParameter(
            f"Invalid artifact path {path!r}: it must be relative to the run's artifact "
            "root and must not contain '..'."
        )
    return "" if norm == "." else norm


class ArtifactRepository(abc.ABC):
    """Files under one root (a run's ``artifact_uri``)."""

    def __init__(self, root_uri: str) -> None:
        self.root_uri = root_uri

    @abc.abstractmethod
    def log_artifact(self, local_file: Path, artifact_path: str | None = None) -> None:
        """Copy one local file into ``artifact_path`` (a directory) under the root."""

    @abc.abstractmethod
    def log_artifacts(self, local_dir: Path, artifact_path: str | None = None) -> None:
        """Copy the contents of a local directory, recursively, into ``artifact_path``."""

    @abc.abstractmethod
    def write_bytes(self, artifact_file: str, data: bytes) -> None:
        """Create or replace one file (its parent directories are created)."""

    @abc.abstractmethod
    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        """Direct children of ``path`` (files and directories), sorted by path.

        A path that does not exist gives an empty list.
        """

    @abc.abstractmethod
    def download_artifacts(self, artifact_path: str, dst_path: Path) -> Path:
        """Copy a file or directory to ``dst_path``; return the local path. Raises NotFound."""
