"""Validation suites learned from reference data, kept as readable, editable YAML.

:func:`suite_from` looks at reference data (one dataset, or a list of several
reference batches) and learns, per column, the checks a later batch must pass:
presence and type, nulls, a numeric range, quantile bands that catch a shift
of half a standard deviation, and for categorical columns the allowed values
and their shares. Every threshold is a number in the YAML (:meth:`Suite.to_yaml`)
that a person can read and edit; :meth:`Suite.expect` adds hand-written checks.

>>> import pandas as pd
>>> ref = pd.DataFrame({"age": range(20, 80), "plan": ["basic", "pro", "team"] * 20})
>>> suite = suite_from(ref, name="churn")
>>> new = ref.copy()
>>> new.loc[7, "plan"] = "gold"
>>> report = suite.validate(new)
>>> report.passed, [(r.expectation, r.column) for r in report.failures]
(False, [('categories', 'plan')])
>>> report.failures[0].examples
[{'row': 7, 'value': 'gold'}]

How the band checks are set (also written at the top of every suite's YAML):

* quantiles q ∈ {0.05, 0.25, 0.5, 0.75, 0.95} of a numeric column must lie within
  ``values[q] ± max(floor, z·sqrt(scale[q]²·(1/rows + 1/n) + spread[q]²))``, where
  ``scale[q] = sqrt(q(1−q)) / f(Q(q))`` is the asymptotic standard-deviation scale
  of a sample quantile with the density estimated from reference quantiles,
  ``1/f ≈ (Q(q+h) − Q(q−h)) / 2h``, ``h = min(0.05, q/2, (1−q)/2)``; ``rows`` is
  the reference size and ``n`` the batch's; ``floor`` is the larger of 0.1 ×
  the reference standard deviation and the data's resolution (the median gap
  between neighbouring distinct values); ``spread[q]`` is the batch-to-batch
  standard deviation beyond sampling noise, learned from several batches.
* category shares: ``values[c] ± max(0.02, z·sqrt(p(1−p)(1/rows + 1/n) + spread[c]²))``.
* null fraction: at most ``p + z·sqrt(p(1−p)(1/rows + 1/n)) + 0.01`` (no nulls
  if the reference had none).
* ``z = Φ⁻¹(1 − α/2m)`` with ``α = 0.01`` and ``m`` the number of band checks in
  the suite (Bonferroni), so a fresh sample from the reference distribution
  fails the whole suite in fewer than about 1% of batches.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from keel.data.expectations import (
    FAILED,
    KINDS,
    PASSED,
    QUANTILES,
    SKIPPED,
    BatchView,
    Between,
    Categories,
    Check,
    Expectation,
    ExpectationResult,
    InSet,
    Matches,
    Nulls,
    Quantiles,
    Range,
    Shares,
    TypeIs,
    Unique,
    rounded,
    type_label,
)
from keel.data.frames import DataError, batches, describe, read_table, schema_of

__all__ = ["ColumnRules", "Suite", "ValidationReport", "load_suite", "suite_from"]

ALPHA = 0.01
NULL_FLOOR = 0.01
SHARE_FLOOR = 0.02
RANGE_MARGIN = 0.1
MOSTLY = 0.999
MIN_QUANTILE_VALUES = 20
MIN_CATEGORY_COUNT = 5
IDENTIFIER_SHARE = 0.5

_HEADER = """\
# Keel validation suite {name!r}, learned from {rows} reference rows in {batches} batch(es).
# Every number is a threshold you may edit; load it with keel.data.load_suite(path).
#
# rows: {{min, max}}        rows a batch must have (from one reference batch: at least 1;
#                          from several: 0.5 x the smallest to 2 x the largest).
# extra_columns: fail      columns not listed below fail the "columns" check (or: ignore).
# Per column (n = the validated batch's rows or non-null values):
#   type       integer | float | boolean | string | datetime | other | any. Integers may
#              arrive as floats if all are whole numbers (e.g. with nulls).
#   nulls      none (no nulls), {{max: fraction}}, or learned {{reference: p, rows, z, floor}}:
#              null fraction <= p + z*sqrt(p(1-p)(1/rows + 1/n)) + floor.
#   range      at most ceil(L + z*sqrt(L)) values outside [min, max], L = (1 - mostly) n: a few
#              stray outliers pass, a flood fails. Learned: reference min/max -/+ 10% of the span.
#   quantiles  for each q: |batch quantile - values[q]| <= tol, with
#              tol = max(floor, z*sqrt(scale[q]^2 (1/rows + 1/n) + spread[q]^2));
#              scale[q] = sqrt(q(1-q)) / f(Q(q)), density f from reference quantiles
#              (1/f ~ (Q(q+h) - Q(q-h)) / 2h); floor = max(0.1 x reference std, resolution);
#              spread[q] = batch-to-batch std beyond sampling noise (several batches only).
#   categories every value must be one of these; any other value fails.
#   shares     |batch share - values[c]| <= max(floor, z*sqrt(p(1-p)(1/rows + 1/n) + spread^2)).
#   z          Phi^-1(1 - alpha/2m), alpha = {alpha}, m = {checks} band checks (Bonferroni): a fresh
#              sample of the reference distribution fails the suite in < {alpha:.0%} of batches.
#   kind/note  what the column was taken for (identifier and text columns get no category
#              check); informational only.
# Hand-written checks (also Suite.expect): between: [lo, hi] or {{min, max, mostly}},
#   in_set: [...], nulls: none, unique: true, matches: <regex the whole value must match>.
"""


@dataclass
class ColumnRules:
    """The checks on one column, keyed as in YAML, with what the column was taken for."""

    checks: dict[str, Expectation] = field(default_factory=dict)
    kind: str | None = None
    note: str | None = None

    def ordered(self) -> list[Expectation]:
        """The checks in the order the YAML lists them (and reports show them)."""
        order = list(KINDS)
        return sorted(self.checks.values(), key=lambda e: order.index(e.key))


@dataclass
class RowCount:
    """How many rows a batch must have (``max`` None: no upper bound)."""

    min: int = 1
    max: int | None = None

    def result(self, rows: int) -> ExpectationResult:
        """Check ``rows`` against the bounds."""
        expected = {"min": self.min, "max": self.max}
        observed = {"rows": rows}
        if rows >= self.min and (self.max is None or rows <= self.max):
            return ExpectationResult("rows", None, PASSED, f"{rows} rows", observed, expected, rows)
        upper = "" if self.max is None else f" and at most {self.max}"
        return ExpectationResult(
            "rows",
            None,
            FAILED,
            f"The data has {rows} rows; the suite expects at least {self.min}{upper}. Check "
            "that the whole batch arrived, or edit `rows:` in the suite.",
            observed,
            expected,
            rows,
        )


@dataclass
class ValidationReport:
    """What a suite found in one dataset: a result per expectation and a verdict."""

    suite: str
    rows: int
    results: list[ExpectationResult]

    @property
    def passed(self) -> bool:
        """True when no expectation failed."""
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[ExpectationResult]:
        """The failed expectations, in suite order."""
        return [r for r in self.results if r.status == FAILED]

    @property
    def summary(self) -> dict[str, int]:
        """Counts: evaluated (passed + failed), passed, failed, skipped."""
        passed = sum(r.status == PASSED for r in self.results)
        failed = sum(r.status == FAILED for r in self.results)
        skipped = sum(r.status == SKIPPED for r in self.results)
        return {
            "evaluated": passed + failed,
            "passed": passed,
            "failed": failed,
            "skipped": skipped,
        }

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (no numpy types, no NaN)."""
        return {
            "suite": self.suite,
            "passed": self.passed,
            "rows": self.rows,
            "summary": self.summary,
            "results": [r.to_dict() for r in self.results],
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """The report as JSON text, also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False, ensure_ascii=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def to_html(self, path: str | Path | None = None) -> str:
        """A self-contained HTML page of the report, also written to ``path`` if given."""
        from keel.data.html import validation_page

        text = validation_page(self.to_dict())
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def __str__(self) -> str:
        s = self.summary
        verdict = "passed" if self.passed else "FAILED"
        lines = [
            f"Suite {self.suite!r} {verdict} on {self.rows} rows: {s['failed']} of "
            f"{s['evaluated']} checks failed, {s['skipped']} skipped."
        ]
        lines += [f"  - {r.expectation} [{r.column}]: {r.message}" for r in self.failures]
        return "\n".join(lines)


class Suite:
    """Expectations on a dataset: learned by :func:`suite_from`, edited by hand or in YAML."""

    def __init__(
        self,
        name: str = "suite",
        columns: dict[str, ColumnRules] | None = None,
        *,
        rows: RowCount | None = None,
        extra_columns: str = "fail",
        reference: dict[str, Any] | None = None,
    ) -> None:
        if extra_columns not in ("fail", "ignore"):
            raise DataError(f"extra_columns must be 'fail' or 'ignore', not {extra_columns!r}.")
        self.name = name
        self.columns: dict[str, ColumnRules] = dict(columns or {})
        self.rows = rows or RowCount()
        self.extra_columns = extra_columns
        self.reference: dict[str, Any] = dict(reference or {})

    def __repr__(self) -> str:
        return (
            f"<Suite {self.name!r}: {len(self.expectations)} expectations on "
            f"{len(self.columns)} columns>"
        )

    @property
    def expectations(self) -> list[Expectation]:
        """Every column expectation, in column order (row and column-set checks aside)."""
        return [e for rules in self.columns.values() for e in rules.ordered()]

    def expect(
        self,
        column: str,
        *,
        between: tuple[float | None, float | None] | None = None,
        mostly: float = 1.0,
        in_set: Iterable[Any] | None = None,
        not_null: bool = False,
        max_null_fraction: float | None = None,
        unique: bool = False,
        matches: str | None = None,
        type: str | None = None,
    ) -> Suite:
        """Add one hand-written check on ``column`` (replacing one of the same kind).

        Give exactly one of: ``between=(lo, hi)`` (None for an open end; with
        ``mostly``, the fraction of values that must be inside), ``in_set=[...]``,
        ``not_null=True``, ``max_null_fraction=f``, ``unique=True``,
        ``matches=regex`` (whole value, RE2 syntax) or ``type="integer"``. The
        check appears in the column's YAML block under the same name. Returns
        the suite, so calls chain.

        >>> s = Suite("people").expect("age", between=(18, 120)).expect("id", unique=True)
        >>> [(e.column, e.key) for e in s.expectations]
        [('age', 'between'), ('id', 'unique')]
        """
        made: list[Expectation] = []
        if between is not None:
            if len(between) != 2:
                raise DataError(
                    f"between= for column {column!r} needs (low, high), not {between!r}."
                )
            if not 0.0 <= mostly <= 1.0:
                raise DataError(
                    f"mostly= for column {column!r} must be between 0 and 1, not {mostly!r}."
                )
            low, high = between
            made.append(Between(column, _opt_float(low), _opt_float(high), float(mostly)))
        if in_set is not None:
            made.append(InSet(column, list(in_set)))
        if not_null:
            made.append(Nulls(column, 0.0))
        if max_null_fraction is not None:
            made.append(Nulls(column, float(max_null_fraction)))
        if unique:
            made.append(Unique(column))
        if matches is not None:
            made.append(Matches(column, matches))
        if type is not None:
            made.append(TypeIs.from_yaml(column, type))
        if len(made) != 1:
            raise DataError(
                f"Suite.expect(column={column!r}, ...) takes exactly one check (between=, "
                "in_set=, not_null=, max_null_fraction=, unique=, matches= or type=); got "
                f"{len(made)}. Call expect once per check."
            )
        self.columns.setdefault(column, ColumnRules()).checks[made[0].key] = made[0]
        return self

    # -- validation ----------------------------------------------------------------------

    def validate(self, data: Any) -> ValidationReport:
        """Check ``data`` (anything :func:`keel.data.frames.batches` reads) against the suite.

        Streams the data a batch at a time; quantile and uniqueness checks keep
        their own column's values. A missing column fails its type check (its
        other checks are skipped); an empty dataset fails the row count. An
        unreadable file raises :class:`DataError` naming it.

        >>> import pandas as pd
        >>> s = Suite("t").expect("x", between=(0, 10))
        >>> s.validate(pd.DataFrame({"x": [1, 5, 11]})).summary
        {'evaluated': 3, 'passed': 2, 'failed': 1, 'skipped': 0}
        """
        rows = 0
        checks: list[tuple[Expectation, Check | ExpectationResult]] | None = None
        schema: pa.Schema | None = None
        for batch in batches(data):
            if checks is None:
                schema = batch.schema
                checks = self._start(schema)
            view = BatchView(batch, rows)
            for _, check in checks:
                if isinstance(check, Check):
                    check.update(view)
            rows += batch.num_rows
        if checks is None or schema is None:
            schema = _schema_without_rows(data)
            checks = self._start(schema)
        results = [self.rows.result(rows), self._columns_result(schema)]
        for _, check in checks:
            results.append(check.finish(rows) if isinstance(check, Check) else check)
        return ValidationReport(self.name, rows, results)

    def _start(self, schema: pa.Schema) -> list[tuple[Expectation, Check | ExpectationResult]]:
        present = set(schema.names)
        out: list[tuple[Expectation, Check | ExpectationResult]] = []
        for column, rules in self.columns.items():
            for spec in rules.ordered():
                if column in present:
                    out.append((spec, spec.start(schema)))
                    continue
                # One failure per missing column is enough when its type check says it.
                reported = "type" in rules.checks and not isinstance(spec, TypeIs)
                message = (
                    f"Column {column!r} is missing from the data (its type check fails)."
                    if reported
                    else f"Column {column!r} is missing from the data; the suite expects it. "
                    "Add the column, or remove it from the suite."
                )
                status = SKIPPED if reported else FAILED
                out.append((spec, spec.result(status, message, observed="missing")))
        return out

    def _columns_result(self, schema: pa.Schema) -> ExpectationResult:
        extra = [n for n in schema.names if n not in self.columns]
        expected = {"extra_columns": self.extra_columns}
        if not extra:
            return ExpectationResult(
                "columns", None, PASSED, "no unexpected columns", {"extra": []}, expected
            )
        if self.extra_columns == "ignore":
            return ExpectationResult(
                "columns",
                None,
                PASSED,
                f"extra columns ignored: {extra}",
                {"extra": extra},
                expected,
            )
        return ExpectationResult(
            "columns",
            None,
            FAILED,
            f"The data has column(s) the suite does not know: {extra}. Drop them, add them to "
            "the suite, or set `extra_columns: ignore`.",
            {"extra": extra},
            expected,
            unexpected_count=len(extra),
        )

    # -- YAML ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The suite as plain data, in the layout of its YAML."""
        columns: dict[str, Any] = {}
        for column, rules in self.columns.items():
            block: dict[str, Any] = {}
            if rules.kind:
                block["kind"] = rules.kind
            if rules.note:
                block["note"] = rules.note
            for key in KINDS:
                if key in rules.checks:
                    block[key] = rules.checks[key].to_yaml()
            columns[column] = block
        return {
            "suite": self.name,
            "reference": dict(self.reference),
            "rows": {"min": self.rows.min, "max": self.rows.max},
            "extra_columns": self.extra_columns,
            "columns": columns,
        }

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The suite as commented YAML, also written to ``path`` if given.

        >>> print(Suite("s").expect("age", between=(18, 120)).to_yaml().splitlines()[-1])
            between: [18.0, 120.0]
        """
        ref = self.reference
        header = _HEADER.format(
            name=self.name,
            rows=ref.get("rows", "?"),
            batches=ref.get("batches", "?"),
            alpha=ref.get("alpha", ALPHA),
            checks=ref.get("band_checks", "?"),
        )
        doc = self.to_dict()
        doc["reference"] = _Flow(doc["reference"])
        doc["rows"] = _Flow(doc["rows"])
        doc["columns"] = {name: _flow_leaves(block) for name, block in doc["columns"].items()}
        body = yaml.dump(
            doc,
            Dumper=_SuiteDumper,
            sort_keys=False,
            default_flow_style=False,
            width=100,
            allow_unicode=True,
        )
        text = header + str(body)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "the suite YAML") -> Suite:
        """A suite from YAML text (as written by :meth:`to_yaml`, edited or not).

        >>> Suite.from_yaml("suite: s\\ncolumns: {age: {between: [18, 120]}}").expectations
        [Between(column='age', min=18.0, max=120.0, mostly=1.0, z=0.0)]
        """
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DataError(f"Cannot parse {source} as YAML: {exc}") from None
        if not isinstance(doc, dict):
            raise DataError(f"{source.capitalize()} is not a mapping with `columns:`.")
        unknown = set(doc) - {"suite", "reference", "rows", "extra_columns", "columns"}
        if unknown:
            raise DataError(
                f"{source.capitalize()} has unknown top-level key(s) {sorted(unknown)}; "
                "expected suite, reference, rows, extra_columns, columns."
            )
        rows = doc.get("rows") or {}
        if not isinstance(rows, dict):
            raise DataError(f"`rows:` in {source} must be {{min: ..., max: ...}}, not {rows!r}.")
        columns: dict[str, ColumnRules] = {}
        for column, block in (doc.get("columns") or {}).items():
            columns[str(column)] = _rules_from_yaml(str(column), block or {}, source)
        return cls(
            str(doc.get("suite", "suite")),
            columns,
            rows=RowCount(int(rows.get("min") or 0), _opt_int(rows.get("max"))),
            extra_columns=str(doc.get("extra_columns", "fail")),
            reference=dict(doc.get("reference") or {}),
        )


def load_suite(path: str | Path) -> Suite:
    """Read a suite from a YAML file written by :meth:`Suite.to_yaml` (and maybe edited).

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "people.yaml"
    >>> _ = Suite("people").expect("age", between=(18, 120)).to_yaml(path)
    >>> load_suite(path).expectations
    [Between(column='age', min=18.0, max=120.0, mostly=1.0, z=0.0)]
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"Cannot read suite file {str(path)!r}: {exc.strerror}.") from None
    return Suite.from_yaml(text, source=f"suite file {str(path)!r}")


