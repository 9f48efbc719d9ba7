"""The tracking store contract every backend implements.

A store is the system of record for experiments, runs and what is logged to
them. Implementations: ``keel.store.sql.SqlTrackingStore`` (SQLite,
PostgreSQL); the REST store (an ``http://`` Keel or MLflow server) follows the
same contract. ``tests/store_parity`` runs one suite against all of them.

Conventions that hold for every method:
- a missing object raises :class:`~keel.errors.NotFound`, except the
  ``*_by_name`` look-ups, which return ``None``;
- writes to a deleted run or experiment raise :class:`~keel.errors.InvalidState`;
- invalid keys, values and limits raise :class:`~keel.errors.InvalidParameter`
  before anything is written (a batch is all or nothing);
- timestamps are milliseconds since the epoch; ids are strings.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence

from keel.entities import (
    DatasetInput,
    Experiment,
    ExperimentTag,
    Metric,
    PagedList,
    Param,
    Run,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from keel.store.logged_models import LoggedModelStore
from keel.store.paging import collect_pages

# Documented limits (MLflow's values, so that scripts behave the same on both).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_EXPERIMENT_TAG_VALUE_LENGTH = 20000
MAX_RUN_NAME_LENGTH = 250
MAX_RESULTS_RUNS = 50000
MAX_RESULTS_EXPERIMENTS = 50000
MAX_RESULTS_METRIC_HISTORY = 1_000_000
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"


def now_ms() -> int:
    return int(time.time() * 1000)


class TrackingStore(LoggedModelStore):
    """Experiments, runs, metrics, params, tags, dataset inputs and logged models
    (the abstract methods of :class:`~keel.store.logged_models.LoggedModelStore`).

    >>> from keel.store import open_store
    >>> store = open_store("sqlite:///:memory:")
    >>> exp_id = store.create_experiment("demo")
    >>> run = store.create_run(exp_id, user_id="ana", start_time=0, tags=[], run_name="r1")
    >>> store.log_metric(run.info.run_id, Metric("loss", 0.5, 0, 0))
    >>> store.get_run(run.info.run_id).data.metrics
    {'loss': 0.5}
    """

    # -- experiments ---------------------------------------------------------

    @abc.abstractmethod
    def create_experiment(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: Sequence[ExperimentTag] = (),
    ) -> str:
        """Create an experiment and return its id.

        Raises AlreadyExists if an experiment (active or deleted) has this name.
        Without ``artifact_location`` the store picks ``<artifact root>/<id>``.
        """

    @abc.abstractmethod
    def get_experiment(self, experiment_id: str) -> Experiment:
        """The experiment with this id, active or deleted. Raises NotFound."""

    @abc.abstractmethod
    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """The experiment with this exact name, active or deleted, or None."""

    @abc.abstractmethod
    def search_experiments(
        self,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Experiment]:
        """One page of experiments matching the filter (see docs/tracking.md#search)."""

    @abc.abstractmethod
    def delete_experiment(self, experiment_id: str) -> None:
        """Soft-delete the experiment and its runs. Raises NotFound."""

    @abc.abstractmethod
    def restore_experiment(self, experiment_id: str) -> None:
        """Undo :meth:`delete_experiment` (its runs come back too). Raises NotFound."""

    @abc.abstractmethod
    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        """Rename; raises AlreadyExists if the name is taken, InvalidState if deleted."""

    @abc.abstractmethod
    def set_experiment_tag(self, experiment_id: str, tag: ExperimentTag) -> None:
        """Create or overwrite an experiment tag."""

    @abc.abstractmethod
    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        """Remove an experiment tag. Raises NotFound if the tag is not set."""

    # -- runs ----------------------------------------------------------------

    @abc.abstractmethod
    def create_run(
        self,
        experiment_id: str,
        user_id: str,
        start_time: int,
        tags: Sequence[RunTag],
        run_name: str | None,
    ) -> Run:
        """Start a RUNNING run in an active experiment.

        Without ``run_name`` the store generates a readable one. The name is
        also written as the ``mlflow.runName`` tag.
        """

    @abc.abstractmethod
    def get_run(self, run_id: str) -> Run:
        """The run with its latest metrics, params, tags and inputs. Raises NotFound."""

    @abc.abstractmethod
    def update_run_info(
        self,
        run_id: str,
        status: RunStatus | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        """Change status, end time or name (``None`` keeps the current value)."""

    @abc.abstractmethod
    def delete_run(self, run_id: str) -> None:
        """Soft-delete a run. Raises NotFound."""

    @abc.abstractmethod
    def restore_run(self, run_id: str) -> None:
        """Undo :meth:`delete_run`. Raises NotFound."""

    @abc.abstractmethod
    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        """Write metrics, params and tags in one transaction (all or nothing).

        Params are immutable: re-logging the same value is a no-op, a different
        value raises InvalidParameter naming both. Re-sending an identical metric
        point (same key, step, timestamp, value) does not duplicate it.
        """

    @abc.abstractmethod
    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove a run tag. Raises NotFound if the tag is not set."""

    @abc.abstractmethod
    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        """Link datasets to the run; a dataset is stored once per (experiment, name, digest)."""

    @abc.abstractmethod
    def get_metric_history(
        self,
        run_id: str,
        key: str,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> PagedList[Metric]:
        """Every point of one metric, ordered by (step, timestamp), paged.

        Raises NotFound for an unknown run; an unknown key gives an empty list.
        """

    @abc.abstractmethod
    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        run_view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Run]:
        """One page of runs in these experiments that match the filter.

        ``max_results`` above :data:`MAX_RESULTS_RUNS` raises InvalidParameter.
        Page tokens are opaque; pass back what the previous page returned.
        """

    def after_fork(self) -> None:
        """Called in a forked child before it uses the store: drop inherited connections."""

    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""

    # -- conveniences, written once on top of the primitives -------------------

    def log_metric(self, run_id: str, metric: Metric) -> None:
        self.log_batch(run_id, metrics=[metric])

    def log_param(self, run_id: str, param: Param) -> None:
        self.log_batch(run_id, params=[param])

    def set_tag(self, run_id: str, tag: RunTag) -> None:
        self.log_batch(run_id, tags=[tag])

    def get_all_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of the metric, following page tokens."""
        points, _ = collect_pages(
            lambda n, token: self.get_metric_history(run_id, key, n, token),
            page_size=MAX_RESULTS_METRIC_HISTORY,
        )
        return points
