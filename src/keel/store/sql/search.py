"""Search filters and orderings compiled to SQLAlchemy Core over the tracking tables.

Every comparison on a metric, param, tag or dataset is a correlated ``EXISTS``
(``NOT EXISTS`` for ``IS NULL``) rather than a join: a join would multiply rows
and would make ``OR`` across different keys wrong, while ``EXISTS`` composes
with ``AND``/``OR`` like any boolean. Each subquery uses a fresh alias so that it
never correlates with a table the caller's query happens to join.

The results are the same on SQLite and PostgreSQL:

- ``LIKE`` is case-sensitive on both (the engine turns on ``case_sensitive_like``
  for SQLite) and uses ``ESCAPE '\\'``; ``ILIKE`` folds ASCII case only;
- strings sort by code point: PostgreSQL gets ``COLLATE "C"``, SQLite's default
  ``BINARY`` collation already does that;
- a metric's NaN is stored as value 0 with ``is_nan`` set, so every metric
  comparison looks at ``is_nan`` first;
- integer columns are compared exactly with integers, also beyond 2**53, and a
  fractional bound is moved to the nearest integer instead of comparing as float.

>>> from keel.search.filter import parse_filter
>>> cond = run_filter_condition(parse_filter("metrics.acc > 0.9 OR params.lr = '0.1'"))
>>> stmt = sa.select(schema.runs.c.run_uuid).where(cond).order_by(*run_order_by([]))
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from keel.entities import CONTEXT_TAG
from keel.search.filter import And, Comparison, Expr
from keel.search.order import OrderKey
from keel.store.sql import schema
from keel.store.sql.engine import DrivingJoin

__all__ = [
    "combine",
    "experiment_filter_condition",
    "experiment_order_by",
    "integer_condition",
    "ordered",
    "run_filter_condition",
    "run_order_by",
    "run_order_segments",
    "string_condition",
]

Condition = ColumnElement[bool]
OrderClause = ColumnElement[Any]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# experiments.experiment_id is INTEGER: 32 bits on PostgreSQL, so a larger id
# cannot even be bound as a parameter there.
MAX_EXPERIMENT_ID = 2**31 - 1

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_RUN_ATTRIBUTE_COLUMNS: dict[str, sa.Column[Any]] = {
    "run_id": schema.runs.c.run_uuid,
    "run_name": schema.runs.c.name,
    "status": schema.runs.c.status,
    "user_id": schema.runs.c.user_id,
    "artifact_uri": schema.runs.c.artifact_uri,
    "start_time": schema.runs.c.start_time,
    "end_time": schema.runs.c.end_time,
}
_INTEGER_ATTRIBUTES = frozenset({"start_time", "end_time", "creation_time", "last_update_time"})

_EXPERIMENT_ATTRIBUTE_COLUMNS: dict[str, sa.Column[Any]] = {
    "name": schema.experiments.c.name,
    "experiment_id": schema.experiments.c.experiment_id,
    "creation_time": schema.experiments.c.creation_time,
    "last_update_time": schema.experiments.c.last_update_time,
}

# ---------------------------------------------------------------------------
# Filters


def run_filter_condition(expr: Expr | None) -> Condition:
    """A boolean condition over ``schema.runs`` that holds for the runs ``expr`` selects.

    >>> from keel.search.filter import parse_filter
    >>> cond = run_filter_condition(parse_filter("tags.team IS NULL"))
    >>> print(sa.select(schema.runs.c.run_uuid).where(cond))  # doctest: +NORMALIZE_WHITESPACE
    SELECT runs.run_uuid FROM runs
    WHERE NOT (EXISTS (SELECT * FROM tags AS f_tags
    WHERE f_tags.run_uuid = runs.run_uuid AND f_tags.key = :key_1))
    """
    if expr is None:
        return sa.true()
    return combine(expr, _run_comparison)


def experiment_filter_condition(expr: Expr | None) -> Condition:
    """A boolean condition over ``schema.experiments`` for an experiments filter.

    >>> from keel.search.filter import parse_filter
    >>> print(experiment_filter_condition(parse_filter("experiment_id = 'x'", "experiments")))
    false
    """
    if expr is None:
        return sa.true()
    return combine(expr, _experiment_comparison)


def combine(expr: Expr, leaf: Callable[[Comparison], Condition]) -> Condition:
    """``expr``'s AND/OR tree as SQL, with ``leaf`` compiling each comparison.

    A building block for the compilers of other kinds (``registry_search``).

    >>> from keel.search.filter import parse_filter
    >>> print(combine(parse_filter("run_id = 'a' OR run_id = 'b'"), _run_comparison))
    runs.run_uuid = :run_uuid_1 OR runs.run_uuid = :run_uuid_2
    """
    if isinstance(expr, Comparison):
        return leaf(expr)
    parts = [combine(clause, leaf) for clause in expr.clauses]
    return sa.and_(*parts) if isinstance(expr, And) else sa.or_(*parts)


def _run_comparison(c: Comparison) -> Condition:
    runs = schema.runs
    if c.entity == "metric":
        return _metric_condition(c)
    if c.entity == "param":
        return _keyed_condition(schema.params, "run_uuid", runs.c.run_uuid, c)
    if c.entity == "tag":
        return _keyed_condition(schema.tags, "run_uuid", runs.c.run_uuid, c)
    if c.entity == "dataset":
        return _dataset_condition(c)
    if c.entity == "attribute" and c.key in _RUN_ATTRIBUTE_COLUMNS:
        return _column_condition(_RUN_ATTRIBUTE_COLUMNS[c.key], c)
    raise ValueError(f"Cannot compile {c!r} for a runs search")


def _experiment_comparison(c: Comparison) -> Condition:
    experiments = schema.experiments
    if c.entity == "tag":
        return _keyed_condition(
            schema.experiment_tags, "experiment_id", experiments.c.experiment_id, c
        )
    if c.entity == "attribute" and c.key == "experiment_id":
        return _experiment_id_condition(c)
    if c.entity == "attribute" and c.key in _EXPERIMENT_ATTRIBUTE_COLUMNS:
        return _column_condition(_EXPERIMENT_ATTRIBUTE_COLUMNS[c.key], c)
    raise ValueError(f"Cannot compile {c!r} for an experiments search")


@functools.cache
def filter_alias(table: sa.Table) -> Any:
    """The one alias of ``table`` that every filter subquery uses.

    A fresh alias costs ~200 µs to build its column collection, more than the
    rest of a condition. Sharing one is sound: each EXISTS subquery has its own
    FROM scope, and no enclosing query selects from these aliases, so none is
    ever correlated away.
    """
    return table.alias(f"f_{table.name}")


def metric_value_condition(metrics: Any, c: Comparison) -> Condition:
    """A metric row's ``value``/``is_nan`` compared as a float; NaN only satisfies ``!=``."""
    assert isinstance(c.value, (int, float)), c
    value = float(c.value)
    if c.op == "!=":
        return sa.or_(metrics.c.is_nan, metrics.c.value != value)
    return sa.and_(sa.not_(metrics.c.is_nan), _COMPARE[c.op](metrics.c.value, value))


