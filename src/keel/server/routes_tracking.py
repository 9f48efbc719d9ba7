"""Experiments, runs, metrics, params, tags and inputs: MLflow's tracking RPCs.

Each handler takes the parsed fields and returns the response object; the
field names, defaults and response shapes are MLflow's (research/mlflow-wire.md
§12.2–12.3).

>>> [e.path for e in ENDPOINTS][:3]
['/experiments/create', '/experiments/get', '/experiments/get-by-name']
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, TypeVar

from keel.entities import (
    Dataset,
    DatasetInput,
    ExperimentTag,
    InputTag,
    Metric,
    Param,
    RunStatus,
    RunTag,
    ViewType,
)
from keel.errors import InvalidParameter, NotFound
from keel.mlflow_json import metric_json
from keel.server.app import Endpoint
from keel.server.locations import check_artifact_location
from keel.server.routes_logged_models import model_links
from keel.server.wire import (
    Field,
    experiment_id_value,
    experiment_json,
    parse,
    run_info_json,
    run_json,
)
from keel.store.base import now_ms

if TYPE_CHECKING:
    from keel.server.app import ServerContext

E = TypeVar("E", bound=enum.Enum)

_RUN_ID = Field("run_id", required=True, aliases=("run_uuid",))
_EXPERIMENT_ID = Field("experiment_id", required=True)


def _enum(kind: type[E], value: Any, what: str, numbers: dict[int, str]) -> E:
    """An enum sent by name or by its proto number."""
    text = numbers.get(value, value) if isinstance(value, int) else value
    if isinstance(text, str) and text.isdigit():
        text = numbers.get(int(text), text)
    try:
        return kind(text)
    except ValueError:
        names = ", ".join(str(m.value) for m in kind)
        raise InvalidParameter(f"Invalid {what} {value!r}: use one of {names}.") from None


_VIEW_NUMBERS = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}
_STATUS_NUMBERS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}


# -- experiments -------------------------------------------------------------


def create_experiment(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    tags = [ExperimentTag(**_key_value(t, "tag")) for t in a.get("tags", [])]
    location = a.get("artifact_location") or None
    if location is not None:
        check_artifact_location(location)
    experiment_id = ctx.tracking.create_experiment(a["name"], location, tags)
    return {"experiment_id": experiment_id}


def get_experiment(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    experiment = ctx.tracking.get_experiment(experiment_id_value(a["experiment_id"]))
    return {"experiment": experiment_json(experiment)}


def get_experiment_by_name(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    name = a["experiment_name"]
    experiment = ctx.tracking.get_experiment_by_name(name)
    if experiment is None:
        raise NotFound(f"Could not find experiment with name '{name}'")
    return {"experiment": experiment_json(experiment)}


def search_experiments(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    page = ctx.tracking.search_experiments(
        _enum(ViewType, a.get("view_type", "ACTIVE_ONLY"), "view_type", _VIEW_NUMBERS),
        a.get("max_results", 1000),
        a.get("filter") or None,
        a.get("order_by") or None,
        a.get("page_token") or None,
    )
    out: dict[str, Any] = {"experiments": [experiment_json(e) for e in page]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def delete_experiment(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    ctx.tracking.delete_experiment(experiment_id_value(a["experiment_id"]))
    return {}


def restore_experiment(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    ctx.tracking.restore_experiment(experiment_id_value(a["experiment_id"]))
    return {}


def update_experiment(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    if a.get("new_name"):
        ctx.tracking.rename_experiment(experiment_id_value(a["experiment_id"]), a["new_name"])
    return {}


def set_experiment_tag(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    tag = ExperimentTag(a["key"], a["value"])
    ctx.tracking.set_experiment_tag(experiment_id_value(a["experiment_id"]), tag)
    return {}


def delete_experiment_tag(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    ctx.tracking.delete_experiment_tag(experiment_id_value(a["experiment_id"]), a["key"])
    return {}


# -- runs --------------------------------------------------------------------


def create_run(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    tags = [RunTag(**_key_value(t, "tag")) for t in a.get("tags", [])]
    run = ctx.tracking.create_run(
        experiment_id_value(a.get("experiment_id", "0")),
        a.get("user_id", ""),
        a.get("start_time", now_ms()),
        tags,
        a.get("run_name") or None,
    )
    return {"run": run_json(run)}


def get_run(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    return {"run": run_json(ctx.tracking.get_run(a["run_id"]))}


def update_run(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    status = a.get("status")
    info = ctx.tracking.update_run_info(
        a["run_id"],
        _enum(RunStatus, status, "status", _STATUS_NUMBERS) if status is not None else None,
        a.get("end_time"),
        a.get("run_name") or None,
    )
    return {"run_info": run_info_json(info)}


def delete_run(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    ctx.tracking.delete_run(a["run_id"])
    return {}


def restore_run(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    ctx.tracking.restore_run(a["run_id"])
    return {}


def _metric(m: dict[str, Any]) -> Metric:
    return Metric(
        m["key"],
        m["value"],
        m["timestamp"],
        m.get("step", 0),
        model_id=m.get("model_id") or None,
        dataset_name=m.get("dataset_name") or None,
        dataset_digest=m.get("dataset_digest") or None,
    )


def log_metric(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    ctx.tracking.log_batch(a["run_id"], metrics=[_metric(a)])
    return {}


def log_param(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    ctx.tracking.log_batch(a["run_id"], params=[Param(a["key"], a["value"])])
    return {}


def set_tag(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    ctx.tracking.log_batch(a["run_id"], tags=[RunTag(a["key"], a["value"])])
    return {}


def delete_tag(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    ctx.tracking.delete_tag(a["run_id"], a["key"])
    return {}


_METRIC_FIELDS = (
    Field("key", required=True),
    Field("value", "double", required=True),
    Field("timestamp", "int64", required=True),
    Field("step", "int64"),
    # MLflow 3: the logged model and dataset a point was measured for.
    Field("model_id"),
    Field("dataset_name"),
    Field("dataset_digest"),
)
_KEY_VALUE = (Field("key", required=True), Field("value", required=True))


def log_batch(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    metrics = []
    for raw in a.get("metrics", []):
        if not isinstance(raw, dict):
            raise InvalidParameter(f"Invalid metric {raw!r}: expected a JSON object.")
        metrics.append(_metric(parse(_METRIC_FIELDS, raw)))
    params = [Param(**_key_value(p, "param")) for p in a.get("params", [])]
    tags = [RunTag(**_key_value(t, "tag")) for t in a.get("tags", [])]
    ctx.tracking.log_batch(a["run_id"], metrics, params, tags)
    return {}


def log_inputs(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    datasets = [_dataset_input(d) for d in a.get("datasets", [])]
    models = model_links(a.get("models", []), "input")
    ctx.tracking.log_inputs(a["run_id"], datasets)
    if models:
        ctx.tracking.log_model_links(a["run_id"], models)
    return {}


_DATASET_FIELDS = (
    Field("name", required=True),
    Field("digest", required=True),
    Field("source_type"),
    Field("source"),
    Field("schema"),
    Field("profile"),
)


def _dataset_input(raw: Any) -> DatasetInput:
    if not isinstance(raw, dict) or not isinstance(raw.get("dataset"), dict):
        raise InvalidParameter(f"Invalid dataset input {raw!r}: expected {{'dataset': {{...}}}}.")
    d = parse(_DATASET_FIELDS, raw["dataset"])
    dataset = Dataset(
        d["name"],
        d["digest"],
        d.get("source_type", ""),
        d.get("source", ""),
        d.get("schema"),
        d.get("profile"),
    )
    tags = tuple(InputTag(**_key_value(t, "input tag")) for t in raw.get("tags") or [])
    return DatasetInput(dataset, tags)


def search_runs(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    page = ctx.tracking.search_runs(
        [experiment_id_value(str(i)) for i in a.get("experiment_ids", [])],
        a.get("filter") or None,
        _enum(ViewType, a.get("run_view_type", "ACTIVE_ONLY"), "run_view_type", _VIEW_NUMBERS),
        a.get("max_results", 1000),
        a.get("order_by") or None,
        a.get("page_token") or None,
    )
    out: dict[str, Any] = {"runs": [run_json(r) for r in page]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def get_metric_history(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    page = ctx.tracking.get_metric_history(
        a["run_id"], a["metric_key"], a.get("max_results"), a.get("page_token") or None
    )
    out: dict[str, Any] = {"metrics": [metric_json(m) for m in page]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def _key_value(raw: Any, what: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise InvalidParameter(f"Invalid {what} {raw!r}: expected {{'key': ..., 'value': ...}}.")
    parsed = parse(_KEY_VALUE, raw)
    return {"key": parsed["key"], "value": parsed["value"]}


def _search_fields(*extra: Field) -> tuple[Field, ...]:
    return (
        *extra,
        Field("filter"),
        Field("max_results", "int64"),
        Field("order_by", "string[]"),
        Field("page_token"),
    )


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/experiments/create",
        (Field("name", required=True), Field("artifact_location"), Field("tags", "object[]")),
        create_experiment,
        "Create an experiment",
    ),
    Endpoint("GET", "/experiments/get", (_EXPERIMENT_ID,), get_experiment, "Get an experiment"),
    Endpoint(
        "GET",
        "/experiments/get-by-name",
        (Field("experiment_name", required=True),),
        get_experiment_by_name,
        "Get an experiment by name",
    ),
    Endpoint(
        "POST",
        "/experiments/search",
        _search_fields(Field("view_type", "enum")),
        search_experiments,
        "Search experiments",
    ),
    Endpoint("POST", "/experiments/delete", (_EXPERIMENT_ID,), delete_experiment, "Delete"),
    Endpoint("POST", "/experiments/restore", (_EXPERIMENT_ID,), restore_experiment, "Restore"),
    Endpoint(
        "POST",
        "/experiments/update",
        (_EXPERIMENT_ID, Field("new_name")),
        update_experiment,
        "Rename an experiment",
    ),
    Endpoint(
        "POST",
        "/experiments/set-experiment-tag",
        (_EXPERIMENT_ID, *_KEY_VALUE),
        set_experiment_tag,
        "Set an experiment tag",
    ),
    Endpoint(
        "POST",
        "/experiments/delete-experiment-tag",
        (_EXPERIMENT_ID, Field("key", required=True)),
        delete_experiment_tag,
        "Delete an experiment tag",
    ),
    Endpoint(
        "POST",
        "/runs/create",
        (
            Field("experiment_id"),
            Field("user_id"),
            Field("start_time", "int64"),
            Field("tags", "object[]"),
            Field("run_name"),
        ),
        create_run,
        "Create a run",
    ),
    Endpoint("GET", "/runs/get", (_RUN_ID,), get_run, "Get a run"),
    Endpoint(
        "POST",
        "/runs/update",
        (_RUN_ID, Field("status", "enum"), Field("end_time", "int64"), Field("run_name")),
        update_run,
        "Update a run's status, end time or name",
    ),
    Endpoint("POST", "/runs/delete", (_RUN_ID,), delete_run, "Delete a run"),
    Endpoint("POST", "/runs/restore", (_RUN_ID,), restore_run, "Restore a run"),
    Endpoint("POST", "/runs/log-metric", (_RUN_ID, *_METRIC_FIELDS), log_metric, "Log a metric"),
    Endpoint("POST", "/runs/log-parameter", (_RUN_ID, *_KEY_VALUE), log_param, "Log a param"),
    Endpoint("POST", "/runs/set-tag", (_RUN_ID, *_KEY_VALUE), set_tag, "Set a run tag"),
    Endpoint(
        "POST",
        "/runs/delete-tag",
        (_RUN_ID, Field("key", required=True)),
        delete_tag,
        "Delete a run tag",
    ),
    Endpoint(
        "POST",
        "/runs/log-batch",
        (
            _RUN_ID,
            Field("metrics", "object[]"),
            Field("params", "object[]"),
            Field("tags", "object[]"),
        ),
        log_batch,
        "Log metrics, params and tags in one transaction",
    ),
    Endpoint(
        "POST",
        "/runs/log-inputs",
        (_RUN_ID, Field("datasets", "object[]"), Field("models", "object[]")),
        log_inputs,
        "Link datasets (and models it used) to a run",
    ),
    Endpoint(
        "POST",
        "/runs/search",
        _search_fields(Field("experiment_ids", "string[]"), Field("run_view_type", "enum")),
        search_runs,
        "Search runs",
    ),
    Endpoint(
        "GET",
        "/metrics/get-history",
        (
            _RUN_ID,
            Field("metric_key", required=True),
            Field("max_results", "int64"),
            Field("page_token"),
        ),
        get_metric_history,
        "A metric's history",
    ),
)
