"""A metric-sorted page read from the metric's index gives exactly the plain order."""

from __future__ import annotations

import math
import random

import pytest

from keel.entities import Metric, Param
from keel.store.sql.store import SqlTrackingStore

# These tests read the SQL store's internals (its database, the index segments),
# so they run on the SQL implementations only (see conftest.pytest_generate_tests).
STORE_IMPLEMENTATIONS = ["sqlite", "postgres"]


@pytest.fixture
def many_runs(store: SqlTrackingStore) -> tuple[SqlTrackingStore, str]:
    rng = random.Random(7)
    exp_id = store.create_experiment("segments")
    other = store.create_experiment("other")
    for i in range(260):
        run_id = store.create_run(exp_id, "u", 1000 + i // 3, [], f"r{i}").info.run_id
        metrics = []
        roll = rng.random()
        if roll < 0.1:
            metrics.append(Metric("acc", math.nan, 0, 0))
        elif roll < 0.85:
            # few distinct values, so ties must break by the later keys
            metrics.append(Metric("acc", rng.choice([0.1, 0.5, 0.5, 0.9, math.inf, -1.0]), 0, 0))
        metrics.append(Metric("loss", rng.random(), 0, 0))
        store.log_batch(run_id, metrics=metrics, params=[Param("p", rng.choice("abc"))])
    for i in range(20):  # runs of another experiment share the metric
        run_id = store.create_run(other, "u", 5000 + i, [], f"o{i}").info.run_id
        store.log_metric(run_id, Metric("acc", rng.random(), 0, 0))
    return store, exp_id


@pytest.mark.parametrize("order_by", [["metrics.acc DESC"], ["metrics.acc", "params.p"]])
@pytest.mark.parametrize("filter_string", ["params.p != 'c'"])
def test_paged_metric_order_matches_full_order(
    many_runs: tuple[SqlTrackingStore, str], order_by: list[str], filter_string: str | None
) -> None:
    store, exp_id = many_runs
    # One page of 1000 is never read from the index: it is the reference order.
    full = [r.info.run_id for r in store.search_runs([exp_id], filter_string, order_by=order_by)]
    for page_size in (5, 7):
        paged, token = [], None
        while True:
            page = store.search_runs(
                [exp_id],
                filter_string,
                max_results=page_size,
                order_by=order_by,
                page_token=token,
            )
            paged += [r.info.run_id for r in page]
            token = page.next_page_token
            if not token:
                break
        assert paged == full


@pytest.mark.parametrize(
    "order_by",
    [
        ["metrics.acc DESC"],
        ["metrics.acc"],
        ["metrics.acc DESC", "params.p"],
        ["metrics.acc", "metrics.loss DESC"],
    ],
)
@pytest.mark.parametrize("filter_string", [None, "metrics.loss < 0.5"])
def test_index_segments_give_the_same_order_at_any_offset(
    many_runs: tuple[SqlTrackingStore, str], order_by: list[str], filter_string: str | None
) -> None:
    from keel.search.filter import parse_filter
    from keel.search.order import parse_order_by
    from keel.store.sql import schema
    from keel.store.sql.search import run_filter_condition, run_order_segments

    store, exp_id = many_runs
    where = (
        schema.runs.c.experiment_id.in_([int(exp_id)]),
        schema.runs.c.lifecycle_stage.in_(["active"]),
        run_filter_condition(parse_filter(filter_string)),
    )
    keys = parse_order_by(order_by)
    plain = run_order_segments(keys)
    indexed = run_order_segments(keys, drive_from_metric=True)
    assert len(plain) == 1 and len(indexed) == 3
    with store.database.read() as conn:
        full = [r.run_uuid for r in store._ordered_runs(conn, where, plain, 0, 10_000)]
        assert len(full) > 100
        for limit in (1, 6, 40):
            for offset in range(0, len(full) + 10, 9):
                got = [r.run_uuid for r in store._ordered_runs(conn, where, indexed, offset, limit)]
                assert got == full[offset : offset + limit], (offset, limit)


def test_small_page_takes_the_index_path(many_runs: tuple[SqlTrackingStore, str]) -> None:
    store, exp_id = many_runs
    from keel.search.order import parse_order_by
    from keel.store.sql import schema

    where = (
        schema.runs.c.experiment_id.in_([int(exp_id)]),
        schema.runs.c.lifecycle_stage.in_(["active"]),
    )
    keys = parse_order_by(["metrics.acc DESC"])
    with store.database.read() as conn:
        on_sqlite = conn.dialect.name == "sqlite"
        assert store._metric_index_pays(conn, where, keys, 6) is on_sqlite
        assert not store._metric_index_pays(conn, where, keys, 1001)
        assert not store._metric_index_pays(conn, where, parse_order_by(["params.p"]), 6)
