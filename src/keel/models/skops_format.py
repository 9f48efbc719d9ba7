"""skops files, judged by Keel's allow-list before skops builds anything.

A skops file is a zip archive: ``schema.json`` describes every object as a
*node* naming its type (``__module__``, ``__class__``) and how to rebuild it
(``__loader__``); arrays sit beside it in ``.npy``/``.npz`` files that numpy
reads with ``allow_pickle=False``. Rebuilding imports and calls those types,
so the names decide what a file can do, exactly as a pickle's globals do.

skops itself trusts a default list and reports only the rest
(``skops.io.get_untrusted_types``). That default list is not Keel's: it
trusts ``builtins.map`` and every scikit-learn estimator by type name, and
it leaves out ``sklearn.tree._tree.Tree`` and HistGradientBoosting's
``TreePredictor`` because their node arrays are not bounds-checked, which
Keel's tree check does after loading. So Keel reads *every* name the file
would import from ``schema.json`` (without skops, without importing
anything), including the ones a loader adds on its own (``functools.partial``
for a partial, the bit generator a ``numpy.random.Generator`` names in its
state), judges each with :func:`keel.models.safety.check_names`, and only then
calls ``skops.io.loads(data, trusted=<exactly the names Keel allowed>)``.
skops' own audit runs inside ``loads`` as a second check: a type it would
rebuild that Keel did not judge makes it refuse before building anything.
Node kinds Keel does not know are refused: what they import is unknown.

>>> from sklearn.linear_model import LogisticRegression
>>> data, scan = dumps(LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
>>> "sklearn.linear_model._logistic.LogisticRegression" in scan.dotted
True
>>> loads(data).predict([[1.0]]).tolist()
[1]
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from keel.errors import InvalidParameter, require
from keel.models.package import ModelRefused
from keel.models.safety import Refusal, UnsafePickle, check_names

SKOPS_FILE = "model.skops"
ZIP_MAGIC = b"PK\x03\x04"
SCHEMA = "schema.json"

# Every node kind skops writes (skops.io NODE_TYPE_MAPPING), with the names its
# loader imports besides the node's own ``__module__.__class__``: fixed
# constructors the loader calls whatever the file says the type is.
_LOADERS: dict[str, tuple[tuple[str, str], ...]] = {
    "DictNode": (),
    "DefaultDictNode": (("collections", "defaultdict"),),
    "ListNode": (),
    "SetNode": (),
    "TupleNode": (),
    "BytesNode": (("builtins", "bytes"),),
    "BytearrayNode": (("builtins", "bytearray"),),
    "SliceNode": (("builtins", "slice"),),
    "FunctionNode": (),
    "MethodNode": (),
    "PartialNode": (("functools", "partial"),),
    "TypeNode": (),
    "ConstructorFromReduceNode": (),
    "ObjectNode": (),
    "JsonNode": (),
    "OperatorFuncNode": (),
    "CachedNode": (),
    "NdArrayNode": (("numpy", "ndarray"),),
    "MaskedArrayNode": (("numpy.ma", "MaskedArray"),),
    "DTypeNode": (("numpy", "dtype"),),
    "RandomStateNode": (),
    "RandomGeneratorNode": (("numpy.random.bit_generator", "SeedSequence"),),
    "SparseMatrixNode": (),
    "TreeNode": (("sklearn.tree._tree", "Tree"),),
    "LossNode": (),
    "QuantileForestNode": (("quantile_forest._quantile_forest_fast", "QuantileForest"),),
}


@dataclass(frozen=True, slots=True)
class SkopsScan:
    """What a skops file would import, read from ``schema.json`` alone.

    ``names`` are ``(module, name)`` pairs in order of appearance, duplicates
    removed; ``protocol`` is the skops file format version and
    ``skops_version`` the skops that wrote it (None when not recorded).
    """

    protocol: int
    skops_version: str | None
    names: tuple[tuple[str, str], ...]

    @property
    def dotted(self) -> tuple[str, ...]:
        """The names as ``module.name`` strings, the way skops spells them."""
        return tuple(f"{module}.{name}" for module, name in self.names)

    @property
    def modules(self) -> tuple[str, ...]:
        """The modules the names come from, for the environment lock."""
        return tuple(dict.fromkeys(module for module, _ in self.names if module))


def is_skops(data: bytes) -> bool:
    """Whether ``data`` starts like a skops file (a zip archive).

    >>> is_skops(b"PK\\x03\\x04..."), is_skops(b"\\x80\\x05...")
    (True, False)
    """
    return data.startswith(ZIP_MAGIC)


def skops_version() -> str:
    """The installed skops version; MissingDependency (with the extra) without skops."""
    require("skops", "skops", "Reading and writing skops files")
    import skops

    return str(skops.__version__)


def scan_skops(data: bytes) -> SkopsScan:
    """Every name the file would import, read statically; UnsafePickle when unreadable.

    Needs neither skops nor any module the file names: nothing is imported.

    >>> scan_skops(b"not a zip")
    Traceback (most recent call last):
    ...
    keel.models.safety.UnsafePickle: Refusing to load the skops file: 1 problem ...
    """
    schema = _read_schema(data)
    protocol = schema.get("protocol")
    if isinstance(protocol, bool) or not isinstance(protocol, int) or protocol < 0:
        raise _malformed(f"schema.json gives the protocol {protocol!r}, not a version number")
    version = schema.get("_skops_version")
    names = dict.fromkeys(_names(schema))
    return SkopsScan(protocol, version if isinstance(version, str) else None, tuple(names))


def check_skops(
    data: bytes,
    *,
    trusted: Iterable[str] = (),
    declared_modules: Iterable[str] = (),
    cross_check: bool = True,
) -> SkopsScan:
    """Scan ``data`` and judge every name by Keel's allow-list; UnsafePickle lists refusals.

    With ``cross_check`` and skops installed, the types skops itself reports
    as untrusted (``skops.io.get_untrusted_types``) are judged too, in case a
    skops version imports something the scan does not know about. Nothing is
    loaded: this is what ``keel models doctor`` runs.

    >>> from sklearn.dummy import DummyClassifier
    >>> data, _ = dumps(DummyClassifier().fit([[0]], [1]))
    >>> check_skops(data).protocol >= 0
    True
    """
    scan = scan_skops(data)
    names = list(scan.names)
    if cross_check and _skops_installed():
        seen = set(scan.dotted)
        names += [_split(n) for n in _untrusted_by_skops(data) if n not in seen]
    check_names(names, trusted=trusted, declared_modules=declared_modules, source="skops")
    return SkopsScan(scan.protocol, scan.skops_version, tuple(dict.fromkeys(names)))


def loads(
    data: bytes,
    *,
    trusted: Iterable[str] = (),
    declared_modules: Iterable[str] = (),
) -> Any:
    """Rebuild the object in a skops file once Keel has allowed every name it imports.

    ``trusted`` and ``declared_modules`` mean what they mean for pickles. A
    refused name raises :class:`~keel.models.safety.UnsafePickle` before
    skops reads anything but ``schema.json``.

    >>> from sklearn.dummy import DummyRegressor
    >>> data, _ = dumps(DummyRegressor().fit([[0]], [2.0]))
    >>> loads(data).predict([[9]]).tolist()
    [2.0]
    """
    scan = scan_skops(data)
    allowed = check_names(
        scan.names, trusted=trusted, declared_modules=declared_modules, source="skops"
    )
    skops_version()  # MissingDependency, with the install command, before anything else
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    _refuse_newer_protocol(scan)
    try:
        # skops' audit runs inside loads, before any object is built: it is the
        # cross-check that get_untrusted_types would be, at no extra cost.
        return skops.io.loads(data, trusted=sorted(set(allowed)))
    except UntrustedTypesFoundException as exc:
        raise UnsafePickle(
            [Refusal("skops file", f"skops found types Keel's scan did not see: {exc}")],
            source="skops",
        ) from exc
    except Exception as exc:
        raise ModelRefused(
            f"skops could not rebuild the model ({type(exc).__name__}: {exc}). The file is "
            "damaged or crafted, or its classes differ in this environment: load it where "
            "it was saved and save it again."
        ) from exc


def dumps(model: Any) -> tuple[bytes, SkopsScan]:
    """The model as skops bytes and their scan; InvalidParameter when skops cannot write it.

    >>> from sklearn.dummy import DummyClassifier
    >>> data, scan = dumps(DummyClassifier().fit([[0]], [1]))
    >>> data[:4], scan.modules[:1]
    (b'PK\\x03\\x04', ('sklearn.dummy',))
    """
    skops_version()
    import skops.io

    try:
        data = skops.io.dumps(model)
    except (TypeError, ValueError) as exc:  # skops' UnsupportedTypeException is a TypeError
        raise InvalidParameter(
            f"skops cannot save this {type(model).__name__}: {exc} Save it with "
            "serialization='pickle' (the default) instead."
        ) from exc
    return data, scan_skops(data)


def untrusted_types(data: bytes) -> list[str]:
    """What skops would refuse by default in ``data`` (``skops.io.get_untrusted_types``).

    Written into MLflow's ``skops_trusted_types`` so that MLflow can load a
    package Keel saved; Keel itself never reads that field.
    """
    skops_version()
    return _untrusted_by_skops(data)


# ---------------------------------------------------------------------------
# Reading schema.json


def _read_schema(data: bytes) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            raw = archive.read(SCHEMA)
        schema = json.loads(raw)
    except KeyError:
        raise _malformed(f"the archive has no {SCHEMA}") from None
    except (zipfile.BadZipFile, ValueError, RecursionError, OSError) as exc:
        raise _malformed(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(schema, dict):
        raise _malformed(f"{SCHEMA} holds a {type(schema).__name__}, not an object")
    return schema


def _names(schema: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every name any node would import, walking all of schema.json (iteratively)."""
    stack: list[Any] = [schema]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(reversed(value))
            continue
        if not isinstance(value, dict):
            continue
        if isinstance(value.get("__loader__"), str):
            yield from _node_names(value)
        stack.extend(reversed(list(value.values())))


