"""Prove a package loads in a target environment by building that environment and trying.

``keel models doctor --target`` predicts from version rules; this module
checks the prediction. :func:`build_environment` makes a virtualenv with uv
from a pinned requirements file plus Keel from this source tree (cached, so a
second run takes a second), and :func:`verify_in` runs
``python -m keel.models._probe`` there, which loads the package with every
check and the golden sample and reports ``loads``, ``onnx`` (the ONNX twin
answered), ``refused`` or ``error``.

>>> python = build_environment({"numpy": "1.26.4"}, "3.11")      # doctest: +SKIP
>>> verify_in(python, Path("out/model")).outcome                  # doctest: +SKIP
'refused'
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import keel
from keel.errors import KeelError
from keel.models.environment import canonical_name, parse_requirements

Outcome = Literal["loads", "onnx", "refused", "error"]
CACHE_ENV_VAR = "KEEL_ENV_CACHE"
MARKER = ".keel-env-complete"
VENV_TIMEOUT = 300.0
INSTALL_TIMEOUT = 900.0
PROBE_TIMEOUT = 300.0
_TAIL_LINES = 25

Status = Callable[[str], None]


class TargetEnvironmentError(KeelError):
    """The target environment could not be built; the message says why and what to do."""

    error_code = "INVALID_PARAMETER_VALUE"
    http_status = 400


@dataclass(frozen=True)
class VerifyResult:
    """What loading a package in a target environment did.

    ``predictions_match`` is True when the model (or its twin) reproduced the
    golden sample, False never (a mismatch is a refusal), None when nothing
    answered or the package has no golden sample.
    """

    outcome: Outcome
    backend: str | None
    message: str
    predictions_match: bool | None
    python: str | None = None
    packages: dict[str, str | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome in ("loads", "onnx")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------
# Building


def default_cache_dir() -> Path:
    """``$KEEL_ENV_CACHE``, else ``~/.cache/keel/envs``.

    >>> default_cache_dir().name
    'envs'
    """
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "keel" / "envs"


def current_python() -> str:
    """This interpreter's ``X.Y``, the default target Python.

    >>> current_python().count(".")
    1
    """
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def read_pins(requirements: Mapping[str, str] | Path) -> dict[str, str]:
    """Canonical name → version from a mapping or a pinned requirements file.

    >>> read_pins({"Scikit_Learn": "1.3.2"})
    {'scikit-learn': '1.3.2'}
    """
    if isinstance(requirements, Path):
        if not requirements.is_file():
            raise TargetEnvironmentError(f"No requirements file at {requirements}.")
        return parse_requirements(requirements.read_text())
    return {canonical_name(k): str(v) for k, v in requirements.items()}


def environment_key(pins: Mapping[str, str], python: str) -> str:
    """The cache key: pins, Python and Keel's own source, so edited Keel code rebuilds.

    >>> len(environment_key({"numpy": "1.24.4"}, "3.11"))
    16
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([sorted(pins.items()), python, keel.__version__]).encode())
    digest.update(_source_fingerprint().encode())
    return digest.hexdigest()[:16]


