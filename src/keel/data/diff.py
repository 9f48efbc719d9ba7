"""Row-level differences between two versions of a table.

:func:`diff` streams both inputs and keeps a 64-bit hash per row (never the
rows themselves), so it handles tables larger than memory:

* **schema**: columns added, removed, or whose logical type changed (logical
  types as in :mod:`keel.data.digest`, so int32 → int64 is no change);
* **rows**: rows are compared over the columns both sides share with the same
  type. Without a key the comparison is a multiset one (duplicates count): a
  changed row shows as one removed and one added. With a key, rows with the
  same key and different values are *changed*, with a count of changed cells
  per column and a few examples (key, old → new). A key must be unique on each
  side.
* **columns**: per shared column, nulls; for numbers mean, min, max and the
  number of distinct values; for strings the number of distinct values and
  the categories that are new or vanished (when there are at most 1,000
  distinct values on each side).

With a key, both inputs are read twice (the second time only the changed rows'
cell hashes are kept: 8 bytes per shared column per changed row). A
RecordBatchReader or other one-shot stream is read into memory first.
Hashes are 64-bit, so two different rows collide with probability about
2^-64 per pair: negligible, not impossible.

>>> import pandas as pd
>>> a = pd.DataFrame({"id": [1, 2, 3], "score": [0.5, 0.7, 0.9]})
>>> b = pd.DataFrame({"id": [1, 2, 4], "score": [0.5, 0.8, 0.1]})
>>> d = diff(a, b, key="id")
>>> d.rows_added, d.rows_removed, d.rows_changed, d.changed_cells
(1, 1, 1, {'score': 1})
>>> d.examples[0]
{'key': {'id': 2}, 'changes': {'score': {'old': 0.7, 'new': 0.8}}}
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from keel.data.digest import fixed_values, is_variable, logical_type, variable_values
from keel.data.frames import DataError, Kind, batches, describe, kind_of, read_table

EXAMPLES = 5
MAX_CATEGORIES = 1000
_NULL_HASH = np.uint64(0x9E3779B97F4A7C15)
_MULT = np.uint64(0xBF58476D1CE4E5B9)
_MULT2 = np.uint64(0x94D049BB133111EB)


@dataclass
class ColumnDelta:
    """How one shared column's statistics moved from ``a`` to ``b``."""

    column: str
    kind: str
    a: dict[str, Any]
    b: dict[str, Any]
    new_categories: list[str] | None = None
    vanished_categories: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        out: dict[str, Any] = {"column": self.column, "kind": self.kind, "a": self.a, "b": self.b}
        if self.new_categories is not None or self.vanished_categories is not None:
            out["new_categories"] = self.new_categories
            out["vanished_categories"] = self.vanished_categories
        return out


