"""The dataset content digest: split-independent, source-independent, cell-sensitive."""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keel.data.digest import content_digest, logical_type
from keel.data.frames import DataError


def frame(n: int = 30_000) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "score": rng.normal(size=n),
            "plan": rng.choice(["basic", "pro", "team"], size=n),
            "when": pd.date_range("2024-01-01", periods=n, freq="min"),
        }
    )


def test_same_digest_for_any_batch_split() -> None:
    df = frame(5000)
    expected = content_digest(df).digest
    for rows in (1, 7, 999, 4096, 100_000):
        assert content_digest(df, batch_rows=rows).digest == expected
    table = pa.Table.from_pandas(df, preserve_index=False)
    chunks = pa.Table.from_batches(table.to_batches(max_chunksize=333))
    assert content_digest(chunks).digest == expected
    parts = [df.iloc[:1234], df.iloc[1234:1235], df.iloc[1235:]]
    assert content_digest(parts).digest == expected


def test_same_digest_from_pandas_arrow_csv_and_parquet(tmp_path: Path) -> None:
    df = frame(2000)
    expected = content_digest(df).digest
    table = pa.Table.from_pandas(df, preserve_index=False)
    assert content_digest(table).digest == expected
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=300)
    assert content_digest(tmp_path / "d.parquet").digest == expected
    df.to_csv(tmp_path / "d.csv", index=False)
    # CSV timestamps come back as timestamp[s]; the unit is normalised away.
    assert content_digest(tmp_path / "d.csv").digest == expected
    assert content_digest(pa.RecordBatchReader.from_batches(table.schema, table.to_batches()))
    narrow = table.cast(
        pa.schema(
            [
                pa.field("id", pa.int32()),
                pa.field("score", pa.float64()),
                pa.field("plan", pa.dictionary(pa.int8(), pa.string())),
                pa.field("when", pa.timestamp("us")),
            ]
        )
    )
    assert content_digest(narrow).digest == expected


def test_a_change_deep_in_the_data_changes_the_digest() -> None:
    df = frame(30_000)
    base = content_digest(df).digest
    changed = df.copy()
    changed.loc[25_000, "score"] += 1e-9
    assert content_digest(changed).digest != base


def test_a_change_only_in_a_datetime_column_changes_the_digest() -> None:
    df = frame(30_000)
    changed = df.copy()
    changed.loc[25_000, "when"] += timedelta(seconds=1)
    assert content_digest(changed).digest != content_digest(df).digest


def test_row_order_column_names_and_time_zone_count() -> None:
    df = frame(100)
    base = content_digest(df).digest
    assert content_digest(df.iloc[::-1]).digest != base
    assert content_digest(df.rename(columns={"plan": "tier"})).digest != base
    # Built in Arrow: pandas 3.1 warns when pyarrow converts a tz-aware column.
    table = pa.Table.from_pandas(df, preserve_index=False)
    utc = table.set_column(3, "when", table.column("when").cast(pa.timestamp("ns", tz="UTC")))
    assert content_digest(table).digest == base
    assert content_digest(utc).digest != base
    assert content_digest(utc).schema[3] == ("when", "timestamp[ns, tz=UTC]")


def test_null_versus_zero_versus_empty_string() -> None:
    ints = pa.table({"x": pa.array([0, None], pa.int64())})
    zeros = pa.table({"x": pa.array([0, 0], pa.int64())})
    assert content_digest(ints).digest != content_digest(zeros).digest
    texts = pa.table({"s": pa.array(["", None])})
    empties = pa.table({"s": pa.array(["", ""])})
    assert content_digest(texts).digest != content_digest(empties).digest
    # Strings are length-prefixed: moving a character across a boundary is a change.
    assert (
        content_digest(pa.table({"s": ["ab", "c"]})).digest
        != content_digest(pa.table({"s": ["a", "bc"]})).digest
    )


def test_float_canonical_forms() -> None:
    nan_a = np.frombuffer(np.uint64(0x7FF8000000000001).tobytes(), dtype=np.float64)[0]
    a = pa.table({"f": pa.array([nan_a, -0.0, 1.0])})
    b = pa.table({"f": pa.array([float("nan"), 0.0, 1.0])})
    assert content_digest(a).digest == content_digest(b).digest
    f32 = pa.table({"f": pa.array([0.5, 1.25], pa.float32())})
    assert content_digest(f32).digest == content_digest(pa.table({"f": [0.5, 1.25]})).digest


