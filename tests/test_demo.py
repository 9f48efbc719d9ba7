"""``keel demo`` and ``keel.demo.run_demo`` end to end on real SQLite files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import keel
from keel.cli.main import app
from keel.demo import EXPERIMENT_NAME, PARENT_RUN_NAME, candidates, run_demo
from keel.entities import PARENT_RUN_ID_TAG, RunStatus
from keel.uris import resolve_tracking_uri

pytest.importorskip("sklearn")


def test_demo_command_quick(tracking: Path) -> None:
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
    assert 'keel runs list --experiment keel-demo --order-by "metrics.accuracy DESC"' in out
    assert f"keel runs show {best_id}" in out


def test_run_demo_from_python_on_the_default_database(tracking: Path) -> None:
    keel.set_tracking_uri(None)  # as a fresh process: ./keel.db in the working directory
    result = run_demo(quick=True)
    assert result.tracking_uri == resolve_tracking_uri(str(tracking / "keel.db"))
    assert result.database == tracking / "keel.db"
    assert result.runs[0].info.run_id == result.best_run.info.run_id
    accuracies = [r.data.metrics["accuracy"] for r in result.runs]
    assert accuracies == sorted(accuracies, reverse=True)
    assert set(result.artifacts) == {"report.json", "confusion_matrix.png"}
    assert (tracking / "keel-artifacts").is_dir()
    assert keel.active_run() is None
