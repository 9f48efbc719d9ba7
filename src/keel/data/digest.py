"""A dataset's content digest: one SHA-256 over every cell, streamed a batch at a time.

Two datasets have the same digest exactly when they hold the same columns (names,
order and *logical* types) and the same values in the same row order. How the
data is stored or split does not matter: a pandas frame, an Arrow table, a CSV
file and a Parquet file holding the same content get the same digest, whatever
their batch or row-group sizes.

Definition (version ``keel-dataset-digest/1``)
----------------------------------------------

1. Every column gets a **logical type**, and its values a canonical encoding:

   * int8 … int64 and uint8 … uint32 → ``int64``: 8-byte little-endian signed;
     uint64 → ``uint64``: 8-byte little-endian unsigned.
   * float16, float32, float64 → ``float64``: 8-byte IEEE 754 little-endian;
     every NaN is written as 0x7FF8000000000000 and -0.0 as 0.0 (infinities kept).
   * bool → ``bool``: one byte, 0 or 1.
   * timestamp of any unit → ``timestamp[ns]``, or ``timestamp[ns, tz=<zone>]``
     when it has a time zone: int64 nanoseconds since the epoch.
   * date32, date64 → ``date``: int64 days since the epoch.
   * string, large_string, string_view and dictionaries of them → ``string``:
     the UTF-8 bytes. binary, large_binary, fixed_size_binary → ``binary``:
     the bytes.
   * decimal128/256 → ``decimal``: Arrow's text of the value at the column's
     scale (``"1.50"``), as UTF-8.
   * null (a column that holds no values at all) → ``null``: no values.
   * anything else (lists, structs, maps, times, durations) →
     ``text:<arrow type>``: compact JSON of the value in field order
     (``[1,2]``, ``{"a":1}``), with non-JSON scalars as their ``str()``. This
     form is built in Python, a row at a time, so it is slower.

2. Each column feeds SHA-256 hashers with streams that do not depend on where
   batches start and end:

   * a **validity** stream: one byte per row, 1 for a value, 0 for null;
   * fixed-width types: a **value** stream of the encodings above, with every
     null slot written as zero bytes;
   * variable-length types (string, binary, decimal, text): a **lengths**
     stream of int64 little-endian byte lengths (0 for a null) and a **bytes**
     stream of the concatenated values.

3. The digest is SHA-256 over the header — the UTF-8 JSON text of
   ``["keel-dataset-digest/1", rows, [[name, logical type], ...]]`` (no spaces,
   non-ASCII characters as themselves) — followed by each column's stream digests (32 bytes
   each: validity, then value, or validity, lengths, bytes) in column order.

Consequences: int32 and int64 columns with equal values digest the same, as do
``Float64`` and ``float32`` ones whose values are exactly representable; a
change to any single cell, a reordering of rows (order counts: sort first if
it should not), a renamed column or a changed time zone all change the digest.
A pandas index is not content (it is dropped, as in ``frames.batches``). A
pandas integer column with missing values is ``float64`` in pandas, so it
digests as floats unless it uses the nullable ``Int64`` dtype.

>>> import pandas as pd
>>> df = pd.DataFrame({"age": [31, 45, 27], "plan": ["basic", "pro", "basic"]})
>>> result = content_digest(df)
>>> result.rows, result.schema
(3, [('age', 'int64'), ('plan', 'string')])
>>> content_digest(df.astype({"age": "int32"})).digest == result.digest
True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keel.data.frames import BATCH_ROWS, DataError, batches, describe

VERSION = "keel-dataset-digest/1"
_CANONICAL_NAN = np.uint64(0x7FF8000000000000)
# Batches whose hashing may be in flight while the next one is read; bounds memory.
_IN_FLIGHT = 2
# Below this many cells in the first batch, threads cost more than they save.
_THREAD_MIN_CELLS = 200_000


@dataclass(frozen=True)
class DigestResult:
    """A dataset's digest (64 hex characters), row count and logical schema."""

    digest: str
    rows: int
    schema: list[tuple[str, str]]


