"""Content-addressed dataset versions, like ``dvc add``: each distinct content stored once.

Layout under a root (a local directory or any artifact URI Keel supports, e.g.
``s3://bucket/prefix``)::

    <root>/datasets/<digest>/<original file name>
    <root>/datasets/<digest>/dataset.json

``<digest>`` is the logical content digest of :mod:`keel.data.digest`, so the
same table saved as CSV and as Parquet is one version (the first file added is
kept). ``dataset.json`` is written last, and only a directory that has it
counts as a version: a crash part-way leaves nothing that looks complete, and
the next ``add`` simply stores the file again. Local writes go to a temporary
name and are renamed into place.

The root defaults to ``$KEEL_DATA_ROOT``, else the tracking setup's default
artifact root (``$KEEL_ARTIFACT_ROOT``, else ``keel-artifacts`` beside the
SQLite database, ``./keel-artifacts`` by default).

>>> import tempfile, pathlib
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> _ = (tmp / "people.csv").write_text("age\\n31\\n45\\n")
>>> ds = add(tmp / "people.csv", root=str(tmp / "store"))
>>> [v.name for v in list_versions(str(tmp / "store"))]
['people']
>>> get(ds.digest[:8], tmp / "copy.csv", root=str(tmp / "store")).read_text()
'age\\n31\\n45\\n'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from keel.artifacts import ArtifactRepository, get_repository
from keel.data.dataset import KeelDataset
from keel.data.digest import content_digest
from keel.data.frames import DataError
from keel.errors import NotFound

ENV_DATA_ROOT = "KEEL_DATA_ROOT"
METADATA_FILE = "dataset.json"
MIN_PREFIX = 6
_DIR = "datasets"
_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv", ".csv.gz": "csv"}
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class VersionInfo:
    """The contents of a version's ``dataset.json``, plus where the file is stored."""

    name: str
    digest: str
    rows: int
    schema: list[tuple[str, str]]
    source: str
    file_name: str
    format: str
    size_bytes: int
    sha256: str
    added_at: str
    location: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the schema as ``[[column, type], ...]``."""
        out = asdict(self)
        out["schema"] = [list(pair) for pair in self.schema]
        return out


@dataclass(frozen=True)
class Added:
    """What :func:`add_file` did: the dataset, where it is, and whether it was already there."""

    dataset: KeelDataset
    info: VersionInfo
    already_stored: bool


def default_root() -> str:
    """``$KEEL_DATA_ROOT``, else the default artifact root of the current tracking URI."""
    env = os.environ.get(ENV_DATA_ROOT)
    if env:
        return env
    from keel.tracking.config import get_tracking_uri
    from keel.uris import default_artifact_root

    return default_artifact_root(get_tracking_uri())


def add(path: str | Path, *, name: str | None = None, root: str | None = None) -> KeelDataset:
    """Store a CSV or Parquet file under its content digest; return its dataset.

    Nothing is copied when that content is already stored (see :func:`add_file`
    to find out which happened). The dataset's ``source`` is the stored file.
    """
    return add_file(path, name=name, root=root).dataset


def add_file(path: str | Path, *, name: str | None = None, root: str | None = None) -> Added:
    """:func:`add`, also saying whether the content was already stored."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"No such data file: {str(file)!r}. Check the path.")
    suffix = _suffix(file.name)
    if suffix is None:
        raise DataError(
            f"Cannot store {str(file)!r}: only .csv, .tsv, .csv.gz and .parquet files can be "
            "added. Convert it to Parquet first."
        )
    root_uri = _root(root)
    repo = get_repository(root_uri)
    result = content_digest(file)
    existing = _read_info(repo, root_uri, result.digest)
    if existing is not None:
        return Added(_as_dataset(existing, root_uri), existing, already_stored=True)
    size, sha = _file_hash(file)
    info = VersionInfo(
        name=name or file.name[: -len(suffix)],
        digest=result.digest,
        rows=result.rows,
        schema=list(result.schema),
        source=str(file.resolve()),
        file_name=file.name,
        format=_FORMATS[suffix],
        size_bytes=size,
        sha256=sha,
        added_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    _check_file_name(info.file_name, result.digest)
    folder = f"{_DIR}/{result.digest}"
    # The data first and dataset.json last: a version is complete once its
    # metadata exists, so an interrupted add never looks like a stored one.
    repo.log_artifact(file, folder)
    metadata = {k: v for k, v in info.to_dict().items() if k != "location"}
    repo.write_bytes(f"{folder}/{METADATA_FILE}", json.dumps(metadata, indent=2).encode())
    stored = _with_location(info, root_uri)
    return Added(_as_dataset(stored, root_uri), stored, already_stored=False)


def list_versions(root: str | None = None) -> list[VersionInfo]:
    """Every stored version under ``root``, newest first."""
    root_uri = _root(root)
    repo = get_repository(root_uri)
    infos = [
        info
        for digest in _stored_digests(repo)
        if (info := _read_info(repo, root_uri, digest)) is not None
    ]
    return sorted(infos, key=lambda v: (v.added_at, v.digest), reverse=True)


def resolve(digest_or_prefix: str, root: str | None = None) -> VersionInfo:
    """The one stored version whose digest starts with ``digest_or_prefix`` (≥ 6 hex)."""
    root_uri = _root(root)
    prefix = digest_or_prefix.strip().lower()
    if len(prefix) < MIN_PREFIX or len(prefix) > 64 or not _HEX.fullmatch(prefix):
        raise DataError(
            f"{digest_or_prefix!r} is not a dataset digest: give at least {MIN_PREFIX} of its "
            "hexadecimal characters (see `keel data list`)."
        )
    repo = get_repository(root_uri)
    matches = [d for d in _stored_digests(repo) if d.startswith(prefix)]
    infos = [i for d in matches if (i := _read_info(repo, root_uri, d)) is not None]
    if not infos:
        raise NotFound(
            f"No stored dataset version matches {digest_or_prefix!r} under {root_uri}. "
            "List the stored versions with `keel data list`."
        )
    if len(infos) > 1:
        candidates = ", ".join(f"{i.digest[:16]} ({i.name})" for i in infos)
        raise DataError(
            f"Digest prefix {digest_or_prefix!r} is ambiguous under {root_uri}: it matches "
            f"{candidates}. Give more characters."
        )
    return infos[0]


def load(digest_or_prefix: str, *, root: str | None = None) -> tuple[Path, VersionInfo]:
    """A local path to a stored version's file, and its metadata.

    For a local root the path is the stored file itself (do not modify it);
    for a remote root the file is downloaded to a new temporary directory.
    """
    root_uri = _root(root)
    info = resolve(digest_or_prefix, root_uri)
    repo = get_repository(root_uri)
    rel = f"{_DIR}/{info.digest}/{info.file_name}"
    local = _local_root(root_uri)
    if local is not None:
        path = local / _DIR / info.digest / info.file_name
        if not path.is_file():
            raise NotFound(f"Stored dataset file {str(path)!r} is missing; add the data again.")
        return path, info
    return repo.download_artifacts(rel, Path(tempfile.mkdtemp(prefix="keel-data-"))), info


def get(digest_or_prefix: str, out_path: str | Path, *, root: str | None = None) -> Path:
    """Copy a stored version's file to ``out_path`` (or into it, if it is a directory).

    The copy is checked against the stored SHA-256 of the file's bytes.
    """
    root_uri = _root(root)
    info = resolve(digest_or_prefix, root_uri)
    out = Path(out_path).expanduser()
    dest = out / info.file_name if out.is_dir() else out
    if not dest.parent.is_dir():
        raise DataError(
            f"Cannot write {str(dest)!r}: the directory {str(dest.parent)!r} does not exist."
        )
    repo = get_repository(root_uri)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".keel-get-") as tmp:
        fetched = repo.download_artifacts(f"{_DIR}/{info.digest}/{info.file_name}", Path(tmp))
        _, sha = _file_hash(fetched)
        if sha != info.sha256:
            raise DataError(
                f"Stored file for dataset {info.digest[:12]} ({info.file_name}) is corrupt: its "
                f"SHA-256 is {sha}, not {info.sha256} as recorded. Add the data again."
            )
        fetched.replace(dest)
    return dest


