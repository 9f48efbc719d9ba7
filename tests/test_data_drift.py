"""Drift reports: each statistic against scipy, the choice of test, profiles, nulls, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance

from keel.data.drift_report import FDR, _benjamini_hochberg, _merged_cdfs, drift
from keel.data.frames import DataError
from keel.data.profiles import profile


def _normal(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"x": rng.normal(shift, 2.0, n), "y": rng.normal(5, 1, n)})


def test_statistics_match_scipy_on_raw_data() -> None:
    rng = np.random.default_rng(1)
    ref, cur = _normal(rng, 3_000), _normal(rng, 2_000, shift=0.3)
    col = drift(ref, cur)["x"]
    ks = stats.ks_2samp(ref["x"], cur["x"])
    assert col.statistic == pytest.approx(ks.statistic, abs=1e-12)
    w = stats.wasserstein_distance(ref["x"], cur["x"]) / ref["x"].std()
    assert col.effect == pytest.approx(w, rel=1e-9)
    assert col.p_value == pytest.approx(ks.pvalue, rel=0.2)  # one-sample law at n·m/(n+m)


@settings(max_examples=60, deadline=None)
@given(
    a=st.lists(st.integers(-5, 5) | st.floats(-3, 3), min_size=1, max_size=60),
    b=st.lists(st.integers(-5, 5) | st.floats(-3, 3), min_size=1, max_size=60),
)
def test_ks_and_wasserstein_are_exact_with_ties(a: list[float], b: list[float]) -> None:
    r, c = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    grid, f_r, f_c = _merged_cdfs(r, c)
    assert np.all(np.diff(grid) >= 0)
    gap = np.abs(f_r - f_c)
    points = np.concatenate([r, c])  # the oracle: both ECDFs at every observed value
    ks = np.abs(
        np.searchsorted(r, points, "right") / len(r) - np.searchsorted(c, points, "right") / len(c)
    ).max()
    assert gap.max() == pytest.approx(ks, abs=1e-12)
    w = float(np.sum(gap[:-1] * np.diff(grid)))
    assert w == pytest.approx(stats.wasserstein_distance(r, c), abs=1e-9)


def test_categorical_statistics_match_scipy() -> None:
    ref = pd.DataFrame({"c": ["a"] * 300 + ["b"] * 200 + ["c"] * 100})
    cur = pd.DataFrame({"c": ["a"] * 200 + ["b"] * 250 + ["c"] * 150})
    col = drift(ref, cur)["c"]
    table = np.array([[300, 200, 100], [200, 250, 150]])
    chi2, p, _dof, _ = stats.chi2_contingency(table, correction=False)
    assert (col.statistic, col.p_value) == (pytest.approx(chi2), pytest.approx(p))
    assert col.statistic_name.startswith("chi-square (2 ")
    js = distance.jensenshannon(table[0] / 600, table[1] / 600, base=2)
    assert col.effect == pytest.approx(js)
    assert col.method == "chi2" and col.drifted


def test_benjamini_hochberg_matches_scipy() -> None:
    p = np.random.default_rng(2).uniform(0, 0.1, 25)
    assert _benjamini_hochberg(list(p)) == pytest.approx(stats.false_discovery_control(p))


def test_small_samples_use_the_p_value_and_large_ones_the_size_of_the_shift() -> None:
    rng = np.random.default_rng(3)
    small = drift(_normal(rng, 500), _normal(rng, 500, shift=1.0))["x"]
    assert small.method == "ks" and small.threshold is None and small.drifted
    assert "Kolmogorov" in small.reason and "500" not in small.reason.split("<")[0][:10]
    # at 100k rows a 0.02σ shift is "significant" to KS, and immaterial: not drift
    tiny = drift(_normal(rng, 100_000), _normal(rng, 100_000, shift=0.04))["x"]
    assert tiny.method == "wasserstein" and tiny.p_value < 1e-4
    assert tiny.effect < tiny.threshold == 0.1 and not tiny.drifted
    real = drift(_normal(rng, 100_000), _normal(rng, 100_000, shift=0.4))["x"]
    assert real.drifted and real.effect == pytest.approx(0.2, abs=0.02)


def test_profiles_reach_the_same_verdicts_as_raw_data() -> None:
    rng = np.random.default_rng(4)
    ref, same, moved = _normal(rng, 20_000), _normal(rng, 20_000), _normal(rng, 20_000, shift=0.6)
    for cur, expected in ((same, []), (moved, ["x"])):
        raw = drift(ref, cur)
        sketch = drift(profile(ref), profile(cur))
        mixed = drift(profile(ref), cur)
        assert raw.drifted_columns == sketch.drifted_columns == mixed.drifted_columns == expected
        assert sketch["x"].effect == pytest.approx(raw["x"].effect, abs=0.02)


def test_null_rate_changes_are_drift() -> None:
    rng = np.random.default_rng(5)
    ref, cur = _normal(rng, 5_000), _normal(rng, 5_000)
    cur.loc[:1_500, "y"] = np.nan
    col = drift(ref, cur)["y"]
    assert col.null_drifted and col.drifted
    assert col.null_current == pytest.approx(1_501 / 5_000)
    assert col.null_reference == 0


def test_new_and_missing_categories_are_listed() -> None:
    ref = pd.DataFrame({"plan": ["a", "b", "c"] * 400})
    cur = pd.DataFrame({"plan": ["a", "b"] * 590 + ["<new>"] * 20})
    report = drift(ref, cur)
    col = report["plan"]
    assert col.new_categories == [("<new>", 20)] and col.missing_categories == ["c"]
    assert report.to_dict()["new_categories"] == {"plan": [["<new>", 20]]}


def test_low_cardinality_integers_are_categories_and_wide_ones_numbers() -> None:
    rng = np.random.default_rng(6)
    ref = pd.DataFrame({"stars": rng.integers(1, 6, 2_000), "count": rng.poisson(40, 2_000)})
    cur = pd.DataFrame({"stars": rng.integers(1, 7, 2_000), "count": rng.poisson(40, 2_000)})
    report = drift(ref, cur)
    assert report["stars"].method == "chi2" and report["stars"].new_categories[0][0] == "6"
    assert report["count"].method == "ks"


def test_timestamps_and_identifiers_are_skipped_with_a_reason() -> None:
    n = 1_000
    times = pd.date_range("2026-01-01", periods=n, freq="min")
    ref = pd.DataFrame({"t": times, "id": [f"u{i}" for i in range(n)], "x": np.arange(n) % 7})
    cur = pd.DataFrame(
        {
            "t": times + pd.Timedelta(days=30),
            "id": [f"v{i}" for i in range(n)],
            "x": np.arange(n) % 7,
        }
    )
    report = drift(ref, cur)
    assert report["t"].skipped and "columns=" in report["t"].reason
    assert report["id"].skipped and "identifier" in report["id"].reason
    assert not report.drifted
    assert drift(ref, cur, columns=["t"])["t"].drifted


def test_report_serialises_and_renders(tmp_path) -> None:
    rng = np.random.default_rng(7)
    ref = _normal(rng, 1_000).rename(columns={"x": "<script>alert(1)</script>"})
    cur = _normal(rng, 1_000, shift=1.0).rename(columns={"x": "<script>alert(1)</script>"})
    report = drift(ref, cur)
    data = json.loads(report.to_json(tmp_path / "drift.json"))
    assert data["drifted"] is True and data["fdr"] == FDR
    assert {c["column"] for c in data["columns"]} == {"<script>alert(1)</script>", "y"}
    assert all(
        {"method", "reason", "statistic", "p_adjusted", "threshold"} <= set(c)
        for c in data["columns"]
    )
    page = report.to_html(tmp_path / "drift.html")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<svg") == 2 and (tmp_path / "drift.html").read_text() == page


def test_bad_input_is_explained(tmp_path) -> None:
    ref = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    with pytest.raises(DataError, match=r"missing from the current data: \['b'\]"):
        drift(ref, ref[["a"]])
    with pytest.raises(DataError, match="'b' holds string values in the reference but numeric"):
        drift(ref, pd.DataFrame({"a": [1.0], "b": [3.0]}))
    with pytest.raises(DataError, match="no rows"):
        drift(ref, ref.iloc[:0])
    with pytest.raises(DataError, match=r"missing\.parquet"):
        drift(ref, tmp_path / "missing.parquet")
    with pytest.raises(DataError, match="fdr"):
        drift(ref, ref, fdr=0)
    assert drift(ref, ref[["a"]], columns=["a"]).columns[0].column == "a"


def test_distance_thresholds_rise_to_the_noise_of_many_categories() -> None:
    rng = np.random.default_rng(8)
    labels = np.array([f"c{i}" for i in range(300)])
    ref = pd.DataFrame({"c": labels[rng.integers(0, 300, 12_000)]})
    cur = pd.DataFrame({"c": labels[rng.integers(0, 300, 12_000)]})
    col = drift(ref, cur, categorical=["c"])["c"]
    assert col.method == "jensen_shannon" and col.threshold > 0.1
    assert col.effect < col.threshold and not col.drifted
    few = drift(ref.assign(c=ref["c"].str[:2]), cur.assign(c=cur["c"].str[:2]))["c"]
    assert few.threshold == 0.1  # a handful of categories: the fixed minimum applies
