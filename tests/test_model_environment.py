"""A model's environment lock: captured from the real interpreter, compared by policy."""

from __future__ import annotations

import importlib.metadata
import json
import pickle
import platform
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from keel.errors import InvalidParameter
from keel.models.environment import (
    EnvironmentLock,
    EnvironmentReport,
    canonical_name,
    capture_environment,
    check_environment,
    parse_requirements,
)
from keel.models.pickle_refs import scan_pickle

PY = "3.11.7"


def lock_of(**packages: str) -> EnvironmentLock:
    return EnvironmentLock(PY, "CPython", "linux-x86_64", dict(packages))


def check(saved: dict[str, str], installed: dict[str, str], policy: str) -> EnvironmentReport:
    return check_environment(
        EnvironmentLock(PY, "CPython", "linux-x86_64", saved), policy, installed, python=PY
    )


# ---------------------------------------------------------------------------
# Capture


def test_capture_maps_modules_to_installed_distributions() -> None:
    pytest.importorskip("sklearn")
    lock = capture_environment(["sklearn", "numpy", "collections", "sklearn.ensemble._forest"])
    assert lock.packages == {
        name: importlib.metadata.version(name) for name in ("scikit-learn", "numpy", "scipy")
    }
    assert lock.unresolved_modules == ()
    assert lock.python == platform.python_version()
    assert lock.implementation == platform.python_implementation()
    assert lock.platform == f"{sys.platform}-{platform.machine().lower()}"


def test_capture_of_a_real_pickle_locks_sklearn_and_its_array_packages() -> None:
    np = pytest.importorskip("numpy")
    from sklearn.linear_model import LogisticRegression

    x = np.arange(20.0).reshape(10, 2)
    model = LogisticRegression().fit(x, [0, 1] * 5)
    lock = capture_environment(scan_pickle(pickle.dumps(model)).modules)
    assert {"scikit-learn", "numpy", "scipy"} <= lock.packages.keys()


def test_stdlib_needs_no_lock_and_unknown_modules_are_reported() -> None:
    lock = capture_environment(["collections", "builtins", "_codecs", "copyreg", "os.path"])
    assert lock.packages == {}
    assert lock.unresolved_modules == ()
    lock = capture_environment(["__main__", "no_such_module_xyz", "no_such_module_xyz.sub"])
    assert lock.packages == {}
    assert lock.unresolved_modules == ("__main__", "no_such_module_xyz")


def test_editable_install_is_found_by_its_distribution_name() -> None:
    # keel is installed in development mode, which packages_distributions() does not see.
    assert capture_environment(["keel.entities"]).packages == {
        "keel": importlib.metadata.version("keel")
    }


def test_extra_distributions_are_locked_and_must_be_installed() -> None:
    pytest.importorskip("joblib")
    lock = capture_environment([], extra_distributions=["Joblib"])
    assert lock.packages == {"joblib": importlib.metadata.version("joblib")}
    with pytest.raises(InvalidParameter, match="'no-such-dist-xyz' is not installed"):
        capture_environment([], extra_distributions=["no-such-dist-xyz"])


def test_the_running_environment_matches_its_own_capture_strictly() -> None:
    pytest.importorskip("sklearn")
    report = check_environment(capture_environment(["sklearn"]), "strict")
    assert report.ok and report.mismatches == ()
    assert "matches" in report.message()


# ---------------------------------------------------------------------------
# Files


def test_lock_round_trips_through_json() -> None:
    lock = EnvironmentLock(
        PY, "CPython", "linux-x86_64", {"Scikit_Learn": "1.3.2", "numpy": "1.24.4"}, ("mylib",)
    )
    assert lock.packages == {"numpy": "1.24.4", "scikit-learn": "1.3.2"}
    assert EnvironmentLock.from_dict(json.loads(json.dumps(lock.to_dict()))) == lock


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "python"),
        ({"python": 3.11}, "python"),
        ({"python": PY, "packages": ["numpy"]}, "packages"),
        ({"python": PY, "packages": {"numpy": 1}}, "packages"),
        ({"python": PY, "unresolved_modules": "mylib"}, "unresolved_modules"),
    ],
)
def test_from_dict_names_the_bad_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidParameter, match=f"field '{field}'"):
        EnvironmentLock.from_dict(data)


