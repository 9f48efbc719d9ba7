"""The fluent API: module-level calls on the active run, named as in MLflow.

>>> import keel
>>> keel.set_tracking_uri("sqlite:///:memory:")
>>> with keel.start_run(run_name="demo") as run:
...     keel.log_params({"lr": 0.1})
...     keel.log_metric("loss", 0.5, step=1)
>>> keel.get_run(run.info.run_id).data.params
{'lr': '0.1'}

The active run stack is per thread; the tracking URI and active experiment
are per process. ``log_metric`` queues points for a background writer (see
``keel.tracking.writer``); ``end_run`` waits until they are committed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from keel.entities import (
    PARENT_RUN_ID_TAG,
    Dataset,
    Experiment,
    Metric,
    ModelVersion,
    Param,
    Run,
    RunStatus,
    RunTag,
    ViewType,
)
from keel.errors import InvalidParameter, InvalidState, NotFound, require
from keel.store import base as limits
from keel.store.base import now_ms
from keel.store.paging import collect_pages
from keel.store.validation import validate_metric
from keel.tracking import config
from keel.tracking.client import Client, _as_str, _metric_value
from keel.tracking.config import get_tracking_uri
from keel.tracking.context import system_tags
from keel.tracking.writer import writer_for

ENV_EXPERIMENT_NAME = ("KEEL_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_NAME")
ENV_EXPERIMENT_ID = ("KEEL_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_ID")

_state_lock = threading.RLock()
_active_experiment_id: str | None = None
_clients: dict[str, Client] = {}
_last_active_run_id: str | None = None
_local = threading.local()


def _stack() -> list[ActiveRun]:
    stack: list[ActiveRun] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def _client() -> Client:
    uri = get_tracking_uri()
    with _state_lock:
        client = _clients.get(uri)
        if client is None:
            client = _clients[uri] = Client(uri)
        return client


class ActiveRun:
    """The run ``start_run`` returned; ends it when its ``with`` block exits.

    Leaving the block normally sets FINISHED, an exception FAILED and
    KeyboardInterrupt KILLED.
    """

    def __init__(self, run: Run, client: Client) -> None:
        self._run = run
        self._client = client

    @property
    def info(self) -> Any:
        return self._run.info

    @property
    def data(self) -> Any:
        return self._run.data

    @property
    def run_id(self) -> str:
        return self._run.info.run_id

    def __repr__(self) -> str:
        return f"<ActiveRun run_id={self.run_id} name={self._run.info.run_name!r}>"

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            status = RunStatus.FINISHED
        elif issubclass(exc_type, KeyboardInterrupt):
            status = RunStatus.KILLED
        else:
            status = RunStatus.FAILED
        if any(r.run_id == self.run_id for r in _stack()):
            _end(self, status)


# -- configuration -------------------------------------------------------------


def set_tracking_uri(uri: str | os.PathLike[str] | None) -> None:
    """Where runs go from now on: a SQLite path, ``sqlite:///…`` or ``postgresql://…``."""
    global _active_experiment_id
    with _state_lock:
        config.set_tracking_uri(uri)
        _active_experiment_id = None


# -- experiments ---------------------------------------------------------------


def create_experiment(
    name: str, artifact_location: str | None = None, tags: Mapping[str, Any] | None = None
) -> str:
    """Create an experiment and return its id."""
    return _client().create_experiment(name, artifact_location, tags)


def set_experiment(
    experiment_name: str | None = None, experiment_id: str | None = None
) -> Experiment:
    """Make an experiment active for later runs, creating it (by name) if missing.

    >>> keel.set_experiment("churn")  # doctest: +SKIP
    """
    global _active_experiment_id
    if (experiment_name is None) == (experiment_id is None):
        raise InvalidParameter("Pass exactly one of experiment_name and experiment_id.")
    client = _client()
    if experiment_id is not None:
        exp = client.get_experiment(str(experiment_id))
    else:
        assert experiment_name is not None
        found = client.get_experiment_by_name(experiment_name)
        if found is None:
            try:
                client.create_experiment(experiment_name)
            except Exception:
                # Another process may have created it between our look-up and create.
                if client.get_experiment_by_name(experiment_name) is None:
                    raise
            found = client.get_experiment_by_name(experiment_name)
        assert found is not None
        exp = found
    if exp.lifecycle_stage.value != "active":
        raise InvalidState(
            f"Experiment {exp.name!r} is deleted. Restore it with "
            f"`keel experiments restore {exp.experiment_id}` or choose another name."
        )
    with _state_lock:
        _active_experiment_id = exp.experiment_id
    return exp


