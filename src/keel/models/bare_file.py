"""Bare model files: a pickle, joblib or skops file that is not a Keel package.

``keel.models.load("model.joblib")`` (or ``.pkl``, ``.skops``) loads such a
file through the allow-list and the tree bounds check. Nothing else can be
checked: a bare file has no checksums (integrity), no record of the versions
it was saved with (environment) and no golden sample (outputs), and
``LoadedModel.warnings`` says so. The format is read from the bytes, not the
file name:

* a zip archive is a skops file (:mod:`keel.models.skops_format`), unless it
  is a package archive (:mod:`keel.models.archive`), which is refused here:
  ``load_model`` extracts those and loads them as packages;
* joblib's compressors start with their magic bytes (zlib, gzip, bz2, xz,
  lzma, lz4); the stream inside is decompressed by joblib's own file objects;
* otherwise a pickle stream naming ``joblib.numpy_pickle.NumpyArrayWrapper``
  is an uncompressed joblib file, any other one a plain pickle.

A plain pickle goes through :func:`keel.models.safety.safe_loads`. A joblib
file cannot be scanned before loading: joblib writes each numpy array's raw
bytes into the middle of the pickle stream, which no opcode reader can step
over. So its names are checked only as the unpickler meets them, by a
subclass of joblib's own ``NumpyUnpickler`` asking the same allow-list in
``find_class``; the first refused name stops it, before it is imported, and
is the one reported. Object arrays, which joblib stores as a pickle nested in
the stream, are read through the same checks (joblib before 1.6 read them
with a bare ``pickle.load``).

>>> import pickle, tempfile
>>> from pathlib import Path
>>> from sklearn.dummy import DummyClassifier
>>> path = Path(tempfile.mkdtemp()) / "model.pkl"
>>> _ = path.write_bytes(pickle.dumps(DummyClassifier().fit([[0]], [1])))
>>> m = load_bare_file(path)
>>> m.predict([[5]]).tolist(), detect_format(path.read_bytes()).describe()
([1], 'pickle file')
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import io
import lzma
import pickle
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from keel.errors import InvalidParameter, require
from keel.models.archive import is_package_archive
from keel.models.environment import POLICIES
from keel.models.package import LoadedModel, ModelRefused, refuse_corrupt_trees
from keel.models.pickle_refs import scan_pickle
from keel.models.safety import Refusal, UnsafePickle, check_names, safe_loads
from keel.models.skops_format import ZIP_MAGIC
from keel.models.skops_format import loads as skops_loads

# joblib's compressors, by the magic bytes that start their files (joblib.compressor).
# bz2 is matched on its full header ("BZh"), not joblib's "BZ", which a crafted
# raw pickle could also start with.
_COMPRESSED: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\x78", "zlib"),
    (b"BZh", "bz2"),
    (b"\xfd\x37\x7a\x58\x5a", "xz"),
    (b"\x5d\x00", "lzma"),
    (b"\x04\x22\x4d\x18", "lz4"),
)
_JOBLIB_COMPAT = b"ZF"  # joblib < 0.9.3's "Z-file" format
_ARRAY_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_OLD_WRAPPERS = frozenset({"NDArrayWrapper", "ZNDArrayWrapper"})
_PROTO = b"\x80"  # every pickle of protocol 2 or later starts with PROTO
# What a damaged stream or compressed block raises (gzip and bz2 raise OSError,
# joblib a ValueError for a short array).
_BROKEN = (pickle.UnpicklingError, EOFError, OSError, ValueError, zlib.error, lzma.LZMAError)


@dataclass(frozen=True, slots=True)
class BareFormat:
    """What a bare file holds: ``kind`` (pickle, joblib, skops) and joblib's compression."""

    kind: str
    compression: str | None = None

    def describe(self) -> str:
        """``"joblib file (zlib-compressed)"`` and the like.

        >>> BareFormat("joblib", "zlib").describe()
        'joblib file (zlib-compressed)'
        """
        suffix = f" ({self.compression}-compressed)" if self.compression else ""
        return f"{self.kind} file{suffix}"


