"""keel.sklearn.autolog: real scikit-learn fits logged into a real SQLite store."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, mean_squared_error, r2_score
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

import keel
import keel.models
import keel.sklearn
from keel import autolog_sklearn
from keel.autolog_sklearn import SKIPPED_PARAMS_TAG, AutologWarning
from keel.entities import PARENT_RUN_ID_TAG, Run, RunStatus

X_IRIS, Y_IRIS = load_iris(return_X_y=True)


@pytest.fixture
def autolog(tracking: Path) -> Iterator[None]:
    """Autolog on (without packages unless a test turns them on); always off afterwards."""
    keel.sklearn.autolog(log_models=False)
    try:
        yield
    finally:
        keel.sklearn.autolog(disable=True)


def _runs() -> list[Run]:
    runs: list[Run] = keel.search_runs(output_format="list")
    return runs


def _only_run() -> Run:
    runs = _runs()
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def test_classifier_fit_without_run_logs_everything(autolog: None) -> None:
    keel.sklearn.autolog(log_models=True)
    model = LogisticRegression(max_iter=500, C=0.5)

    returned = model.fit(X_IRIS, Y_IRIS)

    assert returned is model
    assert keel.active_run() is None
    run = _only_run()
    assert run.info.status == RunStatus.FINISHED
    assert run.data.params["C"] == "0.5"
    assert run.data.params["max_iter"] == "500"
    metrics = run.data.metrics
    assert metrics["training_accuracy"] == pytest.approx(
        accuracy_score(Y_IRIS, model.predict(X_IRIS))
    )
    assert metrics["training_score"] == pytest.approx(metrics["training_accuracy"])
    for key in ("training_precision", "training_recall", "training_f1"):
        assert 0.9 < metrics[key] <= 1.0
    assert metrics["training_log_loss"] > 0
    assert 0.9 < metrics["training_roc_auc"] <= 1.0
    assert run.data.tags["estimator_name"] == "LogisticRegression"
    assert run.data.tags["estimator_class"].endswith(".LogisticRegression")
    (dataset_input,) = run.inputs
    expected = hashlib.sha256(X_IRIS.tobytes() + Y_IRIS.tobytes()).hexdigest()
    assert dataset_input.dataset.digest == expected
    assert dataset_input.dataset.name == "training"
    assert dataset_input.context == "training"
    assert '"shape": [150, 4]' in (dataset_input.dataset.schema or "")
    loaded = keel.models.load(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(X_IRIS), model.predict(X_IRIS))


def test_regressor_metrics(autolog: None) -> None:
    X, y = load_diabetes(return_X_y=True)
    model = LinearRegression().fit(X, y)

    metrics = _only_run().data.metrics
    mse = mean_squared_error(y, model.predict(X))
    assert metrics["training_mse"] == pytest.approx(mse)
    assert metrics["training_rmse"] == pytest.approx(np.sqrt(mse))
    assert metrics["training_r2"] == pytest.approx(r2_score(y, model.predict(X)))
    assert metrics["training_score"] == pytest.approx(metrics["training_r2"])
    assert metrics["training_mae"] > 0
    assert "training_accuracy" not in metrics


def test_pipeline_logs_once_with_nested_params(autolog: None) -> None:
    frame = pd.DataFrame(X_IRIS, columns=["a", "b", "c", "d"])
    Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=300))]).fit(
        frame, Y_IRIS
    )

    run = _only_run()
    assert run.data.params["clf__max_iter"] == "300"
    assert "scale__with_mean" in run.data.params
    assert run.data.tags["estimator_name"] == "Pipeline"
    assert run.inputs[0].dataset.schema is not None
    assert '"columns": ["a", "b", "c", "d"]' in run.inputs[0].dataset.schema


def test_fit_inside_active_run_logs_into_it_and_keeps_it_open(autolog: None) -> None:
    with keel.start_run() as run:
        DecisionTreeClassifier(max_depth=2).fit(X_IRIS, Y_IRIS)
        assert keel.active_run() is not None
        assert keel.active_run().run_id == run.info.run_id  # type: ignore[union-attr]
        assert keel.get_run(run.info.run_id).info.status == RunStatus.RUNNING

    logged = _only_run()
    assert logged.info.run_id == run.info.run_id
    assert logged.data.params["max_depth"] == "2"
    assert "training_accuracy" in logged.data.metrics


def test_grid_search_logs_parent_and_top_children(autolog: None) -> None:
    keel.sklearn.autolog(log_models=True, max_tuning_runs=2)
    grid = {"C": [0.01, 0.1, 1.0, 10.0]}
    search = GridSearchCV(LogisticRegression(max_iter=500), grid, cv=3).fit(X_IRIS, Y_IRIS)

    runs = _runs()
    parents = [r for r in runs if PARENT_RUN_ID_TAG not in r.data.tags]
    children = [r for r in runs if PARENT_RUN_ID_TAG in r.data.tags]
    assert len(parents) == 1 and len(children) == 2  # no runs for the 13 inner fits
    parent = parents[0]
    assert parent.data.params["best_C"] == str(search.best_params_["C"])
    assert parent.data.metrics["best_score"] == pytest.approx(search.best_score_)
    assert parent.data.tags["estimator_name"] == "GridSearchCV"
    best_scores = sorted(search.cv_results_["mean_test_score"], reverse=True)[:2]
    for child in children:
        assert child.data.tags[PARENT_RUN_ID_TAG] == parent.info.run_id
        assert child.info.status == RunStatus.FINISHED
        assert child.data.params["C"] in {str(c) for c in grid["C"]}
        assert "std_test_score" in child.data.metrics
    assert sorted(c.data.metrics["mean_test_score"] for c in children) == pytest.approx(
        sorted(best_scores)
    )
    loaded = keel.models.load(f"runs:/{parent.info.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(X_IRIS), search.best_estimator_.predict(X_IRIS))


def test_randomized_search_caps_children_at_candidates(autolog: None) -> None:
    keel.sklearn.autolog(log_models=False, max_tuning_runs=10)
    RandomizedSearchCV(
        DecisionTreeClassifier(), {"max_depth": [1, 2, 3]}, n_iter=3, cv=2, random_state=0
    ).fit(X_IRIS, Y_IRIS)

    children = [r for r in _runs() if PARENT_RUN_ID_TAG in r.data.tags]
    assert len(children) == 3


def test_disable_restores_original_fit(autolog: None) -> None:
    keel.sklearn.autolog(disable=True)

    assert not hasattr(LogisticRegression.fit, "_keel_autolog_original")
    LogisticRegression(max_iter=500).fit(X_IRIS, Y_IRIS)
    assert _runs() == []


def test_failing_fit_fails_run_and_propagates(autolog: None) -> None:
    with pytest.raises(ValueError):
        LogisticRegression().fit(X_IRIS, Y_IRIS[:10])

    run = _only_run()
    assert run.info.status == RunStatus.FAILED
    assert keel.active_run() is None


def test_logging_failure_warns_and_fit_still_returns(
    autolog: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("store is gone")

    monkeypatch.setattr(autolog_sklearn.fluent, "log_metrics", broken)
    model = LogisticRegression(max_iter=500)

    with pytest.warns(AutologWarning, match="store is gone"):
        returned = model.fit(X_IRIS, Y_IRIS)

    assert returned is model
    assert hasattr(model, "coef_")
    assert _only_run().info.status == RunStatus.FINISHED


def test_long_param_values_are_skipped_and_named() -> None:
    params, skipped = autolog_sklearn._loggable_params({"short": 1, "long": "x" * 6001})
    assert params == {"short": "1"}
    assert skipped == ["long"]
    assert SKIPPED_PARAMS_TAG.startswith("keel.autolog")


def test_overhead_without_models_is_small(autolog: None) -> None:
    LogisticRegression(max_iter=500).fit(X_IRIS, Y_IRIS)  # warm up store and imports
    keel.sklearn.autolog(disable=True)
    start = time.perf_counter()
    LogisticRegression(max_iter=500).fit(X_IRIS, Y_IRIS)
    plain = time.perf_counter() - start
    keel.sklearn.autolog(log_models=False)
    start = time.perf_counter()
    LogisticRegression(max_iter=500).fit(X_IRIS, Y_IRIS)
    logged = time.perf_counter() - start
    # Generous bound: shared CI machines stall on fsync now and then.
    assert logged - plain < 1.0


def test_estimators_without_proba_or_labels_log_what_is_defined(autolog: None) -> None:
    from sklearn.cluster import KMeans
    from sklearn.svm import SVC

    SVC().fit(X_IRIS, Y_IRIS)
    KMeans(n_clusters=2, n_init=1, random_state=0).fit(X_IRIS)

    by_name = {r.data.tags["estimator_name"]: r.data.metrics for r in _runs()}
    assert "training_accuracy" in by_name["SVC"]
    assert "training_log_loss" not in by_name["SVC"]
    assert set(by_name["KMeans"]) == {"training_score"}


def test_failing_fit_inside_user_run_leaves_it_open(autolog: None) -> None:
    with keel.start_run() as run:
        with pytest.raises(ValueError):
            LogisticRegression().fit(X_IRIS, Y_IRIS[:10])
        assert keel.active_run() is not None

    assert keel.get_run(run.info.run_id).info.status == RunStatus.FINISHED
