"""``keel.Client``: explicit, id-based tracking calls (MLflow's ``MlflowClient`` names).

>>> c = Client("sqlite:///:memory:")
>>> exp_id = c.create_experiment("churn")
>>> run = c.create_run(exp_id, run_name="rf")
>>> c.log_metric(run.info.run_id, "acc", 0.9)
>>> c.get_run(run.info.run_id).data.metrics
{'acc': 0.9}
"""

from __future__ import annotations

import json
import numbers
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from keel import artifacts
from keel.entities import (
    CONTEXT_TAG,
    Dataset,
    DatasetInput,
    Experiment,
    ExperimentTag,
    FileInfo,
    InputTag,
    Metric,
    PagedList,
    Param,
    Run,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from keel.errors import InvalidParameter, require
from keel.registry.client import RegistryMethods
from keel.store import TrackingStore, open_store
from keel.store import base as limits
from keel.store.base import now_ms
from keel.tracking.config import get_tracking_uri
from keel.tracking.context import current_user
from keel.tracking.writer import flush_store, writer_for
from keel.uris import resolve_tracking_uri


def _metric_value(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        # numpy scalars are numbers.Real; strings and None are not
        raise InvalidParameter(
            f"Invalid value {value!r} for metric {key!r}: metrics must be numbers."
        )
    return float(value)


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


# Tags a logged data report sets (Client.log_report)
VALIDATION_STATUS_TAG = "keel.validation.status"
DRIFT_STATUS_TAG = "keel.drift.status"
DRIFT_COLUMNS_TAG = "keel.drift.columns"
MONITOR_STATUS_TAG = "keel.monitor.status"
MONITOR_MODEL_TAG = "keel.monitor.model_uri"
MONITOR_COLUMNS_TAG = "keel.monitor.columns"


class Client(RegistryMethods):
    """Tracking calls that name their experiment or run explicitly; registry calls too.

    The store is chosen by ``tracking_uri``, else the one ``keel.set_tracking_uri``
    set, else ``KEEL_TRACKING_URI``, ``MLFLOW_TRACKING_URI``, ``./keel.db``.
    """

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = (
            resolve_tracking_uri(tracking_uri) if tracking_uri else get_tracking_uri()
        )
        self.store: TrackingStore = open_store(self.tracking_uri)

    def _sync(self) -> None:
        """Read-your-writes: commit metrics queued by the fluent API first."""
        flush_store(self.store)

    # -- experiments ---------------------------------------------------------

    def create_experiment(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> str:
        """Create an experiment; return its id. Raises AlreadyExists if the name is taken."""
        tag_list = [ExperimentTag(k, _as_str(v)) for k, v in (tags or {}).items()]
        return self.store.create_experiment(name, artifact_location, tag_list)

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self.store.get_experiment(str(experiment_id))

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return self.store.get_experiment_by_name(name)

    def search_experiments(
        self,
        view_type: ViewType | str = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Experiment]:
        return self.store.search_experiments(
            ViewType(view_type), max_results, filter_string, order_by, page_token
        )

    def delete_experiment(self, experiment_id: str) -> None:
        self.store.delete_experiment(str(experiment_id))

    def restore_experiment(self, experiment_id: str) -> None:
        self.store.restore_experiment(str(experiment_id))

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        self.store.rename_experiment(str(experiment_id), new_name)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        self.store.set_experiment_tag(str(experiment_id), ExperimentTag(key, _as_str(value)))

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        self.store.delete_experiment_tag(str(experiment_id), key)

    # -- runs ----------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: Mapping[str, Any] | None = None,
        run_name: str | None = None,
    ) -> Run:
        """Create a RUNNING run. No system tags are added here (the fluent API adds them)."""
        tag_list = [RunTag(k, _as_str(v)) for k, v in (tags or {}).items()]
        user = (tags or {}).get("mlflow.user") or current_user()
        return self.store.create_run(
            str(experiment_id), str(user), start_time or now_ms(), tag_list, run_name
        )

    def get_run(self, run_id: str) -> Run:
        self._sync()
        return self.store.get_run(run_id)

    def update_run(
        self, run_id: str, status: RunStatus | str | None = None, name: str | None = None
    ) -> RunInfo:
        status_enum = RunStatus(status) if status is not None else None
        end = now_ms() if status_enum is not None and status_enum.is_terminated else None
        return self.store.update_run_info(run_id, status_enum, end, name)

    def set_terminated(
        self, run_id: str, status: RunStatus | str = RunStatus.FINISHED, end_time: int | None = None
    ) -> None:
        """End a run: commit its queued metrics, then set status and end time."""
        self._sync()
        self.store.update_run_info(run_id, RunStatus(status), end_time or now_ms())

    def delete_run(self, run_id: str) -> None:
        self._sync()
        self.store.delete_run(run_id)

    def restore_run(self, run_id: str) -> None:
        self.store.restore_run(run_id)

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        timestamp: int | None = None,
        step: int | None = None,
        synchronous: bool = True,
    ) -> None:
        """Log one point. ``synchronous=False`` queues it for the background writer."""
        metric = Metric(key, _metric_value(key, value), timestamp or now_ms(), step or 0)
        if synchronous:
            self.store.log_metric(run_id, metric)
        else:
            from keel.store.validation import validate_metric

            validate_metric(metric)  # bad input fails here, not later in the background
            writer_for(self.store).submit(run_id, [metric])

    def log_param(self, run_id: str, key: str, value: Any) -> str:
        """Log a param (stored as ``str(value)``) and return the stored string."""
        text = _as_str(value)
        self.store.log_param(run_id, Param(key, text))
        return text

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.store.set_tag(run_id, RunTag(key, _as_str(value)))

    def delete_tag(self, run_id: str, key: str) -> None:
        self.store.delete_tag(run_id, key)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        """Log many values; splits into store-sized batches (params and tags go first)."""
        for chunk in _chunked(list(params), limits.MAX_PARAMS_PER_BATCH):
            if chunk:
                self.store.log_batch(run_id, params=chunk)
        for chunk in _chunked(list(tags), limits.MAX_TAGS_PER_BATCH):
            if chunk:
                self.store.log_batch(run_id, tags=chunk)
        for chunk in _chunked(list(metrics), limits.MAX_METRICS_PER_BATCH):
            if chunk:
                self.store.log_batch(run_id, metrics=chunk)

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        self.store.log_inputs(run_id, datasets)

    def log_input(
        self,
        run_id: str,
        dataset: Dataset | Any,
        context: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Link a dataset (``keel.entities.Dataset`` or anything with name and digest)."""
        input_tags = [InputTag(k, _as_str(v)) for k, v in (tags or {}).items()]
        if context:
            input_tags.append(InputTag(CONTEXT_TAG, context))
        self.store.log_inputs(run_id, [DatasetInput(_as_dataset(dataset), tuple(input_tags))])

    def get_metric_history(
        self,
        run_id: str,
        key: str,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> PagedList[Metric]:
        """Points of one metric by step; all of them unless ``max_results`` asks for a page."""
        self._sync()
        if max_results is None and page_token is None:
            return PagedList(self.store.get_all_metric_history(run_id, key))
        return self.store.get_metric_history(run_id, key, max_results, page_token)

    def search_runs(
        self,
        experiment_ids: Sequence[str] | str,
        filter_string: str = "",
        run_view_type: ViewType | str = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Run]:
        """One page of runs; see docs/tracking.md for the filter grammar."""
        self._sync()
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        return self.store.search_runs(
            [str(i) for i in ids],
            filter_string or None,
            ViewType(run_view_type),
            max_results,
            order_by,
            page_token,
        )

    # -- artifacts -----------------------------------------------------------

    def _repo(self, run_id: str) -> artifacts.ArtifactRepository:
        return artifacts.get_repository(
            self.store.get_run(run_id).info.artifact_uri, self.tracking_uri
        )

    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        self._repo(run_id).log_artifact(Path(local_path), artifact_path)

    def log_artifacts(
        self, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        self._repo(run_id).log_artifacts(Path(local_dir), artifact_path)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        return self._repo(run_id).list_artifacts(path)

    def download_artifacts(
        self, run_id: str, path: str, dst_path: str | os.PathLike[str] | None = None
    ) -> str:
        dst = Path(dst_path) if dst_path else Path(tempfile.mkdtemp(prefix="keel-download-"))
        return str(self._repo(run_id).download_artifacts(path, dst))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._repo(run_id).write_bytes(artifact_file, text.encode("utf-8"))

    def log_dict(self, run_id: str, dictionary: Any, artifact_file: str) -> None:
        """JSON, or YAML when the file name ends in .yaml/.yml (needs PyYAML)."""
        if artifact_file.endswith((".yaml", ".yml")):
            require("yaml", "all", "Logging a dict as YAML")
            import yaml

            text = yaml.safe_dump(dictionary, default_flow_style=False, sort_keys=False)
        else:
            text = json.dumps(dictionary, indent=2, default=str, allow_nan=True)
        self.log_text(run_id, text, artifact_file)

    def log_report(self, run_id: str, report: Any, artifact_path: str) -> None:
        """Log a validation, drift or monitoring report: ``<path>.json``, ``<path>.html``, tags.

        A validation report (it has ``passed``) sets the tag ``keel.validation.status``
        to ``passed`` or ``failed``; a drift report (it has ``drifted``) sets
        ``keel.drift.status`` to ``drift`` or ``none`` and ``keel.drift.columns``;
        a serving monitoring report (``keel.serving.monitor_report``) sets
        ``keel.monitor.status``, ``keel.monitor.model_uri`` and
        ``keel.monitor.columns`` (the inputs that drifted). The tags make runs
        searchable by outcome, e.g. ``tags."keel.validation.status" = 'failed'``,
        and the web UI lists them on its Data page.
        """
        self.log_text(run_id, report.to_json(), f"{artifact_path}.json")
        self.log_text(run_id, report.to_html(), f"{artifact_path}.html")
        if hasattr(report, "model_uri") and hasattr(report, "input_drift"):
            drift = report.input_drift
            self.set_tag(run_id, MONITOR_STATUS_TAG, "drift" if report.drifted else "none")
            self.set_tag(run_id, MONITOR_MODEL_TAG, report.model_uri)
            columns = drift.drifted_columns if drift is not None else []
            self.set_tag(run_id, MONITOR_COLUMNS_TAG, ",".join(columns))
            return
        if hasattr(report, "passed"):
            self.set_tag(run_id, VALIDATION_STATUS_TAG, "passed" if report.passed else "failed")
        if hasattr(report, "drifted"):
            self.set_tag(run_id, DRIFT_STATUS_TAG, "drift" if report.drifted else "none")
            self.set_tag(run_id, DRIFT_COLUMNS_TAG, ",".join(report.drifted_columns))

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        """A matplotlib figure (any format matplotlib writes) or a plotly figure (.html)."""
        repo = self._repo(run_id)
        if hasattr(figure, "savefig"):
            import io

            buf = io.BytesIO()
            fmt = Path(artifact_file).suffix.lstrip(".") or "png"
            figure.savefig(buf, format=fmt)
            repo.write_bytes(artifact_file, buf.getvalue())
        elif hasattr(figure, "write_html") and artifact_file.endswith(".html"):
            repo.write_bytes(artifact_file, figure.to_html().encode("utf-8"))
        else:
            raise InvalidParameter(
                f"Cannot log {type(figure).__name__} as a figure: pass a matplotlib Figure, "
                "or a plotly Figure with an .html file name."
            )

    def log_image(self, run_id: str, image: Any, artifact_file: str) -> None:
        """A PIL image or a numpy array (HxW, HxWx3, HxWx4; uint8, or floats in [0, 1])."""
        import io

        require("PIL", "plots", "Logging an image")
        from PIL import Image

        if not isinstance(image, Image.Image):
            image = Image.fromarray(_to_uint8(image))
        buf = io.BytesIO()
        fmt = (Path(artifact_file).suffix.lstrip(".") or "png").upper()
        image.save(buf, format="JPEG" if fmt == "JPG" else fmt)
        self._repo(run_id).write_bytes(artifact_file, buf.getvalue())


def _to_uint8(array: Any) -> Any:
    import numpy as np

    arr = np.asarray(array)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise InvalidParameter(
            f"Cannot log an image of shape {arr.shape}: expected HxW, HxWx1, HxWx3 or HxWx4."
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and (float(np.nanmin(arr)) < 0 or float(np.nanmax(arr)) > 1):
            raise InvalidParameter("Float images must have values in [0, 1].")
        return (np.nan_to_num(arr) * 255).round().astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
            raise InvalidParameter("Integer images must have values in [0, 255].")
        return arr.astype(np.uint8)
    raise InvalidParameter(f"Cannot log an image of dtype {arr.dtype}.")


def _as_dataset(obj: Any) -> Dataset:
    if isinstance(obj, Dataset):
        return obj
    # keel.data.KeelDataset (and anything like it) knows its own MLflow-style
    # schema and profile, which the generic attribute reading below would lose.
    to_entity = getattr(obj, "to_entity", None)
    if callable(to_entity):
        entity = to_entity()
        if isinstance(entity, Dataset):
            return entity
    name, digest = getattr(obj, "name", None), getattr(obj, "digest", None)
    if not isinstance(name, str) or not isinstance(digest, str):
        raise InvalidParameter(
            f"Cannot log {type(obj).__name__} as a dataset input: it needs string 'name' and "
            "'digest' attributes (use keel.entities.Dataset)."
        )
    schema = getattr(obj, "schema", None)
    if schema is not None and not isinstance(schema, str):
        schema = json.dumps(schema, default=str)
    return Dataset(
        name=name,
        digest=digest,
        source_type=str(getattr(obj, "source_type", "") or ""),
        source=str(getattr(obj, "source", "") or ""),
        schema=schema,
    )
