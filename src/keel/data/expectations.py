"""The checks a validation suite runs, one class per YAML key of a column block.

Each expectation is plain editable data (the numbers in the suite's YAML) and
knows how to check a stream of record batches: :meth:`Expectation.start` makes
a :class:`Check` that sees every batch once (:class:`BatchView`) and then
reports an :class:`ExpectationResult` with the observed and the expected
values. Only quantile and uniqueness checks keep values in memory, and only of
their own column.

>>> import pyarrow as pa
>>> batch = pa.record_batch({"age": [31, 45, 200]})
>>> check = Between("age", 18, 120).start(batch.schema)
>>> check.update(BatchView(batch, 0))
>>> result = check.finish(3)
>>> result.status, result.unexpected_count, result.examples
('failed', 1, [{'row': 2, 'value': 200.0}])
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keel.data.frames import DataError

MAX_EXAMPLES = 5
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
TYPES = ("integer", "float", "boolean", "string", "datetime", "other")

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


def type_label(dtype: pa.DataType) -> str:
    """The suite's name for an Arrow type: integer, float, boolean, string, datetime, other.

    >>> type_label(pa.int32()), type_label(pa.large_string())
    ('integer', 'string')
    """
    if pa.types.is_dictionary(dtype):
        return type_label(dtype.value_type)
    if pa.types.is_null(dtype):
        return "null"
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "float"
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        return "datetime"
    return "other"


def plain(value: Any) -> Any:
    """``value`` with numpy scalars, tuples and non-string keys made JSON-ready.

    Non-finite floats become ``None`` (an open bound, or nothing to observe).

    >>> plain({1: np.float64(0.5), "b": (np.int64(2), float("nan"))})
    {'1': 0.5, 'b': [2, None]}
    """
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def rounded(value: float, digits: int = 6) -> float:
    """``value`` to ``digits`` significant digits: learned numbers stay readable in YAML.

    >>> rounded(3.14159265, 3)
    3.14
    """
    return float(f"{float(value):.{digits}g}")


@dataclass
class ExpectationResult:
    """The outcome of one expectation on one validated dataset."""

    expectation: str
    column: str | None
    status: str
    message: str
    observed: Any = None
    expected: Any = None
    rows_checked: int = 0
    unexpected_count: int | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """False only for a failure; a skipped check (nothing to check) does not fail."""
        return self.status != FAILED

    @property
    def unexpected_fraction(self) -> float | None:
        """``unexpected_count / rows_checked`` where the check counts rows."""
        if self.unexpected_count is None or self.rows_checked == 0:
            return None
        return self.unexpected_count / self.rows_checked

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields of the result."""
        return {
            "expectation": self.expectation,
            "column": self.column,
            "status": self.status,
            "passed": self.passed,
            "message": self.message,
            "observed": plain(self.observed),
            "expected": plain(self.expected),
            "rows_checked": self.rows_checked,
            "unexpected_count": self.unexpected_count,
            "unexpected_fraction": plain(self.unexpected_fraction),
            "examples": plain(self.examples),
        }


