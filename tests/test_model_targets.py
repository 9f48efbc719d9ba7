"""``keel models verify``: the probe, target environments built with uv, the cross-version matrix.

The fast tests run the probe with this interpreter in real subprocesses. The
slow ones build environments with scikit-learn 1.3.2 / numpy 1.24.4 and check
that every package crossing versions either loads and matches, falls back to
ONNX and matches, or is refused: never a silently wrong prediction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keel.cli.main import app
from keel.models.targets import (
    MARKER,
    TargetEnvironmentError,
    VerifyResult,
    build_environment,
    environment_key,
    expected_outcome,
    parse_probe_output,
    read_pins,
    venv_python,
    verify_in,
)

np = pytest.importorskip("numpy")
runner = CliRunner()

OLD_PINS = {
    "scikit-learn": "1.3.2",
    "numpy": "1.24.4",
    "scipy": "1.11.4",
    "joblib": "1.3.2",
    "threadpoolctl": "3.2.0",
}
# The newest ONNX stack that still supports scikit-learn 1.3 and numpy 1.24.
OLD_ONNX_PINS = {
    "skl2onnx": "1.16.0",
    "onnxruntime": "1.16.3",
    "onnx": "1.15.0",
    "protobuf": "4.25.3",
}
SUBPROCESS_TIMEOUT = 240


@pytest.fixture
def package(tmp_path: Path) -> Path:
    from sklearn.tree import DecisionTreeClassifier

    from keel.models import save

    x = np.random.default_rng(1).normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    return save(DecisionTreeClassifier().fit(x, y), tmp_path / "model", input_example=x[:5])


def _probe_here(package: Path, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "keel.models._probe", str(package), *extra],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=True,
    )
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def _claim_locked(package: Path, **versions: str) -> None:
    """Rewrite the lock as if saved elsewhere (keel.json is not in its own checksums)."""
    meta = json.loads((package / "keel.json").read_text())
    meta["environment"]["packages"].update(versions)
    (package / "keel.json").write_text(json.dumps(meta))


# ---------------------------------------------------------------------------
# Fast: the probe with this interpreter


def test_probe_loads_a_good_package(package: Path) -> None:
    data = _probe_here(package)
    assert data["outcome"] == "loads" and data["backend"] == "native"
    assert data["golden_checked"] is True
    assert data["packages"]["scikit-learn"]
    result = verify_in(Path(sys.executable), package)
    assert result.ok and result.predictions_match is True


def test_probe_refuses_a_tampered_package(package: Path) -> None:
    with (package / "model.pkl").open("ab") as fh:
        fh.write(b"\x00")
    data = _probe_here(package)
    assert data["outcome"] == "refused"
    assert "model.pkl was changed" in data["message"]
    assert verify_in(Path(sys.executable), package).outcome == "refused"


def test_probe_falls_back_to_the_twin_when_the_lock_differs(package: Path) -> None:
    pytest.importorskip("onnxruntime")
    _claim_locked(package, **{"scikit-learn": "1.3.2"})
    result = verify_in(Path(sys.executable), package)
    assert result.outcome == "onnx" and result.backend == "onnx", result.message
    assert result.predictions_match is True
    assert "scikit-learn: saved 1.3.2" in result.message


def test_probe_refuses_with_the_fix_without_fallback_possible(package: Path) -> None:
    _claim_locked(package, **{"scikit-learn": "1.3.2"})
    (package / "keel.json").write_text(
        json.dumps(json.loads((package / "keel.json").read_text()) | {"onnx": None})
    )
    result = verify_in(Path(sys.executable), package, "strict")
    assert result.outcome == "refused"
    assert "pip install 'scikit-learn==1.3.2'" in result.message


def test_probe_errors_are_json_never_tracebacks(tmp_path: Path) -> None:
    data = _probe_here(tmp_path / "missing")
    assert data["outcome"] == "error" and "NotFound" in data["message"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "keel.json").write_text("{not json")
    assert _probe_here(tmp_path / "bad")["outcome"] == "refused"
    result = verify_in(tmp_path / "no-python", tmp_path / "bad")
    assert result.outcome == "error" and "Cannot run" in result.message


def test_parse_probe_output() -> None:
    assert parse_probe_output("noise\n", "Traceback: boom", 1).outcome == "error"
    assert "boom" in parse_probe_output("", "Traceback: boom", 1).message
    line = json.dumps({"outcome": "onnx", "backend": "onnx", "message": "m", "golden_checked": 0})
    result = parse_probe_output("printed by a library\n" + line)
    assert result == VerifyResult("onnx", "onnx", "m", None, None, {})
    weird = parse_probe_output(json.dumps({"outcome": "maybe"}))
    assert weird.outcome == "error"


def test_expected_outcome() -> None:
    twin = {"onnx": {"file": "model.onnx", "parity": {"passed": True}}}
    ok = {"integrity": True, "safety": True, "environment": True}
    assert expected_outcome(ok, twin, False) == "loads"
    assert expected_outcome(ok | {"environment": False}, twin, True) == "onnx"
    assert expected_outcome(ok | {"environment": False}, twin, False) == "refused"
    assert expected_outcome(ok | {"environment": False}, {"onnx": None}, True) == "refused"
    assert expected_outcome(ok | {"safety": False}, twin, True) == "refused"


def test_cache_key_and_reuse(tmp_path: Path) -> None:
    pins = read_pins({"NumPy": "1.24.4"})
    assert environment_key(pins, "3.11") == environment_key({"numpy": "1.24.4"}, "3.11")
    assert environment_key(pins, "3.11") != environment_key(pins, "3.12")
    # A finished environment (marker present) is reused without running uv at all.
    venv = tmp_path / environment_key(pins, "3.11")
    venv_python(venv).parent.mkdir(parents=True)
    venv_python(venv).write_text("")
    (venv / MARKER).write_text("{}")
    assert build_environment(pins, "3.11", cache_dir=tmp_path) == venv_python(venv)


def test_build_without_uv_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    if importlib.util.find_spec("uv") is not None:
        pytest.skip("uv is importable here, so it can never be missing")
    monkeypatch.delenv("UV", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TargetEnvironmentError, match="pip install uv"):
        build_environment({"numpy": "1.24.4"}, cache_dir=tmp_path)


def test_verify_bad_input(package: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["models", "verify", str(package), "--target", str(tmp_path / "none.txt")]
    )
    assert result.exit_code == 2 and "No requirements file" in result.output
    loose = tmp_path / "loose.txt"
    loose.write_text("numpy>=1.24\n")
    result = runner.invoke(app, ["models", "verify", str(package), "--target", str(loose)])
    assert result.exit_code == 2 and "==" in result.output


# ---------------------------------------------------------------------------
# Slow: real target environments built with uv


_OFFLINE_HINTS = ("connect", "dns", "network", "took longer", "failed to fetch", "resolve host")


def _build_or_skip(pins: dict[str, str], cache: Path) -> Path:
    """Build with uv; skip (not fail) only when uv or PyPI is unavailable."""
    try:
        return build_environment(pins, cache_dir=cache)
    except TargetEnvironmentError as exc:
        text = exc.message.lower()
        if "pip install uv" in text or any(hint in text for hint in _OFFLINE_HINTS):
            pytest.skip(f"cannot build a target environment here: {exc.message.splitlines()[0]}")
        raise


@pytest.fixture(scope="module")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("envs")


@pytest.mark.slow
def test_verify_a_new_package_in_an_old_target(
    package: Path, tmp_path: Path, env_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_python = _build_or_skip(OLD_PINS, env_cache)
    result = verify_in(old_python, package)
    # Saved under numpy 2: numpy 1.24 cannot read it and the target has no
    # onnxruntime for the twin, so the only right answer is a refusal with the fix.
    assert result.outcome == "refused", result.message
    assert "pip install" in result.message and "numpy==2" in result.message
    assert result.packages["numpy"] == "1.24.4"

    # The CLI predicts the same before loading, reuses the cached environment,
    # and exits 1.
    monkeypatch.setenv("KEEL_ENV_CACHE", str(env_cache))
    target = tmp_path / "prod.txt"
    target.write_text("".join(f"{k}=={v}\n" for k, v in OLD_PINS.items()))
    cli = runner.invoke(app, ["models", "verify", str(package), "--target", str(target), "--json"])
    assert cli.exit_code == 1, cli.output
    report = json.loads(cli.stdout)
    assert report["prediction"]["expected"] == "refused" == report["result"]["outcome"]
    env_check = next(c for c in report["prediction"]["checks"] if c["name"] == "environment")
    assert not env_check["ok"]


_SAVE_SCRIPT = """
import json, sys
import numpy as np
from sklearn.ensemble import (GradientBoostingClassifier, HistGradientBoostingClassifier,
                              RandomForestClassifier)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from keel.models import save

out = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.normal(size=(300, 4))
y = (x[:, 0] + x[:, 1] ** 2 > 0.5).astype(int)
probe = rng.normal(size=(50, 4))
models = {
    "logistic-pipeline": make_pipeline(StandardScaler(), LogisticRegression()),
    "decision-tree": DecisionTreeClassifier(max_depth=5, random_state=0),
    "random-forest": RandomForestClassifier(n_estimators=25, random_state=0),
    "gradient-boosting": GradientBoostingClassifier(n_estimators=30, random_state=0),
    "hist-gradient-boosting": HistGradientBoostingClassifier(max_iter=30, random_state=0),
}
record = {"input": probe.tolist(), "models": {}}
for name, model in models.items():
    model.fit(x, y)
    save(model, f"{out}/{name}", input_example=x[:5], training_data=x)
    record["models"][name] = {
        "predict": model.predict(probe).tolist(),
        "predict_proba": model.predict_proba(probe).tolist(),
    }
with open(f"{out}/predictions.json", "w") as fh:
    json.dump(record, fh)
"""


def _classify(path: Path, recorded: dict[str, Any], probe: Any) -> tuple[str, str]:
    """Load here and say how it ended; a native load with other predictions is 'WRONG'."""
    from keel.models import ModelRefused, load_model
    from keel.models.safety import UnsafePickle

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = load_model(path)
    except (ModelRefused, UnsafePickle) as exc:
        return "refused", str(exc)
    labels_equal = loaded.predict(probe).tolist() == recorded["predict"]
    proba = np.asarray(loaded.predict_proba(probe), dtype=float)
    close = np.allclose(proba, recorded["predict_proba"], rtol=1e-4, atol=1e-5)
    if not (labels_equal and close):
        return "WRONG", f"{loaded.backend} answered differently"
    return loaded.backend if loaded.backend == "onnx" else "loads", ""


# What this project's environment (scikit-learn 1.9, numpy 2.x) does with the
# old packages: the environment check refuses every native pickle (scikit-learn
# 1.3 -> 1.9), and each twin, measured at save time, answers instead. The
# boosting pickles name sklearn internals removed since 1.3; they are never read.
EXPECTED_MATRIX = {
    "logistic-pipeline": "onnx",
    "decision-tree": "onnx",
    "random-forest": "onnx",
    "gradient-boosting": "onnx",
    "hist-gradient-boosting": "onnx",
}


@pytest.mark.slow
def test_cross_version_matrix(tmp_path: Path, env_cache: Path) -> None:
    pytest.importorskip("onnxruntime")
    from keel.models.doctor import diagnose
    from keel.models.package import read_meta

    old_python = _build_or_skip(OLD_PINS | OLD_ONNX_PINS, env_cache)
    out = tmp_path / "saved-by-1.3"
    subprocess.run(
        [str(old_python), "-I", "-c", _SAVE_SCRIPT, str(out)],
        check=True,
        timeout=SUBPROCESS_TIMEOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
    )
    record = json.loads((out / "predictions.json").read_text())
    probe = np.asarray(record["input"])
    observed: dict[str, str] = {}
    for name, recorded in record["models"].items():
        # Predicted before anything is unpickled, then proved by the probe in
        # a subprocess (what `verify --target` runs), then loaded here.
        checks = {c.name: c.ok for c in diagnose(out / name).checks}
        predicted = expected_outcome(checks, read_meta(out / name), True)
        verified = verify_in(Path(sys.executable), out / name)
        outcome, message = _classify(out / name, recorded, probe)
        assert outcome != "WRONG", f"{name}: {message}"
        assert predicted == verified.outcome == outcome, (name, predicted, verified, outcome)
        if outcome == "refused":
            assert "pip install" in message, message
        observed[name] = outcome
    assert observed == EXPECTED_MATRIX
