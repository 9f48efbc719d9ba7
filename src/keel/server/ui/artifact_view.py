"""The run page's artifact browser: where a run's files live, and how to preview one.

A run's ``artifact_uri`` is a local directory (or ``file://``), an
``mlflow-artifacts:/…`` URI served by this server's proxy (under
``--artifacts-destination``), or ``s3://bucket/prefix``. All three are read
through the proxy's storage classes (:mod:`keel.server.routes_artifacts`),
so paths get the proxy's checks: :func:`~keel.server.routes_artifacts.clean_path`
on every request path, and, on disk, every resolved path (symlinks followed)
must stay under the run's root.

A preview reads a bounded prefix of the file and never more; what kind of
preview a file gets depends on its name and size only:

>>> kind_of("plots/loss.PNG"), kind_of("model/MLmodel"), kind_of("report.html")
('image', 'text', 'html')
>>> kind_of("eval.tsv"), kind_of("weights.bin")
('table', 'other')
>>> text_preview(b"a<b>\\nline 2", size=11, limits=Limits())["text"]
'a<b>\\nline 2'
"""

from __future__ import annotations

import csv
import functools
import io
import mimetypes
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from keel.entities import FileInfo
from keel.errors import InvalidParameter, KeelError
from keel.server import routes_artifacts as proxy
from keel.server.config import is_local_destination, is_s3_destination

if TYPE_CHECKING:
    from keel.server.app import ServerContext

MB = 1024 * 1024

IMAGE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "svg": "image/svg+xml",
}
# fmt: off
TEXT_EXTENSIONS = frozenset({
    "txt", "log", "err", "out", "json", "jsonl", "yaml", "yml", "md", "rst", "py", "cfg",
    "conf", "toml", "ini", "properties", "xml", "js", "ts", "sh", "sql", "r", "ipynb",
    "mlmodel", "mlproject", "requirements", "lock", "env", "csv", "tsv",
})
TEXT_NAMES = frozenset({"MLmodel", "MLproject", "requirements.txt", "conda.yaml", "Dockerfile"})
# fmt: on


@dataclass(frozen=True)
class Limits:
    """How much a preview may read. Beyond ``max_preview`` nothing is fetched."""

    max_preview: int = 50 * MB
    max_text_file: int = 10 * MB
    text_bytes: int = 1 * MB
    table_bytes: int = 2 * MB
    table_rows: int = 200


DEFAULT_LIMITS = Limits()


class ArtifactsUnavailable(KeelError):
    """The run's artifacts are somewhere this server cannot read (the message says why)."""

    error_code = "NOT_IMPLEMENTED"
    http_status = 501


def kind_of(path: str) -> str:
    """``image``, ``html``, ``table``, ``text`` or ``other``, from the file name alone."""
    name = PurePosixPath(path).name
    ext = name.rpartition(".")[2].lower() if "." in name else name.lower()
    if ext in IMAGE_TYPES:
        return "image"
    if ext in ("html", "htm"):
        return "html"
    if ext in ("csv", "tsv"):
        return "table"
    if ext in TEXT_EXTENSIONS or name in TEXT_NAMES:
        return "text"
    return "other"


def media_type(path: str) -> str:
    """The Content-Type the raw endpoint sends: images and HTML as such, text as text."""
    kind = kind_of(path)
    ext = path.rpartition(".")[2].lower()
    if kind == "image":
        return IMAGE_TYPES[ext]
    if kind == "html":
        return "text/html; charset=utf-8"
    if kind in ("text", "table"):
        return "text/plain; charset=utf-8"
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


@dataclass(frozen=True)
class RunArtifacts:
    """A run's artifact root: a proxy storage and the prefix of the run's files in it."""

    storage: proxy.ProxyStorage
    prefix: str

    def _full(self, rel: str) -> str:
        return "/".join(p for p in (self.prefix, rel) if p)

    def list(self, rel: str) -> list[FileInfo]:
        """Directory ``rel``'s entries: folders first, then files, each by name."""
        entries = self.storage.list(self._full(rel))
        return sorted(entries, key=lambda f: (not f.is_dir, f.path.lower()))

    def stat(self, rel: str) -> FileInfo | None:
        """The entry for ``rel`` (its path relative to the run), or None if there is none."""
        if not rel:
            return FileInfo("", True, None)
        parent, _, name = rel.rpartition("/")
        for entry in self.storage.list(self._full(parent)):
            if entry.path == name:
                return FileInfo(rel, entry.is_dir, entry.file_size)
        return None

    def open(self, rel: str) -> proxy.Opened:
        return self.storage.open_read(self._full(rel))

    def read_prefix(self, rel: str, limit: int) -> bytes:
        """At most ``limit`` bytes from the start of the file."""
        opened = self.open(rel)
        try:
            chunks: list[bytes] = []
            left = limit
            while left > 0:
                chunk = opened.fh.read(min(left, proxy.CHUNK_BYTES))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            opened.fh.close()