def test_requirements_txt_and_python_env_yaml() -> None:
    lock = lock_of(numpy="1.24.4", **{"scikit-learn": "1.3.2"})
    assert lock.requirements_txt() == "numpy==1.24.4\nscikit-learn==1.3.2\n"
    assert parse_requirements(lock.requirements_txt()) == lock.packages
    env = yaml.safe_load(lock.python_env_yaml())
    assert env == {
        "python": PY,
        "build_dependencies": ["pip"],
        "dependencies": ["-r requirements.txt"],
    }
    assert 'python: "3.11.7"' in lock.python_env_yaml()


# ---------------------------------------------------------------------------
# Compare: each rule under each policy

SK_MINOR = ({"scikit-learn": "1.3.2"}, {"scikit-learn": "1.4.0"})
SK_PATCH = ({"scikit-learn": "1.3.2"}, {"scikit-learn": "1.3.1"})
NP_2_TO_1 = ({"numpy": "2.0.1"}, {"numpy": "1.24.4"})
NP_NEWER_MINOR = ({"numpy": "1.24.4"}, {"numpy": "1.26.4"})
NP_OLDER_MINOR = ({"numpy": "1.26.4"}, {"numpy": "1.24.4"})
NP_1_TO_2 = ({"numpy": "1.24.4"}, {"numpy": "2.0.1"})
NP_PATCH = ({"numpy": "1.26.4"}, {"numpy": "1.26.0"})
SCIPY_MINOR = ({"scipy": "1.11.4"}, {"scipy": "1.9.0"})
SCIPY_MAJOR = ({"scipy": "1.11.4"}, {"scipy": "2.0.0"})
OTHER_MAJOR = ({"joblib": "1.3.2"}, {"joblib": "2.0.0"})
OTHER_MINOR = ({"joblib": "1.3.2"}, {"joblib": "1.4.0"})
OTHER_PATCH = ({"joblib": "1.3.2"}, {"joblib": "1.3.0"})
MISSING: tuple[dict[str, str], dict[str, str]] = ({"joblib": "1.3.2"}, {})
SAME_BUT_SPELLED = ({"joblib": "1.3"}, {"Joblib": "1.3.0"})


@pytest.mark.parametrize(
    ("case", "compatible", "strict"),
    [
        (SK_MINOR, "error", "error"),
        (SK_PATCH, "warning", "error"),
        (NP_2_TO_1, "error", "error"),
        (NP_NEWER_MINOR, None, "error"),
        (NP_OLDER_MINOR, "error", "error"),
        (NP_1_TO_2, "warning", "error"),
        (NP_PATCH, None, "error"),
        (SCIPY_MINOR, None, "error"),
        (SCIPY_MAJOR, "error", "error"),
        (OTHER_MAJOR, "error", "error"),
        (OTHER_MINOR, "warning", "error"),
        (OTHER_PATCH, None, "error"),
        (MISSING, "error", "error"),
        (SAME_BUT_SPELLED, None, None),
    ],
)
def test_rules_by_policy(
    case: tuple[dict[str, str], dict[str, str]], compatible: str | None, strict: str | None
) -> None:
    saved, installed = case
    for policy, expected in (("compatible", compatible), ("strict", strict), ("warn", compatible)):
        report = check(saved, installed, policy)
        assert [m.severity for m in report.mismatches] == ([expected] if expected else [])
        assert report.ok == (policy == "warn" or expected != "error")


