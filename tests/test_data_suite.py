"""Validation suites: learning, YAML round trips and hand edits, hand-written checks, reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import keel.data
from keel.data.expectations import Quantiles, Shares
from keel.data.frames import DataError
from keel.data.suite import Suite, ValidationReport, load_suite, suite_from


def reference(rng: np.random.Generator, n: int = 2_000, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "income": rng.normal(50_000 + shift, 8_000, n),
            "age": rng.integers(18, 90, n),
            "plan": rng.choice(["basic", "pro", "team"], n, p=[0.6, 0.3, 0.1]),
            "active": rng.random(n) < 0.7,
            "customer_id": [f"c{i:06d}" for i in range(n)],
        }
    )


@pytest.fixture
def ref() -> pd.DataFrame:
    return reference(np.random.default_rng(0))


@pytest.fixture
def fresh() -> pd.DataFrame:
    return reference(np.random.default_rng(1), n=800)


def statuses(report: ValidationReport) -> dict[tuple[str, str | None], str]:
    return {(r.expectation, r.column): r.status for r in report.results}


def failed(report: ValidationReport) -> set[tuple[str, str | None]]:
    return {(r.expectation, r.column) for r in report.failures}


def test_exports_through_keel_data() -> None:
    assert keel.data.suite_from is suite_from
    assert keel.data.load_suite is load_suite
    assert keel.data.Suite is Suite
    assert keel.data.ValidationReport is ValidationReport


def test_learned_checks_by_kind(ref: pd.DataFrame) -> None:
    suite = suite_from(ref, name="churn")
    columns = suite.columns
    assert list(columns["income"].checks) == ["type", "nulls", "range", "quantiles"]
    assert columns["income"].kind == "numeric"
    assert set(columns["plan"].checks) == {"type", "nulls", "categories", "shares"}
    assert columns["plan"].checks["categories"].to_yaml() == ["basic", "pro", "team"]
    assert columns["active"].checks["categories"].to_yaml() == [True, False]
    assert columns["customer_id"].kind == "identifier"
    assert set(columns["customer_id"].checks) == {"type", "nulls"}
    assert "identifier" in (columns["customer_id"].note or "")
    assert suite.rows.min == 1 and suite.rows.max is None


def test_fresh_sample_passes(ref: pd.DataFrame, fresh: pd.DataFrame) -> None:
    report = suite_from(ref).validate(fresh)
    assert report.passed, str(report)
    assert report.rows == 800
    assert report.summary["failed"] == 0


def test_small_integer_column_is_categorical() -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"children": rng.integers(0, 4, 1_000)})
    rules = suite_from(frame).columns["children"]
    assert rules.kind == "categorical"
    assert sorted(rules.checks["categories"].to_yaml()) == [0, 1, 2, 3]
    report = suite_from(frame).validate(pd.DataFrame({"children": [0, 1, 7, 2]}))
    (failure,) = report.failures
    assert failure.column == "children" and failure.examples == [{"row": 2, "value": 7}]


def test_yaml_round_trip_validates_identically(
    ref: pd.DataFrame, fresh: pd.DataFrame, tmp_path: Path
) -> None:
    suite = suite_from(ref, name="churn")
    path = tmp_path / "suite.yaml"
    text = suite.to_yaml(path)
    assert text.startswith("# Keel validation suite 'churn'")
    assert "tol = max(floor, z*sqrt(scale[q]^2 (1/rows + 1/n) + spread[q]^2))" in text
    loaded = load_suite(path)
    assert loaded.to_yaml() == text
    shifted = fresh.assign(income=fresh["income"] + 4_000, plan="basic")
    for data in (fresh, shifted, fresh.head(0)):
        assert loaded.validate(data).to_dict() == suite.validate(data).to_dict()
    assert not suite.validate(shifted).passed


def test_yaml_is_readable(ref: pd.DataFrame) -> None:
    text = suite_from(ref).to_yaml()
    assert "  income:\n    kind: numeric\n    type: float\n    nulls: none\n" in text
    assert "    categories: [basic, pro, team]\n" in text
    assert "values: {0.05: " in text


def test_hand_edit_in_yaml_takes_effect(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    suite = suite_from(pd.DataFrame({"x": rng.normal(0, 1, 3_000)}))
    shifted = pd.DataFrame({"x": rng.normal(0.5, 1, 1_000)})
    assert failed(suite.validate(shifted)) == {("quantiles", "x")}
    floor = suite.columns["x"].checks["quantiles"].to_yaml()["floor"]
    text = suite.to_yaml().replace(f"floor: {floor}\n", "floor: 1.0\n")
    assert "floor: 1.0\n" in text
    path = tmp_path / "edited.yaml"
    path.write_text(text)
    assert load_suite(path).validate(shifted).passed


def test_hand_written_expectations(tmp_path: Path) -> None:
    suite = (
        Suite("people")
        .expect("age", between=(18, 120))
        .expect("score", between=(0, None), mostly=0.5)
        .expect("plan", in_set=["basic", "pro"])
        .expect("email", matches=r"[^@]+@[^@]+")
        .expect("id", unique=True)
        .expect("id", type="integer")
        .expect("email", not_null=True)
    )
    data = pd.DataFrame(
        {
            "age": [30, 17, 45, 130],
            "score": [-1.0, 2.0, 3.0, -4.0],
            "plan": ["basic", "pro", "gold", "basic"],
            "email": ["a@b.c", "nope", None, "d@e.f"],
            "id": [1, 2, 2, 3],
        }
    )
    report = suite.validate(data)
    by_key = {(r.expectation, r.column): r for r in report.results}
    assert by_key[("between", "age")].unexpected_count == 2
    assert [e["row"] for e in by_key[("between", "age")].examples] == [1, 3]
    assert by_key[("between", "score")].passed  # 2 of 4 outside, mostly=0.5
    assert by_key[("in_set", "plan")].examples == [{"row": 2, "value": "gold"}]
    assert by_key[("matches", "email")].examples == [{"row": 1, "value": "nope"}]
    assert by_key[("unique", "id")].observed == {"repeated_values": [[2, 2]]}
    assert by_key[("nulls", "email")].examples == [{"row": 2, "value": None}]
    assert by_key[("type", "id")].passed
    assert failed(report) == {
        ("between", "age"),
        ("in_set", "plan"),
        ("matches", "email"),
        ("unique", "id"),
        ("nulls", "email"),
    }
    text = suite.to_yaml(tmp_path / "hand.yaml")
    assert "between: [18.0, 120.0]" in text and "unique: true" in text
    assert load_suite(tmp_path / "hand.yaml").validate(data).to_dict() == report.to_dict()


def test_expect_needs_exactly_one_check() -> None:
    with pytest.raises(DataError, match="exactly one check"):
        Suite().expect("x")
    with pytest.raises(DataError, match="exactly one check"):
        Suite().expect("x", between=(0, 1), unique=True)
    with pytest.raises(DataError, match="type"):
        Suite().expect("x", type="int64")


def test_hand_written_check_added_to_a_learned_suite(ref: pd.DataFrame) -> None:
    suite = suite_from(ref).expect("age", between=(21, 65))
    report = suite.validate(ref)
    assert failed(report) == {("between", "age")}
    assert "between" in suite.columns["age"].checks and "range" in suite.columns["age"].checks


def test_several_batches_widen_tolerances_when_they_differ() -> None:
    rng = np.random.default_rng(4)
    steady = [pd.DataFrame({"x": rng.normal(0, 1, 1_000)}) for _ in range(4)]
    drifting = [pd.DataFrame({"x": rng.normal(m, 1, 1_000)}) for m in (-0.4, 0.0, 0.3, 0.5)]
    pooled = suite_from(pd.concat(drifting, ignore_index=True))
    learned = suite_from(drifting)
    calm = suite_from(steady)

    def tol(suite: Suite) -> float:
        q = suite.columns["x"].checks["quantiles"]
        assert isinstance(q, Quantiles)
        return q.tolerance(0.5, 1_000)

    assert tol(learned) > 2 * tol(pooled)
    assert tol(calm) < 1.3 * tol(pooled)
    assert learned.reference["batches"] == 4
    assert learned.rows.min == 500 and learned.rows.max == 2_000
    assert "spread:" in learned.to_yaml()
    # A batch shifted as much as the reference batches varied passes the learned suite only.
    moved = pd.DataFrame({"x": np.random.default_rng(5).normal(0.45, 1, 1_000)})
    assert learned.validate(moved).passed
    assert not pooled.validate(moved).passed


def test_several_batches_widen_share_tolerances() -> None:
    rng = np.random.default_rng(6)
    batches = [
        pd.DataFrame({"plan": rng.choice(["a", "b"], 1_000, p=[p, 1 - p])}) for p in (0.4, 0.5, 0.6)
    ]
    shares = suite_from(batches).columns["plan"].checks["shares"]
    assert isinstance(shares, Shares)
    assert shares.spread and shares.tolerance("a", 1_000) > 0.1


def test_reference_batches_must_share_columns() -> None:
    with pytest.raises(DataError, match="batch 2 has different columns"):
        suite_from([pd.DataFrame({"a": [1.0]}), pd.DataFrame({"b": [1.0]})])
    with pytest.raises(DataError, match="no rows"):
        suite_from(pd.DataFrame({"a": pd.Series([], dtype=float)}))


def test_missing_column_fails_with_a_message(ref: pd.DataFrame, fresh: pd.DataFrame) -> None:
    report = suite_from(ref).validate(fresh.drop(columns=["income"]))
    status = statuses(report)
    assert status[("type", "income")] == "failed"
    assert status[("quantiles", "income")] == "skipped"
    assert failed(report) == {("type", "income")}
    (failure,) = report.failures
    assert "'income' is missing" in failure.message


def test_extra_column_fails_unless_ignored(ref: pd.DataFrame, fresh: pd.DataFrame) -> None:
    extra = fresh.assign(surprise=1, other="x")
    report = suite_from(ref).validate(extra)
    (failure,) = report.failures
    assert failure.expectation == "columns" and failure.observed == {"extra": ["surprise", "other"]}
    assert "surprise" in failure.message
    assert suite_from(ref, extra_columns="ignore").validate(extra).passed


def test_empty_frame(ref: pd.DataFrame, fresh: pd.DataFrame) -> None:
    report = suite_from(ref).validate(fresh.head(0))
    assert report.rows == 0
    assert failed(report) == {("rows", None)}
    assert "0 rows" in report.failures[0].message
    assert statuses(report)[("quantiles", "income")] == "skipped"
    assert statuses(report)[("type", "income")] == "passed"


def test_type_mismatch(ref: pd.DataFrame, fresh: pd.DataFrame) -> None:
    report = suite_from(ref).validate(fresh.assign(income=fresh["income"].astype(str)))
    assert failed(report) == {("type", "income")}
    assert "holds string values" in report.failures[0].message
    assert statuses(report)[("quantiles", "income")] == "skipped"


def test_integer_column_may_arrive_as_whole_floats(ref: pd.DataFrame, fresh: pd.DataFrame) -> None:
    suite = suite_from(ref)
    as_float = fresh.assign(age=fresh["age"].astype(float))
    as_float.loc[3, "age"] = np.nan
    report = suite.validate(as_float)
    assert statuses(report)[("type", "age")] == "passed"
    assert failed(report) == {("nulls", "age")}  # the reference had no nulls
    fractional = fresh.assign(age=fresh["age"] + 0.5)
    assert ("type", "age") in failed(suite.validate(fractional))


def test_nulls_learned_bound() -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(0, 1, 5_000)
    values[rng.random(5_000) < 0.1] = np.nan
    suite = suite_from(pd.DataFrame({"x": values}))
    nulls = suite.columns["x"].checks["nulls"].to_yaml()
    assert nulls["reference"] == pytest.approx(0.1, abs=0.01)

    def with_nulls(fraction: float) -> pd.DataFrame:
        x = rng.normal(0, 1, 1_000)
        x[: int(fraction * 1_000)] = np.nan
        return pd.DataFrame({"x": rng.permutation(x)})

    assert suite.validate(with_nulls(0.12)).passed
    assert suite.validate(with_nulls(0.0)).passed
    report = suite.validate(with_nulls(0.4))
    assert failed(report) == {("nulls", "x")}
    assert report.failures[0].unexpected_count == 400
    assert len(report.failures[0].examples) == 5


def test_category_shares_catch_a_mix_change(ref: pd.DataFrame) -> None:
    rng = np.random.default_rng(8)
    new = reference(rng, 1_000)
    new["plan"] = rng.choice(["basic", "pro", "team"], 1_000, p=[0.35, 0.35, 0.3])
    report = suite_from(ref).validate(new)
    assert failed(report) == {("shares", "plan")}
    assert "'basic'" in report.failures[0].message


def test_outliers_pass_but_a_flood_fails(ref: pd.DataFrame, fresh: pd.DataFrame) -> None:
    suite = suite_from(ref)
    one = fresh.copy()
    one.loc[5, "income"] = 10**7
    assert suite.validate(one).passed
    flood = fresh.copy()
    flood.loc[:40, "income"] = 10**7
    report = suite.validate(flood)
    assert ("range", "income") in failed(report)
    (result,) = [r for r in report.failures if r.expectation == "range"]
    assert result.unexpected_count == 41 and result.examples[0] == {"row": 0, "value": 1e7}


def test_validate_a_file_and_an_unreadable_one(
    ref: pd.DataFrame, fresh: pd.DataFrame, tmp_path: Path
) -> None:
    suite = suite_from(ref)
    path = tmp_path / "batch.csv"
    fresh.to_csv(path, index=False)
    assert suite.validate(path).passed
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"broken\.parquet"):
        suite.validate(broken)
    with pytest.raises(DataError, match=r"nowhere\.csv"):
        suite.validate(tmp_path / "nowhere.csv")


def test_validate_arrow_and_streams(ref: pd.DataFrame, fresh: pd.DataFrame) -> None:
    suite = suite_from(pa.Table.from_pandas(ref))
    table = pa.Table.from_pandas(fresh)
    whole = suite.validate(table).to_dict()
    parts = suite.validate(table.to_batches(max_chunksize=100)).to_dict()
    assert whole == parts


def test_report_json_is_valid(ref: pd.DataFrame, fresh: pd.DataFrame, tmp_path: Path) -> None:
    broken = fresh.assign(plan="gold")
    broken.loc[0, "income"] = np.nan
    report = suite_from(ref).validate(broken)
    text = report.to_json(tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    assert data == json.loads(text) == report.to_dict()
    assert data["passed"] is False
    assert data["summary"]["failed"] == len(report.failures)
    assert set(data["results"][0]) >= {
        "expectation",
        "column",
        "passed",
        "observed",
        "expected",
        "rows_checked",
        "unexpected_count",
        "unexpected_fraction",
        "examples",
    }
    json.dumps(data, allow_nan=False)


def test_html_escapes_everything(tmp_path: Path) -> None:
    name = "<script>alert(1)</script>"
    rng = np.random.default_rng(9)
    frame = pd.DataFrame({name: rng.choice(["<b>a</b>", "x&y"], 200)})
    suite = suite_from(frame, name="<i>suite</i>")
    new = frame.copy()
    new.loc[3, name] = "<img src=x onerror=alert(2)>"
    page = suite.validate(new).to_html(tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text() == page
    assert "<script" not in page and "<img" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "prefers-color-scheme: dark" in page
    assert "http://" not in page and "https://" not in page
    assert "<span class='badge bad'>failed</span>" in page


def test_load_suite_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.yaml"):
        load_suite(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns: {x: {between: [1, 2], betwen: [3, 4]}}\n")
    with pytest.raises(DataError, match="unknown check 'betwen'"):
        load_suite(bad)
    bad.write_text("columns: {x: {nulls: {reference: lots}}}\n")
    with pytest.raises(DataError, match=r"Column 'x'.*nulls\.reference"):
        load_suite(bad)
    bad.write_text("columns: [\n")
    with pytest.raises(DataError, match=r"bad\.yaml"):
        load_suite(bad)
