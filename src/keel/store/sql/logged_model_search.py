"""Logged-model search filters and orderings compiled to SQLAlchemy Core.

Built from the run and registry searches' pieces. A metric comparison holds
when **any** point the model has under that key satisfies it (MLflow's
meaning), optionally only points measured on the given datasets; params and
tags follow the registry's rule that a model without the key is "not equal"
to every value.

>>> from keel.search.filter import parse_filter
>>> expr = parse_filter("name = 'model' AND metrics.acc > 0.8", "logged_models")
>>> cond = logged_model_filter_condition(expr, ())
>>> print(sa.select(schema.logged_models.c.model_id).where(cond))
... # doctest: +NORMALIZE_WHITESPACE
SELECT logged_models.model_id FROM logged_models
WHERE logged_models.name = :name_1 AND (EXISTS (SELECT * FROM logged_model_metrics AS
f_logged_model_metrics WHERE f_logged_model_metrics.model_id = logged_models.model_id
AND f_logged_model_metrics.key = :key_1 AND NOT f_logged_model_metrics.is_nan
AND f_logged_model_metrics.value > :value_1))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from keel.search.filter import Comparison, Expr
from keel.search.order import OrderKey
from keel.store.sql import schema
from keel.store.sql.registry_search import tag_condition
from keel.store.sql.search import (
    Condition,
    OrderClause,
    combine,
    filter_alias,
    integer_condition,
    metric_value_condition,
    ordered,
    string_condition,
)

__all__ = ["DatasetRef", "logged_model_filter_condition", "logged_model_order_by"]

_LM = schema.logged_models
_COLUMNS: dict[str, sa.Column[Any]] = {
    "name": _LM.c.name,
    "model_id": _LM.c.model_id,
    "model_type": _LM.c.model_type,
    "status": _LM.c.status,
    "source_run_id": _LM.c.source_run_id,
    "creation_time": _LM.c.creation_time,
    "last_updated_time": _LM.c.last_updated_time,
}
_INTEGERS = frozenset({"creation_time", "last_updated_time"})

# (dataset_name, dataset_digest or None): the datasets a search's metrics are restricted to.
DatasetRef = tuple[str, "str | None"]


def dataset_refs(datasets: Sequence[Mapping[str, Any]] | None) -> tuple[DatasetRef, ...]:
    """``[{"dataset_name", "dataset_digest"?}]`` as tuples; a missing name is an error upstream."""
    return tuple(
        (str(d["dataset_name"]), str(d["dataset_digest"]) if d.get("dataset_digest") else None)
        for d in datasets or ()
    )


def logged_model_filter_condition(expr: Expr | None, datasets: Sequence[DatasetRef]) -> Condition:
    """A condition over ``schema.logged_models``; ``datasets`` restricts metric comparisons."""
    if expr is None:
        return sa.true()
    return combine(expr, lambda c: _comparison(c, datasets))


def _comparison(c: Comparison, datasets: Sequence[DatasetRef]) -> Condition:
    if c.entity == "metric":
        return _metric_condition(c, datasets)
    if c.entity in ("param", "tag"):
        table = schema.logged_model_params if c.entity == "param" else schema.logged_model_tags
        return tag_condition(table, [("model_id", _LM.c.model_id)], c)
    if c.entity == "attribute" and c.key in _INTEGERS:
        assert isinstance(c.value, (int, float)), c
        return integer_condition(_COLUMNS[c.key], c.op, c.value)
    if c.entity == "attribute" and c.key == "source_run_id" and c.op in ("!=", "NOT IN"):
        # A model logged outside any run is "not equal" to every run id.
        return sa.or_(_LM.c.source_run_id.is_(None), string_condition(_LM.c.source_run_id, c))
    if c.entity == "attribute" and c.key in _COLUMNS:
        return string_condition(_COLUMNS[c.key], c)
    raise ValueError(f"Cannot compile {c!r} for a logged models search")


def _on_datasets(m: Any, datasets: Sequence[DatasetRef]) -> list[Condition]:
    if not datasets:
        return []
    either = []
    for name, digest in datasets:
        same = m.c.dataset_name == name
        either.append(sa.and_(same, m.c.dataset_digest == digest) if digest else same)
    return [sa.or_(*either)]


def _metric_condition(c: Comparison, datasets: Sequence[DatasetRef]) -> Condition:
    m = filter_alias(schema.logged_model_metrics)
    return sa.exists().where(
        m.c.model_id == _LM.c.model_id,
        m.c.key == c.key,
        *_on_datasets(m, datasets),
        metric_value_condition(m, c),
    )


def logged_model_order_by(
    keys: Sequence[tuple[OrderKey, Sequence[DatasetRef]]],
) -> list[OrderClause]:
    """ORDER BY for logged models: each key with the datasets its metric is read on.

    A metric sorts by the model's newest point (highest step, then timestamp)
    under that key; models without it come last. Newest first is the default,
    and ``model_id`` ends every ordering so pages are stable.
    """
    clauses: list[OrderClause] = []
    for key, datasets in keys:
        if key.entity == "metric":
            clauses.extend(_metric_order(key, datasets))
        elif key.entity == "attribute" and key.key in _COLUMNS:
            nullable = key.key == "source_run_id"
            clauses.extend(ordered(_COLUMNS[key.key], key.ascending, nullable=nullable))
        else:
            raise ValueError(f"Cannot order logged models by {key!r}")
    if not keys:
        clauses.append(_LM.c.creation_time.desc())
    clauses.append(_LM.c.model_id.asc())
    return clauses


def _metric_order(key: OrderKey, datasets: Sequence[DatasetRef]) -> list[OrderClause]:
    m = schema.logged_model_metrics.alias()
    rank = (
        sa.select(sa.case((m.c.is_nan, 1), else_=0))
        .where(m.c.model_id == _LM.c.model_id, m.c.key == key.key, *_on_datasets(m, datasets))
        .order_by(m.c.step.desc(), m.c.timestamp.desc())
        .limit(1)
        .scalar_subquery()
    )
    value = (
        sa.select(m.c.value)
        .where(m.c.model_id == _LM.c.model_id, m.c.key == key.key, *_on_datasets(m, datasets))
        .order_by(m.c.step.desc(), m.c.timestamp.desc())
        .limit(1)
        .scalar_subquery()
    )
    return [
        sa.func.coalesce(rank, 2).asc(),
        value.asc() if key.ascending else value.desc(),
    ]
