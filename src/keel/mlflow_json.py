"""Keel values in MLflow's REST JSON: the server's responses and the REST store's requests.

Plain functions of entities: no I/O, no HTTP library.

>>> double_to_json(float("nan")), double_to_json(float("-inf")), double_to_json(0.5)
('NaN', '-Infinity', 0.5)
>>> metric_json(Metric("loss", float("inf"), 1, 2))
{'key': 'loss', 'value': 'Infinity', 'timestamp': 1, 'step': 2}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from keel.entities import DatasetInput, LoggedModel, LoggedModelOutput, LoggedModelStatus, Metric

_SPECIAL_DOUBLES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def double_to_json(value: float) -> float | str:
    """A double as MLflow's JSON carries it: non-finite values as strings."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def double_from_json(raw: Any) -> float:
    """A double from MLflow's JSON: a number, ``"NaN"``, ``"Infinity"`` or a numeric string.

    >>> double_from_json("Infinity"), double_from_json("1.5"), double_from_json(2)
    (inf, 1.5, 2.0)
    """
    if isinstance(raw, str) and raw in _SPECIAL_DOUBLES:
        return _SPECIAL_DOUBLES[raw]
    return float(raw)


def int_from_json(raw: Any, default: int = 0) -> int:
    # int64 arrives as a JSON number from Keel and MLflow, but proto3 JSON
    # also allows decimal strings.
    return default if raw is None or raw == "" else int(raw)


_METRIC_LINKS = ("model_id", "dataset_name", "dataset_digest", "run_id")


def metric_json(m: Metric) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": m.key,
        "value": double_to_json(m.value),
        "timestamp": m.timestamp,
        "step": m.step,
    }
    for name in _METRIC_LINKS:
        value = getattr(m, name)
        if value is not None:
            out[name] = value
    return out


def metric_from_json(d: Any, key: str = "") -> Metric:
    """A :class:`Metric` from its MLflow JSON object (links to models and datasets kept).

    >>> m = metric_from_json({"key": "acc", "value": "NaN", "step": "2", "model_id": "m-1"})
    >>> m.value, m.step, m.model_id
    (nan, 2, 'm-1')
    """
    links = {name: str(d[name]) for name in _METRIC_LINKS if d.get(name)}
    return Metric(
        str(d.get("key", key)),
        double_from_json(d.get("value", 0.0)),
        int_from_json(d.get("timestamp")),
        int_from_json(d.get("step")),
        **links,
    )


def key_value_json(values: Mapping[str, str]) -> list[dict[str, str]]:
    """``{"k": "v"}`` as MLflow's ``[{"key": "k", "value": "v"}]``."""
    return [{"key": k, "value": v} for k, v in values.items()]


def key_values_from_json(raw: Any) -> dict[str, str]:
    """MLflow's ``[{"key", "value"}]`` list (params, tags) as a dict."""
    return {str(t["key"]): str(t.get("value", "")) for t in raw or ()}


def logged_model_json(m: LoggedModel) -> dict[str, Any]:
    """MLflow 3's ``LoggedModel`` object: ``{"info": {...}, "data": {...}}``."""
    info: dict[str, Any] = {
        "model_id": m.model_id,
        "experiment_id": m.experiment_id,
        "name": m.name,
        "creation_timestamp_ms": m.creation_timestamp,
        "last_updated_timestamp_ms": m.last_updated_timestamp,
        "artifact_uri": m.artifact_location,
        "status": m.status.value,
        "model_type": m.model_type,
        "tags": key_value_json(m.tags),
    }
    if m.source_run_id:
        info["source_run_id"] = m.source_run_id
    if m.deleted:  # not in MLflow's message (clients ignore it): only ?allow_deleted=true shows it
        info["lifecycle_stage"] = "deleted"
    data: dict[str, Any] = {"params": key_value_json(m.params)}
    if m.metrics:
        data["metrics"] = [metric_json(x) for x in m.metrics]
    return {"info": info, "data": data}


def logged_model_from_json(d: Any) -> LoggedModel:
    """A :class:`LoggedModel` from MLflow's JSON object (from Keel or an MLflow server)."""
    info, data = d.get("info") or {}, d.get("data") or {}
    status = info.get("status") or LoggedModelStatus.PENDING.value
    return LoggedModel(
        model_id=str(info["model_id"]),
        experiment_id=str(info.get("experiment_id", "")),
        name=str(info.get("name", "")),
        creation_timestamp=int_from_json(info.get("creation_timestamp_ms")),
        last_updated_timestamp=int_from_json(info.get("last_updated_timestamp_ms")),
        artifact_location=str(info.get("artifact_uri", "")),
        status=LoggedModelStatus(status),
        model_type=str(info.get("model_type") or ""),
        source_run_id=info.get("source_run_id") or None,
        deleted=info.get("lifecycle_stage") == "deleted",
        params=key_values_from_json(data.get("params")),
        tags=key_values_from_json(info.get("tags")),
        metrics=tuple(metric_from_json(x) for x in data.get("metrics") or ()),
    )


def model_links_json(links: tuple[LoggedModelOutput, ...]) -> tuple[list[Any], list[Any]]:
    """A run's model links as MLflow's ``inputs.model_inputs`` and ``outputs.model_outputs``."""
    inputs = [{"model_id": x.model_id} for x in links if x.direction == "input"]
    outputs = [{"model_id": x.model_id, "step": x.step} for x in links if x.direction == "output"]
    return inputs, outputs


def model_links_from_json(run: Any) -> tuple[LoggedModelOutput, ...]:
    inputs = (run.get("inputs") or {}).get("model_inputs") or ()
    outputs = (run.get("outputs") or {}).get("model_outputs") or ()
    return (
        *(LoggedModelOutput(str(x["model_id"]), 0, "input") for x in inputs),
        *(
            LoggedModelOutput(str(x["model_id"]), int_from_json(x.get("step")), "output")
            for x in outputs
        ),
    )


def dataset_input_json(d: DatasetInput) -> dict[str, Any]:
    ds = d.dataset
    dataset: dict[str, Any] = {
        "name": ds.name,
        "digest": ds.digest,
        "source_type": ds.source_type,
        "source": ds.source,
    }
    if ds.schema is not None:
        dataset["schema"] = ds.schema
    if ds.profile is not None:
        dataset["profile"] = ds.profile
    return {"tags": [{"key": t.key, "value": t.value} for t in d.tags], "dataset": dataset}
