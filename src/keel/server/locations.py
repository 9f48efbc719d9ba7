"""Locations that arrive from the network: experiment ``artifact_location`` and
model-version ``source``.

The server later reads and writes below these strings (the artifact proxy,
package gates, download URIs), so a client must not be able to point it at
the server's own disk or out of a root. Every URI is checked at each level of
percent-decoding (``%2e%2e``, ``%252e``) and after Unicode NFKC folding
(fullwidth dots and slashes), and refused with 400 INVALID_PARAMETER_VALUE
when any level holds:

- a ``..`` path component, also as ``..;params`` (servlet-style);
- a backslash, a NUL or another control character, a decoding error (U+FFFD,
  e.g. overlong UTF-8);
- a host in an ``mlflow-artifacts:`` URI (it would send clients elsewhere);
- an empty component in the path (``a//b``: an absolute path smuggled after
  the prefix) or a component that looks like a scheme or a drive (``file:``,
  ``C:``).

Local locations (no scheme, ``file:``, a drive letter, schemeless ``//host``)
are refused for experiments. A local model source is accepted only as MLflow
does: with a ``run_id`` whose artifact directory is local and contains it.

>>> check_artifact_location("s3://bucket/experiments/churn")
>>> check_artifact_location("mlflow-artifacts:/team-a")
>>> check_artifact_location("/etc")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
keel.errors.InvalidParameter: Invalid artifact_location '/etc': ...
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from keel.errors import InvalidParameter

_MAX_DECODINGS = 10
_SCHEME_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_LOCAL_SCHEMES = frozenset({"", "file"})


def _levels(value: str) -> list[str]:
    """``value`` and each percent-decoding of it, each also NFKC-folded."""
    levels, current = [value], value
    for _ in range(_MAX_DECODINGS):
        decoded = unquote(current, errors="replace")
        if decoded == current:
            break
        levels.append(decoded)
        current = decoded
    return levels + [unicodedata.normalize("NFKC", level) for level in levels]


def _problem(value: str) -> str | None:
    """Why ``value`` (a URI or a path) is unsafe at some decoding level, or None."""
    for level in _levels(value):
        if _scheme(level) == "mlflow-artifacts" and level.partition(":")[2].startswith("//"):
            # mlflow-artifacts://host/... sends every client that reads it to that host.
            return "name a path on this server as mlflow-artifacts:/<path>, without a host"
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in level):
            return "it contains a NUL or control character"
        if "\ufffd" in level:
            return "it contains bytes that are not valid UTF-8"
        if "\\" in level:
            return "it contains a backslash"
        path = _path_part(level)
        parts = path.split("/")
        for i, part in enumerate(parts):
            if part.split(";", 1)[0] == "..":
                return "it contains a '..' path component"
            if part == "" and 0 < i < len(parts) - 1:
                return "it contains an empty path component ('//')"
            if _SCHEME_LIKE.match(part):
                return f"its path holds a scheme or drive ({part!r})"
    return None


def _path_part(uri: str) -> str:
    """The part of ``uri`` that names a path: after ``scheme:`` and ``//authority``."""
    match = _SCHEME_LIKE.match(uri)
    rest = uri[match.end() :] if match and len(match.group()) > 2 else uri
    if rest.startswith("//"):
        rest = rest[2:].partition("/")[2]
    return rest.lstrip("/")


def _scheme(uri: str) -> str:
    match = _SCHEME_LIKE.match(uri)
    if match is None:
        return ""
    scheme = match.group()[:-1].lower()
    return "" if len(scheme) == 1 else scheme  # C:\ is a Windows drive, not a scheme


def is_local(uri: str) -> bool:
    """A path on the server's disk: no scheme, ``file:``, a drive, or schemeless ``//host``.

    >>> [is_local(u) for u in ("/data", "file:///x", "C:/x", "//h/x", "s3://b/x")]
    [True, True, True, True, False]
    """
    return _scheme(uri) in _LOCAL_SCHEMES


def check_artifact_location(location: str) -> None:
    """Refuse an experiment location a network client must not choose (see the module)."""
    if is_local(location):
        raise InvalidParameter(
            f"Invalid artifact_location {location!r}: the server keeps artifacts, so a client "
            "cannot point it at a path on the server's disk. Leave artifact_location out "
            "(the server picks one), or give a remote URI such as mlflow-artifacts:/<name> "
            "or s3://bucket/prefix."
        )
    problem = _problem(location)
    if problem is not None:
        raise InvalidParameter(f"Invalid artifact_location {location!r}: {problem}.")


def check_model_source(source: str, run_artifact_uri: str | None) -> None:
    """Refuse a model-version source a network client must not register.

    ``run_artifact_uri`` is the artifact URI of the run named in the request
    (None without one): a local source must lie inside it, as MLflow requires.
    """
    problem = _problem(source)
    if problem is not None:
        raise InvalidParameter(f"Invalid model version source {source!r}: {problem}.")
    if not is_local(source):
        return
    if run_artifact_uri is not None and is_local(run_artifact_uri):
        path, root = _local_path(source), _local_path(run_artifact_uri)
        if path is not None and root is not None and (path == root or root in path.parents):
            return
    raise InvalidParameter(
        f"Invalid model version source {source!r}: a local path is accepted only with the "
        "run_id of a run whose artifact directory contains it. Register runs:/<run_id>/<path>, "
        "models:/<model_id> or a remote URI instead."
    )


def _local_path(uri: str) -> PurePosixPath | None:
    """The absolute path a local URI names, or None when it is relative or has a host."""
    parts = urlsplit(uri)
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost"):
            return None
        text = unquote(parts.path)
    elif uri.startswith("//") or _SCHEME_LIKE.match(uri):
        return None
    else:
        text = uri
    path = PurePosixPath(text)
    return path if path.is_absolute() else None