class BatchView:
    """One record batch as the checks see it, with conversions made once and shared."""

    def __init__(self, batch: pa.RecordBatch, offset: int) -> None:
        self.batch = batch
        self.offset = offset  # row number of the batch's first row in the whole dataset
        self.rows = batch.num_rows
        self._arrays: dict[str, pa.Array] = {}
        self._floats: dict[str, np.ndarray | None] = {}
        self._counts: dict[str, dict[Any, int]] = {}

    def array(self, name: str) -> pa.Array:
        """The column, dictionary-decoded."""
        if name not in self._arrays:
            array = self.batch.column(name)
            if pa.types.is_dictionary(array.type):
                array = array.dictionary_decode()
            self._arrays[name] = array
        return self._arrays[name]

    def floats(self, name: str) -> np.ndarray | None:
        """A numeric column as float64 with NaN for nulls; None for non-numeric columns."""
        if name not in self._floats:
            array = self.array(name)
            label = type_label(array.type)
            if label in ("integer", "float"):
                if label == "integer" or not pa.types.is_float64(array.type):
                    array = pc.cast(array, pa.float64())
                self._floats[name] = np.asarray(array.to_numpy(zero_copy_only=False), float)
            elif label == "null":
                self._floats[name] = np.full(self.rows, np.nan)
            else:
                self._floats[name] = None
        return self._floats[name]

    def nulls(self, name: str) -> np.ndarray:
        """A boolean mask of missing values (null, or NaN in a float column)."""
        values = self.floats(name)
        if values is not None:
            return np.asarray(np.isnan(values), bool)
        array = self.array(name)
        if array.null_count == 0:
            return np.zeros(self.rows, bool)
        return np.asarray(array.is_null().to_numpy(zero_copy_only=False), bool)

    def counts(self, name: str) -> dict[Any, int]:
        """How often each non-null value occurs in the column."""
        if name not in self._counts:
            array = self.array(name)
            pairs = pc.value_counts(array).to_pylist() if len(array) else []
            self._counts[name] = {
                p["values"]: p["counts"]
                for p in pairs
                if p["values"] is not None
                and not (isinstance(p["values"], float) and math.isnan(p["values"]))
            }
        return self._counts[name]

    def examples(self, mask: np.ndarray, values: Any, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` rows where ``mask`` holds, with their row number and value."""
        rows = np.flatnonzero(mask)[:limit]
        return [{"row": int(self.offset + r), "value": _item(values[int(r)])} for r in rows]


def _item(value: Any) -> Any:
    if isinstance(value, pa.Scalar):
        return value.as_py()
    if isinstance(value, np.generic):
        return value.item()
    return value


class Check(ABC):
    """One expectation's pass over the data: ``update`` per batch, then ``finish``."""

    @abstractmethod
    def update(self, view: BatchView) -> None:
        """Take in one batch."""

    @abstractmethod
    def finish(self, rows: int) -> ExpectationResult:
        """The result, given the number of rows validated."""


class Expectation(ABC):
    """A check on one column; ``key`` is its name in the column's YAML block."""

    key: ClassVar[str]
    column: str

    @abstractmethod
    def to_yaml(self) -> Any:
        """The value under ``key`` in the column's YAML block."""

    @classmethod
    @abstractmethod
    def from_yaml(cls, column: str, value: Any) -> Expectation:
        """Parse the value under ``key``; raise DataError naming the column if it is malformed."""

    @abstractmethod
    def start(self, schema: pa.Schema) -> Check:
        """A fresh check for data with this schema (the column is in it)."""

    def result(self, status: str, message: str, **fields: Any) -> ExpectationResult:
        """A result of this expectation."""
        return ExpectationResult(self.key, self.column, status, message, **fields)


def _bad(column: str, key: str, value: Any, want: str) -> DataError:
    return DataError(
        f"Column {column!r}: cannot read {key}: {value!r} in the suite; expected {want}. "
        "Fix that line of the suite's YAML."
    )


def _number(column: str, key: str, value: Any, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(column, key, value, "a number")
    return float(value)


def _mapping(column: str, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(column, key, value, "a mapping")
    return dict(value)


def _number_map(column: str, key: str, value: Any) -> dict[float, float]:
    items = _mapping(column, key, value or {})
    out: dict[float, float] = {}
    for q, v in items.items():
        try:
            out[float(q)] = float(v)
        except (TypeError, ValueError):
            raise _bad(column, key, {q: v}, "numbers keyed by quantile") from None
    return out


# -- type ------------------------------------------------------------------------------


@dataclass
class TypeIs(Expectation):
    """The column exists and holds this type (integers may arrive as whole-number floats)."""

    column: str
    type: str
    key: ClassVar[str] = "type"

    def to_yaml(self) -> Any:
        return self.type

    @classmethod
    def from_yaml(cls, column: str, value: Any) -> TypeIs:
        if value not in TYPES:
            raise _bad(column, "type", value, "one of " + ", ".join(TYPES))
        return cls(column, str(value))

    def start(self, schema: pa.Schema) -> Check:
        return _TypeCheck(self, type_label(schema.field(self.column).type))


class _TypeCheck(Check):
    def __init__(self, spec: TypeIs, actual: str) -> None:
        self.spec, self.actual = spec, actual
        # Only an integer column arriving as floats needs the values looked at.
        self.look = spec.type == "integer" and actual == "float"
        self.bad = 0
        self.checked = 0
        self.examples: list[dict[str, Any]] = []

    def update(self, view: BatchView) -> None:
        if not self.look:
            return
        values = view.floats(self.spec.column)
        assert values is not None
        present = ~np.isnan(values)
        self.checked += int(present.sum())
        fractional = present & ~(np.isfinite(values) & (values == np.round(values)))
        count = int(fractional.sum())
        if count:
            self.bad += count
            if len(self.examples) < MAX_EXAMPLES:
                need = MAX_EXAMPLES - len(self.examples)
                self.examples += view.examples(fractional, values, need)

    def finish(self, rows: int) -> ExpectationResult:
        spec, actual = self.spec, self.actual
        column = spec.column
        if actual == spec.type or actual == "null" or (spec.type, actual) == ("float", "integer"):
            return spec.result(
                PASSED,
                f"{column!r} is {actual}",
                observed=actual,
                expected=spec.type,
                rows_checked=rows,
            )
        if self.look:
            if self.bad == 0:
                return spec.result(
                    PASSED,
                    f"{column!r} holds floats, all whole numbers: fine for an integer column",
                    observed=actual,
                    expected=spec.type,
                    rows_checked=self.checked,
                    unexpected_count=0,
                )
            return spec.result(
                FAILED,
                f"Column {column!r} should hold integers but {self.bad} value(s) have a "
                "fractional part (examples below). Round them or change `type:` in the suite.",
                observed=actual,
                expected=spec.type,
                rows_checked=self.checked,
                unexpected_count=self.bad,
                examples=self.examples,
            )
        return spec.result(
            FAILED,
            f"Column {column!r} holds {actual} values but the suite expects {spec.type}. "
            f"Convert the column (for example pd.to_numeric or .astype) or change `type:` "
            "in the suite.",
            observed=actual,
            expected=spec.type,
            rows_checked=rows,
        )


# -- nulls -----------------------------------------------------------------------------


@dataclass
class Nulls(Expectation):
    """The null fraction stays below a bound.

    Either a fixed ``max_fraction`` (0: no nulls at all) or one learned from the
    reference: ``reference + z·sqrt(p(1−p)(1/rows + 1/n)) + floor`` for a batch of
    ``n`` rows, where ``p = reference`` and ``rows`` is the reference size.
    """

    column: str
    max_fraction: float | None = 0.0
    reference: float | None = None
    rows: int = 0
    z: float = 3.9
    floor: float = 0.01
    key: ClassVar[str] = "nulls"

    def bound(self, n: int) -> float:
        """The largest null fraction allowed in a batch of ``n`` rows."""
        if self.reference is None:
            return self.max_fraction or 0.0
        p = self.reference
        noise = math.sqrt(p * (1 - p) * (1 / max(self.rows, 1) + 1 / max(n, 1)))
        return min(1.0, p + self.z * noise + self.floor)

    def to_yaml(self) -> Any:
        if self.reference is not None:
            return {
                "reference": self.reference,
                "rows": self.rows,
                "z": self.z,
                "floor": self.floor,
            }
        if not self.max_fraction:
            return "none"
        return {"max": self.max_fraction}

    @classmethod
    def from_yaml(cls, column: str, value: Any) -> Nulls:
        if value in ("none", None, 0, False):
            return cls(column, 0.0)
        fields = _mapping(column, "nulls", value)
        if "max" in fields:
            return cls(column, _number(column, "nulls.max", fields["max"]))
        if "reference" not in fields:
            raise _bad(column, "nulls", value, "none, {max: fraction} or {reference: ...}")
        return cls(
            column,
            None,
            _number(column, "nulls.reference", fields["reference"]),
            int(_number(column, "nulls.rows", fields.get("rows", 0)) or 0),
            _number(column, "nulls.z", fields.get("z", 3.9)) or 0.0,
            _number(column, "nulls.floor", fields.get("floor", 0.01)) or 0.0,
        )

    def start(self, schema: pa.Schema) -> Check:
        return _NullsCheck(self)


class _NullsCheck(Check):
    def __init__(self, spec: Nulls) -> None:
        self.spec = spec
        self.nulls = 0
        self.examples: list[dict[str, Any]] = []

    def update(self, view: BatchView) -> None:
        mask = view.nulls(self.spec.column)
        count = int(mask.sum())
        if count:
            self.nulls += count
            if len(self.examples) < MAX_EXAMPLES:
                need = MAX_EXAMPLES - len(self.examples)
                self.examples += view.examples(mask, [None] * view.rows, need)

    def finish(self, rows: int) -> ExpectationResult:
        spec, column = self.spec, self.spec.column
        if rows == 0:
            return spec.result(SKIPPED, "no rows to count nulls in")
        bound = spec.bound(rows)
        fraction = self.nulls / rows
        fields: dict[str, Any] = {
            "observed": {"null_fraction": fraction},
            "expected": {"max_null_fraction": bound},
            "rows_checked": rows,
            "unexpected_count": self.nulls,
        }
        if fraction <= bound:
            return spec.result(PASSED, f"{column!r}: {fraction:.2%} nulls", **fields)
        allowed = "no nulls" if bound == 0 else f"at most {bound:.2%} nulls"
        return spec.result(
            FAILED,
            f"Column {column!r} has {self.nulls} null(s) ({fraction:.2%} of {rows} rows); the "
            f"suite allows {allowed}. Fill or drop them upstream, or raise the bound under "
            "`nulls:` in the suite.",
            examples=self.examples,
            **fields,
        )


# -- ranges ----------------------------------------------------------------------------


@dataclass
class Range(Expectation):
    """At least ``mostly`` of the non-null values lie in ``[min, max]`` (None: open end).

    Precisely: at most :meth:`allowed` of the ``n`` non-null values lie outside.
    """

    column: str
    min: float | None
    max: float | None
    mostly: float = 1.0
    z: float = 0.0
    key: ClassVar[str] = "range"

    def allowed(self, n: int) -> int:
        """How many of ``n`` values may lie outside: ⌈λ + z·√λ⌉ with λ = (1 − mostly)·n.

        λ is the number of outliers ``mostly`` expects; ``z·√λ`` (learned ranges
        only) is the Poisson noise around it, so a few stray values pass any
        batch while a flood still fails. Rounding up lets one outlier through
        whenever ``mostly < 1``.
        """
        expected = max(0.0, (1 - self.mostly) * n)
        # The epsilon keeps (1 - 0.999) * 1000 = 1.0000000000000009 at 1.
        return max(0, math.ceil(expected + self.z * math.sqrt(expected) - 1e-9))

    def to_yaml(self) -> Any:
        out: dict[str, Any] = {"min": self.min, "max": self.max, "mostly": self.mostly}
        if self.z:
            out["z"] = self.z
        return out

    @classmethod
    def from_yaml(cls, column: str, value: Any) -> Range:
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
            value = {"min": value[0], "max": value[1]}
        fields = _mapping(column, cls.key, value)
        key = cls.key
        return cls(
            column,
            _number(column, f"{key}.min", fields.get("min"), optional=True),
            _number(column, f"{key}.max", fields.get("max"), optional=True),
            _number(column, f"{key}.mostly", fields.get("mostly", 1.0)) or 0.0,
            _number(column, f"{key}.z", fields.get("z", 0.0)) or 0.0,
        )

    def start(self, schema: pa.Schema) -> Check:
        return _RangeCheck(self)


@dataclass
class Between(Range):
    """A hand-written range: ``between: [18, 120]`` (or with ``mostly``)."""

    key: ClassVar[str] = "between"

    def to_yaml(self) -> Any:
        if self.mostly == 1.0 and not self.z:
            return [self.min, self.max]
        return super().to_yaml()


class _RangeCheck(Check):
    def __init__(self, spec: Range) -> None:
        self.spec = spec
        self.lo = -math.inf if spec.min is None else spec.min
        self.hi = math.inf if spec.max is None else spec.max
        self.checked = 0
        self.outside = 0
        self.numeric = True
        self.examples: list[dict[str, Any]] = []

    def update(self, view: BatchView) -> None:
        values = view.floats(self.spec.column)
        if values is None:
            self.numeric = False
            return
        present = ~np.isnan(values)
        self.checked += int(present.sum())
        outside = present & ((values < self.lo) | (values > self.hi))
        count = int(outside.sum())
        if count:
            self.outside += count
            if len(self.examples) < MAX_EXAMPLES:
                need = MAX_EXAMPLES - len(self.examples)
                self.examples += view.examples(outside, values, need)

    def finish(self, rows: int) -> ExpectationResult:
        spec, column = self.spec, self.spec.column
        expected = {"min": spec.min, "max": spec.max, "mostly": spec.mostly}
        if not self.numeric:
            return spec.result(SKIPPED, f"{column!r} is not numeric", expected=expected)
        if self.checked == 0:
            return spec.result(SKIPPED, f"{column!r} has no non-null values", expected=expected)
        fields: dict[str, Any] = {
            "observed": {"outside_fraction": self.outside / self.checked},
            "expected": expected,
            "rows_checked": self.checked,
            "unexpected_count": self.outside,
            "examples": self.examples,
        }
        allowed = spec.allowed(self.checked)
        fields["expected"]["max_outside"] = allowed
        if self.outside <= allowed:
            return spec.result(PASSED, f"{column!r}: {self.outside} value(s) outside", **fields)
        return spec.result(
            FAILED,
            f"Column {column!r} has {self.outside} of {self.checked} values outside "
            f"[{spec.min}, {spec.max}] (at most {allowed} may be, mostly={spec.mostly}). Check the "
            f"source, or widen `{spec.key}:` in the suite if the new values are right.",
            **fields,
        )


# -- quantiles -------------------------------------------------------------------------


@dataclass
class Quantiles(Expectation):
    """Each quantile of the batch lies within ``values[q] ± tol(n)``.

    ``tol(n) = max(floor, z·sqrt(scale[q]²·(1/rows + 1/n) + spread[q]²))`` where
    ``scale[q] = sqrt(q(1−q)) / f(Q(q))`` is the asymptotic standard-deviation
    scale of a sample quantile (density ``f`` estimated from reference
    quantiles), ``rows`` the number of reference values, ``n`` the batch's
    non-null values, and ``spread[q]`` the between-batch standard deviation
    learned from several reference batches beyond what sampling explains.
    """

    column: str
    values: dict[float, float]
    scale: dict[float, float]
    rows: int
    z: float
    floor: float
    spread: dict[float, float] = field(default_factory=dict)
    key: ClassVar[str] = "quantiles"

    def tolerance(self, q: float, n: int) -> float:
        """The half-width of the band for quantile ``q`` in a batch of ``n`` values."""
        s = self.scale.get(q, 0.0)
        spread = self.spread.get(q, 0.0)
        noise = s * s * (1 / max(self.rows, 1) + 1 / max(n, 1)) + spread * spread
        return max(self.floor, self.z * math.sqrt(noise))

    def to_yaml(self) -> Any:
        out: dict[str, Any] = {"z": self.z, "floor": self.floor, "rows": self.rows}
        out["values"] = dict(self.values)
        out["scale"] = dict(self.scale)
        if self.spread:
            out["spread"] = dict(self.spread)
        return out

    @classmethod
    def from_yaml(cls, column: str, value: Any) -> Quantiles:
        fields = _mapping(column, "quantiles", value)
        values = _number_map(column, "quantiles.values", fields.get("values"))
        if not values:
            raise _bad(column, "quantiles.values", fields.get("values"), "{quantile: value}")
        return cls(
            column,
            values,
            _number_map(column, "quantiles.scale", fields.get("scale")),
            int(_number(column, "quantiles.rows", fields.get("rows", 0)) or 0),
            _number(column, "quantiles.z", fields.get("z", 3.9)) or 0.0,
            _number(column, "quantiles.floor", fields.get("floor", 0.0)) or 0.0,
            _number_map(column, "quantiles.spread", fields.get("spread")),
        )

    def start(self, schema: pa.Schema) -> Check:
        return _QuantilesCheck(self)


class _QuantilesCheck(Check):
    def __init__(self, spec: Quantiles) -> None:
        self.spec = spec
        self.parts: list[np.ndarray] = []
        self.numeric = True

    def update(self, view: BatchView) -> None:
        values = view.floats(self.spec.column)
        if values is None:
            self.numeric = False
            return
        self.parts.append(values[~np.isnan(values)])

    def finish(self, rows: int) -> ExpectationResult:
        spec, column = self.spec, self.spec.column
        if not self.numeric:
            return spec.result(SKIPPED, f"{column!r} is not numeric")
        values = np.concatenate(self.parts) if self.parts else np.empty(0)
        n = len(values)
        if n == 0:
            return spec.result(SKIPPED, f"{column!r} has no non-null values")
        qs = sorted(spec.values)
        got = np.quantile(values, qs)
        observed: dict[float, float] = {}
        expected: dict[float, list[float]] = {}
        off: list[str] = []
        for q, value in zip(qs, got, strict=True):
            centre, tol = spec.values[q], spec.tolerance(q, n)
            observed[q] = float(value)
            expected[q] = [centre - tol, centre + tol]
            if abs(value - centre) > tol:
                off.append(f"q{q:g} = {value:.6g} (expected {centre:.6g} ± {tol:.3g})")
        fields: dict[str, Any] = {"observed": observed, "expected": expected, "rows_checked": n}
        if not off:
            return spec.result(PASSED, f"{column!r}: quantiles within their bands", **fields)
        return spec.result(
            FAILED,
            f"Column {column!r} has shifted: {'; '.join(off)}. If the new distribution is "
            "right, re-learn the suite or widen `floor:` under `quantiles:`.",
            **fields,
        )


# -- categories ------------------------------------------------------------------------


@dataclass
class Categories(Expectation):
    """Every non-null value is one of ``allowed``."""

    column: str
    allowed: list[Any]
    key: ClassVar[str] = "categories"

    def to_yaml(self) -> Any:
        return list(self.allowed)

    @classmethod
    def from_yaml(cls, column: str, value: Any) -> Categories:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise _bad(column, cls.key, value, "a list of values")
        return cls(column, list(value))

    def start(self, schema: pa.Schema) -> Check:
        return _CategoriesCheck(self)


@dataclass
class InSet(Categories):
    """A hand-written set of allowed values: ``in_set: [basic, pro]``."""

    key: ClassVar[str] = "in_set"


class _CategoriesCheck(Check):
    def __init__(self, spec: Categories) -> None:
        self.spec = spec
        self.allowed = set(spec.allowed)
        self.new: dict[Any, int] = {}
        self.checked = 0
        self.examples: list[dict[str, Any]] = []

    def update(self, view: BatchView) -> None:
        counts = view.counts(self.spec.column)
        self.checked += sum(counts.values())
        fresh = [v for v in counts if v not in self.allowed]
        for value in fresh:
            self.new[value] = self.new.get(value, 0) + counts[value]
        if fresh and len(self.examples) < MAX_EXAMPLES:
            array = view.array(self.spec.column)
            mask = pc.is_in(array, value_set=pa.array(fresh, type=array.type))
            mask_np = np.asarray(mask.fill_null(False).to_numpy(zero_copy_only=False), bool)
            need = MAX_EXAMPLES - len(self.examples)
            self.examples += view.examples(mask_np, array, need)

    def finish(self, rows: int) -> ExpectationResult:
        spec, column = self.spec, self.spec.column
        unexpected = sum(self.new.values())
        new = dict(sorted(self.new.items(), key=lambda kv: -kv[1]))
        fields: dict[str, Any] = {
            "observed": {"new_values": [[k, c] for k, c in new.items()]},
            "expected": {"allowed": spec.allowed},
            "rows_checked": self.checked,
            "unexpected_count": unexpected,
            "examples": self.examples,
        }
        if not new:
            return spec.result(PASSED, f"{column!r}: no values outside the set", **fields)
        shown = ", ".join(f"{k!r} ({c} rows)" for k, c in list(new.items())[:10])
        more = f" and {len(new) - 10} more" if len(new) > 10 else ""
        return spec.result(
            FAILED,
            f"Column {column!r} has value(s) the suite does not allow: {shown}{more}. Fix the "
            f"source, or add them to `{spec.key}:` in the suite if they are legitimate.",
            **fields,
        )


@dataclass
class Shares(Expectation):
    """Each reference category's share stays within ``values[c] ± tol(n)``.

    ``tol(n) = max(floor, z·sqrt(p(1−p)(1/rows + 1/n) + spread[c]²))`` with
    ``p = values[c]`` (a binomial band), ``n`` the batch's non-null values.
    """

    column: str
    values: dict[Any, float]
    rows: int
    z: float
    floor: float = 0.02
    spread: dict[Any, float] = field(default_factory=dict)
    key: ClassVar[str] = "shares"

    def tolerance(self, category: Any, n: int) -> float:
        """The half-width of the band for ``category``'s share in ``n`` values."""
        p = self.values[category]
        spread = self.spread.get(category, 0.0)
        noise = p * (1 - p) * (1 / max(self.rows, 1) + 1 / max(n, 1)) + spread * spread
        return max(self.floor, self.z * math.sqrt(noise))

    def to_yaml(self) -> Any:
        out: dict[str, Any] = {"z": self.z, "floor": self.floor, "rows": self.rows}
        out["values"] = dict(self.values)
        if self.spread:
            out["spread"] = dict(self.spread)
        return out

    @classmethod
    def from_yaml(cls, column: str, value: Any) -> Shares:
        fields = _mapping(column, "shares", value)
        values = _mapping(column, "shares.values", fields.get("values"))
        spread = _mapping(column, "shares.spread", fields.get("spread") or {})
        return cls(
            column,
            {k: _number(column, f"shares.values.{k}", v) or 0.0 for k, v in values.items()},
            int(_number(column, "shares.rows", fields.get("rows", 0)) or 0),
            _number(column, "shares.z", fields.get("z", 3.9)) or 0.0,
            _number(column, "shares.floor", fields.get("floor", 0.02)) or 0.0,
            {k: _number(column, f"shares.spread.{k}", v) or 0.0 for k, v in spread.items()},
        )

    def start(self, schema: pa.Schema) -> Check:
        return _SharesCheck(self)


class _SharesCheck(Check):
    def __init__(self, spec: Shares) -> None:
        self.spec = spec
        self.counts: dict[Any, int] = {}

    def update(self, view: BatchView) -> None:
        for value, count in view.counts(self.spec.column).items():
            self.counts[value] = self.counts.get(value, 0) + count

    def finish(self, rows: int) -> ExpectationResult:
        spec, column = self.spec, self.spec.column
        n = sum(self.counts.values())
        if n == 0:
            return spec.result(SKIPPED, f"{column!r} has no non-null values")
        observed: dict[Any, float] = {}
        expected: dict[Any, list[float]] = {}
        off: list[str] = []
        for category, share in spec.values.items():
            got = self.counts.get(category, 0) / n
            tol = spec.tolerance(category, n)
            observed[category] = got
            expected[category] = [max(0.0, share - tol), min(1.0, share + tol)]
            if abs(got - share) > tol:
                off.append(f"{category!r} {got:.1%} (expected {share:.1%} ± {tol:.1%})")
        fields: dict[str, Any] = {"observed": observed, "expected": expected, "rows_checked": n}
        if not off:
            return spec.result(PASSED, f"{column!r}: category shares within bands", **fields)
        return spec.result(
            FAILED,
            f"The mix of column {column!r} has changed: {'; '.join(off)}. If the new mix is "
            "right, re-learn the suite or widen `floor:` under `shares:`.",
            **fields,
        )


# -- hand-written extras ---------------------------------------------------------------


@dataclass
class Unique(Expectation):
    """No non-null value occurs twice (keeps the column's values in memory)."""

    column: str
    key: ClassVar[str] = "unique"

    def to_yaml(self) -> Any:
        return True

    @classmethod
    def from_yaml(cls, column: str, value: Any) -> Unique:
        if value is not True:
            raise _bad(column, "unique", value, "true")
        return cls(column)

    def start(self, schema: pa.Schema) -> Check:
        return _UniqueCheck(self)


class _UniqueCheck(Check):
    def __init__(self, spec: Unique) -> None:
        self.spec = spec
        self.parts: list[pa.Array] = []

    def update(self, view: BatchView) -> None:
        self.parts.append(view.array(self.spec.column))

    def finish(self, rows: int) -> ExpectationResult:
        spec, column = self.spec, self.spec.column
        if not self.parts or rows == 0:
            return spec.result(SKIPPED, "no rows to check")
        counts = pc.value_counts(pa.chunked_array(self.parts)).to_pylist()
        repeated = [(p["values"], p["counts"]) for p in counts if p["values"] is not None]
        checked = sum(c for _, c in repeated)
        repeated = sorted((vc for vc in repeated if vc[1] > 1), key=lambda vc: -vc[1])
        extra = sum(c - 1 for _, c in repeated)
        fields: dict[str, Any] = {
            "observed": {"repeated_values": [[v, c] for v, c in repeated[:MAX_EXAMPLES]]},
            "expected": "every value once",
            "rows_checked": checked,
            "unexpected_count": extra,
        }
        if not repeated:
            return spec.result(PASSED, f"{column!r}: all values distinct", **fields)
        shown = ", ".join(f"{v!r} ({c}×)" for v, c in repeated[:MAX_EXAMPLES])
        return spec.result(
            FAILED,
            f"Column {column!r} should be unique but {len(repeated)} value(s) repeat: {shown}. "
            "Deduplicate the source or remove `unique:` from the suite.",
            **fields,
        )


@dataclass
class Matches(Expectation):
    """Every non-null string matches ``pattern`` in full (RE2 syntax, as pyarrow uses)."""

    column: str
    pattern: str
    key: ClassVar[str] = "matches"

    def to_yaml(self) -> Any:
        return self.pattern

    @classmethod
    def from_yaml(cls, column: str, value: Any) -> Matches:
        if not isinstance(value, str):
            raise _bad(column, "matches", value, "a regular expression")
        return cls(column, value)

    def start(self, schema: pa.Schema) -> Check:
        return _MatchesCheck(self)


class _MatchesCheck(Check):
    def __init__(self, spec: Matches) -> None:
        self.spec = spec
        self.pattern = f"^(?:{spec.pattern})$"
        self.checked = 0
        self.bad = 0
        self.strings = True
        self.examples: list[dict[str, Any]] = []

    def update(self, view: BatchView) -> None:
        array = view.array(self.spec.column)
        if type_label(array.type) != "string":
            self.strings = False
            return
        try:
            matched = pc.match_substring_regex(array, self.pattern)
        except pa.ArrowInvalid as exc:
            raise DataError(
                f"Column {self.spec.column!r}: the pattern {self.spec.pattern!r} under "
                f"`matches:` is not a valid regular expression: {exc}"
            ) from None
        miss = np.asarray(pc.invert(matched).fill_null(False).to_numpy(zero_copy_only=False))
        self.checked += len(array) - array.null_count
        count = int(miss.sum())
        if count:
            self.bad += count
            if len(self.examples) < MAX_EXAMPLES:
                need = MAX_EXAMPLES - len(self.examples)
                self.examples += view.examples(miss, array, need)

    def finish(self, rows: int) -> ExpectationResult:
        spec, column = self.spec, self.spec.column
        if not self.strings:
            return spec.result(
                FAILED,
                f"Column {column!r} is not a string column; `matches:` needs strings.",
                expected=spec.pattern,
            )
        fields: dict[str, Any] = {
            "expected": spec.pattern,
            "rows_checked": self.checked,
            "unexpected_count": self.bad,
            "examples": self.examples,
        }
        if self.bad == 0:
            return spec.result(PASSED, f"{column!r}: all values match", **fields)
        return spec.result(
            FAILED,
            f"Column {column!r} has {self.bad} value(s) not matching {spec.pattern!r}.",
            **fields,
        )


# Column-block keys in the order they are written to YAML.
KINDS: dict[str, type[Expectation]] = {
    cls.key: cls
    for cls in (
        TypeIs,
        Nulls,
        Range,
        Quantiles,
        Categories,
        Shares,
        Between,
        InSet,
        Unique,
        Matches,
    )
}