def detect_format(data: bytes, where: object = "The file") -> BareFormat:
    """The format of a bare model file, from its first bytes; ModelRefused when unknown.

    >>> detect_format(b"\\x80\\x05N.").kind, detect_format(b"x\\x9c...").compression
    ('pickle', 'zlib')
    """
    if data.startswith(ZIP_MAGIC):
        if is_package_archive(data):
            raise ModelRefused(
                f"{where} is a Keel package archive, not a bare skops file: load it with "
                "keel.models.load, which extracts it and runs every package check."
            )
        return BareFormat("skops")
    if data.startswith(_JOBLIB_COMPAT):
        raise ModelRefused(
            f"{where} was written by joblib before 0.9.3 (its 'ZF' format), which Keel does "
            "not read. Load it with that joblib where you trust it and save it again with "
            "keel.models.save."
        )
    for magic, compression in _COMPRESSED:
        if data.startswith(magic):
            return BareFormat("joblib", compression)
    # Arrays make joblib write this class into the stream; without arrays a
    # joblib file is a plain pickle and loads as one.
    if b"NumpyArrayWrapper" in data:
        return BareFormat("joblib")
    if not data.startswith(_PROTO) and not _old_pickle(data):
        raise ModelRefused(
            f"{where} is not a pickle, joblib or skops file (it starts with {data[:8]!r}). "
            "keel.models.load reads those, and package directories."
        )
    return BareFormat("pickle")


def _old_pickle(data: bytes) -> bool:
    """Whether ``data`` parses as a protocol 0/1 pickle (whose first byte proves little)."""
    try:
        scan_pickle(data)
    except InvalidParameter:
        return False
    return True


def load_bare_file(
    path: str | Path,
    *,
    policy: str = "compatible",
    trusted: Iterable[str] = (),
) -> LoadedModel:
    """Load a bare pickle, joblib or skops file through the allow-list and tree check.

    ``trusted`` means what it means for packages. ``policy="strict"``
    refuses any bare file: there is no lock to prove the versions match.
    The result's ``warnings`` list what could not be verified.

    >>> load_bare_file("/nonexistent.pkl")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keel.models.package.ModelRefused: /nonexistent.pkl cannot be read ...
    """
    path = Path(path)
    if policy not in POLICIES:
        raise InvalidParameter(
            f"Unknown environment policy {policy!r}. Use one of: {', '.join(POLICIES)}."
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelRefused(f"{path} cannot be read ({exc}). Check the path.") from exc
    fmt = detect_format(data, path)
    if policy == "strict":
        raise ModelRefused(
            f"{path} is a bare {fmt.describe()}: it records no versions, so the strict policy "
            "cannot be met. Load it with policy='compatible' (it then loads with warnings), "
            "or save it as a package with keel.models.save where it loads correctly."
        )
    trusted = list(trusted)
    if fmt.kind == "skops":
        model = skops_loads(data, trusted=trusted)
    elif fmt.kind == "joblib":
        model = load_joblib(data, fmt.compression, trusted=trusted)
    else:
        model = safe_loads(data, trusted=trusted)
    flavor = _flavor(path, fmt, model)
    refuse_corrupt_trees(path, model)
    loaded = LoadedModel(model=model, path=path, flavor=flavor)
    loaded.warnings.append(
        f"{path.name} is a bare {fmt.describe()}, not a Keel package: its integrity (no "
        "checksums), environment (no lock of the versions it was saved with) and outputs (no "
        "golden sample) could not be verified; only the allow-list and the tree check ran."
    )
    loaded.warnings.append(
        "To get every check, save it as a package where it answers correctly: "
        "keel.models.save(loaded.model, 'out/model', input_example=X[:20])."
    )
    return loaded


def not_a_package(path: Path) -> str:
    """What ``keel models inspect/doctor`` say about a bare file instead of a traceback.

    >>> print(not_a_package(Path("/nonexistent.joblib")))  # doctest: +ELLIPSIS
    /nonexistent.joblib is a file, not a model package: ...
    """
    if is_package_archive(path):
        return (
            f"{path} is a Keel package archive, not a package directory: keel.models.load and "
            "`keel models inspect/doctor/lock/verify` read it as they read the directory, and "
            "keel.models.archive.extract_package(path) returns the directory it extracts to."
        )
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 16)
        what = detect_format(head, path).describe()
    except (OSError, ModelRefused):
        what = "file Keel cannot identify"
    else:
        what = "joblib file" if what == "pickle file" and b"joblib" in head else what
    return (
        f"{path} is a file, not a model package: a bare {what} has no checksums, no "
        "environment lock and no golden sample for doctor to check, and doctor never "
        "unpickles anything. keel.models.load(path) loads it through the allow-list and "
        "the tree check, with warnings. To get every check, load it once where it answers "
        "correctly and save it as a package: keel.models.save(model, 'out/model', "
        "input_example=X[:20])."
    )