def test_sklearn_minor_difference_names_the_exact_fix() -> None:
    report = check(*SK_MINOR, "compatible")
    (mismatch,) = report.mismatches
    assert (mismatch.package, mismatch.saved, mismatch.installed) == (
        "scikit-learn",
        "1.3.2",
        "1.4.0",
    )
    assert "not compatible across minor versions" in mismatch.why
    assert mismatch.fix == "pip install 'scikit-learn==1.3.2'"
    assert report.install_command == "pip install 'scikit-learn==1.3.2'"


def test_numpy_2_pickle_under_numpy_1_names_numpy_core() -> None:
    (mismatch,) = check(*NP_2_TO_1, "compatible").mismatches
    assert "numpy._core" in mismatch.why
    assert mismatch.fix == "pip install 'numpy==2.0.1'"


def test_missing_package_reports_none_installed() -> None:
    (mismatch,) = check(*MISSING, "compatible").mismatches
    assert mismatch.installed is None
    assert "not installed" in mismatch.why


def test_strict_keeps_the_rule_reason_when_there_is_one() -> None:
    (patch,) = check(*NP_PATCH, "strict").mismatches
    assert "strict policy" in patch.why
    (minor,) = check(*SK_MINOR, "strict").mismatches
    assert "minor versions" in minor.why


def test_unparseable_versions_must_match_exactly() -> None:
    assert check({"mylib": "abc"}, {"mylib": "abc"}, "compatible").ok
    (mismatch,) = check({"mylib": "abc"}, {"mylib": "def"}, "compatible").mismatches
    assert mismatch.severity == "error" and "cannot be compared" in mismatch.why


@pytest.mark.parametrize(
    ("installed", "compatible", "strict"),
    [
        ("3.11.2", None, None),
        ("3.12.1", "warning", "error"),
        ("3.10.0", "warning", "error"),
        ("4.0.0", "error", "error"),
    ],
)
def test_python_version_rules(installed: str, compatible: str | None, strict: str | None) -> None:
    for policy, expected in (("compatible", compatible), ("strict", strict), ("warn", compatible)):
        report = check_environment(lock_of(), policy, installed={}, python=installed)
        assert [m.severity for m in report.mismatches] == ([expected] if expected else [])
        assert report.ok == (policy == "warn" or expected != "error")
        if expected:
            assert report.mismatches[0].package == "python"
            assert report.install_command is None  # pip cannot install an interpreter


def test_message_lists_every_package_and_one_install_command() -> None:
    saved = {"scikit-learn": "1.3.2", "numpy": "2.0.1", "joblib": "1.3.2", "scipy": "1.11.4"}
    installed = {"scikit-learn": "1.4.0", "numpy": "1.24.4", "joblib": "1.4.0", "scipy": "1.11.4"}
    report = check_environment(
        EnvironmentLock("3.10.12", "CPython", "linux-x86_64", saved), "compatible", installed, PY
    )
    text = report.message()
    assert [m.package for m in report.mismatches] == ["numpy", "scikit-learn", "python", "joblib"]
    assert "2 errors, 2 warnings" in text
    for package, was, now in [
        ("scikit-learn", "1.3.2", "1.4.0"),
        ("numpy", "2.0.1", "1.24.4"),
        ("joblib", "1.3.2", "1.4.0"),
        ("python", "3.10.12", PY),
    ]:
        assert f"{package}: saved {was}, installed: {now}." in text
    assert "scipy" not in text
    assert text.splitlines()[-1] == "  pip install 'numpy==2.0.1' 'scikit-learn==1.3.2'"


def test_message_of_python_error_says_which_python() -> None:
    report = check_environment(lock_of(), installed={}, python="4.0.0")
    assert "run under Python 3.11" in report.message()


def test_warn_policy_reports_errors_but_stays_ok() -> None:
    report = check(*SK_MINOR, "warn")
    assert report.ok and len(report.errors) == 1
    assert "warn policy lets loading proceed" in report.message()


def test_unresolved_modules_are_mentioned() -> None:
    lock = EnvironmentLock(PY, "CPython", "linux-x86_64", {}, ("mylib",))
    report = check_environment(lock, installed={}, python=PY)
    assert report.ok and "mylib" in report.message()


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(InvalidParameter, match="Unknown environment policy 'lenient'"):
        check_environment(lock_of(), "lenient", installed={}, python=PY)


