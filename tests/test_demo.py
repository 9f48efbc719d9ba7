"""``keel demo`` and ``keel.demo.run_demo`` end to end on real SQLite files.

The demo verifies its best model with real uv: the slow test builds the
environment from the package's own lock (in a cache shared by this session)
and loads the package there; the CLI test runs uv offline with an empty cache,
so the build fails and the demo must explain it and carry on.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import keel
import keel.data
from keel.cli.demo import render_summary
from keel.cli.main import app
from keel.demo import (
    EXPERIMENT_NAME,
    PARENT_RUN_NAME,
    PROMOTION_ALIAS,
    PROMOTION_GATES,
    REGISTERED_MODEL_NAME,
    SHIFTED_COLUMNS,
    DemoResult,
    Verification,
    candidates,
    run_demo,
)
from keel.entities import PARENT_RUN_ID_TAG, RunStatus
from keel.models.targets import CACHE_ENV_VAR, cached_environment, current_python, read_pins
from keel.tracking.client import (
    DRIFT_COLUMNS_TAG,
    MONITOR_COLUMNS_TAG,
    MONITOR_STATUS_TAG,
    VALIDATION_STATUS_TAG,
)
from keel.uris import resolve_tracking_uri

pytest.importorskip("sklearn")

# As in test_model_targets: a missing uv or PyPI skips the real build, nothing else does.
_OFFLINE_HINTS = ("connect", "dns", "network", "took longer", "failed to fetch", "resolve host")


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One environment cache for the session: the demo's lock is built once."""
    return tmp_path_factory.mktemp("envs")


def _summary(result: DemoResult) -> str:
    buffer = io.StringIO()
    render_summary(result, Console(file=buffer, width=400))
    return buffer.getvalue()


