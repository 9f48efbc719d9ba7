"""The environment a model was saved in, and whether another one can load it.

A pickled model is only as portable as the packages that unpickle it: a
RandomForest saved under scikit-learn 1.3 loads under 1.9 with a mere warning
and returns wrong probabilities, gradient boosting pickles fail outright across
minors, and a numpy-2 pickle cannot load under numpy 1.x at all (it references
``numpy._core``). So a package records the exact versions it was saved with
(:func:`capture_environment`) and the loader predicts the outcome before
unpickling (:func:`check_environment`), either here or for a *target*
environment described by a pinned requirements file (:func:`parse_requirements`).

>>> lock = EnvironmentLock("3.11.7", "CPython", "linux-x86_64", {"scikit-learn": "1.3.2"})
>>> report = check_environment(lock, installed={"scikit-learn": "1.4.0"}, python="3.11.7")
>>> report.ok, report.install_command
(False, "pip install 'scikit-learn==1.3.2'")
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import re
import shlex
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from keel.errors import InvalidParameter

Severity = Literal["error", "warning"]
POLICIES = ("strict", "compatible", "warn")

# Distributions whose pickles carry another package's objects: scikit-learn
# estimators hold numpy arrays and scipy sparse matrices, so those versions
# decide whether the state unpickles even though the pickle may name only sklearn.
_COMPANIONS: dict[str, tuple[str, ...]] = {"scikit-learn": ("numpy", "scipy")}

# Modules every pickle may reference that no distribution provides.
_NOT_DISTRIBUTED = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)


def canonical_name(name: str) -> str:
    """A distribution name normalized as PEP 503 does: lower case, runs of ``-_.`` → ``-``.

    >>> canonical_name("Scikit_Learn")
    'scikit-learn'
    """
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------------------
# Capture


@dataclass(frozen=True)
class EnvironmentLock:
    """The interpreter and exact distribution versions a model was saved with.

    ``packages`` maps canonical distribution names to versions;
    ``unresolved_modules`` are modules the model references that no installed
    distribution provided (local code, ``__main__``): they must be importable
    wherever the model loads, and no lock can promise that.
    """

    python: str
    implementation: str
    platform: str
    packages: dict[str, str] = field(default_factory=dict)
    unresolved_modules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Canonical, sorted keys make locks comparable and their files stable in diffs.
        packages = sorted((canonical_name(k), v) for k, v in self.packages.items())
        object.__setattr__(self, "packages", dict(packages))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back.

        >>> lock = EnvironmentLock("3.11.7", "CPython", "linux-x86_64", {"numpy": "1.24.4"})
        >>> lock.to_dict()["packages"]
        {'numpy': '1.24.4'}
        """
        return {
            "python": self.python,
            "implementation": self.implementation,
            "platform": self.platform,
            "packages": dict(self.packages),
            "unresolved_modules": list(self.unresolved_modules),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvironmentLock:
        """Rebuild a lock from :meth:`to_dict` output; InvalidParameter names a bad field.

        >>> EnvironmentLock.from_dict({"python": "3.11.7", "packages": {"numpy": "2.0.1"}}).packages
        {'numpy': '2.0.1'}
        """
        python = _field_str(data, "python")
        packages = data.get("packages", {})
        if not isinstance(packages, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in packages.items()
        ):
            raise InvalidParameter(
                f"Environment lock field 'packages' must map names to version strings, "
                f"got {packages!r}. Re-save the model to write a valid lock."
            )
        unresolved = data.get("unresolved_modules", [])
        if not isinstance(unresolved, list | tuple) or not all(
            isinstance(m, str) for m in unresolved
        ):
            raise InvalidParameter(
                f"Environment lock field 'unresolved_modules' must be a list of module names, "
                f"got {unresolved!r}. Re-save the model to write a valid lock."
            )
        return cls(
            python=python,
            implementation=str(data.get("implementation", "")),
            platform=str(data.get("platform", "")),
            packages=dict(packages),
            unresolved_modules=tuple(unresolved),
        )

    def requirements_txt(self) -> str:
        """The pinned requirements, one ``name==version`` a line.

        >>> print(EnvironmentLock("3.11.7", "CPython", "", {"numpy": "1.24.4"}).requirements_txt())
        numpy==1.24.4
        <BLANKLINE>
        """
        return "".join(f"{name}=={version}\n" for name, version in self.packages.items())

    def python_env_yaml(self) -> str:
        """MLflow's ``python_env.yaml``: the interpreter plus ``-r requirements.txt``.

        >>> print(EnvironmentLock("3.11.7", "CPython", "").python_env_yaml().splitlines()[0])
        python: "3.11.7"
        """
        return (
            f'python: "{self.python}"\n'
            "build_dependencies:\n"
            "  - pip\n"
            "dependencies:\n"
            "  - -r requirements.txt\n"
        )


def _field_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidParameter(
            f"Environment lock field '{key}' must be a non-empty string, got {value!r}. "
            "Re-save the model to write a valid lock."
        )
    return value


def capture_environment(
    modules: Iterable[str], extra_distributions: Iterable[str] = ()
) -> EnvironmentLock:
    """Lock the running interpreter and the distributions providing ``modules``.

    ``modules`` are the (top-level or dotted) modules a pickle references, e.g.
    ``PickleScan.modules``; standard-library modules need no lock. Add the
    serializer's own distribution (``joblib``, ``cloudpickle``...) via
    ``extra_distributions``; it must be installed.

    >>> capture_environment(["collections", "pickle"]).packages
    {}
    """
    providers = importlib.metadata.packages_distributions()
    wanted: list[str] = []
    unresolved: list[str] = []
    for module in dict.fromkeys(m.split(".", 1)[0] for m in modules):
        if module in _NOT_DISTRIBUTED:
            continue
        found = _distributions_of(module, providers)
        wanted.extend(found)
        if not found:
            unresolved.append(module)
    packages = {name: v for name in _with_companions(wanted) if (v := _version(name)) is not None}
    for extra in extra_distributions:
        version = _version(extra)
        if version is None:
            raise InvalidParameter(
                f"Distribution '{extra}' is not installed, so its version cannot be locked. "
                f"Install it (pip install '{extra}') or leave it out of extra_distributions."
            )
        packages[canonical_name(extra)] = version
    return EnvironmentLock(
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        platform=f"{sys.platform}-{platform.machine().lower()}",
        packages=packages,
        unresolved_modules=tuple(unresolved),
    )


def _distributions_of(module: str, providers: Mapping[str, list[str]]) -> list[str]:
    if module in providers:
        return [canonical_name(d) for d in providers[module]]
    # Editable installs (``pip install -e``) list no files, so packages_distributions
    # misses them; accept a same-named installed distribution if the module exists.
    if _version(module) is not None and importlib.util.find_spec(module) is not None:
        return [canonical_name(module)]
    return []


def _with_companions(names: Iterable[str]) -> list[str]:
    ordered = list(dict.fromkeys(names))
    for name in list(ordered):
        ordered.extend(c for c in _COMPANIONS.get(name, ()) if c not in ordered)
    return ordered


def _version(distribution: str) -> str | None:
    """The installed version, cached until an import-path directory changes.

    Installing, upgrading or removing a distribution adds or removes its
    ``.dist-info`` directory, which changes the modification time of the
    directory on ``sys.path`` holding it; importlib's own finders invalidate
    their caches on the same signal. A metadata lookup walks every path entry
    and costs about a millisecond; a model load asks for a few of them.
    """
    global _versions_key
    key = _import_path_state()
    if key != _versions_key:
        _versions.clear()
        _versions_key = key
    if distribution not in _versions:
        try:
            _versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            _versions[distribution] = None
    return _versions[distribution]


_versions: dict[str, str | None] = {}
_versions_key: tuple[tuple[str, int], ...] = ()


def _import_path_state() -> tuple[tuple[str, int], ...]:
    state = []
    for entry in sys.path:
        try:
            state.append((entry, Path(entry or ".").stat().st_mtime_ns))
        except OSError:
            state.append((entry, -1))
    return tuple(state)


# ---------------------------------------------------------------------------
# Versions


@dataclass(frozen=True)
class _Version:
    """A PEP 440 version reduced to what the rules compare: epoch, release, the rest."""

    epoch: int
    release: tuple[int, ...]
    rest: str

    @classmethod
    def parse(cls, text: str) -> _Version | None:
        match = re.fullmatch(r"v?(?:(\d+)!)?(\d+(?:\.\d+)*)(.*)", text.strip().lower())
        if match is None:
            return None
        epoch, release, rest = match.groups()
        return cls(
            epoch=int(epoch or 0),
            release=tuple(int(p) for p in release.split(".")),
            # Separators inside pre/post/dev/local tags are not significant (1.0-rc1 == 1.0rc1).
            rest=re.sub(r"[-_.]", "", rest),
        )

    def head(self, parts: int) -> tuple[int, ...]:
        """Epoch plus the first ``parts`` release numbers (1 = major, 2 = major.minor)."""
        padded = self.release + (0,) * parts
        return (self.epoch, *padded[:parts])

    @property
    def major(self) -> int:
        return self.release[0]

    def same_as(self, other: _Version) -> bool:
        """Equal as PEP 440 compares them (roughly): ``1.3`` is ``1.3.0``."""
        parts = max(len(self.release), len(other.release))
        return self.head(parts) == other.head(parts) and self.rest == other.rest


# ---------------------------------------------------------------------------
# Rules

Predicate = Callable[[_Version, _Version], bool]  # (saved, installed) → applies?


def _differs(parts: int) -> Predicate:
    """Installed and saved differ within the first ``parts`` release numbers."""
    return lambda saved, inst: saved.head(parts) != inst.head(parts)


def _older(parts: int) -> Predicate:
    """Installed is older than saved, comparing the first ``parts`` release numbers."""
    return lambda saved, inst: inst.head(parts) < saved.head(parts)


def _crosses_down(major: int) -> Predicate:
    """Saved at or above ``major``, installed below it."""
    return lambda saved, inst: saved.major >= major > inst.major


def _crosses_up(major: int) -> Predicate:
    """Saved below ``major``, installed at or above it."""
    return lambda saved, inst: saved.major < major <= inst.major


def _any_difference(saved: _Version, inst: _Version) -> bool:
    return not saved.same_as(inst)


@dataclass(frozen=True)
class _Case:
    """One row of a package's rules: when it applies, how bad it is, and why."""

    when: Predicate
    severity: Severity
    why: str


# The ``compatible`` policy. For each package the first matching case decides;
# no match means the difference does not matter. Add xgboost, lightgbm... here.
_RULES: dict[str, tuple[_Case, ...]] = {
    "scikit-learn": (
        _Case(
            _differs(2),
            "error",
            "scikit-learn pickles are not compatible across minor versions: estimators' "
            "internal state changes, so a model may load with only a warning and predict "
            "wrongly (a RandomForest's probabilities) or fail to load (gradient boosting).",
        ),
        _Case(
            _any_difference,
            "warning",
            "scikit-learn warns (InconsistentVersionWarning) about any version difference; "
            "patch releases keep the pickled state, so this is expected to load and predict "
            "the same.",
        ),
    ),
    "numpy": (
        _Case(
            _crosses_down(2),
            "error",
            "saved under numpy 2, whose pickles reference numpy._core; numpy 1.x has no "
            "numpy._core, so the model cannot be loaded.",
        ),
        _Case(
            _older(2),
            "error",
            "the installed numpy is older than the saved one; arrays and the compiled "
            "packages saved alongside are only guaranteed to work with the same or a newer "
            "numpy.",
        ),
        _Case(
            _crosses_up(2),
            "warning",
            "saved under numpy 1.x; numpy 2 still reads its pickles through the numpy.core "
            "alias, but type promotion changed (NEP 50), so check the predictions.",
        ),
        _Case(
            _differs(1),
            "error",
            "a different numpy major version may not read the saved arrays.",
        ),
    ),
    "scipy": (
        _Case(
            _differs(1),
            "error",
            "scipy objects inside the model (sparse matrices, distributions) are only kept "
            "compatible within a major version.",
        ),
    ),
}
_DEFAULT_RULE = (
    _Case(
        _differs(1),
        "error",
        "a different major version may change or remove the classes the model references.",
    ),
    _Case(
        _differs(2),
        "warning",
        "a different minor version usually loads, but the classes the model references "
        "may have changed.",
    ),
)
_PYTHON_RULE = (
    _Case(
        _differs(1),
        "error",
        "a different Python major version cannot load the model or its compiled packages.",
    ),
    _Case(
        _differs(2),
        "warning",
        "pickles usually load across Python minor versions, but that is not guaranteed and "
        "compiled packages are built per minor version.",
    ),
)
_MISSING_WHY = "the model needs it and it is not installed, so loading fails."
_UNPARSED_WHY = "the versions cannot be compared; only the saved version is known to work."
_STRICT_WHY = "the strict policy requires the exact saved version."
_STRICT_PYTHON_WHY = "the strict policy requires the saved Python major.minor version."


# ---------------------------------------------------------------------------
# Compare


@dataclass(frozen=True)
class Mismatch:
    """One package (or ``python``) whose installed version differs from the saved one."""

    package: str
    saved: str
    installed: str | None
    severity: Severity
    why: str
    fix: str

    def describe(self) -> str:
        """One line: severity, package, both versions, and why it matters.

        >>> Mismatch("numpy", "1.24.4", None, "error", "needed.", "pip install ...").describe()
        'error    numpy: saved 1.24.4, installed: missing. needed.'
        """
        installed = self.installed if self.installed is not None else "missing"
        versions = f"saved {self.saved}, installed: {installed}"
        return f"{self.severity:<8} {self.package}: {versions}. {self.why}"


@dataclass(frozen=True)
class EnvironmentReport:
    """The outcome of :func:`check_environment`: mismatches, worst first."""

    policy: str
    mismatches: tuple[Mismatch, ...] = ()
    checked: int = 0
    unresolved_modules: tuple[str, ...] = ()

    @property
    def errors(self) -> tuple[Mismatch, ...]:
        return tuple(m for m in self.mismatches if m.severity == "error")

    @property
    def warnings(self) -> tuple[Mismatch, ...]:
        return tuple(m for m in self.mismatches if m.severity == "warning")

    @property
    def ok(self) -> bool:
        """True when the model may be loaded: no errors, or the ``warn`` policy."""
        return self.policy == "warn" or not self.errors

    @property
    def install_command(self) -> str | None:
        """One ``pip install`` pinning every package with an error, or None if there is none."""
        pins = [f"{m.package}=={m.saved}" for m in self.errors if m.package != "python"]
        return "pip install " + " ".join(_quote(p) for p in pins) if pins else None

    def message(self) -> str:
        """Every mismatch on its own line, then what to run to fix the errors.

        >>> print(EnvironmentReport("compatible", checked=2).message())
        Environment matches the saved one (policy: compatible, 2 packages checked).
        """
        if not self.mismatches:
            lines = [
                f"Environment matches the saved one (policy: {self.policy}, "
                f"{self.checked} packages checked)."
            ]
        else:
            lines = [
                f"Environment differs from the saved one (policy: {self.policy}): "
                f"{_count(len(self.errors), 'error')}, {_count(len(self.warnings), 'warning')}."
            ]
            lines += [f"  {m.describe()}" for m in self.mismatches]
        if self.unresolved_modules:
            lines.append(
                "Modules no distribution provided when the model was saved (make sure they "
                f"import here): {', '.join(self.unresolved_modules)}."
            )
        lines += self._fix_lines()
        return "\n".join(lines)

    def _fix_lines(self) -> list[str]:
        lines: list[str] = []
        python = next((m for m in self.errors if m.package == "python"), None)
        if python is not None:
            lines.append(f"Fix: {python.fix}.")
        if self.install_command:
            lines.append(f"Fix the package errors with:\n  {self.install_command}")
        if self.errors and self.policy == "warn":
            lines.append("The warn policy lets loading proceed despite these errors.")
        return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _quote(spec: str) -> str:
    # Always quoted so shells never read ``<``, ``>`` or ``[extra]``; shlex for anything odd.
    return f"'{spec}'" if re.fullmatch(r"[\w.+!=-]+", spec) else shlex.quote(spec)


def installed_versions(lock: EnvironmentLock) -> dict[str, str | None]:
    """The installed version of each locked package (None: not installed).

    Only the locked packages: reading every installed distribution's metadata
    would cost more than the rest of a model load.
    """
    return {name: _version(name) for name in lock.packages}


def check_environment(
    lock: EnvironmentLock,
    policy: str = "compatible",
    installed: Mapping[str, str | None] | None = None,
    python: str | None = None,
) -> EnvironmentReport:
    """Compare a lock with an environment: the running one, or ``installed``/``python`` given.

    Policies: ``strict`` (every package exact, Python major.minor exact),
    ``compatible`` (differences known to break a model are errors, those that
    may are warnings) and ``warn`` (as compatible, but ``ok`` stays True).

    >>> lock = EnvironmentLock("3.11.7", "CPython", "linux-x86_64", {"numpy": "1.24.4"})
    >>> check_environment(lock, installed={"numpy": "1.26.4"}, python="3.11.2").ok
    True
    >>> check_environment(lock, "strict", installed={"numpy": "1.26.4"}, python="3.11.2").ok
    False
    """
    if policy not in POLICIES:
        raise InvalidParameter(
            f"Unknown environment policy {policy!r}. Use one of: {', '.join(POLICIES)}."
        )
    if installed is None:
        installed = installed_versions(lock)
    installed = {canonical_name(k): v for k, v in installed.items() if v is not None}
    strict = policy == "strict"
    found = [_check_python(lock.python, python or platform.python_version(), strict)]
    for name, saved in lock.packages.items():
        found.append(_check_package(name, saved, installed.get(name), strict))
    mismatches = [m for m in found if m is not None]
    # Stable sort: errors first; within each, python, then packages by name.
    mismatches.sort(key=lambda m: m.severity != "error")
    return EnvironmentReport(
        policy=policy,
        mismatches=tuple(mismatches),
        checked=len(lock.packages),
        unresolved_modules=lock.unresolved_modules,
    )


def _check_package(name: str, saved: str, installed: str | None, strict: bool) -> Mismatch | None:
    fix = f"pip install {_quote(f'{name}=={saved}')}"
    if installed is None:
        return Mismatch(name, saved, None, "error", _MISSING_WHY, fix)
    verdict = _judge(_RULES.get(name, _DEFAULT_RULE), saved, installed)
    if strict and not _same_version(saved, installed):
        why = verdict.why if verdict else _STRICT_WHY
        return Mismatch(name, saved, installed, "error", why, fix)
    if verdict is None:
        return None
    return Mismatch(name, saved, installed, verdict.severity, verdict.why, fix)


def _check_python(saved: str, installed: str, strict: bool) -> Mismatch | None:
    minor = ".".join(saved.split(".")[:2])
    fix = f"run under Python {minor} (the model was saved with {saved})"
    verdict = _judge(_PYTHON_RULE, saved, installed)
    if strict and verdict is not None:
        return Mismatch("python", saved, installed, "error", _STRICT_PYTHON_WHY, fix)
    if verdict is None:
        return None
    return Mismatch("python", saved, installed, verdict.severity, verdict.why, fix)


def _judge(rule: tuple[_Case, ...], saved: str, installed: str) -> _Case | None:
    saved_v, installed_v = _Version.parse(saved), _Version.parse(installed)
    if saved_v is None or installed_v is None:
        if saved.strip() == installed.strip():
            return None
        return _Case(_any_difference, "error", _UNPARSED_WHY)
    return next((case for case in rule if case.when(saved_v, installed_v)), None)


def _same_version(saved: str, installed: str) -> bool:
    saved_v, installed_v = _Version.parse(saved), _Version.parse(installed)
    if saved_v is None or installed_v is None:
        return saved.strip() == installed.strip()
    return saved_v.same_as(installed_v)


# ---------------------------------------------------------------------------
# Targets

_PIN = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
    r"(?:\[[^\]]*\])?\s*"
    r"===?\s*(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)"
)
# pip options that say where to download from, not which version: irrelevant to a prediction.
_IGNORED_OPTIONS = (
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--trusted-host",
    "--pre",
    "--prefer-binary",
    "--no-binary",
    "--only-binary",
)


