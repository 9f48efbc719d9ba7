"""Model packages: save a model with everything needed to load it safely elsewhere.

A package is a directory::

    MLmodel            MLflow-compatible descriptor (flavors, signature, example)
    model.pkl          the pickled model (or model.skops, with serialization="skops")
    model.onnx         the ONNX twin, when it converted and passed parity
    requirements.txt   exact versions of what the pickle needs (from its opcodes)
    python_env.yaml    MLflow's environment file
    input_example.json the example rows, MLflow's "split" layout
    keel.json          environment lock, sha256 of every file, provenance,
                       the pickle's globals (or the skops file's types), the golden sample

Loading checks, in order: integrity (every sha256) and environment (the lock
against this interpreter) before anything is unpickled; safety (the pickle's
globals against an allow-list) as it unpickles, refusing a name before it is
imported (a skops file's types are all judged before skops reads it, see
:mod:`keel.models.skops_format`); then tree bounds and the golden sample
re-predicted. Any failure refuses the model with the reason and the fix,
unless an environment or golden failure can fall back to the ONNX twin (after
an environment failure the model file is never read).

>>> import numpy as np, tempfile
>>> from sklearn.linear_model import LogisticRegression
>>> x = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
>>> path = save_model(LogisticRegression().fit(x, y), tempfile.mkdtemp() + "/m", input_example=x)
>>> load_model(path).predict(x).tolist()
[0, 0, 1, 1]
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from keel import __version__
from keel.errors import InvalidParameter, KeelError, NotFound
from keel.models.environment import (
    EnvironmentLock,
    EnvironmentReport,
    capture_environment,
    check_environment,
    installed_versions,
)
from keel.models.golden import (
    DEFAULT_ROWS,
    GoldenSample,
    capture_golden,
    compare_golden,
    decode_frame,
)
from keel.models.onnx_twin import FallbackWarning, OnnxModel, golden_problems
from keel.models.pickle_refs import scan_pickle
from keel.models.safety import safe_loads
from keel.models.tree_check import tree_problems
from keel.models.verified import VerifiedCache
from keel.models.verified import enabled as verified_cache_enabled

FORMAT_VERSION = 1
MODEL_FILE = "model.pkl"
SERIALIZATIONS = ("pickle", "skops")
ONNX_FILE = "model.onnx"
KEEL_FILE = "keel.json"
PROFILE_FILE = "profile.json"  # the training data's profile (keel.data), when there was any
PICKLE_PROTOCOL = 5
_CHUNK = 1 << 20


class ModelRefused(KeelError):
    """A package failed a check; the message lists what and how to fix it."""

    error_code = "INVALID_STATE"
    http_status = 400


@dataclass
class LoadedModel:
    """A model that passed every check, with what the checks found.

    ``predict`` and friends delegate to the model; ``backend`` says what
    answers (``native`` now; ``onnx`` when the twin stands in).
    """

    model: Any
    path: Path
    flavor: str
    backend: str = "native"
    environment: EnvironmentReport | None = None
    warnings: list[str] = field(default_factory=list)
    # True when the integrity, tree and golden checks were skipped because
    # these very files passed them in this environment before.
    from_cache: bool = False

    def predict(self, data: Any) -> Any:
        return self.model.predict(data)

    def training_profile(self) -> Any:
        """The training data's :class:`keel.data.Profile`, or None if the package has none.

        >>> m.training_profile()["age"].quantiles([0.5])   # doctest: +SKIP
        [41.0]
        """
        path = self.path / PROFILE_FILE
        if not self.path.is_dir() or not path.is_file():
            return None
        from keel.data.profiles import Profile

        return Profile.from_json(path)

    def __getattr__(self, name: str) -> Any:
        if name in ("predict_proba", "decision_function", "transform", "score"):
            return getattr(self.model, name)
        raise AttributeError(name)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _flavor(model: Any) -> str:
    module = type(model).__module__
    if module == "sklearn" or module.startswith("sklearn."):
        return "sklearn"
    try:
        from sklearn.base import BaseEstimator
    except ImportError:  # pragma: no cover - without sklearn there are no sklearn models
        return _plain_flavor(model)
    if isinstance(model, BaseEstimator):
        return "sklearn"
    return _plain_flavor(model)


def _plain_flavor(model: Any) -> str:
    if callable(getattr(model, "predict", None)):
        return "python_function"
    raise InvalidParameter(
        f"Cannot package a {type(model).__name__}: it has no predict method. Wrap it in an "
        "object with predict(data) or pass a scikit-learn estimator."
    )


def _signature(example: Any) -> dict[str, str] | None:
    """MLflow's signature: column specs for DataFrames, a tensor spec for arrays."""
    if example is None:
        return None
    if hasattr(example, "columns") and hasattr(example, "dtypes"):
        cols = [
            {"type": _mlflow_type(str(dtype)), "name": str(name), "required": True}
            for name, dtype in zip(example.columns, example.dtypes, strict=True)
        ]
        return {"inputs": json.dumps(cols), "outputs": None, "params": None}  # type: ignore[dict-item]
    import numpy as np

    arr = np.asarray(example)
    spec = [
        {"type": "tensor", "tensor-spec": {"dtype": str(arr.dtype), "shape": [-1, *arr.shape[1:]]}}
    ]
    return {"inputs": json.dumps(spec), "outputs": None, "params": None}  # type: ignore[dict-item]


