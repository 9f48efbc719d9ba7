"""Column profiles built from mergeable sketches: bounded memory, any number of batches.

A :class:`Profile` holds, per column and by kind: row count, nulls (NaN counts
as missing), distinct values (HyperLogLog), min/max/mean/std (exact, merged
with Chan's formula), quantiles and histograms (KLL), and the most frequent
values with counts (frequent-items sketch). The sketches are Apache
DataSketches', so profiles of separate batches merge into the profile of the
whole (``a.merge(b)``), and the JSON form is a few kilobytes per column
whatever the row count.

Accuracy (DataSketches' defaults, documented by the library): quantile ranks
within about ±1.3% (KLL, k=200, 99% confidence), distinct counts within about
±3% (HLL, lg_k=12, 95% confidence; exact for small cardinalities), and the
frequent values' counts exact until a column has more than 768 distinct
values, bounded by ``frequent_error`` after that.

>>> import pandas as pd
>>> a = profile(pd.DataFrame({"x": [1.0, 2.0, None], "plan": ["a", "b", "a"]}))
>>> b = profile(pd.DataFrame({"x": [3.0], "plan": ["c"]}))
>>> m = a.merge(b)
>>> m.rows, m["x"].nulls, m["x"].mean, m["plan"].top(1)
(4, 1, 2.0, [('a', 2)])
"""

from __future__ import annotations

import base64
import datetime
import json
import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasketches as ds
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keel.data.frames import DataError, Kind, batches, describe, kind_of

FORMAT = "keel-profile/1"
KLL_K = 200
HLL_LG_K = 12
FREQUENT_LG_MAX_K = 10
# Per batch, a column with more distinct values than this only feeds its most
# frequent ones to the frequent-items sketch: the rest could not be among the
# column's top values by more than the sketch's own error bound anyway.
FREQUENT_FEED_CAP = 1024
FREQUENT_FEED_TOP = 128
SUMMARY_QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