def _root(root: str | None) -> str:
    uri = root or default_root()
    # A local root is shown and recorded absolute, whatever the working directory.
    local = _local_root(uri)
    return str(local.expanduser().resolve()) if local is not None else uri


def _stored_digests(repo: ArtifactRepository) -> list[str]:
    names = [PurePosixPath(f.path).name for f in repo.list_artifacts(_DIR) if f.is_dir]
    return [n for n in names if len(n) == 64 and _HEX.fullmatch(n)]


def _read_info(repo: ArtifactRepository, root_uri: str, digest: str) -> VersionInfo | None:
    folder = f"{_DIR}/{digest}"
    if not any(PurePosixPath(f.path).name == METADATA_FILE for f in repo.list_artifacts(folder)):
        return None
    with tempfile.TemporaryDirectory(prefix="keel-data-") as tmp:
        path = repo.download_artifacts(f"{folder}/{METADATA_FILE}", Path(tmp))
        text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
        info = VersionInfo(
            name=str(raw["name"]),
            digest=str(raw["digest"]),
            rows=int(raw["rows"]),
            schema=[(str(c), str(t)) for c, t in raw["schema"]],
            source=str(raw.get("source", "")),
            file_name=str(raw["file_name"]),
            format=str(raw["format"]),
            size_bytes=int(raw["size_bytes"]),
            sha256=str(raw["sha256"]),
            added_at=str(raw["added_at"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{root_uri}/{folder}/{METADATA_FILE} is not valid dataset metadata ({exc}). "
            "Remove that directory and add the data again."
        ) from None
    if info.digest != digest:
        raise DataError(
            f"{root_uri}/{folder}/{METADATA_FILE} names digest {info.digest!r}, not the "
            "directory it is in. Remove that directory and add the data again."
        )
    _check_file_name(info.file_name, digest)
    return _with_location(info, root_uri)


def _check_file_name(file_name: str, digest: str) -> None:
    # The name comes from a file anybody with write access to the root can edit;
    # it is joined to paths on this machine, so it must stay one plain name.
    plain = (
        file_name not in ("", ".", "..", METADATA_FILE)
        and PurePosixPath(file_name).name == file_name
        and "\\" not in file_name
        and "\x00" not in file_name
        and not file_name.startswith(".tmp-")
    )
    if not plain:
        raise DataError(
            f"Dataset {digest[:12]} records the file name {file_name!r}, which is not a plain "
            "file name; refusing to use it. Remove that version's directory and add it again."
        )


def _with_location(info: VersionInfo, root_uri: str) -> VersionInfo:
    location = f"{root_uri.rstrip('/')}/{_DIR}/{info.digest}/{info.file_name}"
    return VersionInfo(**{**asdict(info), "schema": info.schema, "location": location})


def _as_dataset(info: VersionInfo, root_uri: str) -> KeelDataset:
    scheme = urlparse(root_uri).scheme
    source_type = "local" if scheme in ("", "file") or len(scheme) == 1 else scheme
    return KeelDataset(
        name=info.name,
        digest=info.digest,
        rows=info.rows,
        schema=tuple(info.schema),
        source=info.location,
        source_type=source_type,
    )


def _local_root(root_uri: str) -> Path | None:
    scheme = urlparse(root_uri).scheme
    if scheme not in ("", "file") and len(scheme) != 1:
        return None
    from keel.artifacts.local import local_path_of

    return local_path_of(root_uri)


def _suffix(file_name: str) -> str | None:
    lower = file_name.lower()
    for suffix in sorted(_FORMATS, key=len, reverse=True):
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return suffix
    return None


def _file_hash(path: Path) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()