def _mlflow_type(dtype: str) -> str:
    if dtype.startswith(("int", "uint")):
        return "long"
    if dtype.startswith("float"):
        return "double"
    if dtype == "bool":
        return "boolean"
    if dtype.startswith("datetime"):
        return "datetime"
    return "string"


def _example_json(example: Any) -> dict[str, Any]:
    from keel.models.golden import encode_frame

    enc = encode_frame(example, DEFAULT_ROWS)
    if enc["kind"] == "dataframe":
        return {"columns": enc["columns"], "data": enc["data"]}
    import numpy as np

    return {"inputs": np.asarray(example)[:DEFAULT_ROWS].tolist()}


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    input_example: Any = None,
    training_data: Any = None,
    provenance: Mapping[str, Any] | None = None,
    golden_rows: int = DEFAULT_ROWS,
    onnx: bool = True,
    serialization: str = "pickle",
) -> Path:
    """Write a package to ``path`` (which must not exist); return its path.

    ``input_example`` (or else the first rows of ``training_data``) becomes the
    example and the golden sample; one of them is required. With ``onnx`` (the
    default) a scikit-learn model also gets an ONNX twin when skl2onnx is
    installed and the twin passes parity on the golden rows and up to 1000
    rows of ``training_data``. ``serialization`` is ``"pickle"`` (the
    default: ``model.pkl``) or ``"skops"`` (``model.skops``, written with
    ``skops.io.dumps``; needs ``keel[skops]``).
    """
    target = Path(path)
    if serialization not in SERIALIZATIONS:
        raise InvalidParameter(
            f"Unknown serialization {serialization!r}: use one of {', '.join(SERIALIZATIONS)}."
        )
    if target.exists():
        raise InvalidParameter(f"Cannot save to {target}: it already exists. Choose a new path.")
    sample_source = input_example if input_example is not None else training_data
    if sample_source is None:
        raise InvalidParameter(
            "save_model needs input_example= or training_data=: the package keeps a golden "
            "sample of rows to prove, after loading, that the model answers as it did."
        )
    flavor = _flavor(model)
    serialized = _serialize(model, serialization)
    golden = capture_golden(model, sample_source, golden_rows)
    twin_meta, twin_bytes = _twin(model, flavor, golden, training_data) if onnx else (None, None)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        (staging / serialized.file).write_bytes(serialized.payload)
        if twin_bytes is not None:
            (staging / ONNX_FILE).write_bytes(twin_bytes)
        (staging / "requirements.txt").write_text(serialized.lock.requirements_txt())
        (staging / "python_env.yaml").write_text(serialized.lock.python_env_yaml())
        example = input_example if input_example is not None else training_data
        (staging / "input_example.json").write_text(json.dumps(_example_json(example)))
        _write_mlmodel(staging, flavor, example, serialized)
        training = _write_training_profile(staging, training_data)
        files = {p.name: sha256_file(p) for p in sorted(staging.iterdir())}
        meta = {
            "format_version": FORMAT_VERSION,
            "keel_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(),
            "flavor": flavor,
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "model_file": serialized.file,
            "serializer": serialized.serializer,
            "environment": serialized.lock.to_dict(),
            "files": files,
            **serialized.details,
            "provenance": dict(provenance or {}),
            "golden": golden.to_dict(),
            "onnx": twin_meta,
            "training_data": training,
        }
        (staging / KEEL_FILE).write_text(json.dumps(meta, indent=2, default=str))
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _write_training_profile(staging: Path, training_data: Any) -> dict[str, Any] | None:
    """Profile the training data into the package (what serving validates and monitors against).

    Needs keel's ``data`` extra (pyarrow, datasketches); without it the package
    simply has no profile, and keel.json says so with ``"training_data": null``.
    """
    if training_data is None or not _data_extra_installed():
        return None
    from keel.data.profiles import profile

    prof = profile(training_data)
    (staging / PROFILE_FILE).write_text(prof.to_json(), encoding="utf-8")
    return {"profile": PROFILE_FILE, "rows": prof.rows, "columns": list(prof.columns)}


