"""The UI's summary queries on SQLite and PostgreSQL: counts, pages, keys, metric ranges."""

from __future__ import annotations

import math

import pytest

from keel.entities import Metric, Param, RunTag, ViewType
from keel.search.filter import parse_filter
from keel.search.order import parse_order_by
from keel.store.sql.overview import experiment_activity, metric_summaries, run_columns
from keel.store.sql.search import run_filter_condition
from keel.store.sql.store import SqlTrackingStore

pytestmark = pytest.mark.implementations("sqlite", "postgres")


def _sweep(store: SqlTrackingStore, n: int = 30) -> tuple[str, str]:
    exp = store.create_experiment("overview")
    other = store.create_experiment("elsewhere")
    for i in range(n):
        run = store.create_run(exp, user_id="u", start_time=10 * i, tags=[], run_name=f"r{i:02d}")
        store.log_batch(
            run.info.run_id,
            metrics=[Metric("acc", i / n, 0, 0), Metric("acc", i / n / 2, 1, 1)]
            + ([Metric("acc", math.nan, 2, 2)] if i == 3 else []),
            params=[Param("model", "rf" if i % 3 == 0 else "gbm")],
            tags=[RunTag("team", "a")],
        )
    for i in range(5):  # keys and values that must not leak into the sweep's answers
        run = store.create_run(other, user_id="u", start_time=i, tags=[], run_name=f"x{i}")
        store.log_batch(
            run.info.run_id,
            metrics=[Metric("acc", 0.001, 0, 0)],
            params=[Param("zz", "1")],
            tags=[],
        )
    return exp, other


def _count(store: SqlTrackingStore, exp: str, text: str, cap: int = 1000) -> int:
    return store.count_runs([exp], parse_filter(text, "runs"), ViewType.ACTIVE_ONLY, cap)


def test_count_runs_matches_search(store: SqlTrackingStore) -> None:
    exp, _ = _sweep(store)
    for text in (
        "metrics.acc < 0.1",
        "metrics.acc >= 0.2 AND params.model = 'rf'",
        "metrics.acc > 0.4 OR params.model = 'rf'",
        "metrics.acc = 0",
        "metrics.acc != 0.5",
        "params.model = 'gbm'",
    ):
        expected = len(store.search_runs([exp], text, max_results=1000).items)
        assert _count(store, exp, text) == expected, text
    assert _count(store, exp, "params.model = 'gbm'", cap=5) == 6  # stops after cap + 1


def test_runs_at_pages_by_offset(store: SqlTrackingStore) -> None:
    exp, _ = _sweep(store)
    expr = parse_filter("params.model = 'gbm'", "runs")
    order = parse_order_by(["attributes.run_name ASC"], "runs")
    condition = run_filter_condition(expr)
    first, more = store.runs_at([exp], condition, ViewType.ACTIVE_ONLY, order, 0, 15)
    rest, more_after = store.runs_at([exp], condition, ViewType.ACTIVE_ONLY, order, 15, 15)
    assert more and not more_after
    names = [r.info.run_name for r in first + rest]
    assert names == sorted(f"r{i:02d}" for i in range(30) if i % 3)


def test_run_columns_and_activity_per_experiment(store: SqlTrackingStore) -> None:
    exp, other = _sweep(store)
    found = run_columns(store, [exp])
    assert found.params == ("model",) and found.metrics == ("acc",)
    assert found.tags == ("mlflow.runName", "team")
    assert run_columns(store, [other]).params == ("zz",)
    activity = experiment_activity(store)
    assert activity[exp].runs == 30 and activity[exp].last_start_ms == 290
    assert activity[other].runs == 5


def test_metric_summaries_skip_nan(store: SqlTrackingStore) -> None:
    exp, _ = _sweep(store)
    runs = store.search_runs([exp], "run_name = 'r03' OR run_name = 'r10'").items
    by_name = {r.info.run_name: r.info.run_id for r in runs}
    found = metric_summaries(store, list(by_name.values()), ["acc"])
    r3 = found[by_name["r03"]]["acc"]
    assert math.isnan(r3.latest) and r3.latest_step == 2 and r3.points == 3
    assert r3.min == pytest.approx(0.05) and r3.max == pytest.approx(0.1)
    r10 = found[by_name["r10"]]["acc"]
    assert r10.latest == pytest.approx(10 / 60) and r10.max == pytest.approx(10 / 30)


def test_metric_points_downsample_keeps_ends_and_extremes(store: SqlTrackingStore) -> None:
    from keel.store.sql.metric_history import metric_points

    exp = store.create_experiment("history")
    run_id = store.create_run(exp, user_id="u", start_time=0, tags=[], run_name="h").info.run_id
    values = [math.sin(i / 50) for i in range(5_000)]
    values[1234] = 9.0  # a spike the chart must show
    values[4321] = -9.0
    values[2000] = math.nan
    for start in range(0, 5_000, 1_000):
        store.log_batch(
            run_id,
            metrics=[Metric("loss", values[i], 10 * i, i) for i in range(start, start + 1_000)],
            params=[],
            tags=[],
        )
    for by_time in (False, True):
        series = metric_points(store, run_id, "loss", max_points=200, by_time=by_time)
        assert series.total_points == 5_000
        assert len(series.points) <= 200
        steps = [p[0] for p in series.points]
        assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 4_999
        found = {p[0]: p[2] for p in series.points}
        assert found[1234] == 9.0 and found[4321] == -9.0
    every = metric_points(store, run_id, "loss", max_points=10_000)
    assert len(every.points) == 5_000 and every.points[2000][2] is None


def test_metric_points_cache_follows_new_points(
    store: SqlTrackingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.store.sql import metric_history

    monkeypatch.setattr(metric_history, "CACHE_FROM_POINTS", 10)
    exp = store.create_experiment("cached")
    run_id = store.create_run(exp, user_id="u", start_time=0, tags=[], run_name="c").info.run_id
    points = [Metric("loss", float(i), i, i) for i in range(100)]
    store.log_batch(run_id, metrics=points, params=[], tags=[])
    first = metric_history.metric_points(store, run_id, "loss", max_points=20)
    assert first.total_points == 100
    assert metric_history.metric_points(store, run_id, "loss", max_points=20) is first  # cached
    store.log_batch(run_id, metrics=[Metric("loss", -5.0, 100, 100)], params=[], tags=[])
    after = metric_history.metric_points(store, run_id, "loss", max_points=20)
    assert after.total_points == 101 and after.points[-1] == (100, 100, -5.0)


def test_child_runs_across_experiments(store: SqlTrackingStore) -> None:
    from keel.store.sql.overview import child_runs

    exp, other = _sweep(store, n=3)
    parent = store.create_run(exp, user_id="u", start_time=5, tags=[], run_name="parent").info
    for where, start in ((exp, 9), (other, 7)):
        tag = RunTag("mlflow.parentRunId", parent.run_id)
        store.create_run(where, user_id="u", start_time=start, tags=[tag], run_name=f"c{start}")
    found = child_runs(store, parent.run_id)
    assert [(c.run_name, c.start_time) for c in found] == [("c7", 7), ("c9", 9)]
    assert child_runs(store, "0" * 32) == []
