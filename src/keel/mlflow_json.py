"""Keel values in MLflow's REST JSON: the server's responses and the REST store's requests.

Plain functions of entities: no I/O, no HTTP library.

>>> double_to_json(float("nan")), double_to_json(float("-inf")), double_to_json(0.5)
('NaN', '-Infinity', 0.5)
>>> metric_json(Metric("loss", float("inf"), 1, 2))
{'key': 'loss', 'value': 'Infinity', 'timestamp': 1, 'step': 2}
"""

from __future__ import annotations

import math
from typing import Any

from keel.entities import DatasetInput, Metric


def double_to_json(value: float) -> float | str:
    """A double as MLflow's JSON carries it: non-finite values as strings."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def metric_json(m: Metric) -> dict[str, Any]:
    return {
        "key": m.key,
        "value": double_to_json(m.value),
        "timestamp": m.timestamp,
        "step": m.step,
    }


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