@dataclass
class ColumnProfile:
    """Statistics of one column, updatable batch by batch and mergeable."""

    name: str
    kind: Kind
    dtype: str
    count: int = 0
    nulls: int = 0
    infinities: int = 0
    # exact moments of the finite values (numbers; datetimes as epoch microseconds)
    n: int = 0
    mean_: float = 0.0
    m2: float = 0.0
    minimum: float | None = None
    maximum: float | None = None
    integral: bool = True
    # weight of values left out of the frequent-items sketch (see FREQUENT_FEED_CAP)
    unfed: int = 0
    kll: Any = None
    hll: Any = field(default_factory=lambda: ds.hll_sketch(HLL_LG_K, ds.tgt_hll_type.HLL_8))
    frequent: Any = field(default_factory=lambda: ds.frequent_strings_sketch(FREQUENT_LG_MAX_K))

    def __post_init__(self) -> None:
        if self.kll is None and self.kind in (Kind.NUMERIC, Kind.DATETIME):
            self.kll = ds.kll_doubles_sketch(KLL_K)

    # -- reading -----------------------------------------------------------------

    @property
    def present(self) -> int:
        """Rows with a value (not null, not NaN)."""
        return self.count - self.nulls

    @property
    def null_fraction(self) -> float:
        return self.nulls / self.count if self.count else 0.0

    @property
    def distinct(self) -> int:
        """Estimated number of distinct non-null values (HyperLogLog)."""
        return round(self.hll.get_estimate()) if not self.hll.is_empty() else 0

    @property
    def mean(self) -> float | None:
        return self.mean_ if self.n else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation of the finite values."""
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else None

    @property
    def is_numeric(self) -> bool:
        return self.kll is not None

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """Approximate quantiles of the finite values (KLL); empty for non-numeric columns."""
        if self.kll is None or self.kll.is_empty():
            return []
        values = [float(v) for v in self.kll.get_quantiles(list(qs))]
        lo, hi = self.minimum, self.maximum
        assert lo is not None and hi is not None  # the sketch is not empty
        # the sketch's extreme ranks are retained items, not the exact extremes we keep
        return [lo if q <= 0 else hi if q >= 1 else v for q, v in zip(qs, values, strict=True)]

    def cdf(self, points: Sequence[float] | np.ndarray) -> np.ndarray:
        """Approximate P(X ≤ x) at each (sorted, distinct) point."""
        if self.kll is None or self.kll.is_empty() or len(points) == 0:
            return np.zeros(len(points))
        return np.asarray(self.kll.get_cdf(list(map(float, points)), True)[:-1])

    def histogram(self, edges: Sequence[float]) -> np.ndarray:
        """Approximate counts of finite values between consecutive ``edges``."""
        if len(edges) < 2:
            return np.zeros(0)
        inner = np.unique(np.asarray(edges[1:-1], dtype=float))
        cdf = np.concatenate(([0.0], self.cdf(inner), [1.0]))
        return np.diff(cdf) * self.n

    def top(self, k: int = 10) -> list[tuple[str, int]]:
        """The ``k`` most frequent values with their (estimated) counts, most frequent first."""
        if self.frequent.is_empty():
            return []
        items = self.frequent.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        return [(str(item), int(estimate)) for item, estimate, _lb, _ub in items[:k]]

    def counts(self) -> dict[str, int]:
        """Every value the frequent-items sketch holds, with counts (exact until it overflows)."""
        return dict(self.top(1 << FREQUENT_LG_MAX_K))

    @property
    def frequent_error(self) -> int:
        """Largest possible error of any count from :meth:`top` (0 while counts are exact)."""
        if self.frequent.is_empty():
            return self.unfed
        items = self.frequent.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        offset = int(items[0][3] - items[0][2]) if items else 0
        return offset + self.unfed

    # -- building ----------------------------------------------------------------

    def update(self, column: pa.Array | pa.ChunkedArray) -> None:
        """Add one batch of this column's values."""
        if isinstance(column, pa.ChunkedArray):
            for chunk in column.chunks:
                self.update(chunk)
            return
        self.count += len(column)
        self.nulls += column.null_count
        if self.kind in (Kind.NUMERIC, Kind.DATETIME):
            self._update_numbers(column)
        elif self.kind in (Kind.STRING, Kind.BOOLEAN):
            self._update_values(column)
        # Kind.OTHER (lists, structs, binary): counts and nulls only

    def _update_numbers(self, column: pa.Array) -> None:
        values = as_float64(column, self.name)
        nan = np.isnan(values)
        finite = np.isfinite(values)
        self.nulls += int(nan.sum())
        self.infinities += int(len(values) - finite.sum() - nan.sum())
        values = values[finite]
        if not len(values):
            return
        values.sort()
        if self.integral and self.kind is Kind.NUMERIC:
            self.integral = pa.types.is_integer(column.type) or bool(
                np.all(values == np.floor(values))
            )
        self._merge_moments(len(values), float(values.mean()), _m2(values))
        lo, hi = float(values[0]), float(values[-1])
        self.minimum = lo if self.minimum is None else min(self.minimum, lo)
        self.maximum = hi if self.maximum is None else max(self.maximum, hi)
        self.kll.update(values)
        starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
        uniques = values[starts]
        deque(map(self.hll.update, uniques.tolist()), maxlen=0)
        counts = np.diff(np.append(starts, len(values)))
        self._feed_frequent(uniques, counts)

    def _update_values(self, column: pa.Array) -> None:
        if self.kind is Kind.BOOLEAN:
            column = pc.cast(column, pa.string())
        counted = pc.value_counts(column.drop_null())
        uniques = counted.field("values").to_pylist()
        counts = counted.field("counts").to_numpy()
        deque(map(self.hll.update, uniques), maxlen=0)
        self._feed_frequent(np.asarray(uniques, dtype=object), counts)

    def _feed_frequent(self, uniques: np.ndarray, counts: np.ndarray) -> None:
        if len(uniques) > FREQUENT_FEED_CAP:
            # many distinct values: only repeated ones can be frequent, and the most
            # repeated are enough (values that occur once only fill the sketch with noise)
            repeated = np.flatnonzero(counts > 1)
            keep = repeated[np.argsort(counts[repeated])[-FREQUENT_FEED_TOP:]]
            self.unfed += int(counts.sum() - counts[keep].sum())
            uniques, counts = uniques[keep], counts[keep]
        labels = [self._label(v) for v in uniques.tolist()]
        deque(map(self.frequent.update, labels, counts.tolist()), maxlen=0)

    def _label(self, value: Any) -> str:
        if isinstance(value, float):
            if self.kind is Kind.DATETIME:
                return str(np.datetime64(int(value), "us"))
            return str(int(value)) if self.integral and value.is_integer() else repr(value)
        return str(value)

    def _merge_moments(self, n: int, mean: float, m2: float) -> None:
        total = self.n + n
        delta = mean - self.mean_
        self.mean_ += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    # -- combining and serialising -----------------------------------------------

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        """A new profile of both columns' values (``self`` and ``other`` are unchanged)."""
        if other.kind is not self.kind:
            raise DataError(
                f"Cannot merge column {self.name!r}: it holds {self.kind.value} values in one "
                f"profile and {other.kind.value} values in the other."
            )
        merged = ColumnProfile.from_dict(self.to_dict())
        merged.count += other.count
        merged.nulls += other.nulls
        merged.infinities += other.infinities
        merged.integral = self.integral and other.integral
        merged.unfed += other.unfed
        if other.n:
            merged._merge_moments(other.n, other.mean_, other.m2)
            assert other.minimum is not None and other.maximum is not None
            merged.minimum = _pick(min, merged.minimum, other.minimum)
            merged.maximum = _pick(max, merged.maximum, other.maximum)
        if merged.kll is not None and other.kll is not None:
            merged.kll.merge(other.kll)
        union = ds.hll_union(HLL_LG_K)
        union.update(merged.hll)
        union.update(other.hll)
        merged.hll = union.get_result(ds.tgt_hll_type.HLL_8)
        merged.frequent.merge(other.frequent)
        return merged

    def summary(self) -> dict[str, Any]:
        """Readable statistics (what the JSON form shows beside the sketches)."""
        out: dict[str, Any] = {
            "count": self.count,
            "nulls": self.nulls,
            "null_fraction": round(self.null_fraction, 6),
            "distinct": self.distinct,
        }
        if self.is_numeric and self.n:
            shown = self._shown
            out |= {
                "min": shown(self.minimum),
                "max": shown(self.maximum),
                "mean": shown(self.mean),
                "std": self._spread(),
                "quantiles": {
                    str(q): shown(v)
                    for q, v in zip(
                        SUMMARY_QUANTILES, self.quantiles(SUMMARY_QUANTILES), strict=True
                    )
                },
            }
            if self.infinities:
                out["infinities"] = self.infinities
        out["top"] = [[value, count] for value, count in self.top(10)]
        return out

    def _spread(self) -> Any:
        std = self.std
        if std is not None and self.kind is Kind.DATETIME:
            return str(datetime.timedelta(microseconds=round(std)))
        return std

    def _shown(self, value: float | None) -> Any:
        if value is None:
            return None
        if self.kind is Kind.DATETIME:
            return str(np.datetime64(round(value), "us"))
        return int(value) if self.integral and float(value).is_integer() else value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the readable summary plus the sketches (base64) needed to merge."""
        return {
            "kind": self.kind.value,
            "dtype": self.dtype,
            "summary": self.summary(),
            "state": {
                "count": self.count,
                "nulls": self.nulls,
                "infinities": self.infinities,
                "n": self.n,
                "mean": self.mean_,
                "m2": self.m2,
                "min": self.minimum,
                "max": self.maximum,
                "integral": self.integral,
                "unfed": self.unfed,
                "kll": _b64(self.kll),
                "hll": _b64(self.hll),
                "frequent": _b64(self.frequent),
            },
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnProfile:
        """Rebuild a column profile from :meth:`to_dict`'s output."""
        state = data["state"]
        kll = state.get("kll")
        return cls(
            name=data["name"],
            kind=Kind(data["kind"]),
            dtype=data["dtype"],
            count=state["count"],
            nulls=state["nulls"],
            infinities=state.get("infinities", 0),
            n=state["n"],
            mean_=state["mean"],
            m2=state["m2"],
            minimum=state["min"],
            maximum=state["max"],
            integral=state.get("integral", True),
            unfed=state.get("unfed", 0),
            kll=ds.kll_doubles_sketch.deserialize(_unb64(kll)) if kll else None,
            hll=ds.hll_sketch.deserialize(_unb64(state["hll"])),
            frequent=ds.frequent_strings_sketch.deserialize(_unb64(state["frequent"])),
        )


