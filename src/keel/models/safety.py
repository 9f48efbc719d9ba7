"""Which pickles Keel agrees to unpickle: an allow-list over the globals they import.

Unpickling can only run code through the globals a pickle names, so a pickle
is accepted only when every global it references is one of:

* an exact ``module.name`` on :data:`ALLOWED_GLOBALS`: the reconstruction
  helpers and plain value types real scikit-learn, numpy, pandas and scipy
  pickles use (found by pickling real models and data);
* a *class* (not a function) defined in :data:`ALLOWED_PACKAGES` or in a
  module the caller declares, found by importing that module and looking the
  name up without calling anything, and not one of the classes whose
  construction reads or writes files, opens sockets or starts processes;
* a name the caller explicitly trusts (``trusted=["module.name", "pkg."]``).

Everything else is refused, as are names computed while unpickling, extension
codes, persistent ids, bytes hidden after the pickle's STOP and malformed
streams: the check fails closed.

>>> import collections, pickle
>>> check_pickle(pickle.dumps(collections.OrderedDict(a=1), protocol=5)).protocol
5
>>> try:
...     check_pickle(b"cos\\nsystem\\n(S'echo hi'\\ntR.")
... except UnsafePickle as exc:
...     print([refusal.name for refusal in exc.refusals])
['os.system']
"""

from __future__ import annotations

import _compat_pickle
import functools
import importlib
import importlib.util
import inspect
import io
import pickle
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from keel.errors import InvalidParameter
from keel.models.pickle_refs import GlobalRef, PickleScan, scan_pickle

__all__ = [
    "ALLOWED_GLOBALS",
    "ALLOWED_PACKAGES",
    "Refusal",
    "UnsafePickle",
    "check_names",
    "check_pickle",
]

# Packages whose classes may be rebuilt: their constructors only build in-memory
# values (with the deny-lists below carving out the ones that do I/O).
ALLOWED_PACKAGES: frozenset[str] = frozenset({"sklearn", "numpy", "scipy", "pandas"})

# Exact globals real model and data pickles call, each checked to only build a
# value from its arguments. Protocol 0-2 spellings (``__builtin__``,
# ``copy_reg``) are mapped to these the way the unpickler maps them.
ALLOWED_GLOBALS: frozenset[str] = frozenset(
    {
        # Plain types used as values (e.g. ``dtype=float``) or rebuilt from literals.
        *(
            f"builtins.{name}"
            for name in (
                "bool",
                "bytearray",
                "bytes",
                "complex",
                "dict",
                "float",
                "frozenset",
                "int",
                "list",
                "object",
                "set",
                "slice",
                "str",
                "tuple",
                "Ellipsis",
                "NotImplemented",
            )
        ),
        # How the pickle module itself rebuilds objects and, below protocol 3, bytes.
        "copyreg._reconstructor",
        "copyreg.__newobj__",
        "copyreg.__newobj_ex__",
        "_codecs.encode",
        # Standard-library value types.
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.Counter",
        "collections.deque",
        "datetime.date",
        "datetime.datetime",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "fractions.Fraction",
        "uuid.UUID",
        # numpy arrays and scalars (numpy 2 spells the package ``numpy._core``).
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer",
        "numpy._core.numeric._frombuffer",
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.ma.core._mareconstruct",
        # numpy random states, as in every estimator with a random_state.
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__generator_ctor",
        "numpy.random.mtrand.RandomState",
        # pandas frames, indexes, blocks, timestamps and missing values.
        "pandas.NA",
        "pandas._libs.missing.NA",
        "pandas._libs.internals._unpickle_block",
        "pandas.core.indexes.base._new_Index",
        "pandas.core.indexes.interval._new_IntervalIndex",
        "pandas._libs.tslibs.nattype._nat_unpickle",
        "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
        "pandas._libs.tslibs.timestamps._unpickle_timestamp",
        # Arrow-backed pandas data (pandas 3's default strings when pyarrow is installed):
        # buffers wrapped as Arrow buffers, type factories, and the array rebuilder,
        # which the unpickler swaps for a version that validates what it rebuilt.
        *(
            f"pyarrow.lib.{name}"
            for name in (
                "_restore_array",
                "py_buffer",
                "type_for_alias",
                "field",
                "list_",
                "large_list",
                "struct",
                "map_",
                "dictionary",
                "timestamp",
                "duration",
                "time32",
                "time64",
                "decimal128",
                "decimal256",
                "binary",
            )
        ),
        # scikit-learn trees and distance metrics: `newObj(cls)` is `cls.__new__(cls)`.
        "sklearn.metrics._dist_metrics.newObj",
        "sklearn.neighbors._ball_tree.newObj",
        "sklearn.neighbors._kd_tree.newObj",
        # Statistics the feature selectors store as their default ``score_func``.
        *(
            f"sklearn.feature_selection._univariate_selection.{name}"
            for name in ("chi2", "f_classif", "f_regression", "r_regression")
        ),
        *(
            f"sklearn.feature_selection._mutual_info.{name}"
            for name in ("mutual_info_classif", "mutual_info_regression")
        ),
    }
)