@dataclass
class DatasetDiff:
    """What changed from ``a`` to ``b``; see the module docstring for the rules."""

    rows_a: int
    rows_b: int
    columns_added: list[str]
    columns_removed: list[str]
    type_changes: list[tuple[str, str, str]]
    compared_columns: list[str]
    key: list[str] | None
    rows_added: int
    rows_removed: int
    rows_changed: int = 0
    changed_cells: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    columns: list[ColumnDelta] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """No schema change and no row added, removed or changed."""
        return not (
            self.columns_added
            or self.columns_removed
            or self.type_changes
            or self.rows_added
            or self.rows_removed
            or self.rows_changed
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``json.dumps(..., allow_nan=False)`` accepts it).

        >>> import pandas as pd
        >>> diff(pd.DataFrame({"x": [1]}), pd.DataFrame({"x": [1]})).to_dict()["identical"]
        True
        """
        return {
            "identical": self.identical,
            "rows": {
                "a": self.rows_a,
                "b": self.rows_b,
                "added": self.rows_added,
                "removed": self.rows_removed,
                "changed": self.rows_changed,
            },
            "schema": {
                "added": self.columns_added,
                "removed": self.columns_removed,
                "type_changed": [
                    {"column": c, "a": ta, "b": tb} for c, ta, tb in self.type_changes
                ],
                "compared_columns": self.compared_columns,
            },
            "key": self.key,
            "changed_cells": self.changed_cells,
            "examples": self.examples,
            "columns": [c.to_dict() for c in self.columns],
        }


def diff(a: Any, b: Any, key: str | Sequence[str] | None = None) -> DatasetDiff:
    """Compare two tables (anything :func:`keel.data.frames.batches` reads).

    >>> import pandas as pd
    >>> d = diff(pd.DataFrame({"x": [1, 1, 2]}), pd.DataFrame({"x": [1, 2, 2]}))
    >>> d.rows_added, d.rows_removed
    (1, 1)
    """
    a, b = _rereadable(a), _rereadable(b)
    schema_a, schema_b = _schema(a), _schema(b)
    types_a = {f.name: logical_type(f.type) for f in schema_a}
    types_b = {f.name: logical_type(f.type) for f in schema_b}
    shared = [n for n in types_a if n in types_b]
    compared = [n for n in shared if types_a[n] == types_b[n]]
    keys = [key] if isinstance(key, str) else list(key) if key is not None else None
    for k in keys or []:
        for side, types, data in (("first", types_a, a), ("second", types_b, b)):
            if k not in types:
                raise DataError(
                    f"Key column {k!r} is not in the {side} table ({describe(data)}); its "
                    f"columns are {sorted(types)}. Pass a column both tables have."
                )
        if k not in compared:
            raise DataError(
                f"Key column {k!r} has type {types_a[k]} in {describe(a)} but {types_b[k]} in "
                f"{describe(b)}; a key must have the same type on both sides."
            )
    kinds = {f.name: kind_of(f.type) for f in schema_a}
    scan_a = _scan(a, compared, keys, kinds)
    scan_b = _scan(b, compared, keys, kinds)
    result = DatasetDiff(
        rows_a=scan_a.rows,
        rows_b=scan_b.rows,
        columns_added=[n for n in types_b if n not in types_a],
        columns_removed=[n for n in types_a if n not in types_b],
        type_changes=[(n, types_a[n], types_b[n]) for n in shared if types_a[n] != types_b[n]],
        compared_columns=compared,
        key=keys,
        rows_added=0,
        rows_removed=0,
        columns=[_delta(n, kinds[n], scan_a.stats[n], scan_b.stats[n]) for n in compared],
    )
    if keys is None:
        result.rows_removed, result.rows_added = _multiset_difference(
            scan_a.row_hashes(), scan_b.row_hashes()
        )
        return result
    _keyed(result, a, b, scan_a, scan_b, keys, compared)
    return result


# -- hashing -----------------------------------------------------------------


def _mix(h: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    # splitmix64's finaliser: every input bit affects every output bit.
    h = h ^ (h >> np.uint64(30))
    h = h * _MULT
    h = h ^ (h >> np.uint64(27))
    h = h * _MULT2
    out: np.ndarray[Any, Any] = h ^ (h >> np.uint64(31))
    return out


def _cell_hashes(column: pa.Array, logical: str) -> np.ndarray[Any, Any]:
    """One uint64 per cell; equal canonical values (and nulls) hash equal."""
    n = len(column)
    if logical == "null":
        return np.full(n, _NULL_HASH, dtype=np.uint64)
    if is_variable(logical):
        values = variable_values(column, logical)
        encoded = pc.dictionary_encode(values)
        dictionary = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object)
        codes = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
        hashed = pd.util.hash_array(dictionary, categorize=False) if len(dictionary) else None
        out = hashed[codes] if hashed is not None else np.zeros(n, dtype=np.uint64)
    else:
        raw = fixed_values(column, logical)
        out = _mix(raw.astype(np.uint64) if raw.itemsize == 1 else raw.view(np.uint64))
    out = np.asarray(out, dtype=np.uint64)
    if column.null_count:
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        out = np.where(valid, out, _NULL_HASH)
    return out


def _combine(parts: list[np.ndarray[Any, Any]], n: int) -> np.ndarray[Any, Any]:
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i, part in enumerate(parts):
            h = _mix(h * _MULT + part + np.uint64(i + 1))
    return h


def _multiset_difference(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> tuple[int, int]:
    """(rows only in ``a``, rows only in ``b``), counting duplicates."""
    ua, ca = np.unique(a, return_counts=True)
    ub, cb = np.unique(b, return_counts=True)
    _, ia, ib = np.intersect1d(ua, ub, assume_unique=True, return_indices=True)
    common = int(np.minimum(ca[ia], cb[ib]).sum())
    return len(a) - common, len(b) - common


# -- one pass over a table ---------------------------------------------------


@dataclass
class _Stats:
    nulls: int = 0
    count: int = 0
    total: float = 0.0
    low: Any = None
    high: Any = None
    hashes: list[np.ndarray[Any, Any]] = field(default_factory=list)
    categories: set[str] | None = field(default_factory=set)

    def distinct(self) -> int:
        return len(np.unique(np.concatenate(self.hashes))) if self.hashes else 0


@dataclass
class _Scan:
    rows: int = 0
    stats: dict[str, _Stats] = field(default_factory=dict)
    hashes: list[np.ndarray[Any, Any]] = field(default_factory=list)
    key_hashes: list[np.ndarray[Any, Any]] = field(default_factory=list)

    def row_hashes(self) -> np.ndarray[Any, Any]:
        return np.concatenate(self.hashes) if self.hashes else np.zeros(0, np.uint64)

    def keys(self) -> np.ndarray[Any, Any]:
        return np.concatenate(self.key_hashes) if self.key_hashes else np.zeros(0, np.uint64)


def _scan(data: Any, compared: list[str], keys: list[str] | None, kinds: dict[str, Kind]) -> _Scan:
    scan = _Scan(stats={n: _Stats() for n in compared})
    for batch in batches(data):
        scan.rows += batch.num_rows
        cells = {}
        for name in compared:
            column = batch.column(name)
            logical = logical_type(column.type)
            cells[name] = _cell_hashes(column, logical)
            _update_stats(scan.stats[name], column, cells[name], kinds[name])
        scan.hashes.append(_combine([cells[n] for n in compared], batch.num_rows))
        if keys is not None:
            scan.key_hashes.append(_combine([cells[k] for k in keys], batch.num_rows))
        # Distinct counts: keep each batch's unique hashes, merged now and then.
        for stats in scan.stats.values():
            if len(stats.hashes) > 16:
                stats.hashes = [np.unique(np.concatenate(stats.hashes))]
    return scan


def _update_stats(stats: _Stats, column: pa.Array, cells: np.ndarray[Any, Any], kind: Kind) -> None:
    stats.nulls += column.null_count
    if kind not in (Kind.NUMERIC, Kind.STRING, Kind.BOOLEAN):
        return
    present = (
        cells[column.is_valid().to_numpy(zero_copy_only=False)] if column.null_count else cells
    )
    stats.hashes.append(np.unique(present))
    if kind is Kind.NUMERIC:
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        numbers = column.cast(pa.float64())
        finite = pc.filter(numbers, pc.is_finite(numbers))
        stats.count += len(finite) - finite.null_count
        total = pc.sum(finite).as_py()
        stats.total += total or 0.0
        bounds = pc.min_max(column).as_py()
        stats.low = _pick(min, stats.low, bounds["min"])
        stats.high = _pick(max, stats.high, bounds["max"])
    elif kind is Kind.STRING and stats.categories is not None:
        found = pc.unique(variable_values(column, "string").cast(pa.large_string()))
        stats.categories.update(v for v in found.to_pylist() if v is not None)
        if len(stats.categories) > MAX_CATEGORIES:
            stats.categories = None


def _pick(choose: Any, old: Any, new: Any) -> Any:
    if old is None:
        return new
    return old if new is None else choose(old, new)


def _delta(name: str, kind: Kind, a: _Stats, b: _Stats) -> ColumnDelta:
    def side(s: _Stats) -> dict[str, Any]:
        out: dict[str, Any] = {"nulls": s.nulls}
        if kind is Kind.NUMERIC:
            out["mean"] = _json_value(s.total / s.count) if s.count else None
            out["min"] = _json_value(s.low)
            out["max"] = _json_value(s.high)
        if kind in (Kind.NUMERIC, Kind.STRING, Kind.BOOLEAN):
            out["distinct"] = s.distinct()
        return out

    delta = ColumnDelta(name, kind.value, side(a), side(b))
    if kind is Kind.STRING and a.categories is not None and b.categories is not None:
        delta.new_categories = sorted(b.categories - a.categories)
        delta.vanished_categories = sorted(a.categories - b.categories)
    return delta


# -- keyed comparison ----------------------------------------------------------


def _keyed(
    result: DatasetDiff,
    a: Any,
    b: Any,
    scan_a: _Scan,
    scan_b: _Scan,
    keys: list[str],
    compared: list[str],
) -> None:
    ka, kb = scan_a.keys(), scan_b.keys()
    for data, k in ((a, ka), (b, kb)):
        unique = len(np.unique(k))
        if unique != len(k):
            raise DataError(
                f"Key {keys} is not unique in {describe(data)}: {len(k) - unique} rows repeat "
                "a key. Choose columns that identify each row, or diff without --key."
            )
    ra, rb = scan_a.row_hashes(), scan_b.row_hashes()
    common, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    result.rows_removed = len(ka) - len(common)
    result.rows_added = len(kb) - len(common)
    changed = np.sort(common[ra[ia] != rb[ib]])
    result.rows_changed = len(changed)
    if not len(changed):
        return
    values = [n for n in compared if n not in keys]
    old_keys, old_cells, old_examples = _changed_rows(a, changed, keys, values, None)
    wanted = np.array(sorted(old_examples), dtype=np.uint64)
    new_keys, new_cells, new_examples = _changed_rows(b, changed, keys, values, wanted)
    oa, ob = np.argsort(old_keys), np.argsort(new_keys)
    differs = old_cells[oa] != new_cells[ob]
    result.changed_cells = {
        n: int(c) for n, c in zip(values, differs.sum(axis=0), strict=True) if c
    }
    for key_hash, old in old_examples.items():
        new = new_examples.get(key_hash)
        if new is None:
            continue
        changes = {
            n: {"old": _json_value(old[n]), "new": _json_value(new[n])}
            for n in values
            if not _same(old[n], new[n])
        }
        result.examples.append({"key": {k: _json_value(old[k]) for k in keys}, "changes": changes})


def _changed_rows(
    data: Any,
    changed: np.ndarray[Any, Any],
    keys: list[str],
    values: list[str],
    wanted: np.ndarray[Any, Any] | None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], dict[int, dict[str, Any]]]:
    """Key hashes, per-column cell hashes and example rows of the changed rows."""
    key_parts: list[np.ndarray[Any, Any]] = []
    cell_parts: list[np.ndarray[Any, Any]] = []
    examples: dict[int, dict[str, Any]] = {}
    for batch in batches(data):
        key_cells = [
            _cell_hashes(batch.column(k), logical_type(batch.column(k).type)) for k in keys
        ]
        key_hash = _combine(key_cells, batch.num_rows)
        hit = np.flatnonzero(np.isin(key_hash, changed))
        if not len(hit):
            continue
        rows = batch.take(pa.array(hit))
        key_parts.append(key_hash[hit])
        cells = [_cell_hashes(rows.column(n), logical_type(rows.column(n).type)) for n in values]
        cell_parts.append(np.stack(cells, axis=1) if cells else np.zeros((len(hit), 0), np.uint64))
        if wanted is None:
            room = EXAMPLES - len(examples)
            picks = list(range(min(room, len(hit))))
        else:
            picks = np.flatnonzero(np.isin(key_hash[hit], wanted)).tolist()
        if picks:
            sample = rows.take(pa.array(picks, pa.int64())).to_pylist()
            for i, row in zip(picks, sample, strict=True):
                examples[int(key_hash[hit][i])] = row
    if not key_parts:
        return np.zeros(0, np.uint64), np.zeros((0, len(values)), np.uint64), examples
    return np.concatenate(key_parts), np.concatenate(cell_parts), examples


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return bool(x == y)


def _json_value(value: Any) -> Any:
    """A cell as JSON carries it: NaN and infinities as strings, times as ISO text."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta | Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- inputs --------------------------------------------------------------------


def _rereadable(data: Any) -> Any:
    # A reader or generator can be read once; both passes need the data.
    if isinstance(data, pa.RecordBatchReader | Iterator):
        return read_table(data)
    return data


def _schema(data: Any) -> pa.Schema:
    for batch in batches(data):
        return batch.schema
    if isinstance(data, pa.Table):
        return data.schema
    if type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        return pa.Schema.from_pandas(data.rename(columns=str), preserve_index=False)
    raise DataError(f"{describe(data).capitalize()} holds no data, so it has no columns.")