@dataclass
class Profile:
    """Profiles of every column of a dataset, in column order."""

    columns: dict[str, ColumnProfile]
    rows: int = 0
    source: str = ""

    def __getitem__(self, column: str) -> ColumnProfile:
        try:
            return self.columns[column]
        except KeyError:
            raise DataError(
                f"The profile has no column {column!r}; its columns are {list(self.columns)}."
            ) from None

    def __iter__(self) -> Iterator[ColumnProfile]:
        return iter(self.columns.values())

    def update(self, batch: pa.RecordBatch) -> None:
        """Add one batch (its schema must match the profile's columns)."""
        names = batch.schema.names
        if list(self.columns) != names:
            raise DataError(
                f"This batch has columns {names}, but the profile was started with "
                f"{list(self.columns)}: every batch of a dataset needs the same columns."
            )
        for name, column in zip(names, batch.columns, strict=True):
            self.columns[name].update(column)
        self.rows += batch.num_rows

    def merge(self, other: Profile) -> Profile:
        """The profile of both datasets' rows together (neither input changes)."""
        if list(self.columns) != list(other.columns):
            raise DataError(
                "Cannot merge profiles of different columns: "
                f"{list(self.columns)} and {list(other.columns)}."
            )
        merged = {name: col.merge(other.columns[name]) for name, col in self.columns.items()}
        return Profile(merged, self.rows + other.rows, self.source or other.source)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "rows": self.rows,
            "source": self.source,
            "columns": [col.to_dict() for col in self.columns.values()],
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """The profile as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False, default=_plain)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        if data.get("format") != FORMAT:
            raise DataError(
                f"Not a Keel profile (format {data.get('format')!r}, expected {FORMAT!r})."
            )
        columns = [ColumnProfile.from_dict(c) for c in data["columns"]]
        return cls({c.name: c for c in columns}, data["rows"], data.get("source", ""))

    @classmethod
    def from_json(cls, source: str | Path) -> Profile:
        """Read a profile from a JSON file path, or from JSON text."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            path = Path(source)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise DataError(f"Cannot read profile file {str(path)!r}: {exc}") from None
        try:
            return cls.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"Not a readable Keel profile: {exc}") from None

    def to_html(self, path: str | Path | None = None, *, title: str = "Data profile") -> str:
        """A self-contained HTML page with every column's statistics and distribution."""
        from keel.data.html import profile_page

        page = profile_page(self, title=title)
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page