def _data_extra_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("pyarrow", "datasketches"))


@dataclass(frozen=True)
class _Serialized:
    """The model file and what keel.json and MLmodel record about it."""

    file: str
    payload: bytes
    serializer: str  # keel.json's "serializer": "pickle-5", "skops-0.16.0"
    details: dict[str, Any]  # keel.json's "pickle" or "skops" entry
    lock: EnvironmentLock
    skops_trusted_types: list[str] | None = None  # for MLflow's loader; Keel never reads it


def _serialize(model: Any, serialization: str) -> _Serialized:
    """The model file's bytes and the lock of the distributions it needs.

    The lock holds the distributions of the modules the file names (read from
    the bytes, not guessed), plus skops itself for a skops file.
    """
    if serialization == "skops":
        from keel.models import skops_format

        payload, scan = skops_format.dumps(model)
        version = skops_format.skops_version()
        untrusted = skops_format.untrusted_types(payload)
        return _Serialized(
            file=skops_format.SKOPS_FILE,
            payload=payload,
            serializer=f"skops-{version}",
            details={
                "skops": {"version": version, "protocol": scan.protocol, "types": list(scan.dotted)}
            },
            lock=capture_environment(scan.modules, extra_distributions=["skops"]),
            skops_trusted_types=untrusted,
        )
    payload = pickle.dumps(model, protocol=PICKLE_PROTOCOL)
    pickle_scan = scan_pickle(payload)
    return _Serialized(
        file=MODEL_FILE,
        payload=payload,
        serializer=f"pickle-{PICKLE_PROTOCOL}",
        details={
            "pickle": {
                "protocol": pickle_scan.protocol,
                "globals": [g.dotted for g in pickle_scan.globals],
            }
        },
        lock=capture_environment(pickle_scan.modules),
    )


def serialization_of(meta: Mapping[str, Any]) -> str:
    """``"pickle"`` or ``"skops"``, from keel.json's ``serializer``; ModelRefused otherwise.

    >>> serialization_of({"serializer": "skops-0.16.0"}), serialization_of({})
    ('skops', 'pickle')
    """
    serializer = meta.get("serializer", f"pickle-{PICKLE_PROTOCOL}")  # older packages
    kind = serializer.split("-", 1)[0] if isinstance(serializer, str) else None
    if kind not in SERIALIZATIONS:
        raise ModelRefused(
            f"keel.json names the serializer {serializer!r}, which this Keel cannot read "
            f"(it reads {', '.join(SERIALIZATIONS)}). Upgrade Keel to load this package."
        )
    return str(kind)


def deserialize(meta: Mapping[str, Any], payload: bytes, *, trusted: Iterable[str] = ()) -> Any:
    """The model from its file's bytes, through the allow-list its serializer calls for."""
    if serialization_of(meta) == "skops":
        from keel.models import skops_format

        return skops_format.loads(payload, trusted=trusted)
    return safe_loads(payload, trusted=trusted)


