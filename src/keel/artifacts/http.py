"""Artifacts through a tracking server's artifact proxy: ``mlflow-artifacts:/…``.

A server started with ``--artifacts-destination`` (Keel's or MLflow's) gives
runs ``artifact_uri = mlflow-artifacts:/<exp>/<run>/artifacts`` and serves the
files under ``/api/2.0/mlflow-artifacts/artifacts/<path>``
(research/mlflow-wire.md §7). The URI resolves as MLflow's client resolves it:

- ``mlflow-artifacts:/<path>`` → the current tracking server (it must be an
  ``http(s)://`` tracking URI), ``<tracking uri>/api/2.0/mlflow-artifacts/artifacts/<path>``;
- ``mlflow-artifacts://host:port/<path>`` → that host, with the tracking
  URI's scheme when it is ``https``, else ``http``.

The HTTP connection is the tracking store's (:func:`keel.store.open_store`):
one pooled client per server, with its credentials, TLS settings, timeouts
and error mapping (NotFound, InvalidParameter, StoreUnavailable naming the
server). Uploads stream from the file object and downloads stream into a
temporary file that is renamed into place: no file is held whole in memory.

Paths in the server's listings come from the network: each one goes through
:func:`safe_relpath`, must stay below the listed directory, and, before any
file of a directory download is written, inside the destination.

>>> repo = HttpArtifactRepository("mlflow-artifacts://127.0.0.1:5000/1/abc/artifacts")
>>> repo.base_url, repo.root
('http://127.0.0.1:5000', '1/abc/artifacts')
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from keel.artifacts.base import ArtifactRepository, safe_relpath
from keel.entities import FileInfo
from keel.errors import InvalidParameter, NotFound
from keel.uris import redact

SCHEME = "mlflow-artifacts"
# Relative to keel.store.rest.API_PREFIX ("/api/2.0/mlflow"), so that the REST
# store's messages name the full route: "/api/2.0/mlflow-artifacts/artifacts".
_ROUTE = "-artifacts/artifacts"
_CHUNK = 1 << 20


def _tracking_uri(tracking_uri: str | None) -> str:
    if tracking_uri is not None:
        return tracking_uri
    from keel.tracking.config import get_tracking_uri

    return get_tracking_uri()


def resolve_server(root_uri: str, tracking_uri: str | None = None) -> tuple[str, str]:
    """The tracking server's base URL and the path below the proxy's root.

    >>> resolve_server("mlflow-artifacts:/1/r/artifacts", "https://t.example.com/mlflow/")
    ('https://t.example.com/mlflow', '1/r/artifacts')
    >>> resolve_server("mlflow-artifacts:/1", "sqlite:///keel.db")
    Traceback (most recent call last):
    ...
    keel.errors.InvalidParameter: Artifact URI 'mlflow-artifacts:/1' is served by ...
    """
    parts = urlsplit(root_uri)
    if parts.scheme != SCHEME:
        raise InvalidParameter(f"Not an {SCHEME}: URI: {redact(root_uri)!r}.")
    root = safe_relpath(unquote(parts.path).strip("/"))
    tracking = _tracking_uri(tracking_uri)
    tracking_scheme = urlsplit(tracking).scheme
    if parts.netloc:
        scheme = "https" if tracking_scheme == "https" else "http"
        return f"{scheme}://{parts.netloc}", root
    if tracking_scheme not in ("http", "https"):
        raise InvalidParameter(
            f"Artifact URI {root_uri!r} is served by a tracking server's artifact proxy, "
            f"but the tracking URI is {redact(tracking)!r}, not an http:// or https:// "
            "server. Point Keel at the server that created the run (keel.set_tracking_uri, "
            "KEEL_TRACKING_URI or MLFLOW_TRACKING_URI), or use "
            f"{SCHEME}://host:port/... to name it."
        )
    return tracking.rstrip("/"), root


class HttpArtifactRepository(ArtifactRepository):
    """Files under an ``mlflow-artifacts:`` URI, read and written through the server."""

    def __init__(self, root_uri: str, tracking_uri: str | None = None) -> None:
        super().__init__(root_uri)
        parts = urlsplit(root_uri)
        if parts.scheme != SCHEME:
            raise InvalidParameter(f"Not an {SCHEME}: URI: {redact(root_uri)!r}.")
        self.root = safe_relpath(unquote(parts.path).strip("/"))
        self._tracking_uri = tracking_uri
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """The server's base URL, resolved on first use: constructing a repository
        (e.g. to ask whether it is local) needs no tracking server."""
        if self._base_url is None:
            self._base_url = resolve_server(self.root_uri, self._tracking_uri)[0]
        return self._base_url

    # -- transport -----------------------------------------------------------

    @property
    def _store(self) -> Any:
        # The REST tracking store for this server (cached per URL): its pooled
        # httpx client carries the auth headers, TLS settings and timeouts, and
        # its error mapping turns answers into Keel exceptions.
        from keel.store import open_store

        return open_store(self.base_url)

    def _route(self, rel: str) -> str:
        full = "/".join(p for p in (self.root, rel) if p)
        return f"{_ROUTE}/{quote(full, safe='/')}"

    def _send(
        self,
        method: str,
        route: str,
        *,
        read: bool,
        content: Callable[[], Any] | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """One request, retried as the REST store retries: reads after a dropped
        connection, anything when the connection never opened. ``content`` makes
        a fresh body per attempt. With ``stream`` the body is left unread."""
        store = self._store
        url = f"{store.url}/api/2.0/mlflow{route}"
        attempt = 0
        while True:
            try:
                client: httpx.Client = store._http()
                request = client.build_request(
                    method,
                    url,
                    content=content() if content is not None else None,
                    headers=headers,
                    params=params,
                )
                response = client.send(request, stream=stream)
            except httpx.TransportError as exc:
                never_sent = isinstance(
                    exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
                )
                slow = isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout))
                if (never_sent or (read and not slow)) and attempt < store.max_retries:
                    store._backoff(attempt, None)
                    attempt += 1
                    continue
                raise store._unreachable(
                    method, route, exc, maybe_applied=not never_sent and not read
                ) from exc
            if response.is_success:
                return response
            response.read()
            response.close()
            store._result(method, route, response)  # raises the mapped error
            raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _get_stream(self, rel: str) -> Iterator[httpx.Response]:
        response = self._send("GET", self._route(rel), read=True, stream=True)
        try:
            yield response
        finally:
            response.close()

    def _list(self, rel: str) -> list[FileInfo]:
        full = "/".join(p for p in (self.root, rel) if p)
        params = {"path": full} if full else {}
        response = self._send("GET", _ROUTE, read=True, params=params)
        try:
            body = response.json() if response.content.strip() else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise InvalidParameter(
                f"The server at {self.base_url} answered an artifact listing with something "
                "that is not a JSON object; check that it is a Keel or MLflow tracking server."
            )
        out: list[FileInfo] = []
        for entry in body.get("files") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                raise InvalidParameter(
                    f"The server at {self.base_url} sent a malformed artifact listing entry "
                    f"{entry!r}."
                )
            name = safe_relpath(entry["path"])
            child = safe_relpath(f"{rel}/{name}" if rel else name)
            if not name or (rel and not child.startswith(f"{rel}/")):
                raise InvalidParameter(
                    f"The server at {self.base_url} listed {entry['path']!r} under "
                    f"{rel or '/'!r}, which is not a path below it."
                )
            is_dir = bool(entry.get("is_dir", False))
            size = entry.get("file_size")
            out.append(FileInfo(child, is_dir, None if is_dir or size is None else int(size)))
        return sorted(out, key=lambda f: f.path)

    def _put_file(self, local_file: Path, rel: str) -> None:
        size = local_file.stat().st_size
        with local_file.open("rb") as fh:

            def body() -> Any:
                fh.seek(0)
                return fh  # httpx reads a file object in chunks

            self._send(
                "PUT",
                self._route(rel),
                read=False,
                content=body,
                headers={
                    "Content-Length": str(size),
                    "Content-Type": "application/octet-stream",
                },
            ).close()

    # -- the contract --------------------------------------------------------

    def log_artifact(self, local_file: Path, artifact_path: str | None = None) -> None:
        local_file = Path(local_file)
        if not local_file.is_file():
            raise NotFound(f"Cannot log {str(local_file)!r}: no such file.")
        rel = safe_relpath(artifact_path)
        name = local_file.name
        self._put_file(local_file, safe_relpath(f"{rel}/{name}" if rel else name))

    def log_artifacts(self, local_dir: Path, artifact_path: str | None = None) -> None:
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise NotFound(f"Cannot log {str(local_dir)!r}: no such directory.")
        base = safe_relpath(artifact_path)
        for src in sorted(local_dir.rglob("*")):
            if src.is_file():
                rel = src.relative_to(local_dir).as_posix()
                self._put_file(src, safe_relpath(f"{base}/{rel}" if base else rel))

    def write_bytes(self, artifact_file: str, data: bytes) -> None:
        rel = safe_relpath(artifact_file)
        if not rel:
            raise InvalidParameter("An artifact file name is required.")
        self._send(
            "PUT",
            self._route(rel),
            read=False,
            content=lambda: data,
            headers={"Content-Type": "application/octet-stream"},
        ).close()

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        return self._list(safe_relpath(path))

    def download_artifacts(self, artifact_path: str, dst_path: Path) -> Path:
        rel = safe_relpath(artifact_path)
        dst_path = Path(dst_path)
        name = posixpath.basename(rel) if rel else "artifacts"
        entries = self._list(rel)
        if not entries:
            if not rel:
                raise NotFound(f"Artifact {artifact_path!r} does not exist under {self.root_uri}.")
            dst_path.mkdir(parents=True, exist_ok=True)
            dest = dst_path / name
            self._download_file(rel, dest, artifact_path)
            return dest
        # A directory: walk the whole listing first, so that a hostile listing
        # is refused before any file is written.
        dst_path.mkdir(parents=True, exist_ok=True)
        dest_dir = (dst_path / name).resolve()
        plan: list[tuple[str, Path]] = []
        pending = entries
        while pending:
            entry = pending.pop()
            below = entry.path[len(rel) + 1 :] if rel else entry.path
            target = (dest_dir / safe_relpath(below)).resolve()
            if dest_dir not in target.parents:
                raise InvalidParameter(
                    f"The server at {self.base_url} listed {entry.path!r}, which would be "
                    f"written outside {dest_dir}."
                )
            if entry.is_dir:
                pending.extend(self._list(entry.path))
            else:
                plan.append((entry.path, target))
        dest_dir.mkdir(parents=True, exist_ok=True)
        for file_rel, target in sorted(plan):
            target.parent.mkdir(parents=True, exist_ok=True)
            self._download_file(file_rel, target, file_rel)
        return dest_dir

    def _download_file(self, rel: str, dest: Path, shown: str) -> None:
        try:
            with self._get_stream(rel) as response:
                fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
                try:
                    with os.fdopen(fd, "wb") as fh:
                        for chunk in response.iter_bytes(_CHUNK):
                            fh.write(chunk)
                    Path(tmp).replace(dest)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
        except NotFound:
            raise NotFound(f"Artifact {shown!r} does not exist under {self.root_uri}.") from None
        except httpx.TransportError as exc:  # the connection dropped mid-body
            raise self._store._unreachable(
                "GET", self._route(rel), exc, maybe_applied=False
            ) from exc