# Modules that run commands or code, touch files or the network, or resolve
# further names: refused even under a trusted prefix; only an exact
# ``trusted`` entry lets one of their names through.
_DANGEROUS_MODULES: dict[str, str] = {
    **dict.fromkeys(
        ("os", "posix", "nt", "subprocess", "_posixsubprocess", "pty", "commands", "popen2"),
        "runs commands and touches files",
    ),
    **dict.fromkeys(
        ("code", "codeop", "runpy", "timeit", "cProfile", "profile", "trace", "pdb", "bdb"),
        "runs Python source",
    ),
    **dict.fromkeys(
        ("pickle", "_pickle", "marshal", "dill", "cloudpickle", "joblib"), "loads code"
    ),
    **dict.fromkeys(("importlib", "pkgutil", "zipimport", "types"), "imports or builds code"),
    **dict.fromkeys(("ctypes", "_ctypes", "sys", "gc", "signal"), "reaches into the interpreter"),
    **dict.fromkeys(
        ("shutil", "tempfile", "io", "_io", "codecs", "shelve", "dbm", "sqlite3", "zipfile"),
        "reads or writes files",
    ),
    **dict.fromkeys(
        ("socket", "ssl", "http", "urllib", "ftplib", "smtplib", "imaplib", "webbrowser"),
        "opens network connections",
    ),
    **dict.fromkeys(
        ("multiprocessing", "threading", "_thread", "concurrent", "asyncio"),
        "starts processes or threads",
    ),
    **dict.fromkeys(("pip", "ensurepip", "setuptools", "distutils", "venv"), "installs code"),
    **dict.fromkeys(("pydoc", "idlelib", "_osx_support", "doctest"), "runs commands or code"),
}

_DANGEROUS_NAMES: dict[str, str] = {
    **dict.fromkeys(
        (
            f"builtins.{name}"
            for name in (
                "eval",
                "exec",
                "compile",
                "__import__",
                "breakpoint",
                "open",
                "input",
                "help",
            )
        ),
        "runs code or reads input or files",
    ),
    **dict.fromkeys(
        (
            f"builtins.{name}"
            for name in ("getattr", "setattr", "delattr", "globals", "locals", "vars", "type")
        ),
        "reaches attributes or namespaces that lead to any function",
    ),
    **dict.fromkeys(
        (
            "operator.attrgetter",
            "operator.itemgetter",
            "operator.methodcaller",
            "functools.partial",
            "functools.reduce",
            "builtins.map",
            "builtins.filter",
        ),
        "calls or reaches other objects indirectly",
    ),
}

# Module path parts inside the allowed packages whose classes read or write
# files, evaluate expressions, download data, start workers or are test helpers.
_DENIED_PARTS: frozenset[str] = frozenset(
    {
        "io",
        "npyio",
        "_npyio_impl",
        "_iotools",
        "_datasource",
        "format",
        "memmap",
        "datasets",
        "tests",
        "testing",
        "_testing",
        "_testutils",
        "_tester",
        "conftest",
        "f2py",
        "distutils",
        "ctypeslib",
        "_ccallback",
        "_internal",
        "_pyinstaller",
        "_build_utils",
        "plotting",
        "computation",
        "clipboard",
        "parallel",
        "_joblib",
        "experimental",
        "_config",
        "_numba",
        "numba_",
        "_precompute",
        "_tmpdirs",
        "_transport",
    }
)