def logical_type(dtype: pa.DataType) -> str:
    """The logical type a column of Arrow type ``dtype`` is digested as.

    >>> logical_type(pa.int32()), logical_type(pa.timestamp("ms", tz="UTC"))
    ('int64', 'timestamp[ns, tz=UTC]')
    """
    t = pa.types
    if t.is_dictionary(dtype):
        return logical_type(dtype.value_type)
    if t.is_null(dtype):
        return "null"
    if t.is_boolean(dtype):
        return "bool"
    if t.is_uint64(dtype):
        return "uint64"
    if t.is_integer(dtype):
        return "int64"
    if t.is_floating(dtype):
        return "float64"
    if t.is_timestamp(dtype):
        return f"timestamp[ns, tz={dtype.tz}]" if dtype.tz else "timestamp[ns]"
    if t.is_date(dtype):
        return "date"
    if t.is_string(dtype) or t.is_large_string(dtype) or t.is_string_view(dtype):
        return "string"
    if (
        t.is_binary(dtype)
        or t.is_large_binary(dtype)
        or t.is_fixed_size_binary(dtype)
        or t.is_binary_view(dtype)
    ):
        return "binary"
    if t.is_decimal(dtype):
        return "decimal"
    return f"text:{dtype}"


def content_digest(data: Any, *, batch_rows: int | None = None) -> DigestResult:
    """The content digest of anything :func:`keel.data.frames.batches` reads.

    Memory stays bounded by a few batches; columns are hashed on a small thread
    pool (SHA-256 releases the GIL) while the next batch is read.

    >>> import pyarrow as pa
    >>> a = content_digest(pa.table({"x": [1, 2, 3]}))
    >>> b = content_digest(pa.table({"x": [1, 2, 3]}), batch_rows=1)
    >>> a.digest == b.digest, len(a.digest)
    (True, 64)
    """
    stream = batches(data, batch_rows=batch_rows)
    first = next(stream, None)
    schema = first.schema if first is not None else _schema_without_batches(data)
    if len(schema) == 0:
        raise DataError(
            f"{describe(data).capitalize()} has no columns, so it has no content to digest. "
            "Pass a table with at least one column."
        )
    names = [str(field.name) for field in schema]
    hashers = [_ColumnHasher(field.name, field.type) for field in schema]
    rows = 0
    cells = (first.num_rows if first is not None else 0) * len(hashers)
    workers = min(len(hashers), os.cpu_count() or 1, 4) if cells >= _THREAD_MIN_CELLS else 1
    with _Lanes(workers) as lanes:
        batch = first
        while batch is not None:
            if not batch.schema.equals(schema):
                raise DataError(
                    f"{describe(data).capitalize()} changes its columns part-way through: "
                    f"expected {_schema_text(schema)}, got {_schema_text(batch.schema)}."
                )
            rows += batch.num_rows
            lanes.submit(
                [_bind(h.update, col) for h, col in zip(hashers, batch.columns, strict=True)]
            )
            batch = next(stream, None)
    logical = [(name, h.logical) for name, h in zip(names, hashers, strict=True)]
    header = json.dumps(
        [VERSION, rows, [list(p) for p in logical]], ensure_ascii=False, separators=(",", ":")
    )
    total = hashlib.sha256(header.encode("utf-8"))
    for h in hashers:
        total.update(h.digests())
    return DigestResult(total.hexdigest(), rows, logical)


def _bind(update: Callable[[pa.Array], None], column: pa.Array) -> Callable[[], None]:
    return lambda: update(column)


class _Lanes:
    """Runs each batch's column updates; column ``i`` always on lane ``i % n``.

    A lane is a one-thread executor, so a column's updates happen in batch
    order while different columns hash in parallel.
    """

    def __init__(self, workers: int) -> None:
        self._pools = [ThreadPoolExecutor(1) for _ in range(workers)] if workers > 1 else []
        self._pending: deque[list[Future[None]]] = deque()

    def __enter__(self) -> _Lanes:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                while self._pending:
                    for future in self._pending.popleft():
                        future.result()
        finally:
            for pool in self._pools:
                pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, tasks: list[Callable[[], None]]) -> None:
        if not self._pools:
            for task in tasks:
                task()
            return
        n = len(self._pools)
        self._pending.append([self._pools[i % n].submit(task) for i, task in enumerate(tasks)])
        while len(self._pending) > _IN_FLIGHT:
            for future in self._pending.popleft():
                future.result()


