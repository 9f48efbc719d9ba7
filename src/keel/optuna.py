"""Optuna studies tracked in Keel: each trial a nested run with its params and value.

>>> import optuna                                                              # doctest: +SKIP
>>> with keel.start_run(run_name="tuning"):                                    # doctest: +SKIP
...     study = optuna.create_study()
...     study.optimize(objective, n_trials=20, callbacks=[keel.optuna.callback()])
"""

from __future__ import annotations

from typing import Any

from keel.entities import PARENT_RUN_ID_TAG, Metric, Param, RunStatus
from keel.errors import require
from keel.store.base import now_ms
from keel.tracking import fluent
from keel.tracking.client import Client

__all__ = ["KeelCallback", "callback"]

_STATES = {"COMPLETE": RunStatus.FINISHED, "PRUNED": RunStatus.KILLED, "FAIL": RunStatus.FAILED}


class KeelCallback:
    """An Optuna callback that logs every finished trial as a run.

    Trials become children of the run that is active when the callback is
    made (or of ``parent_run_id``); without one, they are top-level runs of
    the active experiment. Runs are written through the client, so the
    fluent API's active run is left as it was: Optuna may run trials in
    threads (``n_jobs``), and each callback call is independent.
    """

    def __init__(self, metric_name: str = "value", parent_run_id: str | None = None) -> None:
        self.metric_name = metric_name
        active = fluent.active_run()
        self.parent_run_id = parent_run_id or (active.info.run_id if active else None)
        self._client = Client()
        if self.parent_run_id:
            self.experiment_id = self._client.get_run(self.parent_run_id).info.experiment_id
        else:
            self.experiment_id = fluent._resolve_experiment_id(None)

    def __call__(self, study: Any, trial: Any) -> None:
        tags = {"optuna.study_name": str(study.study_name), "optuna.trial": str(trial.number)}
        if self.parent_run_id:
            tags[PARENT_RUN_ID_TAG] = self.parent_run_id
        run = self._client.create_run(
            self.experiment_id, tags=tags, run_name=f"trial-{trial.number}"
        )
        run_id = run.info.run_id
        metrics = []
        values = list(trial.values) if trial.values is not None else []
        for i, value in enumerate(values):
            name = self.metric_name if len(values) == 1 else f"{self.metric_name}_{i}"
            metrics.append(Metric(name, float(value), now_ms(), 0))
        for step, value in sorted(trial.intermediate_values.items()):
            metrics.append(Metric(f"{self.metric_name}_intermediate", float(value), now_ms(), step))
        self._client.log_batch(
            run_id,
            metrics=metrics,
            params=[Param(k, str(v)) for k, v in trial.params.items()],
        )
        status = _STATES.get(getattr(trial.state, "name", ""), RunStatus.FINISHED)
        self._client.set_terminated(run_id, status)


def callback(metric_name: str = "value", parent_run_id: str | None = None) -> KeelCallback:
    """An Optuna callback logging each trial as a (nested) run; see :class:`KeelCallback`."""
    require("optuna", "optuna", "keel.optuna")
    return KeelCallback(metric_name, parent_run_id)
