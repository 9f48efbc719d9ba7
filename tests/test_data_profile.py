"""Profiles: exact counts and moments, sketch accuracy, merging, JSON, files, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_frames import frame
from keel.data.frames import DataError, Kind
from keel.data.profiles import Profile, profile, profile_batches


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return frame(np.random.default_rng(0), 50_000)


def test_counts_moments_and_extremes_are_exact(df: pd.DataFrame) -> None:
    p = profile(df)
    assert p.rows == 50_000
    col = p["x3"]
    assert col.kind is Kind.NUMERIC
    assert col.count == 50_000 and col.nulls == 0
    assert col.mean == pytest.approx(df["x3"].mean(), rel=1e-12)
    assert col.std == pytest.approx(df["x3"].std(), rel=1e-9)
    assert (col.minimum, col.maximum) == (df["x3"].min(), df["x3"].max())
    assert col.quantiles([0.0, 1.0]) == [df["x3"].min(), df["x3"].max()]


def test_quantiles_within_the_sketch_rank_error(df: pd.DataFrame) -> None:
    col = profile(df)["x5"]
    values = np.sort(df["x5"].to_numpy())
    for q, estimate in zip(
        [0.01, 0.25, 0.5, 0.75, 0.99], col.quantiles([0.01, 0.25, 0.5, 0.75, 0.99]), strict=True
    ):
        rank = np.searchsorted(values, estimate) / len(values)
        assert abs(rank - q) < 0.02, (q, rank)


def test_distinct_and_frequent_values(df: pd.DataFrame) -> None:
    p = profile(df)
    assert p["plan"].distinct == df["plan"].nunique() == 5
    assert p["plan"].top(5) == list(df["plan"].value_counts().items())
    assert p["plan"].frequent_error == 0
    wide = df["wide0"].nunique()
    assert abs(p["wide0"].distinct - wide) / wide < 0.03
    assert p["stars"].top(1)[0][0] in {"1", "2", "3", "4", "5"}  # integers read as integers
    assert p["active"].kind is Kind.BOOLEAN
    assert dict(p["active"].top(2)) == {
        "true": int(df["active"].sum()),
        "false": int((~df["active"]).sum()),
    }


def test_nulls_nan_and_infinity() -> None:
    p = profile(
        pd.DataFrame(
            {"x": [1.0, np.nan, None, np.inf, -np.inf, 3.0], "s": ["a", None, "a", "b", None, "c"]}
        )
    )
    assert (p["x"].nulls, p["x"].infinities, p["x"].n, p["x"].mean) == (2, 2, 2, 2.0)
    assert p["s"].nulls == 2 and p["s"].null_fraction == pytest.approx(1 / 3)
    assert p["s"].top(1) == [("a", 2)]


def test_datetimes_are_profiled_as_instants() -> None:
    times = pd.to_datetime(["2026-01-01", "2026-01-03", None, "9999-12-31"])
    p = profile(pd.DataFrame({"t": times}))
    s = p["t"].summary()
    assert p["t"].kind is Kind.DATETIME
    assert s["min"].startswith("2026-01-01") and s["max"].startswith("9999-12-31")
    assert s["nulls"] == 1


def test_merged_profiles_equal_the_profile_of_the_whole(df: pd.DataFrame) -> None:
    whole = profile(df)
    merged = profile_batches([df.iloc[:20_000], df.iloc[20_000:35_000], df.iloc[35_000:]])
    assert merged.rows == whole.rows
    for name in ("x0", "x9", "wide1"):
        a, b = merged[name], whole[name]
        assert (a.count, a.nulls, a.minimum, a.maximum) == (b.count, b.nulls, b.minimum, b.maximum)
        assert a.mean == pytest.approx(b.mean, rel=1e-9)
        assert a.std == pytest.approx(b.std, rel=1e-9)
        assert a.quantiles([0.5])[0] == pytest.approx(b.quantiles([0.5])[0], abs=0.05 * b.std)
    assert merged["plan"].top(5) == whole["plan"].top(5)
    assert abs(merged["wide0"].distinct - whole["wide0"].distinct) / whole["wide0"].distinct < 0.03


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=1, max_size=200),
    cut=st.integers(min_value=0, max_value=200),
)
def test_any_split_merges_to_the_same_exact_statistics(
    values: list[float | None], cut: int
) -> None:
    cut = min(cut, len(values))
    whole = profile(pd.DataFrame({"v": pd.array(values, dtype="Float64")}))
    parts = [
        pd.DataFrame({"v": pd.array(v, dtype="Float64")}) for v in (values[:cut], values[cut:]) if v
    ]
    merged = profile_batches(parts)
    a, b = merged["v"], whole["v"]
    assert (a.count, a.nulls, a.n, a.minimum, a.maximum) == (
        b.count,
        b.nulls,
        b.n,
        b.minimum,
        b.maximum,
    )
    if b.n:
        assert a.mean == pytest.approx(b.mean, rel=1e-9, abs=1e-6)
    assert a.counts() == b.counts()


def test_json_round_trip_keeps_everything(df: pd.DataFrame, tmp_path) -> None:
    p = profile(df)
    path = tmp_path / "profile.json"
    text = p.to_json(path)
    data = json.loads(text)
    assert data["format"] == "keel-profile/1"
    assert data["columns"][0]["summary"]["mean"] == pytest.approx(df["x0"].mean())
    back = Profile.from_json(path)
    for a, b in zip(back, p, strict=True):
        sketches = {"frequent": None, "hll": None}  # serialised in hash order
        assert a.to_dict()["state"] | sketches == b.to_dict()["state"] | sketches
        assert (a.counts(), a.distinct) == (b.counts(), b.distinct)
    assert back.merge(back)["plan"].top(1)[0][1] == 2 * p["plan"].top(1)[0][1]
    assert len(text) < 40_000 * len(df.columns)  # bounded: kilobytes per column, not rows


def test_files_are_profiled_as_streams(df: pd.DataFrame, tmp_path) -> None:
    csv, parquet = tmp_path / "d.csv", tmp_path / "d.parquet"
    df.to_csv(csv, index=False)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), parquet, row_group_size=7_000)
    from_csv = profile(csv, batch_rows=4_096)
    from_parquet = profile(parquet, batch_rows=4_096)
    assert from_csv.rows == from_parquet.rows == len(df)
    assert from_parquet["x1"].mean == pytest.approx(df["x1"].mean(), rel=1e-12)
    assert from_csv["plan"].top(5) == from_parquet["plan"].top(5)
    assert from_parquet.source == str(parquet)


def test_bad_input_names_the_problem(tmp_path) -> None:
    with pytest.raises(DataError, match=r"no-such\.csv"):
        profile(tmp_path / "no-such.csv")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"bad\.parquet"):
        profile(bad)
    with pytest.raises(DataError, match="no columns"):
        profile(pd.DataFrame(index=range(3)))
    with pytest.raises(DataError, match="'v'"):
        profile(pd.DataFrame({"v": [1, "x", 2.5]}))
    with pytest.raises(DataError, match="different columns"):
        profile(pd.DataFrame({"a": [1]})).merge(profile(pd.DataFrame({"b": [1]})))
    with pytest.raises(DataError, match="has no column 'zz'"):
        profile(pd.DataFrame({"a": [1]}))["zz"]


def test_html_is_self_contained_and_escaped() -> None:
    p = profile(pd.DataFrame({"<script>alert(1)</script>": [1.0, 2.0], "s": ["<b>x</b>", "y"]}))
    page = p.to_html()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<svg" in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