def _twin(
    model: Any, flavor: str, golden: GoldenSample, training_data: Any
) -> tuple[dict[str, Any] | None, bytes | None]:
    """keel.json's ``onnx`` entry and the twin's bytes (None unless parity passed)."""
    import importlib.util

    if flavor != "sklearn":
        return None, None
    if importlib.util.find_spec("skl2onnx") is None:
        return {
            "file": None,
            "reason": "skl2onnx is not installed (pip install 'keel[onnx]')",
        }, None
    from keel.models import onnx_twin

    sample = decode_frame(golden.inputs)  # the rows load will check the twin on
    result = onnx_twin.convert(model, sample)
    if result.onnx_bytes is None:
        return {"file": None, "reason": result.reason}, None
    report = onnx_twin.parity(model, result.onnx_bytes, sample, training_data)
    if not report.passed:
        reason = f"the twin failed parity: {report.summary()}"
        return {"file": None, "reason": reason, "parity": report.to_dict()}, None
    entry = {"file": ONNX_FILE, "parity": report.to_dict(), "opset": result.opset}
    return entry | onnx_twin.versions(), result.onnx_bytes


def _write_mlmodel(directory: Path, flavor: str, example: Any, serialized: _Serialized) -> None:
    import yaml

    flavors: dict[str, Any] = {
        "python_function": {
            "env": {"virtualenv": "python_env.yaml"},
            "loader_module": "mlflow.sklearn" if flavor == "sklearn" else "keel.models",
            "model_path": serialized.file,
            "predict_fn": "predict",
            "python_version": platform.python_version(),
        }
    }
    if flavor == "sklearn":
        import sklearn

        flavors["sklearn"] = {
            "pickled_model": serialized.file,
            "serialization_format": serialized.serializer.split("-", 1)[0],
            "sklearn_version": sklearn.__version__,
            "code": None,
        }
        if serialized.skops_trusted_types is not None:
            # As MLflow writes it: what mlflow.sklearn.load_model passes to skops as
            # trusted (skops' own untrusted list for this file). Keel never reads it.
            flavors["sklearn"]["skops_trusted_types"] = serialized.skops_trusted_types
    descriptor: dict[str, Any] = {
        "artifact_path": "model",
        "flavors": flavors,
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "saved_input_example_info": {
            "artifact_path": "input_example.json",
            "type": "dataframe" if hasattr(example, "columns") else "ndarray",
            "format": "tf-serving" if not hasattr(example, "columns") else None,
            "pandas_orient": "split" if hasattr(example, "columns") else None,
        },
    }
    signature = _signature(example)
    if signature:
        descriptor["signature"] = signature
    (directory / "MLmodel").write_text(yaml.safe_dump(descriptor, sort_keys=False))


