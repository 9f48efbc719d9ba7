"""System tags recorded on every run: who, from which source, at which code version.

Git look-ups run ``git`` as a subprocess (no gitpython dependency) and are cached
for a few seconds per directory, so a hyperparameter loop that starts hundreds
of runs asks git once, while an edit between two cells of a notebook session is
still seen.

>>> tags = system_tags()
>>> "mlflow.user" in tags and "keel.python.version" in tags
True
"""

from __future__ import annotations

import getpass
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

from keel.entities import (
    GIT_BRANCH_TAG,
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    GIT_REPO_URL_TAG,
    PYTHON_VERSION_TAG,
    SOURCE_NAME_TAG,
    SOURCE_TYPE_TAG,
    USER_TAG,
)

GIT_CACHE_SECONDS = 5.0
_git_cache: dict[str, tuple[float, dict[str, str]]] = {}
_git_lock = threading.Lock()


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


def _in_notebook() -> bool:
    return "ipykernel" in sys.modules


def source_file() -> Path | None:
    """The script being run, if there is one (not for notebooks and the REPL)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path and not _in_notebook():
        return Path(path).resolve()
    return None


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_tags(directory: Path) -> dict[str, str]:
    """Commit, branch, remote and dirty flag of the work tree holding ``directory``."""
    key = str(directory)
    now = time.monotonic()
    with _git_lock:
        hit = _git_cache.get(key)
        if hit and now - hit[0] < GIT_CACHE_SECONDS:
            return dict(hit[1])
    tags: dict[str, str] = {}
    commit = _git(directory, "rev-parse", "HEAD")
    if commit:
        tags[GIT_COMMIT_TAG] = commit
        # Untracked files do not make the tree dirty: they are not part of the code version.
        status = _git(directory, "status", "--porcelain", "--untracked-files=no")
        tags[GIT_DIRTY_TAG] = "true" if status else "false"
        branch = _git(directory, "rev-parse", "--abbrev-ref", "HEAD")
        if branch and branch != "HEAD":
            tags[GIT_BRANCH_TAG] = branch
        remote = _git(directory, "config", "--get", "remote.origin.url")
        if remote:
            tags[GIT_REPO_URL_TAG] = remote
    with _git_lock:
        _git_cache[key] = (now, tags)
    return dict(tags)


def system_tags() -> dict[str, str]:
    """The tags Keel sets on a new run: user, source, git state, Python version."""
    from keel import __version__

    src = source_file()
    tags = {
        USER_TAG: current_user(),
        SOURCE_NAME_TAG: str(src) if src else ("<notebook>" if _in_notebook() else "<console>"),
        SOURCE_TYPE_TAG: "NOTEBOOK" if _in_notebook() else "LOCAL",
        PYTHON_VERSION_TAG: platform.python_version(),
        "keel.version": __version__,
    }
    tags.update(git_tags(src.parent if src else Path.cwd()))
    return tags