def _metric_condition(c: Comparison) -> Condition:
    """The run's latest value compared as a float."""
    lm = filter_alias(schema.latest_metrics)
    return sa.exists().where(
        lm.c.run_uuid == schema.runs.c.run_uuid, lm.c.key == c.key, metric_value_condition(lm, c)
    )


def _keyed_condition(
    table: sa.Table, owner: str, parent: sa.Column[Any], c: Comparison
) -> Condition:
    """Params and tags: a missing key satisfies only ``IS NULL``, not even ``!=``."""
    t = filter_alias(table)
    same_key = [t.c[owner] == parent, t.c.key == c.key]
    if c.op == "IS NULL":
        return ~sa.exists().where(*same_key)
    if c.op == "IS NOT NULL":
        return sa.exists().where(*same_key)
    return sa.exists().where(*same_key, string_condition(t.c.value, c))


def _dataset_condition(c: Comparison) -> Condition:
    """True when any of the run's dataset inputs matches."""
    runs = schema.runs
    if c.key == "context":
        it = filter_alias(schema.input_tags)
        return sa.exists().where(
            it.c.run_uuid == runs.c.run_uuid,
            it.c.key == CONTEXT_TAG,
            string_condition(it.c.value, c),
        )
    ri = filter_alias(schema.run_inputs)
    ds = filter_alias(schema.datasets)
    return sa.exists().where(
        ri.c.run_uuid == runs.c.run_uuid,
        ds.c.dataset_uuid == ri.c.dataset_uuid,
        string_condition(ds.c[c.key], c),
    )


