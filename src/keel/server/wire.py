"""MLflow's REST wire format: request fields in, entity JSON out.

Requests follow the MLflow client's encoding (``docs``: research/mlflow-wire.md):
GET fields in the query string (lists as repeated keys), other verbs a JSON
body; int64 values as numbers or decimal strings; doubles also as ``"NaN"``,
``"Infinity"``, ``"-Infinity"``; enums by name or number. One declarative
:class:`Field` list per endpoint drives both parsing and the OpenAPI schema.
Entities shared with the REST store's requests are in :mod:`keel.mlflow_json`.

>>> parse([Field("step", "int64"), Field("value", "double", required=True)],
...       {"value": "NaN", "step": "3"})
{'step': 3, 'value': nan}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keel.entities import (
    Experiment,
    ModelVersion,
    RegisteredModel,
    Run,
    RunInfo,
)
from keel.errors import InvalidParameter
from keel.mlflow_json import dataset_input_json, double_to_json, model_links_json

KINDS = ("string", "int64", "double", "bool", "enum", "object", "string[]", "object[]")
_SPECIAL_DOUBLES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_JSON_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "int64": {"type": "integer", "format": "int64"},
    "double": {"oneOf": [{"type": "number"}, {"enum": list(_SPECIAL_DOUBLES)}]},
    "bool": {"type": "boolean"},
    "enum": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    "object": {"type": "object"},
    "string[]": {"type": "array", "items": {"type": "string"}},
    "object[]": {"type": "array", "items": {"type": "object"}},
}


@dataclass(frozen=True, slots=True)
class Field:
    """One request field: its wire name, kind, whether required, and older spellings."""

    name: str
    kind: str = "string"
    required: bool = False
    aliases: tuple[str, ...] = ()
    doc: str = ""

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = dict(_JSON_TYPES[self.kind])
        if self.doc:
            schema["description"] = self.doc
        return schema


def parse(fields: Sequence[Field], data: Mapping[str, Any]) -> dict[str, Any]:
    """Typed values for ``fields`` from a JSON body or query mapping; unknown keys are ignored.

    Missing optional fields are absent from the result (proto3 semantics: the
    handler picks the default).
    """
    out: dict[str, Any] = {}
    for f in fields:
        raw = _first_present(data, (f.name, *f.aliases))
        if raw is None or (raw == "" and f.kind != "string"):
            if f.required:
                raise InvalidParameter(f"Missing value for required parameter '{f.name}'.")
            continue
        out[f.name] = _convert(f, raw)
    return out


def experiment_id_value(value: str) -> str:
    """An experiment id from a request: MLflow answers 400 for one that is not an integer.

    >>> experiment_id_value("12")
    '12'
    """
    if not value.isdigit():
        raise InvalidParameter(
            f"Invalid experiment ID {value!r}. Experiment ID must be a valid integer."
        )
    return value


def _first_present(data: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        if name in data and data[name] is not None:
            return data[name]
    return None


def _convert(f: Field, raw: Any) -> Any:
    if f.kind.endswith("[]"):
        items = raw if isinstance(raw, list) else [raw]
        inner = Field(f.name, f.kind[:-2])
        return [_convert(inner, item) for item in items]
    try:
        if f.kind == "string":
            if not isinstance(raw, str):
                raise TypeError
            return raw
        if f.kind == "int64":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise TypeError
            return int(raw)
        if f.kind == "double":
            if isinstance(raw, str) and raw in _SPECIAL_DOUBLES:
                return _SPECIAL_DOUBLES[raw]
            if isinstance(raw, bool):
                raise TypeError
            return float(raw)
        if f.kind == "bool":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("true", "false"):
                return raw.lower() == "true"
            raise TypeError
        if f.kind == "enum":  # by name or proto number; the handler knows the names
            if isinstance(raw, bool) or not isinstance(raw, (str, int)):
                raise TypeError
            return raw
        if f.kind == "object":
            if not isinstance(raw, dict):
                raise TypeError
            return raw
    except (TypeError, ValueError):
        pass
    raise InvalidParameter(
        f"Invalid value {raw!r} for parameter '{f.name}' supplied: expected {_KIND_NAMES[f.kind]}."
    )


_KIND_NAMES = {
    "string": "a string",
    "int64": "an integer",
    "double": "a number (or 'NaN', 'Infinity', '-Infinity')",
    "bool": "true or false",
    "enum": "a name or a number",
    "object": "a JSON object",
}


# ---------------------------------------------------------------------------
# Entities to JSON


def experiment_json(e: Experiment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "experiment_id": e.experiment_id,
        "name": e.name,
        "artifact_location": e.artifact_location,
        "lifecycle_stage": e.lifecycle_stage.value,
        "tags": [{"key": k, "value": v} for k, v in e.tags.items()],
    }
    if e.creation_time is not None:
        out["creation_time"] = e.creation_time
    if e.last_update_time is not None:
        out["last_update_time"] = e.last_update_time
    return out


def run_info_json(info: RunInfo) -> dict[str, Any]:
    info_json: dict[str, Any] = {
        "run_id": info.run_id,
        "run_uuid": info.run_id,
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "user_id": info.user_id,
        "status": info.status.value,
        "start_time": info.start_time,
        "artifact_uri": info.artifact_uri,
        "lifecycle_stage": info.lifecycle_stage.value,
    }
    if info.end_time is not None:
        info_json["end_time"] = info.end_time
    return info_json


def run_json(run: Run) -> dict[str, Any]:
    inputs: dict[str, Any] = {"dataset_inputs": [dataset_input_json(d) for d in run.inputs]}
    model_inputs, model_outputs = model_links_json(run.models)
    if model_inputs:
        inputs["model_inputs"] = model_inputs
    return {
        "info": run_info_json(run.info),
        "data": {
            # The run entity keeps the latest value per key; its step and time
            # are not part of it, so they are reported as 0 like a fresh metric.
            "metrics": [
                {"key": k, "value": double_to_json(v), "timestamp": 0, "step": 0}
                for k, v in run.data.metrics.items()
            ],
            "params": [{"key": k, "value": v} for k, v in run.data.params.items()],
            "tags": [{"key": k, "value": v} for k, v in run.data.tags.items()],
        },
        "inputs": inputs,
        **({"outputs": {"model_outputs": model_outputs}} if model_outputs else {}),
    }


def model_version_json(v: ModelVersion) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": v.name,
        "version": str(v.version),
        "creation_timestamp": v.creation_timestamp,
        "last_updated_timestamp": v.last_updated_timestamp,
        "user_id": v.user_id,
        "current_stage": v.current_stage.value,
        "description": v.description,
        "source": v.source,
        "status": v.status.value,
        "status_message": v.status_message,
        "run_link": v.run_link,
    }
    if v.run_id:
        out["run_id"] = v.run_id
    if v.model_id:
        out["model_id"] = v.model_id
    if v.tags:
        out["tags"] = [{"key": k, "value": val} for k, val in v.tags.items()]
    if v.aliases:
        out["aliases"] = list(v.aliases)
    return out


def registered_model_json(m: RegisteredModel) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": m.name,
        "creation_timestamp": m.creation_timestamp,
        "last_updated_timestamp": m.last_updated_timestamp,
        "description": m.description,
    }
    if m.latest_versions:
        out["latest_versions"] = [model_version_json(v) for v in m.latest_versions]
    if m.tags:
        out["tags"] = [{"key": k, "value": v} for k, v in m.tags.items()]
    if m.aliases:
        out["aliases"] = [{"alias": a, "version": str(v)} for a, v in m.aliases.items()]
    return out
