"""Request rows checked against the model's signature and its training data's profile.

Each problem names the column, a stable code, how many rows have it and the
first few of them:

===================  =====================================================
``MISSING_COLUMN``   a column the model takes is not in the request
``EXTRA_COLUMN``     the request has a column the model does not take
``WRONG_SHAPE``      a tensor model got rows of the wrong width
``WRONG_TYPE``       a value that is not of the column's type ("abc" for a number)
``UNEXPECTED_NULL``  a missing value where training data had none
``OUT_OF_RANGE``     a number far outside what training saw (or infinite)
``UNKNOWN_CATEGORY`` a category training data never had
===================  =====================================================

"Far outside" is beyond the training minimum or maximum by more than
``RANGE_MARGIN`` of the training span: new extremes a little past the old ones
are normal, a value four times the largest ever seen is not.

>>> import pandas as pd
>>> from keel.serving.schema import InputSchema
>>> checker = InputChecker(InputSchema(["age"], ["double"]), None)
>>> rows, problems = checker.check(pd.DataFrame({"age": ["31", "abc"]}))
>>> [(p.code, p.column, p.rows) for p in problems]
[('WRONG_TYPE', 'age', [1])]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keel.data.frames import Kind
from keel.data.profiles import Profile
from keel.serving.schema import INTEGER_TYPES, NUMERIC_TYPES, InputSchema

RANGE_MARGIN = 0.5
MAX_EXAMPLES = 5
CATEGORY_LIMIT = 1_000  # above this many training categories, new ones are not flagged


@dataclass
class Problem:
    """One kind of problem in one column of a request."""

    column: str
    code: str
    message: str
    count: int = 1
    rows: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "code": self.code,
            "message": self.message,
            "count": self.count,
            "rows": self.rows,
            "values": [_plain(v) for v in self.values],
        }


class InputChecker:
    """Checks request frames for one model; built once, when the model loads."""

    def __init__(self, schema: InputSchema, profile: Profile | None) -> None:
        self.schema = schema
        self.profile = profile
        self._numeric = [
            c for c, t in zip(schema.columns, schema.types, strict=True) if t in NUMERIC_TYPES
        ]
        self._integer = {
            c for c, t in zip(schema.columns, schema.types, strict=True) if t in INTEGER_TYPES
        }
        self._limits: dict[str, tuple[float, float]] = {}
        self._no_nulls: set[str] = set()
        self._categories: dict[str, set[str]] = {}
        names = set(profile.columns) if profile is not None else set()
        self._matrix_limits = np.full((2, len(schema.columns)), np.inf)
        self._matrix_limits[0] = -np.inf
        self._no_null_mask = np.zeros(len(schema.columns), dtype=bool)
        self._column_index = pd.Index(schema.columns)  # built once: an Index of text is not cheap
        self._integer_mask = np.array([c in self._integer for c in schema.columns], dtype=bool)
        for column in schema.columns:
            if profile is None or column not in names:
                continue
            col = profile[column]
            if col.count and col.nulls == 0:
                self._no_nulls.add(column)
                self._no_null_mask[schema.columns.index(column)] = True
            if col.is_numeric and col.minimum is not None and col.maximum is not None:
                span = col.maximum - col.minimum or max(abs(col.maximum), 1.0)
                margin = RANGE_MARGIN * span
                self._limits[column] = (col.minimum - margin, col.maximum + margin)
                at = schema.columns.index(column)
                self._matrix_limits[:, at] = self._limits[column]
            elif col.kind in (Kind.STRING, Kind.BOOLEAN) and col.frequent_error == 0:
                counts = col.counts()
                if 0 < len(counts) <= CATEGORY_LIMIT:
                    self._categories[column] = set(counts)

    @property
    def all_numeric(self) -> bool:
        """True when every input column is numeric: requests can take the matrix path."""
        return self.schema.known and len(self._numeric) == len(self.schema.columns)

    def check_matrix(self, matrix: np.ndarray) -> Any:
        """The model's input from a float matrix in schema order, or None if any row has a problem.

        One vectorised pass over all columns at once; a request it declines is
        checked again by :meth:`check`, which names every problem.
        """
        limits = self._matrix_limits
        with np.errstate(invalid="ignore"):
            nan = np.isnan(matrix)
            bad = np.isinf(matrix) | (matrix < limits[0]) | (matrix > limits[1])
            if self._integer_mask.any():
                whole = matrix[:, self._integer_mask]
                bad[:, self._integer_mask] |= np.isfinite(whole) & (whole != np.floor(whole))
        if bad.any() or (nan & self._no_null_mask).any():
            return None
        if self.schema.tensor:
            return matrix.astype(self.schema.dtype, copy=False)
        return pd.DataFrame(matrix, columns=self._column_index, copy=False)

    def check(self, frame: pd.DataFrame) -> tuple[Any, list[Problem]]:
        """The model's input built from ``frame`` (as far as it can be), and every problem."""
        if not self.schema.known:
            return frame, []
        problems: list[Problem] = []
        frame = self._columns(frame, problems)
        present = [c for c in self.schema.columns if c in frame.columns]
        for column in present:  # before conversion: a value of the wrong type is not a null
            self._nulls(frame[column], column, problems)
        for column in present:
            if column in self._numeric:
                frame[column] = self._numbers(frame[column], column, problems)
            else:
                self._text(frame[column], column, problems)
        model_input: Any = frame[present]
        if self.schema.tensor and len(present) == len(self.schema.columns):
            model_input = frame[present].to_numpy(dtype=self.schema.dtype, na_value=np.nan)
        return model_input, problems

    def _columns(self, frame: pd.DataFrame, problems: list[Problem]) -> pd.DataFrame:
        expected = self.schema.columns
        sent = [str(c) for c in frame.columns]
        frame.columns = pd.Index(sent)
        if self.schema.tensor and sent != expected:
            if len(sent) == len(expected):  # named columns for a tensor: taken in order
                frame.columns = pd.Index(expected)
                return frame
            problems.append(
                Problem(
                    "*",
                    "WRONG_SHAPE",
                    f"The model takes rows of {len(expected)} values; these have {len(sent)}.",
                    count=len(frame),
                )
            )
            return frame
        for column in expected:
            if column not in frame.columns:
                problems.append(
                    Problem(column, "MISSING_COLUMN", f"Column {column!r} is missing.", len(frame))
                )
        for column in sent:
            if column not in expected:
                problems.append(
                    Problem(
                        column,
                        "EXTRA_COLUMN",
                        f"Column {column!r} is not one the model takes ({', '.join(expected[:10])}"
                        f"{', ...' if len(expected) > 10 else ''}).",
                        len(frame),
                    )
                )
        return frame

    def _numbers(self, values: pd.Series, column: str, problems: list[Problem]) -> pd.Series:
        if values.dtype.kind in "biuf":
            numbers = values.astype("float64")
        else:
            numbers = pd.to_numeric(values, errors="coerce")
            bad = numbers.isna().to_numpy() & values.notna().to_numpy()
            if bad.any():
                _add(
                    problems, column, "WRONG_TYPE", f"Column {column!r} takes numbers", bad, values
                )
            numbers = numbers.astype("float64")
        array = numbers.to_numpy()
        limits = self._limits.get(column)
        with np.errstate(invalid="ignore"):
            outside = np.isinf(array)
            if limits is not None:
                outside |= (array < limits[0]) | (array > limits[1])
        if outside.any():
            where = (
                f"training saw {self.profile[column].minimum:g} to {self.profile[column].maximum:g}"
                if limits is not None and self.profile is not None
                else "it must be finite"
            )
            _add(
                problems,
                column,
                "OUT_OF_RANGE",
                f"Column {column!r} is far out of range ({where})",
                outside,
                values,
            )
        if column in self._integer and not outside.any():
            fractional = np.isfinite(array) & (array != np.floor(array))
            if fractional.any():
                _add(
                    problems,
                    column,
                    "WRONG_TYPE",
                    f"Column {column!r} takes whole numbers",
                    fractional,
                    values,
                )
        return numbers

    def _text(self, values: pd.Series, column: str, problems: list[Problem]) -> None:
        allowed = self._categories.get(column)
        if allowed is None:
            return
        present = values.notna().to_numpy()
        as_text = values.astype(str).str.lower() if values.dtype == bool else values.astype(str)
        unknown = present & ~as_text.isin(allowed).to_numpy()
        if unknown.any():
            shown = ", ".join(sorted(allowed)[:10]) + (", ..." if len(allowed) > 10 else "")
            _add(
                problems,
                column,
                "UNKNOWN_CATEGORY",
                f"Column {column!r} has categories training never saw (it saw {shown})",
                unknown,
                values,
            )

    def _nulls(self, values: pd.Series, column: str, problems: list[Problem]) -> None:
        if column not in self._no_nulls:
            return
        missing = values.isna().to_numpy()
        if missing.any():
            _add(
                problems,
                column,
                "UNEXPECTED_NULL",
                f"Column {column!r} had no missing values in training",
                missing,
                values,
            )


def _add(
    problems: list[Problem],
    column: str,
    code: str,
    message: str,
    mask: np.ndarray,
    values: pd.Series,
) -> None:
    rows = np.flatnonzero(mask)
    count = len(rows)
    shown = rows[:MAX_EXAMPLES]
    problems.append(
        Problem(
            column,
            code,
            f"{message}: {count} row{'s' if count != 1 else ''}.",
            count,
            [int(r) for r in shown],
            [values.iloc[int(r)] for r in shown],
        )
    )


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return str(value)  # JSON numbers this large do not survive most parsers
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