def _column_condition(column: sa.Column[Any], c: Comparison) -> Condition:
    if c.key in _INTEGER_ATTRIBUTES:
        assert isinstance(c.value, (int, float)), c
        return integer_condition(column, c.op, c.value)
    return string_condition(column, c)


def string_condition(column: ColumnElement[Any], c: Comparison) -> Condition:
    """``column <op> value`` for the string comparators (``= != LIKE ILIKE IN NOT IN``).

    >>> from keel.search.filter import Comparison
    >>> print(string_condition(schema.runs.c.name, Comparison("attribute", "x", "LIKE", "a%")))
    runs.name LIKE :name_1 ESCAPE '\\'
    """
    value = c.value
    if c.op in ("IN", "NOT IN"):
        assert isinstance(value, tuple), c
        return column.in_(value) if c.op == "IN" else column.not_in(value)
    assert isinstance(value, str), c
    if c.op == "LIKE":
        return column.like(value, escape="\\")
    if c.op == "ILIKE":
        return column.ilike(value, escape="\\")
    result: Condition = _COMPARE[c.op](column, value)
    return result


def integer_condition(
    column: ColumnElement[Any], op: str, value: int | float, *, bits: int = 64
) -> Condition:
    """``column op value`` exactly, for an integer column that may be NULL.

    A float bound is not compared as float, which would round large integers:
    ``x < 2.5`` becomes ``x <= 2`` and ``x = 2.5`` is false. A bound outside the
    column's range (``bits``: 64 for BIGINT, 32 for INTEGER), which PostgreSQL could
    not even bind against the column, becomes a constant.

    >>> print(integer_condition(schema.runs.c.start_time, "<", 2.5))
    runs.start_time IS NOT NULL AND runs.start_time <= :start_time_1
    """
    present = column.is_not(None)
    if isinstance(value, float) and not value.is_integer():
        if op == "=":
            return sa.false()
        if op == "!=":
            return present
        op, value = ("<=", math.floor(value)) if op in ("<", "<=") else (">=", math.ceil(value))
    bound = int(value)
    if bound > 2 ** (bits - 1) - 1:
        return present if op in ("!=", "<", "<=") else sa.false()
    if bound < -(2 ** (bits - 1)):
        return present if op in ("!=", ">", ">=") else sa.false()
    return sa.and_(present, _COMPARE[op](column, bound))


def _experiment_id_condition(c: Comparison) -> Condition:
    """Ids are strings in the API and integers in the table.

    Only an id written the way Keel prints ids (``'3'``, not ``'03'`` or ``'x'``)
    can equal a row's id; any other string matches nothing, so it never reaches
    the database as a value it cannot cast.
    """
    column = schema.experiments.c.experiment_id
    values = c.value if isinstance(c.value, tuple) else (c.value,)
    ids = [int(v) for v in values if isinstance(v, str) and _is_canonical_id(v)]
    if c.op in ("=", "IN"):
        return column.in_(ids) if ids else sa.false()
    return column.not_in(ids) if ids else sa.true()


