"""Plain-Python meaning of search filters and orderings: the test oracle for SQL.

Runs and experiments are plain dicts; see ``RunRow`` and ``ExperimentRow``. The
code here is deliberately naive and independent of the SQL compiler (no shared
helpers), so that agreement between the two means something.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

from keel.search.filter import And, Comparison, Expr
from keel.search.order import OrderKey


class InputRow(TypedDict):
    name: str
    digest: str
    context: str | None


class RunRow(TypedDict):
    run_id: str
    experiment_id: int
    run_name: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None
    artifact_uri: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    inputs: list[InputRow]


class ExperimentRow(TypedDict):
    experiment_id: int
    name: str
    creation_time: int | None
    last_update_time: int | None
    tags: dict[str, str]


def ascii_lower(text: str) -> str:
    """Lower-case A-Z only, like SQLite's lower() without ICU."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def like(value: str, pattern: str, *, fold_case: bool = False) -> bool:
    """SQL LIKE with ESCAPE '\\': % any run, _ one character, \\x the literal x."""
    if fold_case:
        value, pattern = ascii_lower(value), ascii_lower(pattern)
    regex: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            regex.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        regex.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.fullmatch("".join(regex), value, flags=re.DOTALL) is not None


def compare_string(actual: str | None, op: str, value: Any) -> bool:
    """A string comparison where a missing value (None) only satisfies IS NULL."""
    if op == "IS NULL":
        return actual is None
    if actual is None:
        return False
    if op == "IS NOT NULL":
        return True
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    if op == "LIKE":
        return like(actual, value)
    if op == "ILIKE":
        return like(actual, value, fold_case=True)
    if op == "IN":
        return actual in value
    if op == "NOT IN":
        return actual not in value
    raise AssertionError(op)


def compare_number(actual: int | float | None, op: str, value: int | float) -> bool:
    """Python's own exact int/float comparison; NaN is unequal to everything."""
    if actual is None:
        return False
    results: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    return results[op](actual, value)


def run_matches(expr: Expr | None, run: RunRow) -> bool:
    if expr is None:
        return True
    if isinstance(expr, Comparison):
        return _run_comparison(expr, run)
    results = (run_matches(clause, run) for clause in expr.clauses)
    return all(results) if isinstance(expr, And) else any(results)


def _run_comparison(c: Comparison, run: RunRow) -> bool:
    if c.entity == "metric":
        assert isinstance(c.value, (int, float))
        # Metrics are doubles: the bound is compared as a double too.
        return compare_number(run["metrics"].get(c.key), c.op, float(c.value))
    if c.entity == "param":
        return compare_string(run["params"].get(c.key), c.op, c.value)
    if c.entity == "tag":
        return compare_string(run["tags"].get(c.key), c.op, c.value)
    if c.entity == "dataset":
        return any(compare_string(i[c.key], c.op, c.value) for i in run["inputs"])
    actual = run[c.key]
    if c.key in ("start_time", "end_time"):
        assert isinstance(c.value, (int, float))
        return compare_number(actual, c.op, c.value)
    return compare_string(actual, c.op, c.value)


def experiment_matches(expr: Expr | None, exp: ExperimentRow) -> bool:
    if expr is None:
        return True
    if isinstance(expr, Comparison):
        return _experiment_comparison(expr, exp)
    results = (experiment_matches(clause, exp) for clause in expr.clauses)
    return all(results) if isinstance(expr, And) else any(results)


def _experiment_comparison(c: Comparison, exp: ExperimentRow) -> bool:
    if c.entity == "tag":
        return compare_string(exp["tags"].get(c.key), c.op, c.value)
    if c.key == "experiment_id":
        # The API's ids are the decimal strings of the integer ids.
        return compare_string(str(exp["experiment_id"]), c.op, c.value)
    if c.key == "name":
        return compare_string(exp["name"], c.op, c.value)
    assert isinstance(c.value, (int, float))
    return compare_number(exp[c.key], c.op, c.value)


def select_runs(expr: Expr | None, runs: Sequence[RunRow]) -> set[str]:
    return {r["run_id"] for r in runs if run_matches(expr, r)}


def select_experiments(expr: Expr | None, exps: Sequence[ExperimentRow]) -> set[int]:
    return {e["experiment_id"] for e in exps if experiment_matches(expr, e)}


# -- ordering ----------------------------------------------------------------


def _run_sort_value(run: RunRow, key: OrderKey) -> tuple[int, Any]:
    """(group, value): group 0 = a value, 1 = NaN, 2 = missing."""
    if key.entity == "metric":
        value: Any = run["metrics"].get(key.key)
        if value is None:
            return 2, 0.0
        return (1, 0.0) if math.isnan(value) else (0, value)
    if key.entity in ("param", "tag"):
        source = run["params"] if key.entity == "param" else run["tags"]
        text = source.get(key.key)
        return (2, "") if text is None else (0, text)
    value = run[key.key]
    return (2, 0) if value is None else (0, value)


def order_runs(runs: Sequence[RunRow], keys: Sequence[OrderKey]) -> list[str]:
    """Run ids in the order the keys give; ties by start_time DESC, run_id ASC."""
    ordered = sorted(runs, key=lambda r: r["run_id"])
    ordered.sort(key=lambda r: r["start_time"], reverse=True)
    for key in reversed(keys):
        # Stable sorts from the least significant key up; the group is always ascending.
        ordered.sort(key=lambda r, k=key: _run_sort_value(r, k)[1], reverse=not key.ascending)
        ordered.sort(key=lambda r, k=key: _run_sort_value(r, k)[0])
    return [r["run_id"] for r in ordered]


def order_experiments(exps: Sequence[ExperimentRow], keys: Sequence[OrderKey]) -> list[int]:
    """Experiment ids in order; default creation_time DESC, experiment_id ASC."""
    if not keys:
        keys = (
            OrderKey("attribute", "creation_time", ascending=False),
            OrderKey("attribute", "experiment_id", ascending=True),
        )
    ordered = sorted(exps, key=lambda e: e["experiment_id"])
    for key in reversed(keys):

        def value(e: ExperimentRow, k: OrderKey = key) -> Any:
            v = e[k.key]
            return (1, 0) if v is None else (0, v)

        ordered.sort(key=lambda e, v=value: v(e)[1], reverse=not key.ascending)
        ordered.sort(key=lambda e, v=value: v(e)[0])
    return [e["experiment_id"] for e in ordered]