def _flavor(path: Path, fmt: BareFormat, model: Any) -> str:
    module = type(model).__module__
    if module == "sklearn" or module.startswith("sklearn."):
        return "sklearn"
    if callable(getattr(model, "predict", None)):
        return "python_function"
    raise ModelRefused(
        f"{path} is a {fmt.describe()} holding a {type(model).__name__}, which has no predict "
        "method: keel.models.load loads models. Save the model itself (not a container "
        "around it) to load it here."
    )


# ---------------------------------------------------------------------------
# joblib


def load_joblib(data: bytes, compression: str | None, *, trusted: Iterable[str] = ()) -> Any:
    """Unpickle a joblib file's stream, asking the allow-list before every global.

    Raises :class:`~keel.models.safety.UnsafePickle` for the first refused name
    (a joblib file cannot be scanned beforehand, so later ones are not listed).

    >>> import io, joblib
    >>> buffer = io.BytesIO(); joblib.dump({"w": [1.0]}, buffer, compress=3)
    >>> load_joblib(buffer.getvalue(), "zlib")
    {'w': [1.0]}
    """
    require("joblib", "sklearn", "Loading a joblib file")
    trusted = list(trusted)
    stream = _decompressed(io.BytesIO(data), compression)
    unpickler = _unpickler_class()(stream, functools.partial(_check, trusted=trusted))
    try:
        obj = unpickler.load()
    except _BROKEN as exc:
        raise UnsafePickle(
            [Refusal("malformed joblib file", f"{type(exc).__name__}: {exc}")]
        ) from exc
    if stream.read(1):
        raise UnsafePickle(
            [
                Refusal(
                    "pickle structure",
                    "bytes after the pickle's STOP opcode, where a second pickle can hide",
                )
            ]
        )
    return obj


def _decompressed(raw: IO[bytes], compression: str | None) -> IO[bytes]:
    """joblib's own decompressing file object for ``compression`` (or ``raw`` itself)."""
    if compression is None:
        return raw
    from joblib.compressor import _COMPRESSORS

    if compression == "lz4" and importlib.util.find_spec("lz4") is None:
        raise ModelRefused(
            "The joblib file is lz4-compressed, which needs the 'lz4' package: pip install "
            "lz4. Or re-save it with joblib's default compression (compress=3, zlib)."
        )
    wrapper = _COMPRESSORS.get(compression)
    if wrapper is None:
        raise ModelRefused(
            f"The joblib file is {compression}-compressed, which this joblib cannot "
            "decompress. Re-save it with compress=3 (zlib) or upgrade joblib."
        )
    return io.BufferedReader(wrapper.decompressor_file(raw))


