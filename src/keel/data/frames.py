"""Tabular input as a stream of Arrow record batches, whatever the user hands in.

Every data feature (digests, profiles, suites, drift) reads through
:func:`batches`, so a pandas frame, an Arrow table, a stream of batches and a
CSV or Parquet file of any size are handled the same way, a bounded batch at a
time. Column kinds (:class:`Kind`) decide which statistics and tests apply.

>>> import pyarrow as pa
>>> table = pa.table({"age": [31, 45], "plan": ["basic", "pro"]})
>>> [b.num_rows for b in batches(table)]
[2]
>>> kind_of(table.schema.field("plan").type)
<Kind.STRING: 'string'>
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from keel.errors import InvalidParameter

BATCH_ROWS = 65_536
# Parquet files are read in batches of about this much decoded data: small
# batches cost more in decoding than in everything downstream (measured: a
# 1 GB file reads in 2.5 s as 65,536-row batches and in 1.2 s as 1M-row ones).
PARQUET_BATCH_BYTES = 64 << 20
FILE_SUFFIXES = (".csv", ".parquet", ".pq", ".tsv", ".csv.gz")


class DataError(InvalidParameter):
    """Data Keel cannot read or compare: names the file and the column when it knows them."""


class Kind(str, enum.Enum):
    """What a column holds, as far as statistics are concerned."""

    NUMERIC = "numeric"
    BOOLEAN = "boolean"
    STRING = "string"
    DATETIME = "datetime"
    OTHER = "other"


def kind_of(dtype: pa.DataType) -> Kind:
    """The statistical kind of an Arrow type (dictionaries take their value type's kind)."""
    if pa.types.is_dictionary(dtype):
        return kind_of(dtype.value_type)
    if pa.types.is_boolean(dtype):
        return Kind.BOOLEAN
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return Kind.NUMERIC
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return Kind.STRING
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        return Kind.DATETIME
    if pa.types.is_null(dtype):
        return Kind.STRING
    return Kind.OTHER


def describe(data: Any) -> str:
    """How to name ``data`` in an error message: the file, or the kind of object."""
    if isinstance(data, str | Path):
        return f"file {str(data)!r}"
    return f"the {type(data).__name__} passed in"


def batches(data: Any, *, batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of at most ``batch_rows`` rows from any supported input.

    Without ``batch_rows``, in-memory data comes in batches of ``BATCH_ROWS``
    rows and Parquet files in batches of about ``PARQUET_BATCH_BYTES`` decoded.

    Accepts a pandas DataFrame, a pyarrow Table / RecordBatch / RecordBatchReader,
    a path to a CSV or Parquet file (read as a stream), a 2-D numpy array
    (columns ``"0"``, ``"1"``, ...), or an iterable of any of these (one
    dataset delivered in parts, which must share a schema).
    """
    if isinstance(data, str | Path):
        yield from _file_batches(Path(data), batch_rows)
        return
    rows = batch_rows or BATCH_ROWS
    if isinstance(data, pa.RecordBatchReader):
        for batch in data:
            yield from _split(batch, rows)
        return
    table = _as_table(data)
    if table is not None:
        if table.num_columns == 0:
            raise DataError(f"{describe(data).capitalize()} has no columns.")
        if table.num_rows == 0:  # still one (empty) batch: it carries the schema
            yield pa.RecordBatch.from_pylist([], schema=table.schema)
            return
        yield from table.to_batches(max_chunksize=rows)
        return
    if isinstance(data, Iterable) and not isinstance(data, bytes | dict):
        schema: pa.Schema | None = None
        for part in data:
            for batch in batches(part, batch_rows=batch_rows):
                if schema is None:
                    schema = batch.schema
                elif not batch.schema.equals(schema):
                    raise DataError(
                        "The parts of this dataset have different schemas: "
                        f"{_schema_text(schema)} and then {_schema_text(batch.schema)}. "
                        "Give every part the same columns and types."
                    )
                yield batch
        return
    raise DataError(
        f"Cannot read {describe(data)} as a table. Pass a pandas DataFrame, a pyarrow "
        "Table, RecordBatch or RecordBatchReader, a 2-D numpy array, or a path to a "
        ".csv or .parquet file."
    )


def read_table(data: Any) -> pa.Table:
    """All of ``data`` as one Arrow table (for inputs that must be held whole)."""
    if isinstance(data, pa.Table):
        return data
    parts = list(batches(data))
    if not parts:
        raise DataError(f"{describe(data).capitalize()} holds no batches, so it has no schema.")
    return pa.Table.from_batches(parts)


def schema_of(data: Any) -> pa.Schema:
    """The Arrow schema of ``data`` without reading all of it (files: the header only)."""
    if isinstance(data, str | Path):
        path = Path(data)
        if file_suffix(path) in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).schema_arrow
    for batch in batches(data):
        return batch.schema
    raise DataError(f"{describe(data).capitalize()} holds no data, so it has no schema.")


def _as_table(data: Any) -> pa.Table | None:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__
    if module.startswith("pandas") and hasattr(data, "columns"):
        return _from_pandas(data)
    if module.startswith("pandas") and hasattr(data, "to_frame"):  # a Series
        return _from_pandas(data.to_frame())
    if module == "numpy" and getattr(data, "ndim", 0) in (1, 2):
        import numpy as np

        array = np.asarray(data)
        if array.ndim == 1:
            array = array.reshape(-1, 1)
        return pa.table({str(i): array[:, i] for i in range(array.shape[1])})
    return None


def _from_pandas(frame: Any) -> pa.Table:
    duplicated = [str(c) for c in frame.columns[frame.columns.duplicated()]]
    if duplicated:
        raise DataError(
            f"The DataFrame has duplicate column names {duplicated}; give each column its own name."
        )
    frame = frame.rename(columns=str)
    try:
        with warnings.catch_warnings():
            # pyarrow reads tz-aware columns through Series.values, which pandas 3.1
            # deprecates with a warning; the converted values are right either way.
            warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
            return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        column = _failing_column(frame)
        where = f"column {column!r}" if column else "a column"
        raise DataError(
            f"Cannot convert {where} of the DataFrame to a typed column: {exc}. "
            "Give the column one type (for example with .astype(str) or pd.to_numeric)."
        ) from None


def _failing_column(frame: Any) -> str | None:
    for name in frame.columns:
        try:
            pa.array(frame[name], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return str(name)
    return None


def file_suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".csv.gz", ".tsv", ".csv", ".parquet", ".pq"):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def _file_batches(path: Path, batch_rows: int | None) -> Iterator[pa.RecordBatch]:
    if not path.is_file():
        raise DataError(f"No such data file: {str(path)!r}. Check the path.")
    suffix = file_suffix(path)
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            size = batch_rows or _parquet_batch_rows(parquet.metadata)
            yield from parquet.iter_batches(batch_size=size)
        elif suffix in (".csv", ".csv.gz", ".tsv"):
            rows = batch_rows or BATCH_ROWS
            yield from _csv_batches(path, rows, "\t" if suffix == ".tsv" else ",")
        else:
            raise DataError(
                f"Cannot tell the format of {str(path)!r} from its name: use a .csv, .tsv, "
                ".csv.gz or .parquet file."
            )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError) as exc:
        raise DataError(f"Cannot read data file {str(path)!r}: {exc}") from None


def _parquet_batch_rows(metadata: Any) -> int:
    """Rows per batch for about ``PARQUET_BATCH_BYTES`` of decoded data."""
    rows = int(metadata.num_rows)
    size = sum(int(metadata.row_group(i).total_byte_size) for i in range(metadata.num_row_groups))
    if not rows or not size:
        return BATCH_ROWS
    return max(BATCH_ROWS // 16, min(1 << 22, PARQUET_BATCH_BYTES * rows // size))


def _csv_batches(path: Path, batch_rows: int, delimiter: str) -> Iterator[pa.RecordBatch]:
    import pyarrow.csv as csv

    # Types are inferred from the first block; a big block makes a later surprise
    # (an "N/A" in a number column on row 2 million) less likely, and the error
    # that follows one names the file and the column.
    read = csv.ReadOptions(block_size=16 << 20)
    parse = csv.ParseOptions(delimiter=delimiter)
    reader = csv.open_csv(path, read_options=read, parse_options=parse)
    for batch in reader:
        yield from _split(batch, batch_rows)


def _split(batch: pa.RecordBatch, batch_rows: int) -> Iterator[pa.RecordBatch]:
    for start in range(0, batch.num_rows, batch_rows):
        yield batch.slice(start, batch_rows)
    if batch.num_rows == 0:
        yield batch


def _schema_text(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in schema)