# Classes that wrap arbitrary callables (numpy relabels ``vectorize`` to the
# package top, hiding where it lives) or start worker processes.
_DENIED_CLASSES: frozenset[str] = frozenset({"numpy.vectorize", "scipy._lib._util.MapWrapper"})

# Reasons starting with this mark classes known to do I/O or run code.
_DENIED = "deny-listed: "
_PYX_UNPICKLE = re.compile(r"__pyx_unpickle_([A-Za-z_]\w*)")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Refusal:
    """One reason a pickle was refused: the global (or problem), where, and why.

    ``trustable`` says whether ``trusted=`` could let it through: names that
    cannot be read before unpickling (computed names, extension codes,
    persistent ids, hidden bytes, broken streams) never can.
    """

    name: str
    reason: str
    opcode: str = ""
    position: int | None = None
    trustable: bool = False
    dangerous: bool = False

    def describe(self) -> str:
        where = f" ({self.opcode} at byte {self.position})" if self.opcode else ""
        return f"{self.name}{where}: {self.reason}"


class UnsafePickle(InvalidParameter):
    """A pickle references globals Keel will not let the unpickler import.

    ``refusals`` lists each one with the reason; the message says what the
    caller can do if they trust the file. ``source`` is ``"pickle"``, or
    ``"skops"`` for the types a skops file names (same rules, other wording).
    """

    def __init__(self, refusals: Iterable[Refusal], *, source: str = "pickle") -> None:
        self.refusals = tuple(refusals)
        self.source = source
        super().__init__(_message(self.refusals, source))


def check_pickle(
    data: bytes,
    *,
    trusted: Iterable[str] = (),
    declared_modules: Iterable[str] = (),
) -> PickleScan:
    """Return the scan of ``data``; raise :class:`UnsafePickle` unless every global is allowed.

    ``trusted`` holds exact ``module.name`` entries or prefixes ending in
    ``.`` (``"mycompany."``) that are allowed without inspection. Names from
    modules that run commands or code (``os``, ``subprocess``,
    ``builtins.eval``...) pass only with an exact entry. ``declared_modules``
    lists modules (and their submodules) whose *classes* may be rebuilt, such
    as the package holding a custom estimator.

    >>> import datetime, pickle
    >>> data = pickle.dumps(datetime.date(2024, 1, 1), protocol=4)
    >>> [g.dotted for g in check_pickle(data).globals]
    ['datetime.date']
    >>> stack_global_os_system = b"\\x80\\x04\\x8c\\x02os\\x8c\\x06system\\x93."
    >>> check_pickle(stack_global_os_system, trusted=["os."])  # a prefix never unlocks os
    Traceback (most recent call last):
    ...
    keel.models.safety.UnsafePickle: ...
    """
    exact, prefixes = _parse_trusted(trusted)
    declared = _parse_declared(declared_modules)
    try:
        scan = scan_pickle(data)
    except InvalidParameter as exc:
        raise UnsafePickle([Refusal("malformed pickle", exc.message)]) from exc
    refusals = [_structural(scan)] if scan.persistent_ids or scan.trailing_bytes else []
    for ref in scan.globals:
        refusal = _check_ref(ref, exact, prefixes, declared)
        if refusal is not None:
            refusals.append(refusal)
    if refusals:
        raise UnsafePickle(refusals)
    return scan