def get_experiment(experiment_id: str) -> Experiment:
    return _client().get_experiment(experiment_id)


def get_experiment_by_name(name: str) -> Experiment | None:
    return _client().get_experiment_by_name(name)


def search_experiments(
    view_type: ViewType | str = ViewType.ACTIVE_ONLY,
    max_results: int | None = None,
    filter_string: str | None = None,
    order_by: Sequence[str] | None = None,
) -> list[Experiment]:
    """Every matching experiment (or the first ``max_results``)."""
    client = _client()
    found, _ = collect_pages(
        lambda n, token: client.search_experiments(view_type, n, filter_string, order_by, token),
        max_results,
        limits.MAX_RESULTS_EXPERIMENTS,
    )
    return found


def delete_experiment(experiment_id: str) -> None:
    _client().delete_experiment(experiment_id)


def restore_experiment(experiment_id: str) -> None:
    _client().restore_experiment(experiment_id)


def _resolve_experiment_id(experiment_id: str | None) -> str:
    if experiment_id is not None:
        return str(experiment_id)
    if _active_experiment_id is not None:
        return _active_experiment_id
    for var in ENV_EXPERIMENT_ID:
        if os.environ.get(var):
            return os.environ[var]
    for var in ENV_EXPERIMENT_NAME:
        if os.environ.get(var):
            return set_experiment(os.environ[var]).experiment_id
    return limits.DEFAULT_EXPERIMENT_ID


# -- runs ----------------------------------------------------------------------


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    log_system_tags: bool = True,
) -> ActiveRun:
    """Start a run (or resume ``run_id``) and make it active; use it as a context manager.

    >>> with keel.start_run(run_name="fold-1", nested=True):  # doctest: +SKIP
    ...     keel.log_metric("auc", 0.8)
    """
    global _last_active_run_id
    stack = _stack()
    if stack and not nested and run_id is None:
        active = stack[-1]
        raise InvalidState(
            f"Run {active.run_id} is already active. End it with keel.end_run() first, or "
            "pass nested=True to start a child run."
        )
    client = _client()
    if run_id is not None:
        run = client.get_run(run_id)
        if run.info.lifecycle_stage.value != "active":
            raise InvalidState(f"Run {run_id} is deleted; restore it before resuming it.")
        if experiment_id is not None and str(experiment_id) != run.info.experiment_id:
            raise InvalidParameter(
                f"Run {run_id} belongs to experiment {run.info.experiment_id}, not {experiment_id}."
            )
        client.store.update_run_info(run_id, RunStatus.RUNNING, None, run_name)
        if tags:
            client.log_batch(run_id, tags=[RunTag(k, _as_str(v)) for k, v in tags.items()])
        run = client.get_run(run_id)
    else:
        all_tags: dict[str, str] = system_tags() if log_system_tags else {}
        parent = parent_run_id or (stack[-1].run_id if nested and stack else None)
        if parent:
            all_tags[PARENT_RUN_ID_TAG] = parent
        if description is not None:
            all_tags["mlflow.note.content"] = description
        all_tags.update({k: _as_str(v) for k, v in (tags or {}).items()})
        run = client.create_run(
            _resolve_experiment_id(experiment_id), tags=all_tags, run_name=run_name
        )
    active = ActiveRun(run, client)
    stack.append(active)
    with _state_lock:
        _last_active_run_id = run.info.run_id
    _install_exit_hooks()
    return active


def _end(active: ActiveRun, status: RunStatus) -> None:
    stack = _stack()
    # Ending a parent ends its still-open children first.
    while stack:
        top = stack.pop()
        # A run deleted by someone else while it ran has nothing left to end.
        with contextlib.suppress(NotFound):
            top._client.set_terminated(top.run_id, status)
        if top is active or top.run_id == active.run_id:
            return


def end_run(status: RunStatus | str = RunStatus.FINISHED) -> None:
    """End the active run (no-op without one) after committing its queued metrics."""
    stack = _stack()
    if stack:
        _end(stack[-1], RunStatus(status))


def active_run() -> ActiveRun | None:
    """The innermost active run of this thread, or None."""
    stack = _stack()
    return stack[-1] if stack else None


