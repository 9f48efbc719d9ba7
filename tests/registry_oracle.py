"""Plain-Python meaning of registry filters and orderings: the test oracle for SQL.

Registered models and model versions are plain dicts (``ModelRow``,
``VersionRow``). String and number comparisons come from ``search_oracle``; what
is registry-specific is written out here, naively: ``!=`` on a tag the object
does not have holds, and so do ``!=`` / ``NOT IN`` on the run id of a version
registered without a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

from keel.search.filter import And, Comparison, Expr
from keel.search.order import OrderKey
from search_oracle import compare_number, compare_string


class ModelRow(TypedDict):
    name: str
    creation_timestamp: int
    last_updated_timestamp: int
    tags: dict[str, str]


class VersionRow(TypedDict):
    name: str
    version_number: int
    run_id: str | None
    source_path: str
    creation_timestamp: int
    last_updated_timestamp: int
    tags: dict[str, str]


def _tag(tags: dict[str, str], c: Comparison) -> bool:
    if c.op == "!=":
        return tags.get(c.key) != c.value
    return compare_string(tags.get(c.key), c.op, c.value)


def _holds(expr: Expr, leaf: Any) -> bool:
    if isinstance(expr, Comparison):
        return bool(leaf(expr))
    results = (_holds(clause, leaf) for clause in expr.clauses)
    return all(results) if isinstance(expr, And) else any(results)


def model_matches(expr: Expr | None, model: ModelRow) -> bool:
    def leaf(c: Comparison) -> bool:
        if c.entity == "tag":
            return _tag(model["tags"], c)
        return compare_string(model["name"], c.op, c.value)

    return expr is None or _holds(expr, leaf)


def version_matches(expr: Expr | None, version: VersionRow) -> bool:
    def leaf(c: Comparison) -> bool:
        if c.entity == "tag":
            return _tag(version["tags"], c)
        if c.key == "version_number":
            assert isinstance(c.value, (int, float))
            return compare_number(version["version_number"], c.op, c.value)
        actual = version[c.key]  # type: ignore[literal-required]
        if c.key == "run_id" and actual is None and c.op in ("!=", "NOT IN"):
            return True
        return compare_string(actual, c.op, c.value)

    return expr is None or _holds(expr, leaf)


def select_models(expr: Expr | None, models: Sequence[ModelRow]) -> set[str]:
    return {m["name"] for m in models if model_matches(expr, m)}


def select_versions(expr: Expr | None, versions: Sequence[VersionRow]) -> set[tuple[str, int]]:
    return {(v["name"], v["version_number"]) for v in versions if version_matches(expr, v)}


def _sorted(rows: Sequence[Any], keys: Sequence[OrderKey]) -> list[Any]:
    ordered = list(rows)
    for key in reversed(keys):  # stable sorts, least significant key first
        ordered.sort(key=lambda r, k=key.key: r[k], reverse=not key.ascending)
    return ordered


def order_models(models: Sequence[ModelRow], keys: Sequence[OrderKey]) -> list[str]:
    """Names in order; ``name ASC`` breaks ties."""
    tie = [] if any(k.key == "name" for k in keys) else [OrderKey("attribute", "name", True)]
    return [m["name"] for m in _sorted(models, [*keys, *tie])]


def order_versions(
    versions: Sequence[VersionRow], keys: Sequence[OrderKey]
) -> list[tuple[str, int]]:
    """(name, version) in order; ``name ASC, version_number DESC`` follow the keys."""
    tie = []
    if not any(k.key == "name" for k in keys):
        tie.append(OrderKey("attribute", "name", True))
    if not any(k.key == "version_number" for k in keys):
        tie.append(OrderKey("attribute", "version_number", False))
    return [(v["name"], v["version_number"]) for v in _sorted(versions, [*keys, *tie])]