def check_names(
    names: Iterable[str | tuple[str, str]],
    *,
    trusted: Iterable[str] = (),
    declared_modules: Iterable[str] = (),
    source: str = "pickle",
) -> tuple[str, ...]:
    """Judge globals named outside a pickle stream by the same allow-list; return them dotted.

    For formats that list the names they will import up front, such as a
    skops file's types. Each name is ``"module.name"`` (split at the last
    dot) or a ``(module, qualname)`` pair when the name itself has dots (a
    method, ``Class.method``). Every name is judged exactly as a pickle's
    global would be, and :class:`UnsafePickle` lists each refused one.

    >>> check_names(["collections.OrderedDict", ("datetime", "date")])
    ('collections.OrderedDict', 'datetime.date')
    >>> check_names(["os.system"], source="skops")
    Traceback (most recent call last):
    ...
    keel.models.safety.UnsafePickle: Refusing to load the skops file: 1 problem ...
    """
    exact, prefixes = _parse_trusted(trusted)
    declared = _parse_declared(declared_modules)
    allowed: list[str] = []
    refusals: list[Refusal] = []
    for entry in names:
        module, name = entry if isinstance(entry, tuple) else _split_dotted(entry)
        refusal = _check_ref(GlobalRef(module, name, "", -1), exact, prefixes, declared)
        if refusal is None:
            allowed.append(f"{module}.{name}")
        else:
            refusals.append(refusal)
    if refusals:
        raise UnsafePickle(refusals, source=source)
    return tuple(allowed)


def _split_dotted(dotted: str) -> tuple[str, str]:
    module, _, name = dotted.rpartition(".")
    return module, name


def safe_loads(
    data: bytes,
    *,
    trusted: Iterable[str] = (),
    declared_modules: Iterable[str] = (),
) -> Any:
    """Unpickle ``data``, refusing every global :func:`check_pickle` would refuse.

    The same allow-list, enforced by the unpickler itself as it meets each
    global: a refused name raises :class:`UnsafePickle` before anything is
    looked up, let alone called, so the payload of a malicious file never
    runs. Only allowed constructors (numpy's array rebuilders, scikit-learn
    classes) that come earlier in the stream may have run by then, the same
    ones any accepted model runs. On refusal the whole file is scanned so the
    error lists every problem, not just the first. It costs nothing over a
    plain ``pickle.loads`` (a model names a few dozen globals, each checked
    once), where walking every opcode first costs more than the unpickling.

    >>> import collections, pickle
    >>> dict(safe_loads(pickle.dumps(collections.OrderedDict(a=1))))
    {'a': 1}
    >>> safe_loads(b"cos\\nsystem\\n(S'echo hi'\\ntR.")
    Traceback (most recent call last):
    ...
    keel.models.safety.UnsafePickle: ...
    """
    exact, prefixes = _parse_trusted(trusted)
    declared = _parse_declared(declared_modules)
    stream = io.BytesIO(data)
    unpickler = _CheckingUnpickler(stream, exact, prefixes, declared)
    try:
        obj = unpickler.load()
    except _Refused as refused:
        check_pickle(data, trusted=trusted, declared_modules=declared_modules)
        raise UnsafePickle([refused.refusal]) from None  # the scan found nothing more
    except Exception as exc:
        # A broken stream or an unregistered extension code: report what the
        # scan refuses, else the model's own error (a failing __setstate__).
        check_pickle(data, trusted=trusted, declared_modules=declared_modules)
        if isinstance(exc, (pickle.UnpicklingError, EOFError)):
            raise UnsafePickle([Refusal("malformed pickle", str(exc))]) from exc
        raise
    trailing = len(data) - stream.tell()
    if trailing:
        raise UnsafePickle(
            [
                Refusal(
                    "pickle structure",
                    f"{trailing} byte(s) after the STOP opcode, where a second pickle can hide",
                )
            ]
        )
    return obj


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.describe())
        self.refusal = refusal


class _CheckingUnpickler(pickle.Unpickler):
    """The C unpickler, asking the allow-list before it imports any global."""

    def __init__(
        self,
        file: io.BytesIO,
        exact: frozenset[str],
        prefixes: tuple[str, ...],
        declared: tuple[str, ...],
    ) -> None:
        super().__init__(file)
        self._rules = (exact, prefixes, declared)

    def find_class(self, module: str, name: str) -> Any:
        # GLOBAL, STACK_GLOBAL, INST and the EXT codes all come through here,
        # with the names as they are at load time: computed ones included.
        if not isinstance(module, str) or not isinstance(name, str):
            raise _Refused(Refusal("<computed name>", "a global named by a non-string"))
        refusal = _check_ref(GlobalRef(module, name, "", -1), *self._rules)
        if refusal is not None:
            raise _Refused(refusal)
        if (module, name) == ("pyarrow.lib", "_restore_array"):
            return _restore_checked_arrow_array
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused(
            Refusal(
                "pickle structure",
                "a persistent id (PERSID/BINPERSID) that a loader would resolve outside the pickle",
            )
        )


