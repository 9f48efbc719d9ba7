"""MLflow's artifact proxy (``mlflow-artifacts``): upload, list, download, delete.

When the server proxies artifacts (``keel server --artifacts-destination PATH``),
new experiments get ``artifact_location = mlflow-artifacts:/<experiment_id>``
and the mlflow client turns ``mlflow-artifacts:/X`` into
``/api/2.0/mlflow-artifacts/artifacts/X`` on this server, which keeps the files
under the destination (research/mlflow-wire.md §7, §12.1): a local directory
(:class:`LocalProxyStorage`) or ``s3://bucket/prefix`` (:class:`S3ProxyStorage`,
through :class:`~keel.artifacts.s3.S3ArtifactRepository`). Both backends sit
behind :class:`ProxyStorage`, so the HTTP layer's path checks, size limit and
error shapes are the same for each:

- ``PUT    …/artifacts/{path}``  raw bytes, streamed to a temporary file (in the
  target directory, renamed into place; for S3 a spool file then uploaded, in
  parts when large): a reader never sees half a file, and a failed or aborted
  upload leaves nothing behind. Bounded by ``max_artifact_bytes`` (413).
  Answers 200 with an empty body.
- ``GET    …/artifacts/{path}``  the bytes, streamed, with ``Content-Type`` and
  ``Content-Disposition: attachment``; a missing file is a JSON 404.
- ``GET    …/artifacts?path=D``  ``{"files": [{"path", "is_dir", "file_size"}]}``
  (basenames; directories have no size; a file or missing path gives ``{}``).
- ``DELETE …/artifacts/{path}``  a file or a whole directory; ``{}``.
- ``POST   …/mpu/{create,complete,abort}/{path}``, ``GET …/presigned/{path}``:
  501 ``NOT_IMPLEMENTED`` with MLflow's messages, as MLflow answers for a local
  repository; the client then falls back to plain PUTs and GETs.

Every path is checked before any I/O, as MLflow's ``validate_path_is_safe`` does
(``..`` components, absolute paths, drive letters, backslashes, ``#``, control
characters, at every level of percent-decoding; beyond MLflow, also after NFKC
normalisation, and refusing U+FFFD from undecodable escapes such as overlong
``%c0%ae`` and servlet-style ``..;`` components), and every resolved path,
symlinks followed, must stay under the destination: otherwise 400
``INVALID_PARAMETER_VALUE "Invalid path"``. An unreachable S3 is a 503
``TEMPORARILY_UNAVAILABLE``.

The routes are mounted under ``/api/2.0/mlflow-artifacts`` and mirrored under
``/ajax-api/2.0/mlflow-artifacts``. Without a destination they answer 501 with
a message saying how to turn proxying on.

>>> clean_path("6/abc/artifacts//plots/./a.png")
'6/abc/artifacts/plots/a.png'
>>> clean_path("probe/%2E%2E/x.txt")
Traceback (most recent call last):
...
keel.server.routes_artifacts.InvalidPath: Invalid path
"""

from __future__ import annotations

import email.utils
import errno
import hashlib
import mimetypes
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from keel.artifacts.s3 import S3ArtifactRepository
from keel.entities import FileInfo
from keel.errors import InvalidParameter, KeelError, NotFound
from keel.server.app import Endpoint, _json, _request_data
from keel.server.config import is_local_destination, is_s3_destination, local_path_of
from keel.server.wire import Field, parse

if TYPE_CHECKING:
    from keel.server.app import ServerContext

ARTIFACT_PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
MULTIPART_UPLOAD_UNSUPPORTED = (
    "Multipart upload is not supported for the current artifact repository"
)
MULTIPART_DOWNLOAD_UNSUPPORTED = (
    "Multipart download is not supported for the current artifact repository"
)
CHUNK_BYTES = 1024 * 1024
TEMP_PREFIX = ".tmp-"  # as LocalArtifactRepository: hidden from listings