def _source_fingerprint() -> str:
    """sha256 over Keel's Python sources: the probe must run the code being tested."""
    package_dir = Path(keel.__file__).parent
    digest = hashlib.sha256()
    for file in sorted(package_dir.rglob("*.py")):
        digest.update(file.relative_to(package_dir).as_posix().encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def source_root() -> Path:
    """The directory holding Keel's pyproject.toml, which is installed into targets."""
    root = Path(keel.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise TargetEnvironmentError(
            f"Keel is installed without its source tree (looked in {root}), so it cannot be "
            "installed into a target environment. Run verify from a Keel checkout "
            "(pip install -e .)."
        )
    return root


def uv_command() -> list[str]:
    """How to run uv: ``$UV`` (set by ``uv run``), ``uv`` on PATH, or ``python -m uv``."""
    if os.environ.get("UV") and Path(os.environ["UV"]).is_file():
        return [os.environ["UV"]]
    found = shutil.which("uv")
    if found:
        return [found]
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    raise TargetEnvironmentError(
        "Building a target environment needs uv, which is not installed. Install it with: "
        "pip install uv"
    )


def venv_python(venv: Path) -> Path:
    """The interpreter inside a virtualenv directory."""
    if os.name == "nt":  # pragma: no cover - Windows layout
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def cached_environment(
    requirements: Mapping[str, str] | Path,
    python: str | None = None,
    *,
    cache_dir: Path | None = None,
) -> Path | None:
    """The interpreter of a finished environment :func:`build_environment` would reuse, or None.

    Lets a caller say whether a build is about to happen (and may download)
    before starting it.

    >>> cached_environment({"numpy": "1.24.4"}, "3.11", cache_dir=Path("/nonexistent")) is None
    True
    """
    version = python or current_python()
    venv = (cache_dir or default_cache_dir()) / environment_key(read_pins(requirements), version)
    if (venv / MARKER).is_file() and venv_python(venv).is_file():
        return venv_python(venv)
    return None


def build_environment(
    requirements: Mapping[str, str] | Path,
    python: str | None = None,
    *,
    cache_dir: Path | None = None,
    status: Status | None = None,
) -> Path:
    """Build (or reuse) a uv virtualenv with ``requirements`` and Keel; return its interpreter.

    The environment lives under ``cache_dir`` (default :func:`default_cache_dir`)
    in a directory named by :func:`environment_key`; a marker written after a
    successful install makes it reusable, so an interrupted build is rebuilt.

    >>> python = build_environment(Path("prod-requirements.txt"), "3.11")  # doctest: +SKIP
    >>> python.name  # doctest: +SKIP
    'python'
    """
    pins = read_pins(requirements)
    version = python or current_python()
    cached = cached_environment(pins, version, cache_dir=cache_dir)
    if cached is not None:
        return cached
    venv = (cache_dir or default_cache_dir()) / environment_key(pins, version)
    report = status or (lambda _message: None)
    uv = uv_command()
    root = source_root()
    shutil.rmtree(venv, ignore_errors=True)  # a half-built leftover is never trusted
    venv.parent.mkdir(parents=True, exist_ok=True)
    report(f"Creating a Python {version} environment with uv")
    _run(
        [*uv, "venv", "--quiet", "--python", version, str(venv)],
        VENV_TIMEOUT,
        f"uv could not create a Python {version} environment",
    )
    req_file = venv / "target-requirements.txt"
    req_file.write_text("".join(f"{name}=={v}\n" for name, v in sorted(pins.items())))
    report(f"Installing {len(pins)} pinned packages and Keel")
    # One resolution for the pins and Keel: a pin that contradicts Keel's own
    # dependencies is reported by uv instead of silently replaced.
    command = [*uv, "pip", "install", "--python", str(venv_python(venv)), "-r", str(req_file)]
    _run([*command, str(root)], INSTALL_TIMEOUT, _install_failure(pins, version))
    (venv / MARKER).write_text(json.dumps({"python": version, "pins": pins}, indent=2))
    return venv_python(venv)


def _install_failure(pins: Mapping[str, str], python: str) -> Callable[[str], str]:
    """A message naming the pins uv complained about, for Python ``python``."""

    def describe(stderr: str) -> str:
        text = stderr.lower()
        named = [f"{n}=={v}" for n, v in sorted(pins.items()) if n in text.replace("_", "-")]
        which = ", ".join(named) if named else "the requirements"
        return f"Cannot install {which} for Python {python} in the target environment"

    return describe


def _run(command: list[str], timeout: float, failure: str | Callable[[str], str]) -> None:
    """Run a build step; on failure raise TargetEnvironmentError with uv's stderr tail."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise TargetEnvironmentError(
            f"{' '.join(command[:4])}... took longer than {timeout:.0f}s; is PyPI reachable?"
        ) from exc
    if done.returncode == 0:
        return
    what = failure(done.stderr) if callable(failure) else failure
    tail = "\n".join(done.stderr.strip().splitlines()[-_TAIL_LINES:])
    raise TargetEnvironmentError(f"{what}. uv said:\n{tail}")


# ---------------------------------------------------------------------------
# Probing


def verify_in(
    env_python: Path,
    package: Path,
    policy: str = "compatible",
    *,
    timeout: float = PROBE_TIMEOUT,
) -> VerifyResult:
    """Load ``package`` under ``env_python`` with every check; never raises for the model's sake.

    >>> import sys
    >>> verify_in(Path(sys.executable), Path("/nonexistent")).outcome
    'error'
    """
    # -I: neither the caller's PYTHONPATH nor the working directory may
    # shadow the Keel installed in the target.
    command = [str(env_python), "-I", "-m", "keel.models._probe", str(package.resolve())]
    try:
        done = subprocess.run(
            [*command, "--policy", policy], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return VerifyResult("error", None, f"The probe took longer than {timeout:.0f}s.", None)
    except OSError as exc:
        return VerifyResult("error", None, f"Cannot run {env_python}: {exc}", None)
    return parse_probe_output(done.stdout, done.stderr, done.returncode)


def parse_probe_output(stdout: str, stderr: str = "", returncode: int = 0) -> VerifyResult:
    """Read the probe's JSON line; anything else becomes an ``error`` with stderr's tail.

    >>> parse_probe_output('{"outcome": "loads", "backend": "native", "message": "",'
    ...                    ' "golden_checked": true}').predictions_match
    True
    >>> parse_probe_output("", "Traceback ...", 1).outcome
    'error'
    """
    lines = stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1]) if lines else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("outcome") not in ("loads", "onnx", "refused"):
        if isinstance(data, dict) and data.get("outcome") == "error":
            return VerifyResult("error", None, str(data.get("message", "")), None)
        tail = "\n".join(stderr.strip().splitlines()[-_TAIL_LINES:])
        return VerifyResult(
            "error", None, f"The probe failed (exit code {returncode}):\n{tail}", None
        )
    outcome: Outcome = data["outcome"]
    answered = outcome in ("loads", "onnx")
    return VerifyResult(
        outcome=outcome,
        backend=data.get("backend"),
        message=str(data.get("message", "")),
        # load_model refuses a model (and a twin) that misses the golden sample,
        # so having answered with a golden sample saved means it matched.
        predictions_match=True if answered and data.get("golden_checked") else None,
        python=data.get("python"),
        packages=dict(data.get("packages") or {}),
    )


# ---------------------------------------------------------------------------
# Predicting


def expected_outcome(
    checks: Mapping[str, bool], meta: Mapping[str, Any], target_has_onnxruntime: bool
) -> Outcome:
    """What ``doctor``'s checks (name → ok) predict a load will do: loads, onnx or refused.

    An environment failure falls back to a twin that passed parity when the
    target has onnxruntime, whatever the pickle's safety check says (the pickle
    is then never read); an integrity failure always refuses.

    >>> expected_outcome({"integrity": True, "safety": True, "environment": False},
    ...                  {"onnx": {"file": "model.onnx", "parity": {"passed": True}}}, True)
    'onnx'
    """
    if not checks.get("integrity", False):
        return "refused"
    if checks.get("environment", False):
        # Only a model that will be unpickled has its globals checked.
        return "loads" if checks.get("safety", False) else "refused"
    twin = meta.get("onnx")
    usable = (
        isinstance(twin, Mapping)
        and bool(twin.get("file"))
        and bool((twin.get("parity") or {}).get("passed"))
    )
    return "onnx" if usable and target_has_onnxruntime else "refused"