def test_demo_command_quick(tracking: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # uv offline with an empty cache cannot build the verify environment (nor can
    # a machine without uv): the demo must say why in one line and carry on.
    monkeypatch.setenv(CACHE_ENV_VAR, str(tracking / "envs"))
    monkeypatch.setenv("UV_CACHE_DIR", str(tracking / "uv-cache"))
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("UV_NO_CONFIG", "1")  # no find-links from a uv.toml
    db = tracking / "demo.db"
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["demo", "--quick", "--tracking-uri", str(db)], prog_name="keel"
    )
    assert result.exit_code == 0, result.output
    out = result.stdout

    client = keel.Client(str(db))
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    assert exp is not None
    runs = client.search_runs(exp.experiment_id).items
    parents = [r for r in runs if r.info.run_name == PARENT_RUN_NAME]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get(PARENT_RUN_ID_TAG) == parent.info.run_id]
    assert len(children) == len(candidates(quick=True)) == len(runs) - 1
    assert all(r.info.status is RunStatus.FINISHED for r in runs)

    best_id = parent.data.tags["best_run_id"]
    best = client.get_run(best_id)
    # The best model is a package in its run; it loads with every check and predicts.
    assert f"runs:/{best_id}/model" in out and "would load here" in out
    keel.set_tracking_uri(str(db))
    package = keel.models.load(f"runs:/{best_id}/model")
    assert package.predict(__import__("numpy").zeros((1, 30))).shape == (1,)
    assert best.data.metrics["accuracy"] == max(c.data.metrics["accuracy"] for c in children)
    assert {"accuracy", "f1", "roc_auc", "cv_accuracy_mean"} <= set(best.data.metrics)
    assert 0.8 < best.data.metrics["accuracy"] <= 1
    assert parent.data.metrics["best_accuracy"] == best.data.metrics["accuracy"]
    # One cross-validation score per fold: a metric series.
    assert [m.step for m in client.get_metric_history(best_id, "cv_accuracy")] == [0, 1, 2]

    dataset_input = parent.inputs[0]
    assert dataset_input.context == "training"
    assert dataset_input.dataset.source == "sklearn.datasets.load_breast_cancer"
    assert len(dataset_input.dataset.digest) == 64
    assert best.inputs[0].dataset.digest == dataset_input.dataset.digest

    artifact_dir = Path(best.info.artifact_uri)
    report = json.loads((artifact_dir / "report.json").read_text())
    assert report["run_id"] == best_id and report["metrics"]["accuracy"] == pytest.approx(
        best.data.metrics["accuracy"]
    )
    assert (artifact_dir / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    assert artifact_dir.is_relative_to(db.parent / "keel-artifacts")

    assert best_id in out and str(db) in out
    # Under `uv run` the command reads `python3 -m uv run keel ui ...`.
    assert out.rstrip().splitlines()[-1].endswith(f"keel ui --backend-store-uri {db}")
    assert parent.data.tags[MONITOR_STATUS_TAG] == "drift"  # the served model's report
    # The served model takes a plain array: its inputs are named by position.
    from sklearn.datasets import load_breast_cancer

    names = list(load_breast_cancer().feature_names)
    positions = {str(names.index(c)) for c in SHIFTED_COLUMNS}
    assert set(parent.data.tags[MONITOR_COLUMNS_TAG].split(",")) == positions
    assert 'keel runs list --experiment keel-demo --order-by "metrics.accuracy DESC"' in out
    assert f"keel runs show {best_id}" in out

    verify_line = next(line for line in out.splitlines() if line.startswith("Verify:"))
    assert verify_line.startswith("Verify:    not run: "), out
    assert "uv" in verify_line  # the reason names what was missing: uv or its network
    target = artifact_dir / "model" / "requirements.txt"
    rerun = f"models verify runs:/{best_id}/model --target {target} --tracking-uri {db}"
    assert "to run it later: " in out and f"keel {rerun}" in out


@pytest.mark.slow
def test_demo_verifies_the_best_model_against_its_lock(
    tracking: Path, env_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV_VAR, str(env_cache))
    result = run_demo(str(tracking / "demo.db"), quick=True)
    verification = result.verification
    assert verification is not None and result.package is not None
    if verification.result is None:
        reason = (verification.error or "").lower()
        if "pip install uv" in reason or any(hint in reason for hint in _OFFLINE_HINTS):
            pytest.skip(f"cannot build the verify environment here: {verification.reason}")
        pytest.fail(f"the verify environment failed to build: {verification.error}")

    # Loaded natively (no ONNX fallback) and reproduced the golden sample, in an
    # environment whose packages are exactly the lock's pins.
    assert verification.result.outcome == "loads", verification.result.message
    assert verification.result.backend == "native"
    assert verification.result.predictions_match is True
    assert verification.ok
    assert verification.target == result.package / "requirements.txt"
    assert verification.pins == read_pins(verification.target)
    assert {"numpy", "scikit-learn"} <= set(verification.pins)
    assert verification.result.packages == verification.pins
    assert verification.python == current_python()
    assert verification.build_seconds >= 0 and verification.load_seconds > 0
    # Built once, then reused: the next demo (or `keel models verify`) finds it.
    assert cached_environment(verification.pins, cache_dir=env_cache) is not None

    out = _summary(result)
    assert "Verify:    loads and matches its golden sample" in out
    assert f"target:      {verification.target}" in out
    environment = "reused from the cache" if verification.cached else "built with uv in"
    assert environment in out
    assert f"models verify {result.model_uri} --target {verification.target}" in out


def test_verify_failures_are_one_line_reasons() -> None:
    # The shape of keel.models.targets' uv failures: its sentence, then uv's stderr.
    uv_failure = (
        "Cannot install numpy==2.4.6 for Python 3.11 in the target environment. uv said:\n"
        "error: Failed to fetch: `https://pypi.org/simple/numpy/`\n"
        "  Caused by: dns error\n"
        "  cause: Connection refused (os error 111)"
    )
    failed = Verification(Path("model/requirements.txt"), {}, "3.11", error=uv_failure)
    assert failed.reason == (
        "Cannot install numpy==2.4.6 for Python 3.11 in the target environment "
        "(uv: Connection refused (os error 111))"
    )
    assert not failed.ok
    no_uv = (
        "Building a target environment needs uv, which is not installed. "
        "Install it with: pip install uv"
    )
    assert Verification(Path("r.txt"), {}, "3.11", error=no_uv).reason == no_uv
    assert Verification(Path("r.txt"), {}, "3.11").reason is None


def test_run_demo_from_python_on_the_default_database(tracking: Path) -> None:
    keel.set_tracking_uri(None)  # as a fresh process: ./keel.db in the working directory
    result = run_demo(quick=True, verify=False)
    assert result.verification is None
    assert "Verify:    skipped (--no-verify); to run it: " in _summary(result)
    assert result.tracking_uri == resolve_tracking_uri(str(tracking / "keel.db"))
    assert result.database == tracking / "keel.db"
    assert result.runs[0].info.run_id == result.best_run.info.run_id
    accuracies = [r.data.metrics["accuracy"] for r in result.runs]
    assert accuracies == sorted(accuracies, reverse=True)
    assert set(result.artifacts) == {"report.json", "confusion_matrix.png"}
    assert (tracking / "keel-artifacts").is_dir()
    assert keel.active_run() is None
    # The best model is registered, promoted through the gates and loads back by alias.
    reg = result.registration
    assert reg is not None and reg.report.status == "passed"
    assert [r.gate for r in reg.report.results] == list(PROMOTION_GATES)
    assert reg.reloaded_accuracy == pytest.approx(result.best_run.data.metrics["accuracy"])
    client = keel.Client()
    version = client.get_model_version_by_alias(REGISTERED_MODEL_NAME, PROMOTION_ALIAS)
    assert (version.version, version.run_id) == (reg.version, result.best_run.info.run_id)
    assert "keel.gate.production" in version.tags
    summary = _summary(result)
    assert f"Registry:  {REGISTERED_MODEL_NAME} version 1, promoted to @production" in summary
    # Data: the dataset's full-content digest, the profile in the package, a fresh batch
    # that passes the learned suite, and a shifted one that fails it and drifts.
    dataset = result.best_run.inputs[0].dataset
    assert dataset.digest == keel.data.from_pandas(_breast_cancer_frame()).digest
    assert json.loads(dataset.profile)["num_rows"] == 569
    assert keel.models.load(result.model_uri).training_profile().rows == 455
    checks = result.data_checks
    assert checks is not None and checks.fresh.passed and not checks.shifted.passed
    assert checks.drift.drifted_columns == sorted(SHIFTED_COLUMNS)
    assert {r.column for r in checks.shifted.failures} == set(SHIFTED_COLUMNS)
    assert checks.drift_html is not None and "mean radius" in checks.drift_html.read_text()
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags[VALIDATION_STATUS_TAG] == "passed"
    assert parent.data.tags[DRIFT_COLUMNS_TAG] == "mean radius,worst texture"
    logged = {f.path for f in client.list_artifacts(result.parent_run_id, "data")}
    assert {"data/suite.yaml", "data/validation-fresh.html", "data/drift-shifted.html"} <= logged
    assert parent.data.tags["keel.drift.status"] == "drift"
    assert "Validate:  fresh batch passed 122 of 122 expectations" in summary
    drift_line = "Drift:     shifted batch: Drift in 2 of 30 columns: mean radius, worst texture"
    assert drift_line in summary
    # Serving: the production model behind keel serve's app, normal then shifted traffic,
    # labels through /feedback, and a monitoring report that names the shifted columns.
    serving = result.serving
    assert serving is not None and (serving.normal_rows, serving.shifted_rows) == (114, 228)
    report = serving.report
    assert report.requests == 12 + 24 and report.rows == 342
    assert report.input_drift is not None
    assert serving.named(report.input_drift.drifted_columns) == [
        "0 (mean radius)",
        "21 (worst texture)",
    ]
    assert report.performance["labelled_rows"] == 114
    assert report.performance["accuracy"] == pytest.approx(result.best_run.data.metrics["accuracy"])
    assert "monitoring: input drift in 2 of 30 columns" in summary and serving.html.is_file()
    assert f"keel serve {REGISTERED_MODEL_NAME}" not in summary  # the command takes the URI
    assert f"keel serve models:/{REGISTERED_MODEL_NAME}@production" in summary
    # A second demo registers version 2 and moves the alias to it.
    again = run_demo(quick=True, verify=False)
    assert again.registration is not None and again.registration.version == 2
    assert client.get_registered_model(REGISTERED_MODEL_NAME).aliases == {"production": 2}


def _breast_cancer_frame() -> Any:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    return bunch.frame.rename(columns=str)