# MLflow's mime_type_utils: these go out as text/plain whatever mimetypes says.
# fmt: off
_TEXT_EXTENSIONS = frozenset({
    "txt", "log", "err", "cfg", "conf", "cnf", "cf", "ini", "properties", "prop", "hocon",
    "toml", "yaml", "yml", "xml", "json", "js", "py", "py3", "csv", "tsv", "md", "rst",
    "ipynb", "MLmodel", "MLproject",
})
# fmt: on
_TOKEN = re.compile(r"[A-Za-z0-9!#$&+.^_`|~-]+")
_DRIVE = re.compile(r"[A-Za-z]:")


# -- errors ------------------------------------------------------------------


class InvalidPath(InvalidParameter):
    """A path that could leave the destination: MLflow's 400 ``Invalid path``."""

    def __init__(self) -> None:
        super().__init__("Invalid path")


class NotImplementedByServer(KeelError):
    """501 NOT_IMPLEMENTED: the client treats it as "fall back" where MLflow's does."""

    error_code = "NOT_IMPLEMENTED"
    http_status = 501


class ArtifactTooLarge(KeelError):
    """An upload over the server's limit (413; the limit is in the message)."""

    error_code = "INVALID_PARAMETER_VALUE"
    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The artifact exceeds the server's upload limit of {limit} bytes "
            "(keel server --max-artifact-size)."
        )


class StorageFull(KeelError):
    """The destination's disk or quota is full: 507, which the client does not retry."""

    error_code = "RESOURCE_EXHAUSTED"
    http_status = 507


# -- paths -------------------------------------------------------------------


def clean_path(raw: str | None, *, file: bool = False) -> str:
    """The relative ``/``-separated path for ``raw``, or :class:`InvalidPath`.

    ``raw`` is the path as the router decoded it once; it is checked at every
    further level of percent-decoding too, as MLflow does. ``file`` demands a
    file name (not the root, no trailing ``/``).
    """
    text = raw or ""
    levels = [text]
    for _ in range(10):
        decoded = unquote(levels[-1])
        if decoded == levels[-1]:
            break
        levels.append(decoded)
    else:
        raise InvalidPath()
    # NFKC, and Windows' best-fit code pages, turn fullwidth and other look-alike
    # dots and slashes into ".." and "/" for whoever normalises the name later.
    levels += [unicodedata.normalize("NFKC", level) for level in levels]
    for level in levels:
        if (
            "\\" in level
            or "#" in level
            # Percent-escapes that are not UTF-8 (overlong "%c0%ae" for ".")
            # decode to U+FFFD: a name no honest client sends.
            or "\ufffd" in level
            or any(ord(ch) < 32 or ord(ch) == 127 for ch in level)
            or level.startswith("/")
            or _DRIVE.match(level)
            or level.lower().startswith("file:")
            # "..;x" is ".." to servlet containers, which drop ";" path parameters.
            or any(part.split(";", 1)[0] == ".." for part in level.split("/"))
        ):
            raise InvalidPath()
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if file and (not parts or text.endswith("/")):
        raise InvalidPath()
    return "/".join(parts)


def _within(root: Path, path: Path) -> bool:
    return path == root or root in path.parents


# -- storage -----------------------------------------------------------------


class Readable(Protocol):
    """What a download streams from: a file, or an S3 object's body."""

    def read(self, size: int = ..., /) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Opened:
    """A stored file opened for download."""

    fh: Readable
    size: int
    mtime: float
    etag: str  # quoted, as the header carries it


