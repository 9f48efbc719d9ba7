"""Remember which packages passed their checks here, so loading them again is cheap.

The integrity, tree and golden checks are pure functions of a package's bytes
and of the installed library versions: a package that passed them once passes
them again as long as neither changed. Hashing the bytes again to find out
would cost most of what the checks cost, so a file is recognised as it is by
``make``, git's index and Python's ``.pyc`` files: by its device, inode, size
and modification times. The inode *change* time (``ctime``) is set by the
kernel on every write, rename or ``utime`` call and cannot be set back by an
unprivileged user, so a file edited in place, replaced or restored with its
old ``mtime`` no longer matches and is checked in full again.

Two further rules close the gaps:

* a file whose timestamps are under :data:`SETTLE_SECONDS` old is never
  remembered: a write landing within the file system's timestamp granularity
  after the hash would otherwise go unseen ("racy git");
* a record holds the installed versions of the locked packages and the
  interpreter; any difference is a miss, since the golden outputs depend on
  them.

What is never skipped: the environment check (it reports warnings) and the
safety check (it runs inside the unpickler at no cost). Records live under
``$KEEL_CACHE_DIR/verified`` (default ``~/.cache/keel/verified``), one JSON
file per package path, written atomically and readable only by the user.
``KEEL_VERIFIED_CACHE=0`` turns the cache off.

>>> import tempfile
>>> cache = VerifiedCache(Path(tempfile.mkdtemp()))
>>> cache.lookup(Path("/nonexistent/pkg"), {"model.pkl": "0" * 64}, {}) is None
True
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SETTLE_SECONDS = 2.0
DISABLE_ENV_VAR = "KEEL_VERIFIED_CACHE"
CACHE_DIR_ENV_VAR = "KEEL_CACHE_DIR"
_RECORD_VERSION = 1
_META = "keel.json"  # package.KEEL_FILE; read before the lookup, so it is compared too


def cache_root() -> Path:
    """``$KEEL_CACHE_DIR``, else ``~/.cache/keel``: where Keel's caches of packages live."""
    base = os.environ.get(CACHE_DIR_ENV_VAR)
    return Path(base).expanduser() if base else Path.home() / ".cache" / "keel"


def default_dir() -> Path:
    """``$KEEL_CACHE_DIR/verified``, else ``~/.cache/keel/verified``.

    >>> default_dir().name
    'verified'
    """
    return cache_root() / "verified"


def enabled() -> bool:
    """False when ``$KEEL_VERIFIED_CACHE`` is ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get(DISABLE_ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def _identity(path: Path) -> list[int] | None:
    try:
        return _stat_identity(path.stat())
    except OSError:
        return None


def _stat_identity(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def environment_key(installed: Mapping[str, str | None]) -> dict[str, Any]:
    """What the golden outputs depend on besides the package's bytes."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": sys.platform,
        "machine": platform.machine(),
        "packages": dict(sorted(installed.items())),
    }


class VerifiedCache:
    """Records of packages that passed every check, keyed by their path.

    ``lookup`` answers whether the files are, by identity, the ones that
    passed in this environment; ``record`` remembers a pass.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory if directory is not None else default_dir()

    def _record_path(self, root: Path) -> Path:
        key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:32]
        return self.directory / f"{key}.json"

    def lookup(
        self, root: Path, files: Mapping[str, str], installed: Mapping[str, str | None]
    ) -> dict[str, Any] | None:
        """The record when every file (and keel.json) is unchanged and the environment matches."""
        try:
            record = json.loads(self._record_path(root).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("version") != _RECORD_VERSION:
            return None
        if record.get("root") != str(root.resolve()):
            return None
        if record.get("environment") != environment_key(installed):
            return None
        expected = record.get("files")
        if not isinstance(expected, dict) or set(expected) != set(files) | {_META}:
            return None
        for name, seen in expected.items():
            if name != _META and seen.get("sha256") != files.get(name):
                return None
            if _identity(root / name) != seen.get("identity"):
                return None
        return record

    def record(
        self,
        root: Path,
        files: Mapping[str, str],
        installed: Mapping[str, str | None],
        *,
        checked_since_ns: int,
    ) -> bool:
        """Remember that ``root`` passed; False when a file is too fresh to be recognised later.

        ``checked_since_ns`` is when the checks began: a file changed after
        that (or too close before it) is not remembered.
        """
        settled = checked_since_ns - int(SETTLE_SECONDS * 1e9)
        entries: dict[str, Any] = {}
        for name in [*files, _META]:
            identity = _identity(root / name)
            if identity is None or max(identity[3], identity[4]) > settled:
                return False
            entries[name] = {"identity": identity, "sha256": files.get(name)}
        record = {
            "version": _RECORD_VERSION,
            "root": str(root.resolve()),
            "environment": environment_key(installed),
            "files": entries,
            "verified": time.time(),
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh)
            Path(tmp).replace(self._record_path(root))
        except OSError:
            return False  # a read-only home must not stop a load
        return True

    @staticmethod
    def read_unchanged(path: Path, record: Mapping[str, Any]) -> bytes | None:
        """The file's bytes if, after reading, it is still the one ``record`` vouches for.

        Comparing after the read closes the gap between the lookup's ``stat``
        and the read: a replaced or rewritten file has another identity by then.
        """
        seen = record["files"].get(path.name)
        if seen is None:
            return None
        with path.open("rb") as fh:
            data = fh.read()
            identity = _stat_identity(os.fstat(fh.fileno()))
        return data if identity == seen["identity"] else None
