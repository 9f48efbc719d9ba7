"""Load MLflow-format scikit-learn model directories through Keel's checks.

``mlflow.sklearn.save_model`` (or ``log_model``) writes a directory with an
``MLmodel`` descriptor, the model file (``model.pkl``, pickle or cloudpickle;
or ``model.skops``) and the environment it was saved in (``requirements.txt``,
``python_env.yaml``). It has no checksums and no golden sample, so of Keel's
checks only these apply, in order: the model file must be a plain file inside
the directory, the environment must match the declared versions of what the
file references, and the file's names (a pickle's globals, a skops file's
types) must pass the allow-list before anything is imported; after loading,
tree models' node arrays are bounds-checked. What could not be verified is
listed in ``LoadedModel.warnings``. MLflow's ``skops_trusted_types`` is not
used: a file does not get to say which of its own types are safe.

>>> import pickle, tempfile
>>> from pathlib import Path
>>> from sklearn.dummy import DummyClassifier
>>> root = Path(tempfile.mkdtemp())
>>> _ = (root / "model.pkl").write_bytes(pickle.dumps(DummyClassifier().fit([[0]], [1])))
>>> _ = (root / "MLmodel").write_text("flavors:\\n  sklearn:\\n    pickled_model: model.pkl\\n")
>>> m = load_mlflow_model(root)
>>> m.predict([[5]]).tolist(), m.flavor
([1], 'sklearn')
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.errors import InvalidParameter
from keel.models.environment import (
    EnvironmentLock,
    EnvironmentReport,
    canonical_name,
    check_environment,
    parse_requirements,
)
from keel.models.package import LoadedModel, ModelRefused, refuse_corrupt_trees
from keel.models.pickle_refs import scan_pickle
from keel.models.safety import Refusal, UnsafePickle, safe_loads

MLMODEL = "MLmodel"
MAX_DESCRIPTOR_BYTES = 1 << 20  # MLmodel, requirements.txt, python_env.yaml: KBs in practice
PICKLE_FORMATS = ("pickle", "cloudpickle")
FORMATS = (*PICKLE_FORMATS, "skops")

# Pins MLflow writes for itself rather than for the model. mlflow is needed only
# to load through MLflow; cloudpickle only to rebuild objects defined at runtime,
# which the safety check refuses anyway, so a passing pickle never needs it.
_LOADER_ONLY = re.compile(r"mlflow(-.*)?|cloudpickle")

# Importable module → distribution, for when the distribution is not installed
# here and so cannot be looked up (the case the environment check exists for).
_MODULE_DISTRIBUTIONS = {"sklearn": "scikit-learn"}

# scikit-learn estimators hold numpy arrays and scipy matrices whose pickled
# form depends on those versions even when the pickle names only sklearn.
_COMPANIONS = {"scikit-learn": ("numpy", "scipy")}


@dataclass
class _Declared:
    """What the directory says about the environment, plus what Keel skipped and why."""

    python: str | None = None
    packages: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def load_mlflow_model(
    root: Path,
    *,
    policy: str = "compatible",
    trusted: Iterable[str] = (),
    check_golden: bool = True,
) -> LoadedModel:
    """Load an MLflow sklearn model directory; refuse it with the reason and fix when unsafe.

    ``policy`` and ``trusted`` mean what they mean for ``keel.models.load``.
    MLflow saves no golden sample, so with ``check_golden`` the result only
    notes that the outputs could not be verified.

    >>> load_mlflow_model(Path("/nonexistent"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keel.models.package.ModelRefused: /nonexistent/MLmodel cannot be read ...
    """
    descriptor = read_mlmodel(root)
    flavor = sklearn_flavor(root, descriptor)
    model_path = model_file(root, flavor)
    payload = model_path.read_bytes()
    skops = _is_skops(root, model_path, flavor, payload)
    declared = declared_environment(root, descriptor, flavor)
    if skops:
        from keel.models import skops_format

        # Read statically: the environment is checked before anything is loaded.
        needed = _needed_distributions(skops_format.scan_skops(payload).modules, "skops")
        report = _check_environment(root, declared, needed, "skops file", policy)
        model = skops_format.loads(payload, trusted=trusted)
    else:
        needed = _needed_distributions(_pickle_modules(payload))
        report = _check_environment(root, declared, needed, "pickle", policy)
        model = safe_loads(payload, trusted=trusted)
    refuse_corrupt_trees(root, model)
    loaded = LoadedModel(model=model, path=root, flavor="sklearn", environment=report)
    loaded.warnings.append(
        "Integrity not verified: MLflow directories carry no checksums, so a changed file "
        "cannot be detected. Save the model with keel.models.save to get them."
    )
    if report.mismatches:
        loaded.warnings.append(report.message())
    loaded.warnings.extend(declared.notes)
    if check_golden:
        loaded.warnings.append(
            "Outputs not verified: MLflow directories have no golden sample, so a model that "
            "loads but answers differently cannot be detected."
        )
    return loaded


# ---------------------------------------------------------------------------
# The descriptor and the model file


def read_mlmodel(root: Path) -> dict[str, Any]:
    """``MLmodel`` parsed with ``yaml.safe_load``; ModelRefused unless it is a small mapping."""
    import yaml

    text = _read_small(root / MLMODEL)
    try:
        descriptor = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelRefused(
            f"{root / MLMODEL} is not valid YAML ({exc}). Save or download the model again."
        ) from exc
    if not isinstance(descriptor, dict):
        raise ModelRefused(
            f"{root / MLMODEL} is not an MLflow descriptor: expected a YAML mapping with "
            f"'flavors', got {type(descriptor).__name__}. Save or download the model again."
        )
    return descriptor


def _read_small(path: Path) -> str:
    """A descriptor file's text, refusing oversize files before reading them whole."""
    try:
        size = path.stat().st_size
        if size > MAX_DESCRIPTOR_BYTES:
            raise ModelRefused(
                f"{path} is {size} bytes; MLflow writes a few KB, so Keel refuses files over "
                f"{MAX_DESCRIPTOR_BYTES} bytes. Save or download the model again."
            )
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelRefused(
            f"{path} cannot be read ({exc}). Check the path points at an MLflow model directory."
        ) from exc


def sklearn_flavor(root: Path, descriptor: Mapping[str, Any]) -> dict[str, Any]:
    """The sklearn flavor's settings: ``flavors.sklearn``, or a pyfunc loaded by mlflow.sklearn.

    Returns ``file`` (the model file name), ``format`` (serialization) and
    ``sklearn_version`` (None when not recorded).
    """
    flavors = descriptor.get("flavors")
    if not isinstance(flavors, dict):
        raise ModelRefused(f"{root / MLMODEL} has no 'flavors' mapping. Save the model again.")
    sklearn = flavors.get("sklearn")
    if isinstance(sklearn, dict):
        return {
            "file": sklearn.get("pickled_model"),
            "format": sklearn.get("serialization_format", "cloudpickle"),
            "sklearn_version": sklearn.get("sklearn_version"),
            "code": sklearn.get("code"),
            "skops_trusted_types": sklearn.get("skops_trusted_types"),
        }
    pyfunc = flavors.get("python_function")
    if isinstance(pyfunc, dict) and pyfunc.get("loader_module") == "mlflow.sklearn":
        # Without the sklearn section the format is unrecorded; the file's bytes decide.
        return {"file": pyfunc.get("model_path"), "format": None, "sklearn_version": None}
    names = ", ".join(sorted(map(str, flavors))) or "none"
    raise ModelRefused(
        f"{root} is an MLflow model with flavors {names}; Keel loads only the sklearn flavor. "
        "Load it with MLflow, or re-save a scikit-learn model with keel.models.save."
    )


def model_file(root: Path, flavor: Mapping[str, Any]) -> Path:
    """The model file, which must be a plain name for a regular file inside ``root``."""
    fmt = flavor.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise ModelRefused(
            f"{root / MLMODEL} names the serialization format {fmt!r}; Keel loads only "
            f"{', '.join(FORMATS)}. Re-save with serialization_format='skops' or 'cloudpickle'."
        )
    name = flavor.get("file")
    if not isinstance(name, str) or not _plain_name(name):
        raise ModelRefused(
            f"{root / MLMODEL} names the model file {name!r}, which is not a plain file name "
            "inside the model directory; refusing to read it. Save or download the model again."
        )
    path = root / name
    # A symlink may point anywhere: follow it and require the target to stay inside.
    target = path.resolve()
    if not target.is_relative_to(root.resolve()):
        raise ModelRefused(
            f"{path} leads outside the model directory (to {target}); refusing to read it. "
            "Copy the model file into the directory instead of linking to it."
        )
    if not target.is_file():
        raise ModelRefused(
            f"The model file {path} named in {MLMODEL} is missing. "
            "Save or download the model again."
        )
    return path


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not re.search(r"[/\\:]", name)


def _is_skops(root: Path, path: Path, flavor: Mapping[str, Any], payload: bytes) -> bool:
    """Whether the model file is a skops file: its bytes decide, the descriptor must agree.

    A pyfunc-only descriptor records no format, so a zip archive is read as
    skops; a file MLmodel calls skops that is not one is refused.
    """
    from keel.models.skops_format import is_skops

    if is_skops(payload):
        return True
    if flavor.get("format") == "skops":
        raise ModelRefused(
            f"{root / MLMODEL} says {path.name} is a skops file, but it is not one (a skops "
            "file is a zip archive). Save or download the model again."
        )
    return False


# ---------------------------------------------------------------------------
# The environment


def declared_environment(
    root: Path, descriptor: Mapping[str, Any], flavor: Mapping[str, Any]
) -> _Declared:
    """Python and package pins from python_env.yaml, requirements.txt and the flavor."""
    declared = _Declared(python=_declared_python(root, descriptor))
    if declared.python is None:
        declared.notes.append(
            "Python version not checked: neither python_env.yaml nor MLmodel records it."
        )
    _read_requirements(root, declared)
    _apply_sklearn_version(flavor.get("sklearn_version"), declared)
    if flavor.get("skops_trusted_types"):
        declared.notes.append(
            "MLmodel lists skops_trusted_types "
            f"({', '.join(map(str, flavor['skops_trusted_types']))}); Keel does not take a "
            "file's word for which of its types are safe: each was checked against the "
            "allow-list (pass trusted=[...] to allow more)."
        )
    if flavor.get("code"):
        declared.notes.append(
            f"MLmodel lists a code directory ({flavor['code']!r}); Keel does not import it, "
            "so the classes it defines must be importable here and passed in trusted=."
        )
    return declared


def _declared_python(root: Path, descriptor: Mapping[str, Any]) -> str | None:
    env_file = root / "python_env.yaml"
    if env_file.is_file():
        # Read as text: YAML would turn an unquoted 3.10 into the float 3.1.
        match = re.search(r"""^python:\s*["']?([0-9][0-9.]*)""", _read_small(env_file), re.M)
        if match:
            return match.group(1)
    pyfunc = (descriptor.get("flavors") or {}).get("python_function")
    version = pyfunc.get("python_version") if isinstance(pyfunc, dict) else None
    # Same float hazard in MLmodel: only a version that survived as a string is trusted.
    return version if isinstance(version, str) and re.fullmatch(r"\d+(\.\d+)+", version) else None


def _read_requirements(root: Path, declared: _Declared) -> None:
    path = root / "requirements.txt"
    if not path.is_file():
        declared.notes.append(
            "requirements.txt is missing, so package versions were checked only for "
            "scikit-learn (from MLmodel)."
        )
        return
    skipped: list[str] = []
    for line in _read_small(path).splitlines():
        try:
            pins = parse_requirements(line)
        except InvalidParameter:
            # MLflow writes ranges for some packages; an unknown version is not a refusal.
            skipped.append(line.strip())
            continue
        for name, version in pins.items():
            if _LOADER_ONLY.fullmatch(name):
                continue
            if declared.packages.get(name, version) != version:
                raise ModelRefused(
                    f"{path} pins {name} twice (=={declared.packages[name]} and =={version}). "
                    "Keep one pin per package."
                )
            declared.packages[name] = version
    if skipped:
        declared.notes.append(
            "Requirements not pinned to one version, so not checked: " + "; ".join(skipped) + "."
        )


def _apply_sklearn_version(version: object, declared: _Declared) -> None:
    if not isinstance(version, str) or not version:
        return
    pinned = declared.packages.get("scikit-learn")
    # The flavor records the version that actually pickled the model; requirements.txt
    # can be overridden by the user, so the flavor wins.
    if pinned is not None and pinned != version:
        declared.notes.append(
            f"requirements.txt pins scikit-learn=={pinned} but MLmodel says the model was "
            f"saved with {version}; checked against {version}."
        )
    declared.packages["scikit-learn"] = version


def _check_environment(
    root: Path, declared: _Declared, needed: set[str], what: str, policy: str
) -> EnvironmentReport:
    """Check the pins the model file needs; refuse with the report and ``pip install`` fix."""
    packages = {n: v for n, v in declared.packages.items() if n in needed}
    unchecked = sorted(set(declared.packages) - set(packages))
    if unchecked:
        # MLflow lists what its loader imported (pandas, rich...), not what the model needs.
        declared.notes.append(
            f"Declared but not referenced by the {what}, so not checked: "
            + ", ".join(f"{n}=={declared.packages[n]}" for n in unchecked)
            + "."
        )
    lock = EnvironmentLock(
        python=declared.python or platform.python_version(),
        implementation="",
        platform="",
        packages=packages,
    )
    report = check_environment(lock, policy=policy)
    if not report.ok:
        raise ModelRefused(
            f"The MLflow model at {root} cannot be loaded safely here (it has no ONNX twin "
            f"to fall back to).\n{report.message()}"
        )
    return report


def _pickle_modules(payload: bytes) -> tuple[str, ...]:
    """The modules a pickle names, read from its opcodes."""
    try:
        return scan_pickle(payload).modules
    except InvalidParameter as exc:
        raise UnsafePickle([Refusal("malformed pickle", exc.message)]) from exc


def _needed_distributions(modules: Iterable[str], *serializer: str) -> set[str]:
    """Distributions providing ``modules``, their companions and the serializer's own."""
    providers = importlib.metadata.packages_distributions()
    needed: set[str] = {canonical_name(n) for n in serializer}
    for module in modules:
        top = module.split(".", 1)[0]
        names = providers.get(top) or [_MODULE_DISTRIBUTIONS.get(top, top)]
        needed.update(canonical_name(n) for n in names)
    for name in list(needed):
        needed.update(_COMPANIONS.get(name, ()))
    return needed