class PendingUpload(Protocol):
    """One upload in progress: ``write`` chunks, then ``commit`` or ``abort``."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class ProxyStorage(Protocol):
    """Where the proxy keeps files. ``rel`` is always a :func:`clean_path` result."""

    def list(self, rel: str) -> list[FileInfo]:
        """The children of directory ``rel`` by basename; [] for a file or nothing."""
        ...

    def open_read(self, rel: str) -> Opened:
        """The file ``rel``, or NotFound."""
        ...

    def begin_upload(self, rel: str) -> PendingUpload: ...

    def delete(self, rel: str) -> None:
        """Remove the file or directory ``rel``; nothing there is fine."""
        ...


def _local_etag(size: int, mtime: float) -> str:
    digest = hashlib.md5(f"{mtime}-{size}".encode(), usedforsecurity=False)
    return f'"{digest.hexdigest()}"'


class Upload:
    """One file being written: a temporary file beside its final name until ``commit``."""

    def __init__(self, dest: Path, created: list[Path]) -> None:
        self.dest = dest
        self._created = created  # directories made for this upload, deepest first
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=TEMP_PREFIX)
        self.tmp = Path(tmp)
        self._fh: IO[bytes] = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        try:
            self._fh.write(data)
        except OSError as exc:
            raise _storage_error(exc) from exc

    def commit(self) -> None:
        try:
            self._fh.close()
            self.tmp.replace(self.dest)
        except IsADirectoryError:
            self.abort()
            raise InvalidParameter(
                f"Cannot upload to {self.dest.name!r}: a directory has that name."
            ) from None
        except OSError as exc:
            self.abort()
            raise _storage_error(exc) from exc

    def abort(self) -> None:
        """Remove the temporary file and any directory made for it (still empty)."""
        self._fh.close()
        self.tmp.unlink(missing_ok=True)
        for directory in self._created:
            try:
                directory.rmdir()
            except OSError:
                break  # something else now lives there


def _storage_error(exc: OSError) -> KeelError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull("The server's artifact storage is full; the upload was discarded.")
    return KeelError(f"Cannot store the artifact: {exc.strerror or exc}.")


class LocalProxyStorage:
    """The proxy's files under one local directory (``--artifacts-destination``).

    Paths are cleaned by :func:`clean_path` first; here every one is also
    resolved, symlinks followed, and must stay under the root.
    """

    def __init__(self, destination: str) -> None:
        if not is_local_destination(destination):
            raise InvalidParameter(
                f"Artifacts destination {destination!r}: only a local directory (or file:// "
                "URI) or s3://bucket/prefix is supported by this version of Keel."
            )
        self.root = local_path_of(destination).resolve()

    def _resolve(self, rel: str) -> Path:
        try:
            target = (self.root / rel).resolve()
        except (OSError, RuntimeError):  # a symlink loop
            raise InvalidPath() from None
        if not _within(self.root, target):
            raise InvalidPath()
        return target

    def _parent_and_name(self, rel: str) -> tuple[Path, str]:
        # The parent resolved (it must stay inside); the last component as given,
        # so a symlink there is replaced or removed, never followed.
        parent, _, name = rel.rpartition("/")
        return self._resolve(parent), name

    def list(self, rel: str) -> list[FileInfo]:
        target = self._resolve(rel)
        try:
            children = sorted(target.iterdir(), key=lambda p: p.name)
        except (FileNotFoundError, NotADirectoryError):  # a file, or nothing (any more)
            return []
        out = []
        for child in children:
            if child.name.startswith(TEMP_PREFIX):
                continue
            try:
                real = child.resolve()
                if not _within(self.root, real):
                    continue  # a symlink out of the destination: not ours to show
                if real.is_dir():
                    out.append(FileInfo(child.name, True, None))
                else:
                    out.append(FileInfo(child.name, False, real.stat().st_size))
            except (OSError, RuntimeError):
                continue  # vanished meanwhile, or a broken link
        return out

    def open_read(self, rel: str) -> Opened:
        target = self._resolve(rel)
        try:
            fh = target.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"No such artifact: '{rel}'") from None
        st = os.fstat(fh.fileno())
        return Opened(fh, st.st_size, st.st_mtime, _local_etag(st.st_size, st.st_mtime))

    def begin_upload(self, rel: str) -> Upload:
        parent, name = self._parent_and_name(rel)
        dest = parent / name
        if dest.is_dir() and not dest.is_symlink():
            raise InvalidParameter(f"Cannot upload to '{rel}': it is a directory.")
        for attempt in range(3):
            created = []  # deepest first, for Upload.abort
            missing = parent
            while not missing.exists() and missing != missing.parent:
                created.append(missing)
                missing = missing.parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
                return Upload(dest, created)
            except (FileExistsError, NotADirectoryError):
                raise InvalidParameter(
                    f"Cannot upload to '{rel}': a file stands where a directory is needed."
                ) from None
            except FileNotFoundError as exc:
                # A concurrent aborted upload removed the directory it had made: again.
                if attempt == 2:
                    raise _storage_error(exc) from exc
            except OSError as exc:
                raise _storage_error(exc) from exc
        raise AssertionError("unreachable")

    def delete(self, rel: str) -> None:
        parent, name = self._parent_and_name(rel)
        target = parent / name
        if target.is_symlink() or target.is_file():
            target.unlink(missing_ok=True)
        elif target.is_dir():
            shutil.rmtree(target)


class S3Upload:
    """One upload to S3: spooled to a local temporary file, sent whole at ``commit``.

    The route bounds the size before anything is spooled, so the spool never
    exceeds the upload limit; ``upload_stream`` then sends it in parts.
    """

    def __init__(self, repo: S3ArtifactRepository, rel: str) -> None:
        self.repo = repo
        self.rel = rel
        self._fh: IO[bytes] = tempfile.TemporaryFile(prefix=TEMP_PREFIX)  # noqa: SIM115

    def write(self, data: bytes) -> None:
        try:
            self._fh.write(data)
        except OSError as exc:
            raise _storage_error(exc) from exc

    def commit(self) -> None:
        try:
            self._fh.flush()
            self._fh.seek(0)
            self.repo.upload_stream(self._fh, self.rel)
        finally:
            self._fh.close()

    def abort(self) -> None:
        self._fh.close()


class S3ProxyStorage:
    """The proxy's files under ``s3://bucket/prefix``: object keys ``prefix/<rel>``.

    S3 has no symlinks, so :func:`clean_path` is the whole path check; the
    repository's own ``safe_relpath`` checks every key again.
    """

    def __init__(self, destination: str) -> None:
        self.repo = S3ArtifactRepository(destination.rstrip("/"))
        _ = self.repo._client  # made once here: creating boto3 clients is not thread-safe

    def list(self, rel: str) -> list[FileInfo]:
        return [
            FileInfo(f.path.rpartition("/")[2], f.is_dir, f.file_size)
            for f in self.repo.list_artifacts(rel)
        ]

    def open_read(self, rel: str) -> Opened:
        try:
            obj = self.repo.open_stream(rel)
        except NotFound:
            raise NotFound(f"No such artifact: '{rel}'") from None
        return Opened(obj.body, obj.size, obj.mtime, obj.etag or _local_etag(obj.size, obj.mtime))

    def begin_upload(self, rel: str) -> S3Upload:
        if self.repo.has_children(rel):
            raise InvalidParameter(f"Cannot upload to '{rel}': it is a directory.")
        return S3Upload(self.repo, rel)

    def delete(self, rel: str) -> None:
        self.repo.delete(rel)


def open_storage(destination: str) -> ProxyStorage:
    """The backend for ``--artifacts-destination``: a local directory or ``s3://``."""
    if is_s3_destination(destination):
        return S3ProxyStorage(destination)
    return LocalProxyStorage(destination)