def _node_names(state: dict[str, Any]) -> Iterator[tuple[str, str]]:
    loader, module, name = state["__loader__"], state.get("__module__"), state.get("__class__")
    if loader not in _LOADERS:
        raise _malformed(
            f"it uses the node kind {loader!r}, which Keel does not know, so what it would "
            "import cannot be checked (a newer skops, or a crafted file)"
        )
    if not isinstance(module, str) or not isinstance(name, str):
        raise _malformed(f"a {loader} names the type {module!r}.{name!r}, not two strings")
    yield module, name
    yield from _LOADERS[loader]
    content = state.get("content")
    if loader == "OperatorFuncNode":
        yield "operator", name  # built as getattr(operator, name)(...)
    elif loader == "MethodNode":
        yield _method(content)
    elif loader == "FunctionNode" and isinstance(content, dict):
        yield _protocol_0_function(content)
    elif loader == "RandomGeneratorNode":
        yield "numpy.random", _bit_generator(content)


def _protocol_0_function(content: dict[str, Any]) -> tuple[str, str]:
    """Protocol 0 named a function in its content, and imported that instead."""
    module, function = content.get("module_path"), content.get("function")
    if not isinstance(module, str) or not isinstance(function, str):
        raise _malformed("a FunctionNode's content does not name a module and function")
    return module, function