def test_other_types_are_digested() -> None:
    from decimal import Decimal

    table = pa.table(
        {
            "d": pa.array([Decimal("1.50"), None], pa.decimal128(5, 2)),
            "l": pa.array([[1, 2], None]),
            "day": pa.array([datetime(2024, 1, 1).date(), None]),
            "b": pa.array([b"\x00", None]),
            "flag": pa.array([True, None]),
            "u": pa.array([2**64 - 1, 0], pa.uint64()),
        }
    )
    result = content_digest(table)
    assert [t for _, t in result.schema] == [
        "decimal",
        "text:list<item: int64>",
        "date",
        "binary",
        "bool",
        "uint64",
    ]
    date64 = table.set_column(2, "day", table.column("day").cast(pa.date64()))
    assert content_digest(date64).digest == result.digest


def test_empty_tables_and_no_columns() -> None:
    empty = pa.table({"x": pa.array([], pa.int64())})
    result = content_digest(empty)
    assert result.rows == 0 and len(result.digest) == 64
    assert content_digest(pd.DataFrame({"x": pd.Series([], dtype="int64")})).digest == result.digest
    with pytest.raises(DataError, match="no columns"):
        content_digest(pd.DataFrame())


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"broken\.parquet"):
        content_digest(bad)
    with pytest.raises(DataError, match=r"missing\.csv"):
        content_digest(tmp_path / "missing.csv")


def test_logical_types() -> None:
    assert logical_type(pa.uint32()) == "int64"
    assert logical_type(pa.float16()) == "float64"
    assert logical_type(pa.large_string()) == "string"
    assert logical_type(pa.timestamp("s")) == "timestamp[ns]"


def test_wide_table_uses_threads_and_agrees_with_inline() -> None:
    df = frame(120_000)
    assert content_digest(df).digest == content_digest(df, batch_rows=10_000).digest


def test_csv_round_trip_of_strings_and_floats(tmp_path: Path) -> None:
    table = pa.table({"s": ["é", "日本", "x"], "f": [0.1, 2.5, -3.0]})
    pacsv.write_csv(table, tmp_path / "t.csv")
    assert content_digest(tmp_path / "t.csv").digest == content_digest(table).digest


# -- properties ----------------------------------------------------------------

floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([-0.0, 0.0, math.nan])
cells = {
    "i": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    "f": st.one_of(st.none(), floats),
    "s": st.one_of(st.none(), st.text(max_size=8)),
    "t": st.one_of(
        st.none(), st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1))
    ),
}
types = {"i": pa.int64(), "f": pa.float64(), "s": pa.string(), "t": pa.timestamp("us")}


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(1, 60))
    columns = draw(st.lists(st.sampled_from(sorted(cells)), min_size=1, max_size=4, unique=True))
    return pa.table({c: pa.array([draw(cells[c]) for _ in range(n)], types[c]) for c in columns})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), data=st.data())
def test_property_batch_split_does_not_matter(table: pa.Table, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, table.num_rows), max_size=5)))
    bounds = [0, *cuts, table.num_rows]
    parts = [table.slice(lo, hi - lo) for lo, hi in itertools.pairwise(bounds)]
    split = pa.Table.from_batches([b for p in parts for b in p.to_batches()], table.schema)
    assert content_digest(split).digest == content_digest(table).digest
    rows = data.draw(st.integers(1, 17))
    assert content_digest(table, batch_rows=rows).digest == content_digest(table).digest


def _same_cell(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b  # -0.0 == 0.0: canonically the same value
    return a == b and type(a) is type(b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), data=st.data())
def test_property_one_changed_cell_changes_the_digest(table: pa.Table, data: st.DataObject) -> None:
    column = data.draw(st.sampled_from(table.column_names))
    row = data.draw(st.integers(0, table.num_rows - 1))
    values = table.column(column).to_pylist()
    new = data.draw(cells[column])
    if _same_cell(values[row], new):
        return
    values[row] = new
    changed = table.set_column(
        table.column_names.index(column), column, pa.array(values, types[column])
    )
    assert content_digest(changed).digest != content_digest(table).digest
