"""Registry search filters and orderings compiled to SQLAlchemy Core.

Built from the same pieces as :mod:`keel.store.sql.search` (correlated
``EXISTS`` per tag comparison, ``LIKE`` case-sensitive with ``ESCAPE '\\'``,
strings sorted by code point, exact integer bounds), with one difference in
meaning: **an object without a tag is "not equal" to any value of it**, and
a version without a run is not equal to any run id. ``tags.k != 'v'`` is
therefore ``NOT EXISTS (tag k = 'v')``. The MLflow client appends
``tag.`mlflow.prompt.is_prompt` != 'true'`` to every registered model search,
and models that were never marked as prompts must still match. ``=``,
``LIKE`` and ``ILIKE`` need the tag to be there.

Deleted versions (tombstones) are never matched: the store adds
``deleted_time IS NULL`` to every version search.

>>> from keel.search.filter import parse_filter
>>> expr = parse_filter("tags.team != 'risk' AND name LIKE 'churn%'", "registered_models")
>>> cond = registered_model_filter_condition(expr)
>>> print(sa.select(schema.registered_models.c.name).where(cond))
... # doctest: +NORMALIZE_WHITESPACE
SELECT registered_models.name FROM registered_models
WHERE NOT (EXISTS (SELECT * FROM registered_model_tags AS f_registered_model_tags
WHERE f_registered_model_tags.name = registered_models.name
AND f_registered_model_tags.key = :key_1 AND f_registered_model_tags.value = :value_1))
AND registered_models.name LIKE :name_1 ESCAPE '\\'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from keel.errors import InvalidParameter
from keel.search.filter import Comparison, Expr
from keel.search.order import OrderKey, format_order_key
from keel.store.sql import schema
from keel.store.sql.search import (
    Condition,
    OrderClause,
    combine,
    filter_alias,
    integer_condition,
    ordered,
    string_condition,
)

__all__ = [
    "model_version_filter_condition",
    "model_version_order_by",
    "registered_model_filter_condition",
    "registered_model_order_by",
    "tag_condition",
]

_RM = schema.registered_models
_MV = schema.model_versions

_MODEL_COLUMNS: dict[str, sa.Column[Any]] = {
    "name": _RM.c.name,
    "creation_timestamp": _RM.c.creation_time,
    "last_updated_timestamp": _RM.c.last_updated_time,
}
_VERSION_COLUMNS: dict[str, sa.Column[Any]] = {
    "name": _MV.c.name,
    "run_id": _MV.c.run_id,
    "source_path": _MV.c.source,
    "version_number": _MV.c.version,
    "creation_timestamp": _MV.c.creation_time,
    "last_updated_timestamp": _MV.c.last_updated_time,
}

# ---------------------------------------------------------------------------
# Filters


def registered_model_filter_condition(expr: Expr | None) -> Condition:
    """A condition over ``schema.registered_models`` for a ``registered_models`` filter.

    >>> from keel.search.filter import parse_filter
    >>> print(registered_model_filter_condition(parse_filter("name IN ('a')", "registered_models")))
    registered_models.name IN (__[POSTCOMPILE_name_1])
    """
    if expr is None:
        return sa.true()
    return combine(expr, _model_comparison)


def model_version_filter_condition(expr: Expr | None) -> Condition:
    """A condition over ``schema.model_versions`` for a ``model_versions`` filter.

    >>> from keel.search.filter import parse_filter
    >>> print(model_version_filter_condition(parse_filter("version_number >= 2", "model_versions")))
    model_versions.version IS NOT NULL AND model_versions.version >= :version_1
    """
    if expr is None:
        return sa.true()
    return combine(expr, _version_comparison)


def _model_comparison(c: Comparison) -> Condition:
    if c.entity == "tag":
        return tag_condition(schema.registered_model_tags, [("name", _RM.c.name)], c)
    if c.entity == "attribute" and c.key == "name":
        return string_condition(_RM.c.name, c)
    raise ValueError(f"Cannot compile {c!r} for a registered models search")


def _version_comparison(c: Comparison) -> Condition:
    if c.entity == "tag":
        owner = [("name", _MV.c.name), ("version", _MV.c.version)]
        return tag_condition(schema.model_version_tags, owner, c)
    if c.entity == "attribute" and c.key == "version_number":
        assert isinstance(c.value, (int, float)), c
        return integer_condition(_MV.c.version, c.op, c.value, bits=32)  # an INTEGER column
    if c.entity == "attribute" and c.key == "run_id" and c.op in ("!=", "NOT IN"):
        # A version registered without a run is "not equal" to every run id.
        return sa.or_(_MV.c.run_id.is_(None), string_condition(_MV.c.run_id, c))
    if c.entity == "attribute" and c.key in ("name", "run_id", "source_path"):
        return string_condition(_VERSION_COLUMNS[c.key], c)
    raise ValueError(f"Cannot compile {c!r} for a model versions search")


def tag_condition(
    table: sa.Table, owner: Sequence[tuple[str, sa.Column[Any]]], c: Comparison
) -> Condition:
    t = filter_alias(table)
    same_key = [t.c[column] == parent for column, parent in owner]
    same_key.append(t.c.key == c.key)
    if c.op == "!=":
        assert isinstance(c.value, str), c
        return ~sa.exists().where(*same_key, t.c.value == c.value)
    return sa.exists().where(*same_key, string_condition(t.c.value, c))


# ---------------------------------------------------------------------------
# Ordering


def registered_model_order_by(keys: Sequence[OrderKey]) -> list[OrderClause]:
    """ORDER BY for registered models; ``name ASC`` ends every ordering (names are unique).

    >>> from keel.search.order import parse_order_by
    >>> len(registered_model_order_by(parse_order_by(["timestamp DESC"], "registered_models")))
    2
    """
    _reject_repeats(keys)
    clauses = _columns_order(keys, _MODEL_COLUMNS)
    if not any(k.key == "name" for k in keys):
        clauses += ordered(_RM.c.name, ascending=True, nullable=False)
    return clauses


def model_version_order_by(keys: Sequence[OrderKey]) -> list[OrderClause]:
    """ORDER BY for model versions; default ``name ASC, version_number DESC``.

    Whatever the keys, ``name ASC`` and ``version_number DESC`` follow them (when
    not among them), so the order is total and paging is stable.

    >>> len(model_version_order_by([]))
    2
    """
    _reject_repeats(keys)
    clauses = _columns_order(keys, _VERSION_COLUMNS)
    if not any(k.key == "name" for k in keys):
        clauses += ordered(_MV.c.name, ascending=True, nullable=False)
    if not any(k.key == "version_number" for k in keys):
        clauses += ordered(_MV.c.version, ascending=False, nullable=False)
    return clauses


def _columns_order(
    keys: Sequence[OrderKey], columns: dict[str, sa.Column[Any]]
) -> list[OrderClause]:
    clauses: list[OrderClause] = []
    for key in keys:
        column = columns.get(key.key) if key.entity == "attribute" else None
        if column is None:
            raise ValueError(f"Cannot order by {key!r}")
        clauses += ordered(column, key.ascending, nullable=False)
    return clauses


def _reject_repeats(keys: Sequence[OrderKey]) -> None:
    """MLflow refuses a field named twice; a second direction would be silently ignored."""
    seen: set[str] = set()
    for key in keys:
        if key.key in seen:
            raise InvalidParameter(
                f"order_by names {key.key!r} twice (again in {format_order_key(key)!r}); "
                "name each field once."
            )
        seen.add(key.key)