class _Flow(dict[Any, Any]):
    """A mapping written on one line: ``{0.05: 1.2, 0.5: 3.4}``."""


class _FlowList(list[Any]):
    """A list written on one line: ``[basic, pro]``."""


class _SuiteDumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no type hints
    """Safe YAML with column blocks one check per line and each check's numbers on one line."""


_SuiteDumper.add_representer(
    _Flow, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True)
)
_SuiteDumper.add_representer(
    _FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True)
)


def _flow_leaves(block: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in block.items():
        if isinstance(value, dict):
            nested = any(isinstance(v, dict | list) for v in value.values())
            out[key] = _flow_leaves(value) if nested else _Flow(value)
        elif isinstance(value, list):
            out[key] = _FlowList(value)
        else:
            out[key] = value
    return out


def _rules_from_yaml(column: str, block: Any, source: str) -> ColumnRules:
    if not isinstance(block, dict):
        raise DataError(
            f"Column {column!r} in {source} must be a mapping of checks, not {block!r}."
        )
    rules = ColumnRules(kind=block.get("kind"), note=block.get("note"))
    for key, value in block.items():
        if key in ("kind", "note"):
            continue
        if key not in KINDS:
            raise DataError(
                f"Column {column!r} in {source} has an unknown check {key!r}; known checks: "
                f"{', '.join(KINDS)}."
            )
        rules.checks[key] = KINDS[key].from_yaml(column, value)
    return rules


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _schema_without_rows(data: Any) -> pa.Schema:
    # A zero-row frame yields no batches; its columns still matter to the report.
    if isinstance(data, pa.Table | pa.RecordBatch):
        return data.schema
    if type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        try:
            return pa.Schema.from_pandas(data.rename(columns=str), preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return pa.schema([])
    try:
        return schema_of(data)
    except DataError:
        return pa.schema([])


# -- learning ------------------------------------------------------------------------------


def suite_from(
    reference: Any,
    *,
    name: str = "suite",
    categorical_max: int = 50,
    extra_columns: str = "fail",
    alpha: float = ALPHA,
) -> Suite:
    """Learn a validation suite from reference data.

    ``reference`` is anything :func:`keel.data.frames.batches` reads (a pandas
    frame, an Arrow table, a CSV or Parquet path), or a **list or tuple** of
    them: several reference batches, whose batch-to-batch variation widens the
    bands and sets the row-count range (0.5 × the smallest to 2 × the largest;
    from a single reference, at least one row).

    Per column, by kind: numeric columns get range and quantile bands; string
    and boolean columns, and integer columns with at most ``categorical_max``
    distinct values each seen at least 5 times, get allowed categories and
    their shares; string columns whose values are near-unique (≥ 50% distinct,
    20+ values) are taken for identifiers and get no category check, as do
    strings with more than ``categorical_max`` distinct values. Every column
    gets a type and a nulls check. ``alpha`` is the family-wise rate at which
    a fresh sample of the reference distribution may fail the band checks.

    >>> import pandas as pd
    >>> suite = suite_from(pd.DataFrame({"x": [i / 2 for i in range(200)]}))
    >>> sorted(suite.columns["x"].checks)
    ['nulls', 'quantiles', 'range', 'type']
    """
    if categorical_max < 0:
        raise DataError(f"categorical_max must be 0 or more, not {categorical_max!r}.")
    if not 0 < alpha < 1:
        raise DataError(f"alpha must be between 0 and 1, not {alpha!r}.")
    parts = list(reference) if isinstance(reference, list | tuple) else [reference]
    if not parts:
        raise DataError("suite_from got an empty list: pass at least one reference batch.")
    tables = [_reference_table(part, i, len(parts)) for i, part in enumerate(parts)]
    names = tables[0].column_names
    for i, table in enumerate(tables[1:], start=2):
        if set(table.column_names) != set(names):
            missing = sorted(set(names) - set(table.column_names))
            extra = sorted(set(table.column_names) - set(names))
            raise DataError(
                f"Reference batch {i} has different columns from batch 1 (missing {missing}, "
                f"extra {extra}). Give every reference batch the same columns."
            )
    plans = [_plan(column, [t.column(column) for t in tables], categorical_max) for column in names]
    checks = sum(p.band_checks for p in plans)
    z = rounded(NormalDist().inv_cdf(1 - alpha / (2 * max(checks, 1))), 4)
    sizes = [t.num_rows for t in tables]
    rows = RowCount(1, None)
    if len(tables) > 1:
        rows = RowCount(max(1, math.floor(0.5 * min(sizes))), math.ceil(2 * max(sizes)))
    return Suite(
        name,
        {p.column: p.rules(z) for p in plans},
        rows=rows,
        extra_columns=extra_columns,
        reference={
            "rows": sum(sizes),
            "batches": len(tables),
            "alpha": alpha,
            "band_checks": checks,
            "z": z,
        },
    )


def _reference_table(part: Any, index: int, count: int) -> pa.Table:
    table = read_table(part)
    if table.num_rows == 0:
        where = f"reference batch {index + 1}" if count > 1 else "the reference"
        raise DataError(f"{where.capitalize()} ({describe(part)}) has no rows to learn from.")
    return table


@dataclass
class _Plan:
    """What was learned about one column, before z (which depends on every column) is known."""

    column: str
    type: str
    kind: str
    rows: int
    nulls: int
    note: str | None = None
    range: tuple[float, float] | None = None
    quantiles: Quantiles | None = None
    categories: list[Any] | None = None
    shares: Shares | None = None

    @property
    def band_checks(self) -> int:
        count = 1 if self.nulls else 0
        count += len(self.quantiles.values) if self.quantiles else 0
        count += len(self.shares.values) if self.shares else 0
        return count

    def rules(self, z: float) -> ColumnRules:
        col = self.column
        checks: list[Expectation] = [TypeIs(col, self.type)]
        if self.nulls:
            fraction = rounded(self.nulls / self.rows, 4)
            checks.append(Nulls(col, None, fraction, self.rows, z, NULL_FLOOR))
        else:
            checks.append(Nulls(col, 0.0))
        if self.range is not None:
            checks.append(Range(col, self.range[0], self.range[1], MOSTLY, z))
        if self.quantiles is not None:
            self.quantiles.z = z
            checks.append(self.quantiles)
        if self.categories is not None:
            checks.append(Categories(col, self.categories))
        if self.shares is not None:
            self.shares.z = z
            checks.append(self.shares)
        return ColumnRules({c.key: c for c in checks}, self.kind, self.note)


def _plan(column: str, parts: list[pa.ChunkedArray], categorical_max: int) -> _Plan:
    arrays = [_decoded(p) for p in parts]
    labels = {type_label(a.type) for a in arrays} - {"null"}
    if labels == {"integer", "float"}:
        labels = {"float"}
    if len(labels) > 1:
        raise DataError(
            f"Column {column!r} has different types in different reference batches "
            f"({sorted(labels)}). Give it one type in every batch."
        )
    label = labels.pop() if labels else "any"
    rows = sum(len(a) for a in arrays)
    if label in ("integer", "float"):
        return _plan_numeric(column, label, arrays, rows, categorical_max)
    nulls = sum(a.null_count for a in arrays)
    plan = _Plan(column, label, "other", rows, nulls)
    if label == "any":
        plan.note = "all values null in the reference: only presence and nulls are checked"
    elif label == "datetime":
        plan.kind = "datetime"
        plan.note = "datetimes: no range check (new batches are usually later)"
    elif label in ("string", "boolean"):
        counts = [_value_counts(a) for a in arrays]
        _plan_categorical(plan, counts, categorical_max, label == "string")
    return plan


def _decoded(part: pa.ChunkedArray) -> pa.Array:
    array = part.combine_chunks() if part.num_chunks != 1 else part.chunk(0)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def _value_counts(array: pa.Array) -> dict[Any, int]:
    if len(array) == 0:
        return {}
    pairs = pc.value_counts(array).to_pylist()
    return {p["values"]: p["counts"] for p in pairs if p["values"] is not None}


def _plan_numeric(
    column: str, label: str, arrays: list[pa.Array], rows: int, categorical_max: int
) -> _Plan:
    values = [_floats(a) for a in arrays]
    present = [v[~np.isnan(v)] for v in values]
    nulls = sum(len(v) - len(p) for v, p in zip(values, present, strict=True))
    plan = _Plan(column, label, "numeric", rows, nulls)
    x = np.concatenate(present)
    if len(x) == 0:
        plan.note = "all values null in the reference: only type and nulls are checked"
        return plan
    distinct, counts = np.unique(x, return_counts=True)
    whole = bool(np.all(np.isfinite(x)) and np.all(x == np.round(x)))
    if whole and len(distinct) <= categorical_max and counts.min() >= MIN_CATEGORY_COUNT:
        per_batch = []
        for p in present:
            d, c = np.unique(p, return_counts=True)
            per_batch.append({int(k): int(n) for k, n in zip(d, c, strict=True)})
        _plan_categorical(plan, per_batch, categorical_max, False)
        plan.note = f"integer column with {len(distinct)} distinct values: checked as categories"
        return plan
    if whole and len(distinct) <= categorical_max:
        plan.note = "few distinct whole numbers, some rare: checked as numbers, not categories"
    finite = x[np.isfinite(x)]
    if len(finite) == 0:
        return plan
    lo, hi = float(finite.min()), float(finite.max())
    std = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
    unit = std or abs(hi) or 1.0
    margin = RANGE_MARGIN * (hi - lo)
    plan.range = (_round_to(lo - margin, unit), _round_to(hi + margin, unit))
    if len(finite) >= MIN_QUANTILE_VALUES:
        batch_values = [p[np.isfinite(p)] for p in present]
        plan.quantiles = _learn_quantiles(column, finite, batch_values, std, distinct, unit)
    return plan


def _floats(array: pa.Array) -> np.ndarray:
    if not pa.types.is_float64(array.type):
        array = pc.cast(array, pa.float64())
    return np.asarray(array.to_numpy(zero_copy_only=False), float)


def _round_to(value: float, unit: float) -> float:
    # Four significant digits of the column's spread: precise enough for any band,
    # short enough to read, even for large offsets such as epoch seconds.
    digits = 4 - math.floor(math.log10(abs(unit))) if unit else 6
    return float(round(value, max(digits, -15)))


def _learn_quantiles(
    column: str,
    x: np.ndarray,
    batch_values: list[np.ndarray],
    std: float,
    distinct: np.ndarray,
    unit: float,
) -> Quantiles:
    steps = [min(0.05, q / 2, (1 - q) / 2) for q in QUANTILES]
    points = [*QUANTILES]
    for q, h in zip(QUANTILES, steps, strict=True):
        points += [q - h, q + h]
    got = np.quantile(x, points)
    centre = got[: len(QUANTILES)]
    sides = got[len(QUANTILES) :].reshape(-1, 2)
    scale = {
        q: math.sqrt(q * (1 - q)) * float(hi - lo) / (2 * h)
        for q, h, (lo, hi) in zip(QUANTILES, steps, sides, strict=True)
    }
    resolution = float(np.median(np.diff(distinct))) if len(distinct) > 1 else 0.0
    floor = max(0.1 * std, resolution)
    spread: dict[float, float] = {}
    usable = [b for b in batch_values if len(b) >= MIN_QUANTILE_VALUES]
    if len(usable) > 1:
        per_batch = np.array([np.quantile(b, QUANTILES) for b in usable])
        between = per_batch.var(axis=0, ddof=1)
        inverse_sizes = float(np.mean([1 / len(b) for b in usable]))
        k = len(usable)
        for i, q in enumerate(QUANTILES):
            # Variance beyond sampling noise is real batch-to-batch variation.
            excess = between[i] - scale[q] ** 2 * inverse_sizes
            if excess > 0:
                spread[q] = rounded(math.sqrt(excess * (1 + 1 / k)), 4)
    return Quantiles(
        column,
        {q: _round_to(float(v), unit) for q, v in zip(QUANTILES, centre, strict=True)},
        {q: rounded(s, 4) for q, s in scale.items()},
        len(x),
        0.0,
        rounded(floor, 4),
        spread,
    )


def _plan_categorical(
    plan: _Plan, counts: list[dict[Any, int]], categorical_max: int, strings: bool
) -> None:
    total: dict[Any, int] = {}
    for part in counts:
        for value, count in part.items():
            total[value] = total.get(value, 0) + count
    n = sum(total.values())
    if n == 0:
        return
    if strings and n >= 20 and len(total) >= IDENTIFIER_SHARE * n:
        plan.kind = "identifier"
        plan.note = (
            f"{len(total)} distinct of {n} values: taken for an identifier, no category check"
        )
        return
    if len(total) > categorical_max:
        plan.kind = "text"
        plan.note = (
            f"{len(total)} distinct values, more than categorical_max={categorical_max}: "
            "no category check (add `in_set:` by hand if the set is closed)"
        )
        return
    plan.kind = "categorical"
    order = sorted(total, key=lambda v: (-total[v], str(v)))
    plan.categories = order
    shares = {v: total[v] / n for v in order}
    spread: dict[Any, float] = {}
    sizes = [sum(part.values()) for part in counts]
    usable = [(part, size) for part, size in zip(counts, sizes, strict=True) if size > 0]
    if len(usable) > 1:
        k = len(usable)
        inverse_sizes = float(np.mean([1 / size for _, size in usable]))
        for value in order:
            observed = np.array([part.get(value, 0) / size for part, size in usable])
            p = shares[value]
            excess = float(observed.var(ddof=1)) - p * (1 - p) * inverse_sizes
            if excess > 0:
                spread[value] = rounded(math.sqrt(excess * (1 + 1 / k)), 4)
    plan.shares = Shares(
        plan.column, {v: rounded(s, 4) for v, s in shares.items()}, n, 0.0, SHARE_FLOOR, spread
    )