class _ColumnHasher:
    """The validity and value streams of one column."""

    def __init__(self, name: str, dtype: pa.DataType) -> None:
        self.name = name
        self.dtype = dtype
        self.logical = logical_type(dtype)
        self.validity = hashlib.sha256()
        self.streams = [hashlib.sha256()]
        if is_variable(self.logical):
            self.streams.append(hashlib.sha256())
        if self.logical == "null":
            self.streams = []

    def digests(self) -> bytes:
        return self.validity.digest() + b"".join(s.digest() for s in self.streams)

    def update(self, column: pa.Array) -> None:
        n = len(column)
        if n == 0:
            return
        if column.null_count == 0:
            self.validity.update(_ones(n))
        elif column.null_count == n:
            self.validity.update(bytes(n))
        else:
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            self.validity.update(np.ascontiguousarray(valid).view(np.uint8).data)
        if not self.streams:
            return
        try:
            if len(self.streams) == 2:
                self._update_variable(column)
            else:
                self.streams[0].update(fixed_values(column, self.logical).data)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError) as exc:
            raise DataError(
                f"Cannot digest column {self.name!r} of type {self.dtype}: {exc}. "
                "Convert the column to a plainer type (for example with .astype(str))."
            ) from None

    def _update_variable(self, column: pa.Array) -> None:
        column = variable_values(column, self.logical)
        if column.null_count:
            empty = pa.scalar(b"" if self.logical == "binary" else "", column.type)
            column = pc.fill_null(column, empty)
        wide = pa.types.is_large_string(column.type) or pa.types.is_large_binary(column.type)
        offsets = np.frombuffer(
            column.buffers()[1],
            dtype="<i8" if wide else "<i4",
            count=len(column) + 1,
            offset=column.offset * (8 if wide else 4),
        )
        self.streams[0].update(np.diff(offsets).astype("<i8").data)
        data = column.buffers()[2]
        start, end = int(offsets[0]), int(offsets[-1])
        if data is not None and end > start:
            self.streams[1].update(memoryview(data)[start:end])


def is_variable(logical: str) -> bool:
    """Whether values of this logical type are hashed as variable-length bytes."""
    return logical in ("string", "binary", "decimal") or logical.startswith("text:")


def fixed_values(column: pa.Array, logical: str) -> np.ndarray[Any, Any]:
    """A fixed-width column's canonical values (see the definition), null slots zeroed.

    >>> fixed_values(pa.array([-0.0, None, float("nan")]), "float64").tolist()
    [0.0, 0.0, nan]
    """
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    dtype = column.type
    if logical == "bool":
        flags: np.ndarray[Any, Any] = pc.fill_null(column, False).to_numpy(zero_copy_only=False)
        return np.ascontiguousarray(flags).view(np.uint8)
    if logical.startswith("timestamp"):
        column = column.cast(pa.timestamp("ns", dtype.tz)).cast(pa.int64())
    elif logical == "date":
        # date64 counts milliseconds but by definition holds whole days.
        column = column.cast(pa.date32(), safe=False).cast(pa.int32())
    if column.null_count:
        column = pc.fill_null(column, 0)
    values = column.to_numpy(zero_copy_only=False)
    if logical == "float64":
        # Adding +0.0 turns -0.0 into 0.0 and leaves every other value alone.
        floats: np.ndarray[Any, Any] = values.astype("<f8", copy=False) + 0.0
        nan = np.isnan(floats)
        if nan.any():
            floats.view(np.uint64)[nan] = _CANONICAL_NAN
        return floats
    wide: np.ndarray[Any, Any] = values.astype("<u8" if logical == "uint64" else "<i8")
    return np.ascontiguousarray(wide)


def variable_values(column: pa.Array, logical: str) -> pa.Array:
    """A variable-length column as a string or binary array (nulls kept).

    >>> variable_values(pa.array([1, None], pa.decimal128(4, 2)), "decimal").to_pylist()
    ['1.00', None]
    """
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    dtype = column.type
    if logical == "decimal":
        return column.cast(pa.string())
    if logical.startswith("text:"):
        texts = [None if v is None else _canonical_text(v) for v in column.to_pylist()]
        return pa.array(texts, pa.string())
    if pa.types.is_string_view(dtype):
        return column.cast(pa.large_string())
    if pa.types.is_binary_view(dtype) or pa.types.is_fixed_size_binary(dtype):
        return column.cast(pa.large_binary())
    return column


def _canonical_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


_ONES = b""


def _ones(n: int) -> memoryview:
    # A validity stream with no nulls is all ones; keep one buffer and slice it.
    global _ONES
    if len(_ONES) < n:
        _ONES = b"\x01" * max(n, BATCH_ROWS)
    return memoryview(_ONES)[:n]


def _schema_without_batches(data: Any) -> pa.Schema:
    # An empty table has no batches but still has columns, and an empty dataset
    # with columns has a digest of its own.
    if isinstance(data, pa.Table | pa.RecordBatch | pa.RecordBatchReader):
        return data.schema
    if type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        return pa.Schema.from_pandas(data.rename(columns=str), preserve_index=False)
    from keel.data.frames import schema_of

    try:
        return schema_of(data)
    except DataError:
        raise DataError(
            f"{describe(data).capitalize()} holds no data and no columns, so it has no "
            "digest. Pass a table with at least one column."
        ) from None


def _schema_text(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in schema)
