"""Row-level dataset diffs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from keel.data.diff import diff
from keel.data.frames import DataError


def base(n: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "score": rng.normal(size=n),
            "plan": rng.choice(["basic", "pro"], size=n),
        }
    )


def test_identical_across_sources(tmp_path: Path) -> None:
    df = base()
    df.to_csv(tmp_path / "a.csv", index=False)
    table = pa.Table.from_pandas(df, preserve_index=False)
    d = diff(tmp_path / "a.csv", table.cast(table.schema.set(0, pa.field("id", pa.int32()))))
    assert d.identical
    assert json.dumps(d.to_dict(), allow_nan=False)


def test_without_key_is_a_multiset_comparison() -> None:
    a = pd.DataFrame({"x": [1, 1, 2, 3]})
    b = pd.DataFrame({"x": [1, 2, 2, 3, 4]})
    d = diff(a, b)
    assert (d.rows_removed, d.rows_added) == (1, 2)
    assert diff(a, a.iloc[::-1]).identical  # order does not matter to a diff


def test_keyed_changes_with_examples() -> None:
    a = base()
    b = a.copy()
    b.loc[10, "score"] = 99.0
    b.loc[20, "plan"] = "team"
    b.loc[30, ["score", "plan"]] = [-1.0, "team"]
    b = pd.concat(
        [b.drop(index=[5]), pd.DataFrame({"id": [5000], "score": [0.0], "plan": ["pro"]})]
    )
    d = diff(a, b, key="id")
    assert (d.rows_added, d.rows_removed, d.rows_changed) == (1, 1, 3)
    assert d.changed_cells == {"score": 2, "plan": 2}
    keys = [e["key"]["id"] for e in d.examples]
    assert keys == [10, 20, 30]
    assert d.examples[0]["changes"] == {"score": {"old": float(a.loc[10, "score"]), "new": 99.0}}
    plan = next(c for c in d.columns if c.column == "plan")
    assert plan.new_categories == ["team"] and plan.vanished_categories == []
    score = next(c for c in d.columns if c.column == "score")
    assert score.b["max"] == 99.0 and score.a["distinct"] == 1000
    # Without the key the same edits are removed + added rows.
    unkeyed = diff(a, b)
    assert (unkeyed.rows_removed, unkeyed.rows_added) == (4, 4)


def test_composite_key_and_nulls() -> None:
    a = pd.DataFrame({"k1": [1, 1, 2], "k2": ["a", "b", "a"], "v": [1.0, None, 3.0]})
    b = a.copy()
    b.loc[1, "v"] = 2.0
    d = diff(a, b, key=["k1", "k2"])
    assert d.rows_changed == 1 and d.changed_cells == {"v": 1}
    assert d.examples[0] == {
        "key": {"k1": 1, "k2": "b"},
        "changes": {"v": {"old": None, "new": 2.0}},
    }
    v = next(c for c in d.columns if c.column == "v")
    assert (v.a["nulls"], v.b["nulls"]) == (1, 0)  # pandas NaN arrives in Arrow as a null


def test_schema_changes() -> None:
    a = pd.DataFrame({"id": [1, 2], "x": [1, 2], "gone": ["a", "b"]})
    b = pd.DataFrame({"id": [1, 2], "x": [1.0, 2.0], "new": [True, False]})
    d = diff(a, b, key="id")
    assert d.columns_added == ["new"] and d.columns_removed == ["gone"]
    assert d.type_changes == [("x", "int64", "float64")]
    assert d.compared_columns == ["id"]
    assert d.rows_changed == 0 and not d.identical


def test_key_errors() -> None:
    a = pd.DataFrame({"id": [1, 1], "v": [1, 2]})
    with pytest.raises(DataError, match="not unique"):
        diff(a, a, key="id")
    with pytest.raises(DataError, match="'nope'"):
        diff(a, a, key="nope")
    with pytest.raises(DataError, match="same type"):
        diff(a, a.astype({"id": float}), key="id")


def test_one_shot_streams_are_read_once() -> None:
    table = pa.table({"id": [1, 2, 3], "v": ["a", "b", "c"]})
    changed = pa.table({"id": [1, 2, 3], "v": ["a", "B", "c"]})
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
    d = diff(reader, iter([changed]), key="id")
    assert d.rows_changed == 1 and d.changed_cells == {"v": 1}


def test_timestamps_and_empty() -> None:
    a = pd.DataFrame({"id": [1], "t": pd.to_datetime(["2024-01-01"])})
    b = pd.DataFrame({"id": [1], "t": pd.to_datetime(["2024-01-02"])})
    d = diff(a, b, key="id")
    assert d.examples[0]["changes"]["t"] == {
        "old": "2024-01-01T00:00:00",
        "new": "2024-01-02T00:00:00",
    }
    empty = pa.table({"id": pa.array([], pa.int64())})
    assert diff(empty, empty).identical