def _method(content: object) -> tuple[str, str]:
    """A bound method: ``getattr(<the object>, func)``, named ``module.Class.func``."""
    owner = content.get("obj") if isinstance(content, dict) else None
    func = content.get("func") if isinstance(content, dict) else None
    if not isinstance(owner, dict) or not isinstance(func, str):
        raise _malformed("a MethodNode does not name its object and method")
    return str(owner.get("__module__")), f"{owner.get('__class__')}.{func}"


def _bit_generator(content: object) -> str:
    """The class a Generator's state names as a string; skops calls it on load."""
    state = content.get("bit_generator") if isinstance(content, dict) else None
    name: object = None
    if isinstance(state, dict):
        inner = state.get("content")
        node = inner.get("bit_generator") if isinstance(inner, dict) else None
        if isinstance(node, dict) and isinstance(node.get("content"), str):
            try:
                name = json.loads(node["content"])
            except ValueError:
                name = None
        elif isinstance(state.get("bit_generator"), str):  # protocol 0: a plain dict
            name = state["bit_generator"]
    if not isinstance(name, str):
        raise _malformed("a numpy Generator does not name its bit generator")
    return name


def _split(dotted: str) -> tuple[str, str]:
    module, _, name = dotted.rpartition(".")
    return module, name


def _malformed(problem: str) -> UnsafePickle:
    return UnsafePickle([Refusal("malformed skops file", problem)], source="skops")


# ---------------------------------------------------------------------------
# skops itself


def _skops_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("skops") is not None


def _untrusted_by_skops(data: bytes) -> list[str]:
    import skops.io

    try:
        return list(skops.io.get_untrusted_types(data=data))
    except Exception as exc:  # skops raises whatever a broken schema makes it hit
        raise _malformed(f"skops cannot read it ({type(exc).__name__}: {exc})") from exc


def _refuse_newer_protocol(scan: SkopsScan) -> None:
    """A clear refusal (with the fix) for a file newer than the installed skops reads."""
    try:
        from skops.io._protocol import PROTOCOL
    except ImportError:  # a skops without that module: its own error will have to do
        return
    if scan.protocol > PROTOCOL:
        saved = f"skops {scan.skops_version}" if scan.skops_version else "a newer skops"
        fix = f"pip install 'skops=={scan.skops_version}'" if scan.skops_version else "upgrade"
        raise ModelRefused(
            f"The skops file was written by {saved} (file protocol {scan.protocol}); the "
            f"installed skops {skops_version()} reads protocols up to {PROTOCOL}. Fix: {fix}."
        )
