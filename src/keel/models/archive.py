"""Package archives: a model package packed as one file, and read back as the directory.

``pack`` writes a package directory into a single zip file, by convention
named ``<dir>.keel``. It holds the package's files side by side, exactly as
the directory does (``keel.json``, ``MLmodel``, the model file and the rest),
so ``unzip`` or any zip tool opens it. It gets its own extension, as wheels
(``.whl``) and skops files (``.skops``) do, because it is not *any* zip: a
zip tool that meets ``.zip`` tends to unpack it on download (browsers,
Finder), and a name ending in ``.zip`` invites repacking it by hand with
folders, timestamps and stray files. Keel never trusts the extension anyway:
a package archive is recognised by its bytes, as a zip whose members include
``keel.json`` and ``MLmodel`` at the root.

Packing is deterministic: members in name order, each with the same fixed
timestamp and permissions, deflated at zlib's default level, so the same
package packs to the same bytes (wherever Python links the reference zlib;
zlib-ng may deflate differently, which changes the archive's sha256 but never
what it holds). Only ``keel.json`` and the files it checksums are packed, and
each is checked against its sha256 as it is written: a damaged package is
never packed.

Loading an archive extracts it, once, into a directory named by the
archive's sha256 under ``$KEEL_CACHE_DIR/packages`` (default
``~/.cache/keel/packages``); loading it again reuses that directory, so the
verified cache (:mod:`keel.models.verified`) recognises it as it recognises
any package directory. The archive adds no trust: every check runs on the
extracted directory as on any other. Extraction refuses, before writing a
byte, anything but a flat set of plain, distinct file names (no paths, no
``..``, no symbolic links or directories), more than :data:`MAX_MEMBERS`
members, or more than :func:`max_archive_bytes` in all; sizes are counted
again as the bytes are read, so an archive that lies about them is refused
too. It writes into a private temporary directory that is renamed into
place, so a concurrent loader sees the whole extraction or none of it.

>>> import numpy as np, tempfile
>>> from pathlib import Path
>>> from sklearn.linear_model import LogisticRegression
>>> from keel.models.package import load_model, save_model
>>> x = np.array([[0.0], [1.0], [2.0], [3.0]]); work = Path(tempfile.mkdtemp())
>>> package = save_model(LogisticRegression().fit(x, [0, 0, 1, 1]), work / "m", input_example=x)
>>> archive = pack(package)
>>> archive.name, is_package_archive(archive)
('m.keel', True)
>>> load_model(extract_package(archive, cache_dir=work / "cache")).predict(x).tolist()
[0, 0, 1, 1]
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import stat
import struct
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from keel.errors import InvalidParameter
from keel.models.package import KEEL_FILE, ModelRefused, read_meta
from keel.models.verified import CACHE_DIR_ENV_VAR, cache_root

ARCHIVE_SUFFIX = ".keel"
MAX_BYTES_ENV_VAR = "KEEL_MAX_ARCHIVE_BYTES"
DEFAULT_MAX_BYTES = 4 << 30  # 4 GiB: far above any model Keel packs, far below a full disk
# A package has six or seven files; the bound only needs to stop an archive
# of thousands of tiny members from costing a file each.
MAX_MEMBERS = 64
DESCRIPTOR = "MLmodel"
REQUIRED = (KEEL_FILE, DESCRIPTOR)
_ZIP_MAGIC = b"PK\x03\x04"
# Any fixed time would do; this is the earliest a zip entry can hold (DOS dates
# start in 1980), so it cannot be mistaken for when the package was made.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_MODE = (stat.S_IFREG | 0o644) << 16  # a regular file, rw-r--r--, in the Unix attribute bits
_UNIX = 3  # ZipInfo.create_system: zipfile writes 0 on Windows, which would change the bytes
_DOS_DIRECTORY = 0x10
_ENCRYPTED = 0x1
_CHUNK = 1 << 20
# Plain file names only: what save_model writes, and nothing a file system
# reads as a path, a device or a hidden file.
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# What the zip reader raises on a damaged or crafted archive.
_BROKEN = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, struct.error)


def default_dir() -> Path:
    """``$KEEL_CACHE_DIR/packages``, else ``~/.cache/keel/packages``.

    >>> default_dir().name
    'packages'
    """
    return cache_root() / "packages"


def max_archive_bytes() -> int:
    """The most an archive may extract to: ``$KEEL_MAX_ARCHIVE_BYTES``, else 4 GiB.

    >>> max_archive_bytes() == DEFAULT_MAX_BYTES or "KEEL_MAX_ARCHIVE_BYTES is set"
    True
    """
    raw = os.environ.get(MAX_BYTES_ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise InvalidParameter(
            f"{MAX_BYTES_ENV_VAR}={raw!r} is not a positive number of bytes. Set it to an "
            f"integer such as {DEFAULT_MAX_BYTES} (4 GiB, the default), or unset it."
        )
    return value


def default_archive_path(package_dir: str | os.PathLike[str]) -> Path:
    """Where ``pack`` writes by default: ``<dir>.keel`` beside the directory.

    >>> default_archive_path("out/model").as_posix()
    'out/model.keel'
    """
    root = Path(package_dir)
    if root.name in ("", ".", ".."):
        root = root.resolve()
    return root.with_name(root.name + ARCHIVE_SUFFIX)


def is_package_archive(source: str | os.PathLike[str] | bytes) -> bool:
    """Whether a file (or its bytes) is a package archive: a zip with keel.json and MLmodel.

    Read from the bytes, never the name. A skops file is a zip too, but
    without those members; anything unreadable as a zip is not an archive.

    >>> is_package_archive(b"PK\\x03\\x04 but not a zip"), is_package_archive("/nonexistent")
    (False, False)
    """
    try:
        if isinstance(source, bytes):
            return _has_package_root(io.BytesIO(source))
        with Path(source).open("rb") as fh:
            return _has_package_root(fh)
    except (OSError, ValueError, NotImplementedError, *_BROKEN):
        return False


def _has_package_root(fh: IO[bytes]) -> bool:
    if fh.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
        return False
    fh.seek(0)
    with zipfile.ZipFile(fh) as archive:
        names = set(archive.namelist())
    return all(name in names for name in REQUIRED)


def package_root(path: str | os.PathLike[str]) -> Path:
    """The directory to read a package from: ``path`` itself, or an archive's extraction.

    >>> package_root("out/model").as_posix()
    'out/model'
    """
    source = Path(path)
    if source.is_file() and is_package_archive(source):
        return extract_package(source)
    return source


# ---------------------------------------------------------------------------
# Packing


def pack(
    package_dir: str | os.PathLike[str],
    archive_path: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Pack a package directory into one archive file (default ``<dir>.keel``); return its path.

    Refuses a directory that is not a Keel package and a package that fails
    its integrity check (nothing is written then). Only ``keel.json`` and the
    files it checksums are packed. The archive is written to a temporary file
    beside ``archive_path`` and renamed into place, so no reader ever sees
    half of it; an existing ``archive_path`` is replaced only with
    ``overwrite``. The same package always packs to the same bytes.

    >>> pack("/nonexistent/model")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keel.errors.NotFound: No model package at /nonexistent/model ...
    """
    root = Path(package_dir)
    if root.is_file() and is_package_archive(root):
        raise InvalidParameter(
            f"{root} is already a package archive: pack the package directory instead. "
            "keel.models.load reads the archive as it is."
        )
    meta = read_meta(root)  # NotFound or ModelRefused for anything but a Keel package
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelRefused(
            f"{root / KEEL_FILE} lists no file checksums: the package is damaged, so it was "
            "not packed. Save the package again."
        )
    names = sorted({*files, KEEL_FILE})
    problems = [f"{name!r} is {why}" for name in names if (why := _name_problem(str(name)))]
    if problems:
        raise ModelRefused(
            f"The package at {root} names files an archive cannot hold: {'; '.join(problems)}. "
            "Save the package again with keel.models.save, which names its files plainly."
        )
    if DESCRIPTOR not in files:
        raise ModelRefused(
            f"{root / KEEL_FILE} does not list {DESCRIPTOR}: the package is damaged, so it was "
            "not packed. Save the package again."
        )
    target = Path(archive_path) if archive_path is not None else default_archive_path(root)
    if target.is_dir():
        raise InvalidParameter(f"Cannot pack to {target}: it is a directory. Name a file.")
    if target.exists() and not overwrite:
        raise InvalidParameter(
            f"Cannot pack to {target}: it already exists. Choose another path, or replace it "
            "with overwrite=True (keel models pack --force)."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target, so the rename stays on one file system and is atomic;
    # opened with "x" so the archive gets the usual permissions (mkstemp's are 0600).
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with staging.open("xb") as fh:
            with zipfile.ZipFile(fh, "w") as archive:
                damaged = [
                    problem
                    for name in names
                    if (problem := _add_member(archive, root, name, files.get(name)))
                ]
            fh.flush()
            os.fsync(fh.fileno())
        if damaged:
            raise ModelRefused(
                f"The package at {root} failed its integrity check: {'; '.join(damaged)}. "
                "Nothing was packed. Do not use it; save or download the package again."
            )
        staging.replace(target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return target


def _add_member(archive: zipfile.ZipFile, root: Path, name: str, expected: object) -> str | None:
    """Write one file into the archive, hashing the very bytes written; what is wrong, if any.

    Hashing while writing (not in a pass before) means a file changed in
    between cannot slip into the archive unchecked, and each file is read once.
    """
    path = root / name
    if not path.is_file():
        return f"{name} is missing"
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = _MODE
    info.create_system = _UNIX
    # zipfile decides from this whether the member needs zip64 headers; it
    # counts the real size itself as it writes.
    info.file_size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as src, archive.open(info, "w") as dst:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
    if expected is not None and digest.hexdigest() != expected:
        return f"{name} was changed after the package was saved"
    return None


# ---------------------------------------------------------------------------
# Extracting


def extract_package(
    archive: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    max_bytes: int | None = None,
) -> Path:
    """Extract a package archive into the cache (once) and return the package directory.

    The directory is ``<cache_dir>/<sha256 of the archive>`` (``cache_dir``
    defaults to :func:`default_dir`); an extraction already there is reused
    when it still holds the archive's files at their sizes, and replaced
    otherwise. ``max_bytes`` (default :func:`max_archive_bytes`) caps what
    the archive may extract to. ModelRefused, with nothing left behind, for
    an archive that is damaged, unsafe or too large. Nothing is checked
    against keel.json here: loading the directory does that.

    >>> extract_package("/nonexistent.keel")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keel.models.package.ModelRefused: /nonexistent.keel cannot be read ...
    """
    source = Path(archive)
    limit = max_bytes if max_bytes is not None else max_archive_bytes()
    cache = Path(cache_dir) if cache_dir is not None else default_dir()
    try:
        fh = source.open("rb")
    except OSError as exc:
        raise ModelRefused(f"{source} cannot be read ({exc}). Check the path.") from exc
    # One open file for the hash and the extraction: a file renamed over the
    # archive in between cannot be extracted under the old one's digest.
    with fh:
        digest = hashlib.sha256()
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
        fh.seek(0)
        try:
            zf = zipfile.ZipFile(fh)
        except (*_BROKEN, ValueError, NotImplementedError) as exc:
            raise _damaged(source, exc) from exc
        with zf:
            members = _checked_members(source, zf.infolist(), limit)
            dest = cache / digest.hexdigest()
            if _holds(dest, members):
                return dest
            try:
                _extract(source, zf, members, cache, dest, limit)
            except OSError as exc:
                raise InvalidParameter(
                    f"Cannot extract {source} into {cache} ({exc}). Free space there, or set "
                    f"{CACHE_DIR_ENV_VAR} to a writable directory with room for the package."
                ) from exc
    return dest


def _checked_members(
    source: Path, members: Sequence[zipfile.ZipInfo], max_bytes: int
) -> list[zipfile.ZipInfo]:
    """The archive's members if it may be extracted; else ModelRefused naming every problem.

    Judged from the central directory alone, before anything is written.
    """
    if len(members) > MAX_MEMBERS:
        raise ModelRefused(
            f"{source} holds {len(members)} members; a package archive holds a few files "
            f"(at most {MAX_MEMBERS}), so nothing was extracted. Do not use this file; pack "
            "the package again from its directory with keel models pack."
        )
    problems = []
    seen: dict[str, str] = {}
    for info in members:
        why = _member_problem(info)
        if why:
            problems.append(f"member {info.orig_filename!r} is {why}")
            continue
        # Folded: model.pkl and MODEL.PKL are one file on macOS and Windows.
        key = info.filename.casefold()
        if key in seen:
            other = seen[key]
            same = "" if other == info.filename else f" (as {other!r}, ignoring case)"
            problems.append(f"member {info.filename!r} appears twice{same}")
            continue
        seen[key] = info.filename
    if problems:
        listed = "; ".join(problems[:10])
        if len(problems) > 10:
            listed += f"; and {len(problems) - 10} more"
        raise ModelRefused(
            f"{source} is not a safe package archive, so nothing was extracted: {listed}. "
            "An archive written by keel models pack holds only distinct, plain file names. Do "
            "not use this file; pack the package again from its directory."
        )
    missing = [name for name in REQUIRED if name not in seen.values()]
    if missing:
        raise ModelRefused(
            f"{source} is not a Keel package archive: it has no {' or '.join(missing)} at its "
            "root. Pack a package directory with keel models pack."
        )
    declared = sum(info.file_size for info in members)
    if declared > max_bytes:
        raise ModelRefused(_too_large(source, _size(declared), max_bytes))
    return list(members)


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a member may not be extracted, or None."""
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if info.is_dir() or stat.S_ISDIR(mode) or info.external_attr & _DOS_DIRECTORY:
        return "a directory"
    # Many writers (Python's zipfile among them) store permission bits without
    # a file type: no type is a regular file; any other type is refused.
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        return f"a special file (mode {mode:#o})"
    # The name as stored: zipfile cuts a name at a NUL byte, which would hide it.
    why = _name_problem(info.orig_filename)
    if why:
        return why
    if info.flag_bits & _ENCRYPTED:
        return "encrypted"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return (
            f"compressed with zip method {info.compress_type}; package archives use only "
            "stored and deflated members"
        )
    return None


def _name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain file name a package may hold, or None.

    >>> _name_problem("model.pkl") is None, _name_problem("../x"), _name_problem("a/b")
    (True, "a path leaving the directory ('..')", 'a path into a subdirectory (a package is flat)')
    """
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    parts = re.split(r"[/\\]", name)
    if ".." in parts:
        return "a path leaving the directory ('..')"
    if len(parts) > 1:
        return "a path into a subdirectory (a package is flat)"
    if not _PLAIN.fullmatch(name):
        return (
            "not a plain file name (letters, digits, '.', '_' and '-', not starting with '.', "
            "at most 128 characters)"
        )
    return None


def _extract(
    source: Path,
    zf: zipfile.ZipFile,
    members: Sequence[zipfile.ZipInfo],
    cache: Path,
    dest: Path,
    max_bytes: int,
) -> None:
    """Extract into a private temporary directory, then rename it to ``dest`` in one step.

    ``dest`` is replaced only once it is seen to be stale *after* the rename
    failed: discarding it beforehand could remove the good extraction another
    loader renamed into place meanwhile, and is reading.
    """
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache))
    try:
        total = 0
        for info in members:
            total += _copy_member(source, zf, info, staging / info.filename, total, max_bytes)
        for last in (False, True):
            try:
                staging.rename(dest)
                return
            except OSError:
                if _holds(dest, members):
                    # Another loader renamed its (identical) extraction into place first.
                    shutil.rmtree(staging, ignore_errors=True)
                    return
                if last:
                    raise
                _discard(dest)  # cut short by a crash or a person: replace it
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _copy_member(
    source: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, total: int, limit: int
) -> int:
    """Copy one member, counting its bytes against its declared size and the cap; the count."""
    written = 0
    try:
        # "x": the staging directory is fresh, so an existing file can only be a
        # duplicate the name checks missed; never write through it.
        with zf.open(info) as src, target.open("xb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                # zipfile stops at the declared size; counted here as well, so
                # the cap holds whatever the reader does.
                if written > info.file_size:
                    raise ModelRefused(
                        f"{source} is damaged or crafted: member {info.filename!r} holds more "
                        f"than the {info.file_size} bytes it declares, so nothing was extracted. "
                        "Do not use this file."
                    )
                if total + written > limit:
                    raise ModelRefused(_too_large(source, None, limit))
                dst.write(chunk)
    except (*_BROKEN, ValueError, NotImplementedError) as exc:
        raise _damaged(source, exc) from exc
    if written != info.file_size:
        raise ModelRefused(
            f"{source} is damaged or crafted: member {info.filename!r} declares {info.file_size} "
            f"bytes but holds {written}, so nothing was extracted. Do not use this file."
        )
    return written


def _holds(dest: Path, members: Sequence[zipfile.ZipInfo]) -> bool:
    """Whether ``dest`` is a finished extraction of ``members``: the same names and sizes.

    A cheap check, enough to catch an extraction a crash or a person cut
    short; changed contents are for the integrity check to find.
    """
    expected: Mapping[str, int] = {info.filename: info.file_size for info in members}
    found: dict[str, int] = {}
    try:
        if dest.is_symlink() or not dest.is_dir():
            return False
        with os.scandir(dest) as entries:
            for entry in entries:
                if not entry.is_file(follow_symlinks=False):
                    return False
                found[entry.name] = entry.stat(follow_symlinks=False).st_size
    except OSError:
        return False
    return found == expected


def _discard(path: Path) -> None:
    """Remove a stale extraction: renamed aside first, so no loader reads it half-deleted."""
    if not os.path.lexists(path):
        return
    aside = path.with_name(f".stale-{uuid.uuid4().hex}")
    try:
        path.rename(aside)
    except FileNotFoundError:
        return  # another loader moved it first
    if aside.is_symlink() or not aside.is_dir():
        aside.unlink(missing_ok=True)
    else:
        shutil.rmtree(aside, ignore_errors=True)


def _damaged(source: Path, exc: BaseException) -> ModelRefused:
    return ModelRefused(
        f"{source} is not a readable zip archive ({type(exc).__name__}: {exc}), so nothing was "
        "extracted. It is damaged or crafted: do not use it; pack or download it again."
    )


def _too_large(source: Path, declared: str | None, limit: int) -> str:
    """The refusal of an archive over the cap: what it declares, or that it holds more."""
    what = f"would extract to {declared}" if declared else "extracts to more than it declares"
    return (
        f"{source} {what}, over the limit of {_size(limit)}, so nothing was extracted. A model "
        "package is rarely that large: this may be a zip bomb. If you trust the archive, raise "
        f"the limit with {MAX_BYTES_ENV_VAR}=<bytes>."
    )


def _size(n: int) -> str:
    """``4 GiB (4294967296 bytes)``: readable, and exact for whoever sets the limit.

    >>> _size(4 << 30), _size(1536)
    ('4 GiB (4294967296 bytes)', '1.5 KiB (1536 bytes)')
    """
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    if unit == "bytes":
        return f"{n} bytes"
    return f"{value:.3g} {unit} ({n} bytes)"
