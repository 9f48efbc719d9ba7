"""Load a package in *this* interpreter and print the outcome as one JSON line.

Run inside a target environment by :func:`keel.models.targets.verify_in`::

    python -I -m keel.models._probe out/model --policy compatible

stdout carries exactly one JSON object: ``outcome`` (``loads``, ``onnx``,
``refused`` or ``error``), ``backend``, ``message``, ``golden_checked``,
``python`` and ``packages`` (the locked packages' versions here). Anything
the model or a library prints goes to stderr, and no traceback ever reaches
stdout, so the caller can always parse it.

>>> import json, io, contextlib
>>> out = io.StringIO()
>>> with contextlib.redirect_stdout(out):
...     code = main(["/nonexistent/model"])
>>> code, json.loads(out.getvalue())["outcome"]
(0, 'error')
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import platform
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def probe(package: Path, policy: str = "compatible") -> dict[str, Any]:
    """Load ``package`` with every check (ONNX fallback on) and describe the outcome."""
    result: dict[str, Any] = {
        "outcome": "error",
        "backend": None,
        "message": "",
        "golden_checked": False,
        "python": platform.python_version(),
        "packages": {},
    }
    try:
        # Imported here so a target lacking numpy or Keel's own dependencies
        # still answers with JSON instead of an import traceback.
        from keel.models.package import ModelRefused, load_model, read_meta
        from keel.models.safety import UnsafePickle

        meta = read_meta(package)
        result["packages"] = _versions((meta.get("environment") or {}).get("packages") or {})
        result["golden_checked"] = bool(meta.get("golden"))
        with warnings.catch_warnings():
            # The fallback's FallbackWarning is reported in the message instead.
            warnings.simplefilter("ignore")
            loaded = load_model(package, policy=policy, cache=False)  # prove it, here
    except (ModelRefused, UnsafePickle) as exc:
        result.update(outcome="refused", message=str(exc))
    except Exception as exc:  # every failure must become JSON, never a traceback
        result.update(message=f"{type(exc).__name__}: {exc}")
    else:
        result.update(
            outcome="onnx" if loaded.backend == "onnx" else "loads",
            backend=loaded.backend,
            message="\n".join(loaded.warnings) or "loaded; every check passed",
        )
    return result


def _versions(names: object) -> dict[str, str | None]:
    """Installed version of each locked distribution here (None when missing)."""
    found: dict[str, str | None] = {}
    for name in names if isinstance(names, dict) else ():
        try:
            found[str(name)] = importlib.metadata.version(str(name))
        except importlib.metadata.PackageNotFoundError:
            found[str(name)] = None
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, probe, print the JSON line; always exits 0 when it printed."""
    parser = argparse.ArgumentParser(prog="python -m keel.models._probe")
    parser.add_argument("package", type=Path)
    parser.add_argument("--policy", default="compatible")
    args = parser.parse_args(argv)
    stdout = sys.stdout
    # Whatever loading prints (library banners, print() in user code) must not
    # corrupt the one JSON line the caller parses.
    with contextlib.redirect_stdout(sys.stderr):
        result = probe(args.package, args.policy)
    stdout.write(json.dumps(result, default=str) + "\n")
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
