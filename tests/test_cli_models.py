"""``keel models inspect|doctor|lock`` on real packages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli.main import app

np = pytest.importorskip("numpy")
runner = CliRunner()


@pytest.fixture
def package(tmp_path: Path) -> Path:
    from sklearn.tree import DecisionTreeClassifier

    from keel.models import save

    x = np.random.default_rng(1).normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    return save(DecisionTreeClassifier().fit(x, y), tmp_path / "model", input_example=x[:5])


def test_doctor_passes_here(package: Path) -> None:
    result = runner.invoke(app, ["models", "doctor", str(package)])
    assert result.exit_code == 0, result.output
    assert "would load" in result.output
    for check in ("integrity", "safety", "environment", "golden"):
        assert check in result.output


def test_doctor_predicts_refusal_for_a_target(package: Path, tmp_path: Path) -> None:
    target = tmp_path / "prod.txt"
    target.write_text("scikit-learn==1.3.2\nnumpy==1.24.4\nscipy==1.11.4\n")
    result = runner.invoke(
        app, ["models", "doctor", str(package), "--target", str(target), "--json"]
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    env = next(c for c in report["checks"] if c["name"] == "environment")
    assert not report["ok"] and not env["ok"]
    assert "pip install" in env["detail"] and "scikit-learn==" in env["detail"]


def test_doctor_reports_tampering(package: Path) -> None:
    with (package / "requirements.txt").open("a") as fh:
        fh.write("evil==1.0\n")
    result = runner.invoke(app, ["models", "doctor", str(package)])
    assert result.exit_code == 1
    assert "requirements.txt was changed" in result.output


def test_doctor_bad_input(package: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "doctor", str(tmp_path / "none")])
    assert result.exit_code == 2 and "No model package" in result.output
    unpinned = tmp_path / "loose.txt"
    unpinned.write_text("numpy>=1.24\n")
    result = runner.invoke(app, ["models", "doctor", str(package), "--target", str(unpinned)])
    assert result.exit_code == 2 and "==" in result.output
    result = runner.invoke(app, ["models", "doctor", str(package), "--policy", "lax"])
    assert result.exit_code == 2 and "Unknown policy" in result.output


def test_inspect_and_lock(package: Path) -> None:
    result = runner.invoke(app, ["models", "inspect", str(package), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["flavor"] == "sklearn"
    assert info["model_class"].endswith("DecisionTreeClassifier")
    assert "model.pkl" in info["files"]
    lock = runner.invoke(app, ["models", "lock", str(package)])
    assert lock.exit_code == 0
    lines = [ln for ln in lock.stdout.splitlines() if not ln.startswith("#")]
    assert any(ln.startswith("scikit-learn==") for ln in lines)
    assert all("==" in ln for ln in lines)
