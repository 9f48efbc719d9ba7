"""Request bodies in MLflow's scoring formats, turned into a DataFrame, or a clear refusal.

Accepted, as ``mlflow models serve`` accepts them:

* ``application/json`` with exactly one of ``dataframe_split``
  (``{"columns": [...], "data": [[...]]}``), ``dataframe_records``
  (``[{"col": value}, ...]``), ``instances`` (rows: lists, or objects by
  column) or ``inputs`` (columnar ``{"col": [...]}`` or rows), and an optional
  ``params`` object;
* ``text/csv`` with a header row.

Every problem becomes a :class:`PayloadError` with a stable ``code`` and the
HTTP status to answer with: no input reaches the model unless it parsed.

>>> parse(b'{"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}}', "application/json")
... # doctest: +NORMALIZE_WHITESPACE
   a
0  1
1  2
>>> parse(b"{", "application/json")
Traceback (most recent call last):
...
keel.serving.payload.PayloadError: MALFORMED_JSON: The body is not valid JSON: ...
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pandas as pd

from keel.errors import InvalidParameter

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


class PayloadError(InvalidParameter):
    """A request body that cannot become model input; ``code`` is stable, ``status`` HTTP."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.detail = message
        self.status = status


def parse(body: bytes, content_type: str) -> pd.DataFrame:
    """The rows of a scoring request as a DataFrame (columns as sent, values as parsed)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if not body.strip():
        raise PayloadError("EMPTY_INPUT", "The request body is empty: send at least one row.")
    if kind in ("application/json", "") or kind.endswith("+json"):
        frame = _from_json(body)
    elif kind in ("text/csv", "application/csv"):
        frame = _from_csv(body)
    else:
        raise PayloadError(
            "UNSUPPORTED_CONTENT_TYPE",
            f"Content-Type {content_type!r} is not supported: send application/json "
            f"({', '.join(FORMATS)}) or text/csv.",
            status=415,
        )
    if frame.empty:
        raise PayloadError("EMPTY_INPUT", "The request holds no rows: send at least one row.")
    return frame


def _from_json(body: bytes) -> pd.DataFrame:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("MALFORMED_JSON", f"The body is not UTF-8: {exc}.") from None
    try:
        # the stdlib parser accepts NaN and Infinity, as MLflow's does, and turns
        # nesting deeper than the recursion limit into an error instead of a crash
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PayloadError("MALFORMED_JSON", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(doc, dict):
        raise PayloadError(
            "BAD_FORMAT",
            f"The body must be a JSON object with one of {', '.join(FORMATS)}; "
            f"got a JSON {type(doc).__name__}.",
        )
    present = [key for key in FORMATS if key in doc]
    if len(present) != 1:
        found = ", ".join(sorted(doc)) or "nothing"
        raise PayloadError(
            "BAD_FORMAT",
            f"The body must hold exactly one of {', '.join(FORMATS)}; it holds {found}.",
        )
    params = doc.get("params")
    if params is not None and not isinstance(params, dict):
        raise PayloadError("BAD_FORMAT", "'params' must be a JSON object.")
    key = present[0]
    try:
        return _READERS[key](doc[key])
    except PayloadError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise PayloadError("BAD_FORMAT", f"'{key}' is not in its expected shape: {exc}.") from None


def _split(value: Any) -> pd.DataFrame:
    if not isinstance(value, dict) or "data" not in value:
        raise PayloadError(
            "BAD_FORMAT", "'dataframe_split' must be an object with 'columns' and 'data'."
        )
    data = value["data"]
    if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
        raise PayloadError("BAD_FORMAT", "'dataframe_split.data' must be a list of rows (lists).")
    columns = value.get("columns")
    if columns is not None:
        if not isinstance(columns, list) or not all(isinstance(c, str | int) for c in columns):
            raise PayloadError("BAD_FORMAT", "'dataframe_split.columns' must be a list of names.")
        bad = [i for i, row in enumerate(data) if len(row) != len(columns)]
        if bad:
            raise PayloadError(
                "BAD_FORMAT",
                f"Row {bad[0]} of 'dataframe_split.data' has {len(data[bad[0]])} values for "
                f"{len(columns)} columns.",
            )
        columns = [str(c) for c in columns]
    return pd.DataFrame(data, columns=columns)


def _records(value: Any) -> pd.DataFrame:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise PayloadError("BAD_FORMAT", "'dataframe_records' must be a list of objects.")
    return pd.DataFrame.from_records(value)


def _rows(value: Any, key: str) -> pd.DataFrame:
    if isinstance(value, dict):  # columnar: {"col": [values]} (or one row of scalars)
        if all(isinstance(v, list) for v in value.values()):
            lengths = {len(v) for v in value.values()}
            if len(lengths) > 1:
                raise PayloadError("BAD_FORMAT", f"The columns of '{key}' differ in length.")
            return pd.DataFrame(value)
        return pd.DataFrame([value])
    if not isinstance(value, list):
        raise PayloadError("BAD_FORMAT", f"'{key}' must be a list of rows or an object of columns.")
    if all(isinstance(r, dict) for r in value):
        return pd.DataFrame.from_records(value)
    if all(isinstance(r, list) for r in value):
        widths = {len(r) for r in value}
        if len(widths) > 1:
            raise PayloadError("BAD_FORMAT", f"The rows of '{key}' differ in length.")
        return pd.DataFrame(value, columns=[str(i) for i in range(widths.pop() if widths else 0)])
    if all(not isinstance(r, list | dict) for r in value):  # one row of a 1-D input
        return pd.DataFrame([value], columns=[str(i) for i in range(len(value))])
    raise PayloadError("BAD_FORMAT", f"'{key}' mixes rows of different shapes.")


_READERS: dict[str, Callable[[Any], pd.DataFrame]] = {
    "dataframe_split": _split,
    "dataframe_records": _records,
    "instances": lambda v: _rows(v, "instances"),
    "inputs": lambda v: _rows(v, "inputs"),
}


def _from_csv(body: bytes) -> pd.DataFrame:
    try:
        return pd.read_csv(io.BytesIO(body))
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise PayloadError("MALFORMED_CSV", f"The body is not readable CSV: {exc}.") from None


def numeric_rows(body: bytes, content_type: str, columns: list[str]) -> Any:
    """The request's rows as a float64 matrix in ``columns``' order, or None.

    The fast path for the common case, a model of numeric columns: no
    DataFrame is built. None means "take the general path" (which also
    explains any problem): another content type or format, a missing or extra
    column, a value that is not a number, or anything unusual at all.
    """
    import numpy as np

    if not content_type.startswith("application/json") or not body:
        return None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or len(doc) != 1:
        return None
    key, value = next(iter(doc.items()))
    rows: Any = None
    if key == "dataframe_split" and isinstance(value, dict):
        sent = value.get("columns")
        data = value.get("data")
        if sent == columns:
            rows = data
        elif isinstance(sent, list) and sorted(map(str, sent)) == sorted(columns):
            order = [list(map(str, sent)).index(c) for c in columns]
            rows = [[row[i] for i in order] for row in data] if isinstance(data, list) else None
    elif key in ("instances", "dataframe_records") and isinstance(value, list) and value:
        if all(isinstance(r, dict) and len(r) == len(columns) for r in value):
            try:
                rows = [[r[c] for c in columns] for r in value]
            except (KeyError, TypeError):
                return None
        elif key == "instances" and all(isinstance(r, list) for r in value):
            rows = value
    elif key == "inputs" and isinstance(value, dict) and sorted(value) == sorted(columns):
        try:
            matrix = np.array([value[c] for c in columns], dtype=np.float64).T
        except (ValueError, TypeError):
            return None
        return matrix if matrix.ndim == 2 and len(matrix) else None
    if not isinstance(rows, list) or not rows:
        return None
    try:
        matrix = np.array(rows, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        return None
    if matrix.ndim != 2 or matrix.shape[1] != len(columns):
        return None
    if any(isinstance(v, str | bool) for row in rows for v in row):
        return None  # numpy would read "41" and True as numbers; the general path decides
    return matrix