def _check(module: str, name: str, *, trusted: list[str]) -> None:
    """The allow-list's verdict on one global; UnsafePickle when refused."""
    if module.startswith("joblib.") and name in _OLD_WRAPPERS:
        raise UnsafePickle(
            [
                Refusal(
                    f"{module}.{name}",
                    "joblib < 0.10's array wrapper, which reads arrays from companion files "
                    "next to the pickle; load it with that joblib where you trust it and "
                    "save it again",
                )
            ]
        )
    check_names([(module, name)], trusted=trusted)


@functools.cache
def _unpickler_class() -> type[Any]:
    """joblib's NumpyUnpickler with Keel's allow-list in ``find_class`` (built once)."""
    from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler

    takes_byte_order = "ensure_native_byte_order" in inspect.signature(NumpyUnpickler).parameters
    read_takes_byte_order = (
        "ensure_native_byte_order" in inspect.signature(NumpyArrayWrapper.read).parameters
    )

    class CheckingNumpyUnpickler(NumpyUnpickler):  # type: ignore[misc]
        """Every global through the allow-list; arrays read as joblib reads them."""

        dispatch = NumpyUnpickler.dispatch.copy()

        def __init__(self, stream: IO[bytes], check: Callable[[str, str], None]) -> None:
            if takes_byte_order:
                super().__init__("", stream, ensure_native_byte_order=True)
            else:  # pragma: no cover - joblib before 1.5
                super().__init__("", stream)
            self._check = check

        def find_class(self, module: str, name: str) -> Any:
            if not isinstance(module, str) or not isinstance(name, str):
                raise UnsafePickle([Refusal("<computed name>", "a global named by a non-string")])
            if (module, name) == _ARRAY_WRAPPER:
                # joblib's placeholder for an array: load_build below replaces it with
                # the array read from the stream (never memory-mapped, never a file).
                return NumpyArrayWrapper
            self._check(module, name)
            return super().find_class(module, name)

        def persistent_load(self, pid: Any) -> Any:
            raise UnsafePickle(
                [
                    Refusal(
                        "pickle structure",
                        "a persistent id (PERSID/BINPERSID) that a loader would resolve "
                        "outside the pickle",
                    )
                ]
            )

        def get_extension(self, code: int) -> None:
            # The Python unpickler returns a code resolved earlier in this process
            # from copyreg's cache without asking find_class: refuse them all, as
            # the static pickle check does.
            raise UnsafePickle(
                [
                    Refusal(
                        f"<extension code {code}>",
                        "an extension-registry code, naming whatever copyreg registered at "
                        "load time, so it cannot be checked beforehand",
                    )
                ]
            )

        def load_build(self) -> None:
            pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
            wrapper = self.stack[-1]
            if type(wrapper) is not NumpyArrayWrapper:
                return
            dtype = getattr(wrapper, "dtype", None)
            if not isinstance(dtype, self.np.dtype):
                raise UnsafePickle(
                    [Refusal("malformed joblib file", "an array wrapper without a numpy dtype")]
                )
            self.stack.pop()
            if dtype.hasobject:
                array = self._nested_pickle()
            elif read_takes_byte_order:
                array = wrapper.read(self, self.ensure_native_byte_order)
            else:  # pragma: no cover - joblib before 1.5
                array = wrapper.read(self)
            self.stack.append(array)

        dispatch[pickle.BUILD[0]] = load_build

        def _nested_pickle(self) -> Any:
            # joblib writes an object array as a whole pickle inside the stream;
            # read it with the same checks, whatever this joblib version would do.
            inner = pickle._Unpickler(self.file_handle)
            inner.find_class = self.find_class  # type: ignore[method-assign]
            inner.persistent_load = self.persistent_load  # type: ignore[method-assign]
            inner.get_extension = self.get_extension  # type: ignore[attr-defined]
            return inner.load()

    return CheckingNumpyUnpickler