def run_artifacts(ctx: ServerContext, artifact_uri: str) -> RunArtifacts:
    """Where the run with ``artifact_uri`` keeps its files, or ArtifactsUnavailable."""
    if artifact_uri.startswith("mlflow-artifacts:"):
        if ctx.artifacts_destination is None:
            raise ArtifactsUnavailable(
                "This run's artifacts are served by an artifact proxy "
                f"({artifact_uri}), and this server has none: start it with "
                "--artifacts-destination pointing where the proxy keeps them."
            )
        # mlflow-artifacts:/1/abc/artifacts and mlflow-artifacts://host/1/... alike.
        path = urlparse(artifact_uri).path
        return RunArtifacts(_storage(ctx.artifacts_destination), proxy.clean_path(path.lstrip("/")))
    if is_s3_destination(artifact_uri) or is_local_destination(artifact_uri):
        return RunArtifacts(_storage(artifact_uri), "")
    raise ArtifactsUnavailable(
        f"This run's artifacts live at {artifact_uri!r}; the web UI can show artifacts on "
        "local disk, behind the artifact proxy, or on S3 only."
    )


@functools.lru_cache(maxsize=64)
def _storage(destination: str) -> proxy.ProxyStorage:
    # Making an S3 client is slow and not thread-safe: one per destination.
    try:
        return proxy.open_storage(destination)
    except InvalidParameter as exc:
        raise ArtifactsUnavailable(str(exc)) from exc


def preview(
    artifacts: RunArtifacts, rel: str, size: int, limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any]:
    """What the page shows under the listing for file ``rel`` (JSON-ready).

    ``kind`` says how: ``image`` and ``html`` load the raw URL (in ``<img>``
    and a sandboxed ``<iframe>``), ``text`` carries ``text`` (``truncated``
    when longer), ``table`` carries ``header`` and ``rows``; ``download``
    means only a link, with ``reason``.
    """
    kind = kind_of(rel)
    base: dict[str, Any] = {"path": rel, "size": size, "kind": kind}
    if size > limits.max_preview:
        return {**base, "kind": "download", "reason": "too large to preview"}
    if kind in ("image", "html"):
        return base
    if kind == "other":
        return {**base, "kind": "download", "reason": "no preview for this type"}
    if kind == "table":
        data = artifacts.read_prefix(rel, limits.table_bytes)
        table = table_preview(data, size=size, limits=limits, tab=rel.lower().endswith(".tsv"))
        if table is not None:
            return {**base, **table}
        kind = "text"  # not a table after all: show it as text
    if size > limits.max_text_file:
        return {**base, "kind": "download", "reason": "too large to preview"}
    data = artifacts.read_prefix(rel, limits.text_bytes)
    text = text_preview(data, size=size, limits=limits)
    if text is None:
        return {**base, "kind": "download", "reason": "binary content"}
    return {**base, **text}


def text_preview(data: bytes, *, size: int, limits: Limits) -> dict[str, Any] | None:
    """``{"kind": "text", "text", "truncated"}``, or None when ``data`` is binary."""
    if b"\x00" in data[:8192]:
        return None
    text = data[: limits.text_bytes].decode("utf-8", errors="replace")
    if len(data) > limits.text_bytes or size > limits.text_bytes:
        # The cut may split a multi-byte character: drop what it left.
        text = text.rstrip("\ufffd")
        return {"kind": "text", "text": text, "truncated": True}
    return {"kind": "text", "text": text, "truncated": False}


def table_preview(data: bytes, *, size: int, limits: Limits, tab: bool) -> dict[str, Any] | None:
    """``{"kind": "table", "header", "rows", "truncated"}``; None if it is no table.

    >>> t = table_preview(b"a,b\\n1,2\\n3,4\\n", size=12, limits=Limits(), tab=False)
    >>> t["header"], t["rows"], t["truncated"]
    (['a', 'b'], [['1', '2'], ['3', '4']], False)
    """
    if b"\x00" in data[:8192]:
        return None
    partial = len(data) < size
    text = data.decode("utf-8", errors="replace")
    if partial:  # the last line may be cut off: drop it
        text = text[: text.rfind("\n") + 1]
    try:
        rows = _rows(text, tab, limits.table_rows + 2)  # the header, and one more to tell
    except csv.Error:
        return None
    if len(rows) < 1 or max(len(r) for r in rows) < 2:
        return None
    header, body = rows[0], rows[1:]
    truncated = partial or len(body) > limits.table_rows
    return {
        "kind": "table",
        "header": header,
        "rows": body[: limits.table_rows],
        "truncated": truncated,
    }


def _rows(text: str, tab: bool, limit: int) -> list[list[str]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if tab else ",")
    out: list[list[str]] = []
    for row in reader:
        if len(out) >= limit:
            break
        out.append(row)
    return out


def entry_json(entry: FileInfo, directory: str) -> dict[str, Any]:
    """A listing row: its name, path relative to the run, folder or not, size, kind."""
    path = f"{directory}/{entry.path}" if directory else entry.path
    return {
        "name": entry.path,
        "path": path,
        "is_dir": entry.is_dir,
        "size": entry.file_size,
        "kind": "folder" if entry.is_dir else kind_of(entry.path),
    }