# -- HTTP --------------------------------------------------------------------


def _guess_type(name: str) -> str:
    """MLflow's ``_guess_mime_type``: known text files as text/plain, else mimetypes."""
    extension = Path(name).suffix[1:] or name
    if extension in _TEXT_EXTENSIONS:
        return "text/plain"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _disposition(name: str) -> str:
    if _TOKEN.fullmatch(name):
        return f"attachment; filename={name}"  # MLflow's form
    fallback = re.sub(r'[^\x20-\x7e]|["\\]', "_", name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


async def _chunks(fh: Readable) -> AsyncIterator[bytes]:
    try:
        while chunk := await run_in_threadpool(fh.read, CHUNK_BYTES):
            yield chunk
    finally:
        fh.close()


_MPU_FIELDS = {
    "create": (Field("path", required=True), Field("num_parts", "int64")),
    "complete": (
        Field("path", required=True),
        Field("upload_id"),
        Field("parts", "object[]", required=True),
    ),
    "abort": (Field("path", required=True), Field("upload_id")),
}

Route = Callable[..., Coroutine[Any, Any, Response]]


def install(app: FastAPI, ctx: ServerContext) -> None:
    """Mount the artifact proxy (or, without a destination, routes that say it is off)."""
    if ctx.artifacts_destination is None:
        _install_disabled(app)
        return
    storage = open_storage(ctx.artifacts_destination)
    limit = ctx.max_artifact_bytes

    async def upload(request: Request, path: str) -> Response:
        rel = clean_path(path, file=True)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ArtifactTooLarge(limit)
        pending = await run_in_threadpool(storage.begin_upload, rel)
        try:
            size = 0
            buffer: list[bytes] = []
            buffered = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ArtifactTooLarge(limit)
                buffer.append(chunk)
                buffered += len(chunk)
                if buffered >= CHUNK_BYTES:
                    await run_in_threadpool(pending.write, b"".join(buffer))
                    buffer, buffered = [], 0
            if buffer:
                await run_in_threadpool(pending.write, b"".join(buffer))
            await run_in_threadpool(pending.commit)
        except ClientDisconnect:
            pending.abort()
            return Response(status_code=400)  # nobody is listening
        except BaseException:
            pending.abort()
            raise
        return Response(status_code=200)

    async def download(path: str) -> Response:
        rel = clean_path(path, file=True)
        opened = await run_in_threadpool(storage.open_read, rel)
        name = rel.rpartition("/")[2]
        headers = {
            "content-type": _guess_type(name),
            "content-disposition": _disposition(name),
            "content-length": str(opened.size),
            "last-modified": email.utils.formatdate(opened.mtime, usegmt=True),
            "etag": opened.etag,
            "x-content-type-options": "nosniff",
        }
        return StreamingResponse(_chunks(opened.fh), headers=headers)

    async def list_artifacts(request: Request) -> Response:
        rel = clean_path(request.query_params.get("path"))
        files = await run_in_threadpool(storage.list, rel)
        if not files:
            return _json({})
        return _json({"files": [_file_json(f) for f in files]})

    async def delete(path: str) -> Response:
        rel = clean_path(path, file=True)
        await run_in_threadpool(storage.delete, rel)
        return _json({})

    def multipart(kind: str) -> Route:
        endpoint = Endpoint("POST", f"/mpu/{kind}", _MPU_FIELDS[kind], lambda c, a: {})

        async def answer(request: Request, path: str) -> Response:
            clean_path(path)
            parse(endpoint.fields, await _request_data(request, endpoint, ctx))
            raise NotImplementedByServer(MULTIPART_UPLOAD_UNSUPPORTED)

        return answer

    async def presigned(path: str) -> Response:
        clean_path(path, file=True)
        raise NotImplementedByServer(MULTIPART_DOWNLOAD_UNSUPPORTED)

    routes: list[tuple[str, str, Route, str]] = [
        ("GET", "/artifacts", list_artifacts, "List artifacts under a path"),
        ("PUT", "/artifacts/{path:path}", upload, "Upload an artifact (raw bytes)"),
        ("GET", "/artifacts/{path:path}", download, "Download an artifact"),
        ("DELETE", "/artifacts/{path:path}", delete, "Delete an artifact or directory"),
        ("POST", "/mpu/create/{path:path}", multipart("create"), "Multipart upload (501)"),
        ("POST", "/mpu/complete/{path:path}", multipart("complete"), "Multipart upload (501)"),
        ("POST", "/mpu/abort/{path:path}", multipart("abort"), "Multipart upload (501)"),
        ("GET", "/presigned/{path:path}", presigned, "Presigned download (501)"),
    ]
    for prefix in ARTIFACT_PREFIXES:
        for method, path, handler, summary in routes:
            app.add_api_route(
                prefix + path,
                handler,
                methods=[method],
                summary=summary,
                include_in_schema=prefix == ARTIFACT_PREFIXES[0],
                name=f"{method} {prefix}{path}",
                tags=["artifacts"],
            )


def _file_json(f: FileInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"path": f.path, "is_dir": f.is_dir}
    if f.file_size is not None:
        out["file_size"] = f.file_size
    return out


def _install_disabled(app: FastAPI) -> None:
    async def disabled(request: Request) -> Response:
        raise NotImplementedByServer(
            "This Keel server does not proxy artifacts: start it with "
            "`keel server --artifacts-destination PATH` to serve mlflow-artifacts:/ URIs."
        )

    for prefix in ARTIFACT_PREFIXES:
        app.add_api_route(
            prefix + "/{rest:path}",
            disabled,
            methods=["GET", "PUT", "POST", "DELETE"],
            include_in_schema=False,
            name=f"artifacts disabled {prefix}",
        )
