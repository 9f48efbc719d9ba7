"""How ``keel server`` hands its options to worker processes (environment variables).

Kept apart from the app so the CLI can name them without importing FastAPI.

>>> parse_size("500M"), parse_size("10G"), parse_size("4096")
(524288000, 10737418240, 4096)
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

BACKEND_ENV = "KEEL_SERVER_BACKEND_STORE_URI"
ARTIFACTS_ENV = "KEEL_SERVER_ARTIFACTS_DESTINATION"
MAX_ARTIFACT_ENV = "KEEL_SERVER_MAX_ARTIFACT_BYTES"

# What MLflow's ``--serve-artifacts`` uses as the default artifact root: new
# experiments get ``mlflow-artifacts:/<id>`` and clients upload through the server.
PROXY_ARTIFACT_ROOT = "mlflow-artifacts:/"
DEFAULT_MAX_ARTIFACT_BYTES = 10 * 1024**3

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``4096``, ``500M``, ``10G``, ``1TiB`` (binary units); ValueError otherwise."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size: use bytes or a number with K, M, G or T.")
    return int(match[1]) * _UNITS[match[2].upper()]


def is_local_destination(destination: str) -> bool:
    """Whether an artifacts destination is a local directory (a path or ``file://``).

    >>> is_local_destination("/srv/artifacts"), is_local_destination("s3://bucket/keel")
    (True, False)
    """
    scheme = urlparse(destination).scheme
    return scheme in ("", "file") or len(scheme) == 1  # a Windows drive letter


def is_s3_destination(destination: str) -> bool:
    """Whether an artifacts destination is object storage, ``s3://bucket/prefix``.

    >>> is_s3_destination("s3://bucket/keel"), is_s3_destination("s3:///keel")
    (True, False)
    """
    parsed = urlparse(destination)
    return parsed.scheme == "s3" and bool(parsed.netloc)


def local_path_of(destination: str) -> Path:
    """The directory behind a local destination, ``~`` expanded."""
    parsed = urlparse(destination)
    raw = unquote(parsed.path) if parsed.scheme == "file" else destination
    return Path(raw).expanduser()