def _restore_checked_arrow_array(state: Any) -> Any:
    """pyarrow's array rebuilder, then a full validation of the array it rebuilt.

    pyarrow trusts the buffers, lengths and offsets a pickle hands it, so a
    crafted one could make later reads run past a buffer. A full validation
    refuses such an array before anything reads it.
    """
    from pyarrow.lib import _restore_array

    array = _restore_array(state)
    try:
        array.validate(full=True)
    except Exception as exc:
        refusal = Refusal("pyarrow.lib._restore_array", f"an Arrow array that is not valid: {exc}")
        raise _Refused(refusal) from None
    return array


def _parse_trusted(trusted: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    if isinstance(trusted, str):
        raise InvalidParameter(f"trusted must be a list of names, not the string {trusted!r}.")
    exact: set[str] = set()
    prefixes: list[str] = []
    for entry in trusted:
        if not isinstance(entry, str) or "." not in entry or not _is_dotted(entry.rstrip(".")):
            raise InvalidParameter(
                f"Invalid trusted entry {entry!r}: use an exact 'module.name' "
                "or a package prefix ending in '.' such as 'mycompany.'."
            )
        if entry.endswith("."):
            prefixes.append(entry)
        else:
            exact.add(entry)
    return frozenset(exact), tuple(prefixes)


def _parse_declared(declared_modules: Iterable[str]) -> tuple[str, ...]:
    if isinstance(declared_modules, str):
        raise InvalidParameter(
            f"declared_modules must be a list of module names, not the string {declared_modules!r}."
        )
    declared = tuple(declared_modules)
    for module in declared:
        if not isinstance(module, str) or not _is_dotted(module):
            raise InvalidParameter(f"Invalid declared module {module!r}: expected 'pkg.module'.")
        top = module.split(".", 1)[0]
        # Declaring is for the caller's own code; the standard library holds
        # Popen, FileHandler and friends.
        if top in _DANGEROUS_MODULES or top in sys.stdlib_module_names or top == "builtins":
            raise InvalidParameter(
                f"Cannot declare {module!r}: declared_modules is for your own model "
                "code, not the standard library."
            )
    return declared


def _is_dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _structural(scan: PickleScan) -> Refusal:
    problems = []
    if scan.persistent_ids:
        problems.append(
            f"{scan.persistent_ids} persistent id(s) (PERSID/BINPERSID) that a loader "
            "would resolve outside the pickle"
        )
    if scan.trailing_bytes:
        problems.append(
            f"{scan.trailing_bytes} byte(s) after the STOP opcode, where a second pickle can hide"
        )
    return Refusal("pickle structure", "; ".join(problems))


def _check_ref(
    ref: GlobalRef,
    exact: frozenset[str],
    prefixes: tuple[str, ...],
    declared: tuple[str, ...],
) -> Refusal | None:
    """None when the unpickler may import ``ref``, else why not."""
    if not ref.resolved:
        what = (
            "an extension-registry code, naming whatever copyreg registered at load time"
            if ref.opcode.startswith("EXT")
            else "a name computed while unpickling"
        )
        return Refusal(
            f"<unresolved {ref.opcode}>",
            f"{what}, so it cannot be checked beforehand",
            opcode=ref.opcode,
            position=ref.position,
        )
    for module, name in _spellings(ref.module, ref.name):
        reason, dangerous = _verdict(module, name, exact, prefixes, declared)
        if reason is not None:
            return Refusal(
                f"{module}.{name}",
                reason,
                opcode=ref.opcode,
                position=ref.position,
                trustable=True,
                dangerous=dangerous,
            )
    return None


def _spellings(module: str, name: str) -> list[tuple[str, str]]:
    """Every ``(module, name)`` the unpickler could import for this global.

    Below protocol 3 the unpickler renames Python 2 names (``__builtin__`` to
    ``builtins``); from protocol 3 on it imports the name as written. Both are
    checked unless the written module does not exist here at all.
    """
    if (module, name) in _compat_pickle.NAME_MAPPING:
        mapped = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        mapped = (_compat_pickle.IMPORT_MAPPING[module], name)
    else:
        return [(module, name)]
    if _installed(module.split(".", 1)[0]):
        return [mapped, (module, name)]
    return [mapped]


@functools.lru_cache(maxsize=256)
def _installed(top: str) -> bool:
    # find_spec on a top-level name searches the path without running the module.
    return _is_dotted(top) and importlib.util.find_spec(top) is not None


def _verdict(
    module: str,
    name: str,
    exact: frozenset[str],
    prefixes: tuple[str, ...],
    declared: tuple[str, ...],
) -> tuple[str | None, bool]:
    """``(reason, dangerous)``; the reason is None when the name is allowed."""
    dotted = f"{module}.{name}"
    if dotted in exact:
        return None, False
    danger = _danger(module, dotted)
    if danger is not None:
        return danger, True
    if dotted in ALLOWED_GLOBALS or dotted.startswith(prefixes):
        return None, False
    root = _root(module, declared)
    if root is None:
        return (
            f"'{module.split('.', 1)[0]}' is not an allowed package "
            f"({', '.join(sorted(ALLOWED_PACKAGES))}) nor a declared module",
            False,
        )
    reason = _class_verdict(module, name, root)
    return reason, reason is not None and reason.startswith(_DENIED)


def _danger(module: str, dotted: str) -> str | None:
    top = module.split(".", 1)[0]
    if top in _DANGEROUS_MODULES:
        return f"module '{top}' {_DANGEROUS_MODULES[top]}"
    if dotted in _DANGEROUS_NAMES:
        return f"{dotted} {_DANGEROUS_NAMES[dotted]}"
    return None


def _root(module: str, declared: tuple[str, ...]) -> str | None:
    """The allowed package or declared module ``module`` lies in, if any."""
    for candidate in declared:
        if module == candidate or module.startswith(candidate + "."):
            return candidate
    top = module.split(".", 1)[0]
    return top if top in ALLOWED_PACKAGES else None


@functools.lru_cache(maxsize=4096)
def _class_verdict(module: str, name: str, root: str) -> str | None:
    """Why ``module.name`` may not be rebuilt, or None for an allowed class.

    Cached per name: a model pickle names the same few classes on every load.
    """
    problem = _path_problem(module, name, root)
    if problem is not None:
        return problem
    try:
        # Only modules inside ``root`` get here: the top-level package was
        # checked first, so an attacker-chosen module is never imported.
        imported = importlib.import_module(module)
    except Exception as exc:
        return f"module '{module}' cannot be imported here ({type(exc).__name__})"
    obj = _lookup(imported, name)
    if obj is _MISSING:
        return f"'{module}' has no attribute '{name}'"
    helper = _PYX_UNPICKLE.fullmatch(name)
    if helper is not None and callable(obj) and not isinstance(obj, type):
        # Cython's generated helper only rebuilds an instance of its own class.
        inner = _class_verdict(module, helper.group(1), root)
        return None if inner is None else f"Cython helper for a refused class: {inner}"
    if _is_ufunc(obj) and root in ("numpy", "scipy"):
        return None  # numpy/scipy ufuncs compute elementwise math and nothing else.
    if not isinstance(obj, type):
        kind = "a function" if callable(obj) else f"a {type(obj).__name__} value"
        return (
            f"{kind}, not a class; outside Keel's allow-list only classes may be "
            "rebuilt, since calling a function can do anything"
        )
    return _class_problem(obj, root)


def _path_problem(module: str, name: str, root: str) -> str | None:
    if not _is_dotted(module) or not _is_dotted(name):
        return "not a valid Python module and attribute name"
    # A declared module itself may be ``__main__``; below it, as in the allowed
    # packages, a dunder part (``pkg.__main__``) would run a script on import.
    below = module.split(".") if root in ALLOWED_PACKAGES else module[len(root) :].split(".")
    for part in below:
        if (root in ALLOWED_PACKAGES and part in _DENIED_PARTS) or _is_dunder(part):
            return f"{_DENIED}'{module}' does I/O, runs code or holds test helpers"
    if any(_is_dunder(part) for part in name.split(".")):
        return "names a special attribute, which can lead to any object"
    return None


def _is_dunder(part: str) -> bool:
    return part.startswith("__") and part.endswith("__")


def _lookup(module: object, name: str) -> object:
    """``module.name`` (dotted) without running descriptors or module ``__getattr__``."""
    first, *rest = name.split(".")
    obj = vars(module).get(first, _MISSING)
    for part in rest:
        if obj is _MISSING:
            break
        obj = inspect.getattr_static(obj, part, _MISSING)
    return obj


def _is_ufunc(obj: object) -> bool:
    kind = type(obj)
    return kind.__name__ == "ufunc" and kind.__module__ == "numpy"


def _class_problem(cls: type, root: str) -> str | None:
    """Why rebuilding ``cls`` could have side effects, or None."""
    home = getattr(cls, "__module__", None)
    if not isinstance(home, str) or not (home == root or home.startswith(root + ".")):
        return f"the class is defined in '{home}', outside '{root}'"
    for base in cls.__mro__:
        modules = [base.__module__, *_constructor_modules(base)]
        for owner in modules:
            top = owner.split(".", 1)[0]
            if top in _DANGEROUS_MODULES:
                what = f"{base.__module__}.{base.__qualname__}"
                return f"{_DENIED}built on {what}, which {_DANGEROUS_MODULES[top]}"
            if top in ALLOWED_PACKAGES and not _DENIED_PARTS.isdisjoint(owner.split(".")):
                return (
                    f"{_DENIED}{base.__qualname__} comes from '{owner}', "
                    "which does I/O or runs code"
                )
        if f"{base.__module__}.{base.__qualname__}" in _DENIED_CLASSES:
            return f"{_DENIED}{base.__qualname__} wraps callables or starts processes"
    return None


def _constructor_modules(cls: type) -> list[str]:
    # Classes relabelled to the package top (``numpy.memmap``) still say where
    # their constructor lives.
    found = []
    for attr in ("__new__", "__init__"):
        func = getattr(vars(cls).get(attr), "__func__", vars(cls).get(attr))
        if inspect.isfunction(func) and isinstance(func.__module__, str):
            found.append(func.__module__)
    return found


_INTROS = {
    "pickle": "Refusing to unpickle: {count} (unpickling can call whatever a pickle names, "
    "so Keel checks every name first):",
    "skops": "Refusing to load the skops file: {count} (loading rebuilds every type the file "
    "names, so Keel checks every name first):",
}


def _message(refusals: tuple[Refusal, ...], source: str = "pickle") -> str:
    names = [r for r in refusals if r.trustable]
    count = f"{len(refusals)} {'problem' if len(refusals) == 1 else 'problems'}"
    lines = [_INTROS.get(source, _INTROS["pickle"]).format(count=count)]
    lines += [f"  - {r.describe()}" for r in refusals]
    lines.append(_advice(refusals, names, source))
    return "\n".join(lines)


def _advice(refusals: tuple[Refusal, ...], names: list[Refusal], source: str = "pickle") -> str:
    if len(names) < len(refusals):
        return (
            "Some of this cannot be checked before loading, so no option allows it: "
            "re-save the model from the original objects."
            if source == "skops"
            else "Some of this cannot be checked before unpickling, so no option allows it: "
            "re-save the model from the original objects with pickle or joblib."
        )
    dangerous = [r.name for r in names if r.dangerous]
    if dangerous:
        return (
            f"{', '.join(dangerous)} can run commands or code or touch files, which no "
            "model needs: treat this file as malicious unless you produced it yourself."
        )
    listed = ", ".join(f'"{r.name}"' for r in names)
    advice = (
        f"If you trust this file and whoever produced it, allow exactly these names with "
        f'trusted=[{listed}] (or a prefix you own, like "mycompany."), or declare the '
        "package holding your own classes with declared_modules=[...]."
    )
    if source == "skops":
        return advice
    return advice + (
        " Prefer a format that cannot run code (skops, ONNX, safetensors) for files from others."
    )