def _is_canonical_id(text: str) -> bool:
    return (
        text.isascii()
        and text.isdigit()
        and str(int(text)) == text
        and int(text) <= MAX_EXPERIMENT_ID
    )


# ---------------------------------------------------------------------------
# Ordering


class _Bytewise(FunctionElement[str]):
    """A string expression that sorts by code point on every dialect."""

    name = "bytewise"
    inherit_cache = True
    type = sa.String()


@compiles(_Bytewise)
def _compile_bytewise(element: _Bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite's default BINARY collation already compares UTF-8 bytes.
    return compiler.process(element.clauses, **kw)


@compiles(_Bytewise, "postgresql")
def _compile_bytewise_postgresql(element: _Bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    # The database's collation (e.g. en_US) would sort case-insensitively-ish.
    return f'({compiler.process(element.clauses, **kw)}) COLLATE "C"'


def run_order_by(keys: Sequence[OrderKey]) -> list[OrderClause]:
    """ORDER BY expressions over ``schema.runs`` for parsed ``order_by`` keys.

    Missing values sort last in both directions. For metrics, NaN sorts after
    every number (also after +inf) and before missing values, whatever the
    direction, as in MLflow. ``start_time DESC, run_uuid ASC`` always follow,
    so the order is total; with no keys that is the whole (default) order.

    >>> from keel.search.order import parse_order_by
    >>> len(run_order_by(parse_order_by(["metrics.acc DESC"])))
    4
    """
    clauses: list[OrderClause] = []
    for key in keys:
        clauses.extend(_run_order_key(key))
    runs = schema.runs
    clauses += [runs.c.start_time.desc(), runs.c.run_uuid.asc()]
    return clauses


@dataclass(frozen=True)
class OrderSegment:
    """One slice of a run ordering, in an order the database can read from an index.

    The slices, read one after the other, give exactly the order of
    :func:`run_order_by`; each is ``SELECT ... FROM source WHERE condition
    ORDER BY order_by``.
    """

    source: sa.FromClause
    condition: Condition
    order_by: tuple[OrderClause, ...]


def run_order_segments(
    keys: Sequence[OrderKey], *, drive_from_metric: bool = False
) -> tuple[OrderSegment, ...]:
    """The ordering of :func:`run_order_by`, split so that a metric sort uses its index.

    Sorting by a metric through a per-run subquery makes the database visit
    every run before it can return the first page. With ``drive_from_metric``
    and a metric as first key, the runs that have a number for it are read
    first, walking ``latest_metrics`` in ``(key, value)`` index order (see
    :class:`~keel.store.sql.engine.DrivingJoin`), then the NaN ones, then the
    ones without the metric: the same total order. That pays only for a small
    page of runs that hold much of the metric's values; otherwise the one
    segment is :func:`run_order_by`'s plain ordering.

    >>> from keel.search.order import parse_order_by
    >>> len(run_order_segments(parse_order_by(["metrics.acc DESC"]), drive_from_metric=True))
    3
    >>> len(run_order_segments(parse_order_by(["metrics.acc DESC"])))
    1
    >>> len(run_order_segments(parse_order_by(["params.lr"])))
    1
    """
    # Built once per ordering: the same few orderings come back with every page.
    return _order_segments(tuple(keys), drive_from_metric)


@functools.lru_cache(maxsize=256)
def _order_segments(
    keys: tuple[OrderKey, ...], drive_from_metric: bool
) -> tuple[OrderSegment, ...]:
    runs = schema.runs
    if not drive_from_metric or not keys or keys[0].entity != "metric":
        return (OrderSegment(runs, sa.true(), tuple(run_order_by(keys))),)
    first, rest = keys[0], run_order_by(keys[1:])
    lm = schema.latest_metrics.alias("order_metric")
    on = sa.and_(lm.c.run_uuid == runs.c.run_uuid, lm.c.key == first.key)
    joined = DrivingJoin(lm, runs, on)
    value = lm.c.value.asc() if first.ascending else lm.c.value.desc()
    other = schema.latest_metrics.alias()
    missing = ~sa.exists().where(other.c.run_uuid == runs.c.run_uuid, other.c.key == first.key)
    return (
        OrderSegment(joined, lm.c.is_nan == sa.false(), (value, *rest)),
        OrderSegment(joined, lm.c.is_nan == sa.true(), tuple(rest)),
        OrderSegment(runs, missing, tuple(rest)),
    )


def experiment_order_by(keys: Sequence[OrderKey]) -> list[OrderClause]:
    """ORDER BY expressions over ``schema.experiments``.

    With no keys the order is MLflow's default, ``creation_time DESC`` then
    ``experiment_id ASC``; ``experiment_id ASC`` always ends the list as a
    tie-breaker. Missing times sort last in both directions.

    >>> len(experiment_order_by([]))
    5
    """
    if not keys:
        keys = (
            OrderKey("attribute", "creation_time", ascending=False),
            OrderKey("attribute", "experiment_id", ascending=True),
        )
    clauses: list[OrderClause] = []
    for key in keys:
        if key.entity != "attribute" or key.key not in _EXPERIMENT_ATTRIBUTE_COLUMNS:
            raise ValueError(f"Cannot order experiments by {key!r}")
        clauses.extend(ordered(_EXPERIMENT_ATTRIBUTE_COLUMNS[key.key], key.ascending))
    clauses.append(schema.experiments.c.experiment_id.asc())
    return clauses


def _run_order_key(key: OrderKey) -> list[OrderClause]:
    runs = schema.runs
    if key.entity == "metric":
        return _metric_order(key)
    if key.entity in ("param", "tag"):
        table = schema.params if key.entity == "param" else schema.tags
        t = table.alias()
        value = (
            sa.select(t.c.value)
            .where(t.c.run_uuid == runs.c.run_uuid, t.c.key == key.key)
            .scalar_subquery()
        )
        return ordered(value, key.ascending)
    if key.entity == "attribute" and key.key in _RUN_ATTRIBUTE_COLUMNS:
        column = _RUN_ATTRIBUTE_COLUMNS[key.key]
        # Without a NULL rank, start_time DESC reads ix_runs_experiment_start in order.
        return ordered(column, key.ascending, nullable=bool(column.nullable))
    raise ValueError(f"Cannot order runs by {key!r}")


def _metric_order(key: OrderKey) -> list[OrderClause]:
    lm = schema.latest_metrics.alias()
    same = (lm.c.run_uuid == schema.runs.c.run_uuid, lm.c.key == key.key)
    # 0 = a number, 1 = NaN, 2 = no such metric; always ascending.
    rank = sa.select(sa.case((lm.c.is_nan, 1), else_=0)).where(*same).scalar_subquery()
    value = sa.select(lm.c.value).where(*same).scalar_subquery()
    return [
        sa.func.coalesce(rank, 2).asc(),
        value.asc() if key.ascending else value.desc(),
    ]


def ordered(
    value: ColumnElement[Any], ascending: bool, *, nullable: bool = True
) -> list[OrderClause]:
    """NULLs last in both directions (portable, unlike NULLS LAST), strings by code point.

    A ``nullable=False`` column needs no NULL rank, and sorts cheaper without it.

    >>> len(ordered(schema.runs.c.name, ascending=False))
    2
    >>> len(ordered(schema.runs.c.name, ascending=False, nullable=False))
    1
    """
    sortable: ColumnElement[Any] = _Bytewise(value) if isinstance(value.type, sa.String) else value
    direction = sortable.asc() if ascending else sortable.desc()
    if not nullable:
        return [direction]
    return [sa.case((value.is_(None), 1), else_=0).asc(), direction]