def parse_requirements(text: str) -> dict[str, str]:
    """Read a pinned requirements file (``pip freeze`` output) into canonical name → version.

    Comments, blank lines, extras, ``--hash`` options and environment markers
    are ignored; a requirement not pinned with ``==`` raises InvalidParameter
    naming its line, since its version would be unknown.

    >>> parse_requirements("Scikit_Learn[all]==1.3.2  # model\\nnumpy==1.24.4; os_name!='nt'")
    {'scikit-learn': '1.3.2', 'numpy': '1.24.4'}
    """
    pins: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in _logical_lines(text):
        pin = _parse_line(number, line)
        if pin is None:
            continue
        name, version = pin
        if name in pins and pins[name] != version:
            raise InvalidParameter(
                f"Requirements pin {name} twice: =={pins[name]} on line {lines[name]} and "
                f"=={version} on line {number}. Keep one pin per package."
            )
        pins[name], lines[name] = version, number
    return pins


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Lines with comments removed and ``\\`` continuations joined, with their first line number."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        # pip's rule: '#' starts a comment at the line start or after whitespace.
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending.append(line.rstrip()[:-1])
            continue
        pending.append(line)
        yield start, " ".join(pending).strip()
        pending = []
    if pending:
        yield start, " ".join(pending).strip()


def _parse_line(number: int, line: str) -> tuple[str, str] | None:
    line = re.sub(r"\s--hash[=\s]\S+", "", f" {line}").strip()
    if not line:
        return None
    if line.startswith("-"):
        option = re.split(r"[=\s]", line, maxsplit=1)[0]
        if option in _IGNORED_OPTIONS:
            return None
        raise InvalidParameter(
            f"Requirements line {number} uses the option {option!r}, which cannot be read "
            f"without pip: {line!r}. List every package pinned with ==, e.g. from `pip freeze`."
        )
    requirement = line.split(";", 1)[0].strip()
    match = _PIN.fullmatch(requirement)
    if match is None:
        raise InvalidParameter(
            f"Requirements line {number} is not pinned to one version: {line!r}. "
            "Pin it with ==, e.g. from `pip freeze`."
        )
    return canonical_name(match["name"]), match["version"]