def read_meta(root: Path) -> dict[str, Any]:
    """The package's keel.json; NotFound without one, ModelRefused when unreadable."""
    if root.is_file():
        from keel.models.bare_file import not_a_package

        raise ModelRefused(not_a_package(root))
    if not (root / KEEL_FILE).is_file():
        if (root / "MLmodel").is_file():
            raise ModelRefused(
                f"{root} is an MLflow model without Keel's keel.json, so it has no checksums "
                "or lock to inspect; keel.models.load can load it (sklearn flavor) with the "
                "environment and safety checks."
            )
        raise NotFound(f"No model package at {root} (no keel.json or MLmodel there).")
    try:
        meta = json.loads((root / KEEL_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelRefused(f"{root / KEEL_FILE} cannot be read as JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise ModelRefused(
            f"{root} is a Keel package of an unknown format "
            f"({meta.get('format_version') if isinstance(meta, dict) else '?'}); "
            "upgrade Keel to load it."
        )
    return meta


def _inside(root: Path, name: object) -> Path:
    """A file named by package metadata; refuse anything that leaves the package."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ModelRefused(f"The package names the file {name!r}, which is not a plain file name.")
    return root / name


def model_file(root: Path, meta: Mapping[str, Any]) -> Path:
    """The model file's path, which must be a checksummed file inside the package."""
    files = meta.get("files")
    if not isinstance(files, dict) or meta.get("model_file") not in files:
        raise ModelRefused(f"{root / KEEL_FILE} does not list the model file's checksum.")
    return _inside(root, meta["model_file"])


def verify_integrity(root: Path, files: object, *, skip: Iterable[str] = ()) -> None:
    """Every listed file (but ``skip``) exists inside the package with its recorded sha256."""
    if not isinstance(files, dict) or not files:
        raise ModelRefused(f"{root / KEEL_FILE} lists no file checksums; the package is damaged.")
    problems = []
    skipped = set(skip)
    for name, expected in files.items():
        file = _inside(root, name)
        if name in skipped:
            continue
        if not file.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(file) != expected:
            problems.append(f"{name} was changed after the package was saved")
    if problems:
        raise ModelRefused(
            f"The package at {root} failed its integrity check: " + "; ".join(problems) + ". "
            "Do not use it; save or download the package again."
        )


def refuse_corrupt_trees(root: Path, model: Any) -> None:
    """Refuse a model whose tree node arrays would make predict read out of bounds.

    Runs right after unpickling, before anything (the golden check, a caller)
    predicts with it.
    """
    corrupt = tree_problems(model)
    if corrupt:
        raise ModelRefused(
            f"The model at {root} holds tree structures that would make predict read out of "
            "bounds (" + "; ".join(corrupt[:5]) + "). The file is corrupt or crafted: do not "
            "use it."
        )


def load_model(
    path: str | os.PathLike[str],
    *,
    policy: str = "compatible",
    trusted: Iterable[str] = (),
    check_golden: bool = True,
    fallback: bool = True,
    cache: bool = True,
) -> LoadedModel:
    """Load a package after integrity, safety and environment checks; then verify its outputs.

    ``policy`` is ``strict``, ``compatible`` (default) or ``warn``; ``trusted``
    names globals (``module.name`` or ``prefix.``) the caller vouches for.
    When the environment or golden check fails and ``fallback`` is true, the
    package's ONNX twin answers instead (``backend == "onnx"``, with a
    :class:`~keel.models.onnx_twin.FallbackWarning`). With ``cache``, a
    package whose files are, by inode and timestamps, the ones that passed
    every check in this environment before skips the integrity, tree and
    golden checks (see :mod:`keel.models.verified`; ``LoadedModel.from_cache``
    says so). A directory MLflow wrote (``MLmodel`` but no ``keel.json``) is
    loaded by :func:`~keel.models.mlflow_format.load_mlflow_model` instead,
    and a bare pickle, joblib or skops file by
    :func:`~keel.models.bare_file.load_bare_file`. A package archive (``keel
    models pack``) is extracted into the cache first (see
    :mod:`keel.models.archive`) and checked as the directory it holds.
    """
    root = Path(path)
    if root.is_file():
        # Imported here: both modules import this one.
        from keel.models.archive import extract_package, is_package_archive
        from keel.models.bare_file import load_bare_file

        # Before the bare-file loader, which would take any zip for a skops file.
        if not is_package_archive(root):
            return load_bare_file(root, policy=policy, trusted=trusted)
        root = extract_package(root)
    if not (root / KEEL_FILE).is_file() and (root / "MLmodel").is_file():
        # Imported here: the MLflow loader imports this module.
        from keel.models.mlflow_format import load_mlflow_model

        return load_mlflow_model(root, policy=policy, trusted=trusted, check_golden=check_golden)
    started_ns = time.time_ns()
    meta = read_meta(root)
    # The twin is as large as the model; it is verified only if it is needed.
    twin = (meta.get("onnx") or {}).get("file")
    lock = EnvironmentLock.from_dict(meta["environment"])
    installed = installed_versions(lock)
    files = meta.get("files")
    verified = VerifiedCache() if cache and verified_cache_enabled() else None
    record = None
    if verified is not None and isinstance(files, dict):
        record = verified.lookup(root, _files_checked(files, twin), installed)
    model_path = model_file(root, meta)
    payload = VerifiedCache.read_unchanged(model_path, record) if record else None
    if payload is None:
        record = None
        verify_integrity(root, files, skip=[twin] if twin else [])
        payload = model_path.read_bytes()
    report = check_environment(lock, policy=policy, installed=installed)
    if not report.ok:
        # The pickle is not used at all: the twin needs no unpickling. (Checking
        # its globals first would refuse a model whose library internals moved
        # between versions, the very case the twin is there for.)
        why = f"The model at {root} cannot be loaded safely here.\n{report.message()}"
        return _fall_back(root, meta, report, why, enabled=fallback, check_golden=check_golden)
    model = deserialize(meta, payload, trusted=trusted)
    loaded = LoadedModel(model=model, path=root, flavor=str(meta.get("flavor")), environment=report)
    if report.mismatches:
        loaded.warnings.append(report.message())
    if record is not None:
        loaded.from_cache = True
        return loaded
    refuse_corrupt_trees(root, model)
    if check_golden and meta.get("golden"):
        problems = compare_golden(model, GoldenSample.from_dict(meta["golden"]))
        if problems:
            why = (
                f"The model at {root} loads but does not answer as it did when saved: "
                + "; ".join(problems)
                + ". Load it in the environment it was saved in (see requirements.txt)."
            )
            return _fall_back(root, meta, report, why, enabled=fallback, check_golden=True)
    if (
        verified is not None
        and isinstance(files, dict)
        and (check_golden or not meta.get("golden"))
    ):
        verified.record(root, _files_checked(files, twin), installed, checked_since_ns=started_ns)
    return loaded


def _files_checked(files: Mapping[str, str], twin: str | None) -> dict[str, str]:
    # The twin is hashed only when it answers, so a native pass does not vouch for it.
    return {name: digest for name, digest in files.items() if name != twin}


def _twin_file(root: Path, meta: Mapping[str, Any], enabled: bool) -> tuple[Path | None, str]:
    """The checksummed twin to fall back to, or None and why it cannot be used."""
    import importlib.util

    entry = meta.get("onnx")
    if not isinstance(entry, dict):
        return None, "The package has no ONNX twin to fall back to (it was saved without one)."
    if not entry.get("file"):
        return None, f"The package has no ONNX twin: {entry.get('reason', 'unknown reason')}."
    if not entry.get("parity", {}).get("passed"):
        return None, "The package's ONNX twin did not pass parity, so it is not used."
    if not enabled:
        return (
            None,
            "The package has an ONNX twin that passed parity; fallback=False kept it unused.",
        )
    files = meta.get("files")
    if not isinstance(files, dict) or entry["file"] not in files:
        return None, "The package's ONNX twin has no checksum in keel.json, so it is not used."
    if importlib.util.find_spec("onnxruntime") is None:
        return None, (
            "The package has an ONNX twin, but onnxruntime is not installed "
            "(pip install 'keel[onnx]')."
        )
    return _inside(root, entry["file"]), ""


def load_twin(path: str | os.PathLike[str]) -> LoadedModel:
    """A package's ONNX twin as a :class:`LoadedModel` (``backend == "onnx"``), checked.

    Only a twin that passed parity at save time and whose checksum matches is
    returned; otherwise :class:`ModelRefused` says why. Serving uses it to
    answer with onnxruntime, which scores a row in microseconds.
    """
    root = Path(path)
    meta = json.loads((root / KEEL_FILE).read_text()) if (root / KEEL_FILE).is_file() else {}
    twin_path, why = _twin_file(root, meta, enabled=True)
    if twin_path is None:
        raise ModelRefused(why)
    verify_integrity(root, {twin_path.name: meta["files"][twin_path.name]})
    twin = OnnxModel(twin_path.read_bytes())
    return LoadedModel(model=twin, path=root, flavor=str(meta.get("flavor")), backend="onnx")


def _fall_back(
    root: Path,
    meta: Mapping[str, Any],
    report: EnvironmentReport,
    why: str,
    *,
    enabled: bool,
    check_golden: bool,
) -> LoadedModel:
    """Answer with the ONNX twin when the native model cannot; else refuse with ``why``."""
    twin_path, unused = _twin_file(root, meta, enabled)
    if twin_path is None:
        raise ModelRefused(f"{why}\n{unused}")
    verify_integrity(root, {twin_path.name: meta["files"][twin_path.name]})
    twin = OnnxModel(twin_path.read_bytes())
    if check_golden and meta.get("golden"):
        threshold = float(meta["onnx"]["parity"].get("threshold", 1e-4))
        problems = golden_problems(twin, GoldenSample.from_dict(meta["golden"]), threshold)
        if problems:
            raise ModelRefused(
                f"{why}\nThe ONNX twin was tried too and does not answer as saved: "
                + "; ".join(problems)
            )
    warnings.warn(FallbackWarning(f"{why}\nUsing the ONNX twin instead."), stacklevel=3)
    loaded = LoadedModel(model=twin, path=root, flavor=str(meta.get("flavor")), backend="onnx")
    loaded.environment = report
    loaded.warnings.append(why)
    return loaded
