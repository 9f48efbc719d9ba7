"""Artifacts in a local directory (the embedded default)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from keel.artifacts.base import ArtifactRepository, safe_relpath
from keel.entities import FileInfo
from keel.errors import InvalidParameter, NotFound


def local_path_of(uri: str) -> Path:
    """The directory behind a plain path or ``file://`` URI."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(uri)


class LocalArtifactRepository(ArtifactRepository):
    """Artifacts under a directory; files are written to a temp name and renamed.

    >>> import tempfile
    >>> repo = LocalArtifactRepository(tempfile.mkdtemp())
    >>> repo.write_bytes("notes/a.txt", b"hi")
    >>> [f.path for f in repo.list_artifacts("notes")]
    ['notes/a.txt']
    """

    def __init__(self, root_uri: str) -> None:
        super().__init__(root_uri)
        self.root = local_path_of(root_uri).resolve()

    def _abs(self, rel: str | None) -> Path:
        target = (self.root / safe_relpath(rel)).resolve()
        if target != self.root and self.root not in target.parents:
            raise InvalidParameter(f"Artifact path {rel!r} resolves outside the run's artifacts.")
        return target

    def log_artifact(self, local_file: Path, artifact_path: str | None = None) -> None:
        local_file = Path(local_file)
        if not local_file.is_file():
            raise NotFound(f"Cannot log {str(local_file)!r}: no such file.")
        rel = safe_relpath(artifact_path)
        dest = self._abs(f"{rel}/{local_file.name}" if rel else local_file.name)
        self._atomic_copy(local_file, dest)

    def log_artifacts(self, local_dir: Path, artifact_path: str | None = None) -> None:
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise NotFound(f"Cannot log {str(local_dir)!r}: no such directory.")
        base = safe_relpath(artifact_path)
        for src in sorted(local_dir.rglob("*")):
            if src.is_file():
                rel = src.relative_to(local_dir).as_posix()
                self._atomic_copy(src, self._abs(f"{base}/{rel}" if base else rel))

    def write_bytes(self, artifact_file: str, data: bytes) -> None:
        dest = self._abs(artifact_file)
        if dest == self.root:
            raise InvalidParameter("An artifact file name is required.")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            Path(tmp).replace(dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _atomic_copy(src: Path, dest: Path) -> None:
        # Copy to a temporary name and rename, so a reader never sees half a file.
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            Path(tmp).replace(dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        rel = safe_relpath(path)
        target = self._abs(rel)
        if not target.is_dir():
            return []
        out = []
        for child in sorted(target.iterdir()):
            if child.name.startswith(".tmp-"):
                continue
            child_rel = f"{rel}/{child.name}" if rel else child.name
            if child.is_dir():
                out.append(FileInfo(child_rel, True, None))
            else:
                out.append(FileInfo(child_rel, False, child.stat().st_size))
        return out

    def download_artifacts(self, artifact_path: str, dst_path: Path) -> Path:
        src = self._abs(artifact_path)
        if not src.exists():
            raise NotFound(f"Artifact {artifact_path!r} does not exist under {self.root_uri}.")
        dst_path = Path(dst_path)
        dst_path.mkdir(parents=True, exist_ok=True)
        dest = dst_path / (src.name if src != self.root else "artifacts")
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True)
        else:
            shutil.copyfile(src, dest)
        return dest