# ---------------------------------------------------------------------------
# Targets


def test_parse_requirements_reads_pip_freeze_style_files() -> None:
    text = """
# production image
--index-url https://pypi.example/simple
Scikit_Learn[alldeps]==1.3.2   # the model
numpy == 1.24.4 ; python_version >= "3.9" \\
    --hash=sha256:abc123
zope.interface==6.1
torch==2.1.0+cpu
numpy==1.24.4
"""
    assert parse_requirements(text) == {
        "scikit-learn": "1.3.2",
        "numpy": "1.24.4",
        "zope-interface": "6.1",
        "torch": "2.1.0+cpu",
    }
    assert parse_requirements("") == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("numpy>=1.24", "line 1 is not pinned"),
        ("\nnumpy", "line 2 is not pinned"),
        ("numpy~=1.24.0", "not pinned"),
        ("numpy==1.24.*", "not pinned"),
        ("numpy==1.24,<2", "not pinned"),
        ("numpy @ https://example.com/numpy.whl", "not pinned"),
        ("-r base.txt", "option '-r'"),
        ("-e git+https://example.com/repo#egg=x", "option '-e'"),
        ("numpy==1.24.4\nNumPy==1.26.4", "numpy twice"),
    ],
)
def test_parse_requirements_refuses_what_it_cannot_pin(text: str, problem: str) -> None:
    with pytest.raises(InvalidParameter, match=problem) as info:
        parse_requirements(text)
    assert "==" in str(info.value)


CANONICAL_NAMES = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True).filter(
    lambda name: name == canonical_name(name)
)
VERSIONS = st.lists(st.integers(0, 300), min_size=1, max_size=4).map(
    lambda parts: ".".join(map(str, parts))
)
SUFFIXES = st.sampled_from(
    ["", "  # pinned", " ; python_version >= '3.8'", " \\\n  --hash=sha256:00"]
)


@st.composite
def spelled(draw: st.DrawFn, name: str) -> str:
    """The same distribution as people write it: any case, ``_`` or ``.`` for ``-``, extras."""
    chars = [draw(st.sampled_from(["-", "_", "."])) if c == "-" else c for c in name]
    chars = [c.upper() if draw(st.booleans()) else c for c in chars]
    return "".join(chars) + draw(st.sampled_from(["", "[extra]", "[a,b] "]))


@given(pins=st.dictionaries(CANONICAL_NAMES, VERSIONS, max_size=8), data=st.data())
def test_parse_requirements_round_trip(pins: dict[str, str], data: st.DataObject) -> None:
    lines = ["# rendered"]
    for name, version in pins.items():
        suffix = data.draw(SUFFIXES)
        lines.append(f"{data.draw(spelled(name))}=={version}{suffix}")
        lines.extend([""] * data.draw(st.integers(0, 1)))
    assert parse_requirements("\n".join(lines)) == pins
    lock = EnvironmentLock(PY, "CPython", "linux-x86_64", pins)
    assert parse_requirements(lock.requirements_txt()) == pins


def test_installed_versions_follow_installs_and_upgrades(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Versions are cached per process; a new .dist-info directory must show.
    from keel.models.environment import _version

    def install(version: str) -> None:
        for old in tmp_path.glob("keel_probe_dist-*.dist-info"):
            shutil.rmtree(old)
        info = tmp_path / f"keel_probe_dist-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: keel-probe-dist\nVersion: {version}\n"
        )

    monkeypatch.syspath_prepend(str(tmp_path))
    assert _version("keel-probe-dist") is None
    install("1.0")
    assert _version("keel-probe-dist") == "1.0"
    install("2.0")
    assert _version("keel-probe-dist") == "2.0"
    shutil.rmtree(next(tmp_path.glob("keel_probe_dist-*.dist-info")))
    assert _version("keel-probe-dist") is None