def profile(data: Any, *, batch_rows: int | None = None) -> Profile:
    """Profile a DataFrame, Arrow table, file path, or a stream of batches.

    >>> import pandas as pd
    >>> p = profile(pd.DataFrame({"age": [31, 45, 27, 45]}))
    >>> p["age"].distinct, p["age"].minimum, p["age"].maximum
    (3, 27.0, 45.0)
    """
    if isinstance(data, Profile):
        return data
    result: Profile | None = None
    for batch in batches(data, batch_rows=batch_rows):
        if result is None:
            result = empty_profile(batch.schema)
        result.update(batch)
    if result is None:
        raise DataError(f"{describe(data).capitalize()} holds no data to profile.")
    if not result.columns:
        raise DataError(f"{describe(data).capitalize()} has no columns to profile.")
    if isinstance(data, str | Path):
        result.source = str(data)
    return result


def empty_profile(schema: pa.Schema) -> Profile:
    """A profile with the columns of ``schema`` and no rows yet."""
    return Profile({f.name: ColumnProfile(f.name, kind_of(f.type), str(f.type)) for f in schema})


def profile_batches(parts: Iterable[Any]) -> Profile:
    """Merge the profiles of several datasets (e.g. daily batches) into one."""
    merged: Profile | None = None
    for part in parts:
        p = profile(part)
        merged = p if merged is None else merged.merge(p)
    if merged is None:
        raise DataError("No batches were given to profile.")
    return merged


def as_float64(column: pa.Array, name: str) -> np.ndarray:
    """Non-null values as float64 (datetimes as epoch microseconds); nulls dropped."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    column = column.drop_null()
    try:
        # microseconds: nanoseconds would overflow on sentinel dates such as 9999-12-31
        if pa.types.is_date(column.type):
            column = pc.cast(column, pa.timestamp("us"))
        if pa.types.is_timestamp(column.type):
            column = pc.cast(pc.cast(column, pa.timestamp("us", column.type.tz)), pa.int64())
        return np.asarray(
            column.to_numpy(zero_copy_only=False), dtype=np.float64
        )  # a copy: it is sorted in place
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError, ValueError) as exc:
        raise DataError(f"Cannot read column {name!r} as numbers: {exc}") from None


def _m2(values: np.ndarray) -> float:
    centred = values - values.mean()
    return float(centred @ centred)


def _pick(fn: Any, a: float | None, b: float) -> float:
    return b if a is None else float(fn(a, b))


def _b64(sketch: Any) -> str | None:
    if sketch is None:
        return None
    raw = sketch.serialize_compact() if isinstance(sketch, ds.hll_sketch) else sketch.serialize()
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
