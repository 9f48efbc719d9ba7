"""Optuna trials become nested runs with their params and values."""

from __future__ import annotations

from pathlib import Path

import pytest

import keel

optuna = pytest.importorskip("optuna")


def _objective(trial: object) -> float:
    x = trial.suggest_float("x", -5, 5)  # type: ignore[attr-defined]
    kind = trial.suggest_categorical("kind", ["a", "b"])  # type: ignore[attr-defined]
    trial.report(x * x, step=0)  # type: ignore[attr-defined]
    return (x - 1) ** 2 + (0.5 if kind == "b" else 0.0)


def test_each_trial_is_a_nested_run(tracking: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    keel.set_experiment("tuning")
    with keel.start_run(run_name="study") as parent:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        study.optimize(_objective, n_trials=8, callbacks=[keel.optuna.callback()])
        keel.log_metric("best_value", study.best_value)
    assert keel.active_run() is None
    trials = keel.search_runs(
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        order_by=["metrics.value ASC"],
        output_format="list",
    )
    assert len(trials) == 8
    best = trials[0]
    assert best.data.metrics["value"] == pytest.approx(study.best_value)
    assert float(best.data.params["x"]) == pytest.approx(study.best_params["x"])
    assert best.data.params["kind"] == study.best_params["kind"]
    assert all(t.info.status is keel.RunStatus.FINISHED for t in trials)
    history = keel.Client().get_metric_history(best.info.run_id, "value_intermediate")
    assert [m.step for m in history] == [0]


def test_failed_and_pruned_trials(tracking: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: object) -> float:
        n = trial.number  # type: ignore[attr-defined]
        if n == 1:
            raise optuna.TrialPruned()
        if n == 2:
            raise ValueError("diverged")
        return float(n)

    study = optuna.create_study()
    study.optimize(objective, n_trials=3, callbacks=[keel.optuna.callback()], catch=(ValueError,))
    runs = keel.search_runs(order_by=["run_name"], output_format="list")
    assert [(r.info.run_name, r.info.status.value) for r in runs] == [
        ("trial-0", "FINISHED"),
        ("trial-1", "KILLED"),
        ("trial-2", "FAILED"),
    ]