def last_active_run() -> Run | None:
    """The active run, else the run most recently started in this process (fresh from the store)."""
    run = active_run()
    run_id = run.run_id if run else _last_active_run_id
    return get_run(run_id) if run_id else None


def _run_id() -> str:
    """The active run's id, starting a run if there is none (as MLflow does)."""
    stack = _stack()
    if not stack:
        start_run()
    return _stack()[-1].run_id


def get_run(run_id: str) -> Run:
    return _client().get_run(run_id)


def delete_run(run_id: str) -> None:
    _client().delete_run(run_id)


def restore_run(run_id: str) -> None:
    _client().restore_run(run_id)


# -- logging -------------------------------------------------------------------


def log_param(key: str, value: Any) -> str:
    """Log an immutable param (stored as a string); returns the stored value."""
    return _client().log_param(_run_id(), key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _client().log_batch(_run_id(), params=[Param(k, _as_str(v)) for k, v in params.items()])


def _queue(run_id: str, metrics: list[Metric], synchronous: bool | None) -> None:
    for m in metrics:
        validate_metric(m)  # bad input fails at the call, not later in the background
    client = _client()
    if synchronous:
        client.log_batch(run_id, metrics=metrics)
    else:
        writer_for(client.store).submit(run_id, metrics)


def log_metric(
    key: str,
    value: float,
    step: int | None = None,
    synchronous: bool | None = None,
    timestamp: int | None = None,
    run_id: str | None = None,
) -> None:
    """Log one point; queued and committed in the background unless ``synchronous=True``.

    The point goes to the active run, or to ``run_id`` when given (MLflow's order of
    arguments).
    """
    metric = Metric(key, _metric_value(key, value), timestamp or now_ms(), step or 0)
    _queue(run_id or _run_id(), [metric], synchronous)


def log_metrics(
    metrics: Mapping[str, float],
    step: int | None = None,
    synchronous: bool | None = None,
    run_id: str | None = None,
    timestamp: int | None = None,
) -> None:
    """Log several metrics at one step and time (see :func:`log_metric`)."""
    ts = timestamp or now_ms()
    points = [Metric(k, _metric_value(k, v), ts, step or 0) for k, v in metrics.items()]
    _queue(run_id or _run_id(), points, synchronous)


def set_tag(key: str, value: Any) -> None:
    _client().set_tag(_run_id(), key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _client().log_batch(_run_id(), tags=[RunTag(k, _as_str(v)) for k, v in tags.items()])


def delete_tag(key: str) -> None:
    _client().delete_tag(_run_id(), key)


def flush() -> None:
    """Wait until every queued metric is committed."""
    from keel.tracking.writer import flush_all

    flush_all()


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    _client().log_artifact(_run_id(), local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    _client().log_artifacts(_run_id(), local_dir, artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    _client().log_text(_run_id(), text, artifact_file)


def log_dict(dictionary: Any, artifact_file: str) -> None:
    _client().log_dict(_run_id(), dictionary, artifact_file)


def log_report(report: Any, artifact_path: str) -> None:
    """Log a ``keel.data`` validation or drift report (JSON, HTML, a status tag) to the active run.

    >>> with keel.start_run():                                    # doctest: +SKIP
    ...     keel.log_report(suite.validate(batch), "data/validation")
    """
    _client().log_report(_run_id(), report, artifact_path)


def log_figure(figure: Any, artifact_file: str) -> None:
    _client().log_figure(_run_id(), figure, artifact_file)


def log_image(image: Any, artifact_file: str) -> None:
    _client().log_image(_run_id(), image, artifact_file)


def get_artifact_uri(artifact_path: str | None = None) -> str:
    """The artifact URI of the active run (or of a path inside it)."""
    uri = _client().get_run(_run_id()).info.artifact_uri
    return f"{uri}/{artifact_path}" if artifact_path else uri


def log_input(
    dataset: Dataset | Any, context: str | None = None, tags: Mapping[str, str] | None = None
) -> None:
    """Link a dataset to the active run, e.g. ``context="training"``."""
    _client().log_input(_run_id(), dataset, context, tags)


# -- search --------------------------------------------------------------------


def search_runs(
    experiment_ids: Sequence[str] | None = None,
    filter_string: str = "",
    run_view_type: ViewType | str = ViewType.ACTIVE_ONLY,
    max_results: int = 100_000,
    order_by: Sequence[str] | None = None,
    output_format: str = "pandas",
    search_all_experiments: bool = False,
    experiment_names: Sequence[str] | None = None,
) -> Any:
    """Runs matching a filter, as a pandas DataFrame (``output_format="list"``: Run objects).

    Without experiment ids or names: the active experiment (all experiments
    with ``search_all_experiments=True``). Unknown experiment names are skipped.
    """
    if output_format not in ("pandas", "list"):
        raise InvalidParameter(f"Invalid output_format {output_format!r}: use 'pandas' or 'list'.")
    client = _client()
    ids = [str(i) for i in experiment_ids or []]
    for name in experiment_names or []:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            ids.append(exp.experiment_id)
    if not ids and not experiment_names:
        if search_all_experiments:
            ids = [e.experiment_id for e in search_experiments(view_type=ViewType.ALL)]
        else:
            ids = [_resolve_experiment_id(None)]
    runs: list[Run] = []
    if ids:
        runs, _ = collect_pages(
            lambda n, token: client.search_runs(
                ids, filter_string, run_view_type, n, order_by, token
            ),
            max_results,
            limits.MAX_RESULTS_RUNS,
        )
    if output_format == "list":
        return runs
    return runs_to_dataframe(runs)


def runs_to_dataframe(runs: Sequence[Run]) -> Any:
    """One row per run: info columns, then ``metrics.*``, ``params.*``, ``tags.*``."""
    require("pandas", "pandas", "search_runs(output_format='pandas')")
    import pandas as pd

    metric_keys = sorted({k for r in runs for k in r.data.metrics})
    param_keys = sorted({k for r in runs for k in r.data.params})
    tag_keys = sorted({k for r in runs for k in r.data.tags})
    infos = [r.info for r in runs]
    columns: dict[str, list[Any]] = {
        "run_id": [i.run_id for i in infos],
        "experiment_id": [i.experiment_id for i in infos],
        "run_name": [i.run_name for i in infos],
        "status": [i.status.value for i in infos],
        "artifact_uri": [i.artifact_uri for i in infos],
        "start_time": [i.start_time for i in infos],
        "end_time": [i.end_time for i in infos],
    }
    for prefix, keys, field in (
        ("metrics", metric_keys, "metrics"),
        ("params", param_keys, "params"),
        ("tags", tag_keys, "tags"),
    ):
        values = [getattr(r.data, field) for r in runs]
        for k in keys:
            columns[f"{prefix}.{k}"] = [v.get(k) for v in values]
    df = pd.DataFrame(columns)
    for col in ("start_time", "end_time"):
        df[col] = pd.to_datetime(df[col], unit="ms", utc=True)
    for k in metric_keys:
        df[f"metrics.{k}"] = df[f"metrics.{k}"].astype("float64")
    return df


# -- process exit ----------------------------------------------------------------

_hooks_installed = False
_crashed = False


def _install_exit_hooks() -> None:
    """End runs left open when the interpreter exits: FAILED after an uncaught exception."""
    global _hooks_installed
    with _state_lock:
        if _hooks_installed:
            return
        _hooks_installed = True
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        global _crashed
        _crashed = True
        previous(exc_type, exc, tb)

    sys.excepthook = hook
    atexit.register(_end_runs_at_exit)


def _end_runs_at_exit() -> None:
    status = RunStatus.FAILED if _crashed else RunStatus.FINISHED
    stack = _stack()
    while stack:
        try:
            _end(stack[0], status)
        except Exception as exc:  # at exit there is nobody left to raise to
            print(f"keel: could not end run: {exc}", file=sys.stderr)
            stack.clear()


def register_model(
    model_uri: str | os.PathLike[str],
    name: str,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> ModelVersion:
    """Register a model as the next version of ``name`` (created when new).

    ``model_uri`` is ``runs:/<run_id>/<path>`` (e.g. what
    ``keel.sklearn.log_model`` returned), ``models:/<name>/<version>`` or a
    package directory. Queued metrics are committed first.

    >>> uri = keel.sklearn.log_model(pipe, "model", input_example=X)  # doctest: +SKIP
    >>> keel.register_model(uri, "churn").version  # doctest: +SKIP
    1
    """
    flush()
    return _client().register_model(model_uri, name, tags=tags, description=description)
