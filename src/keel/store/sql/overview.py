"""Read-only summaries the web UI shows and the REST API has no call for.

Each is one set-based query over the tracking tables, sized for 100,000 runs:
they read indexes (``ix_runs_experiment_start``, the metrics primary key)
rather than whole tables wherever the UI's questions allow.

>>> from keel.store import open_store
>>> store = open_store("sqlite:///:memory:")
>>> experiment_activity(store)
{}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from keel.store.sql import schema as t

if TYPE_CHECKING:
    from keel.store.sql.store import SqlTrackingStore


@dataclass(frozen=True, slots=True)
class Activity:
    """An experiment's active runs: how many, and when the newest one started."""

    runs: int
    last_start_ms: int | None


def experiment_activity(store: SqlTrackingStore) -> dict[str, Activity]:
    """Active-run counts and newest start time per experiment id (one index scan)."""
    r = t.runs
    stmt = (
        sa.select(r.c.experiment_id, sa.func.count(), sa.func.max(r.c.start_time))
        .where(r.c.lifecycle_stage == "active")
        .group_by(r.c.experiment_id)
    )
    with store._db.read() as conn:
        return {str(e): Activity(int(n), last) for e, n, last in conn.execute(stmt)}


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """One run's metric: latest value (as search sees it), min, max, and how many points."""

    latest: float | None
    latest_step: int
    min: float | None
    max: float | None
    points: int


def metric_summaries(
    store: SqlTrackingStore, run_ids: list[str], keys: list[str] | None = None
) -> dict[str, dict[str, MetricSummary]]:
    """``{run_id: {key: MetricSummary}}`` for a page of runs (all keys, or just ``keys``).

    Min and max skip NaN; a metric whose points are all NaN has min and max None.
    One grouped query over the metrics primary key (run, key, ...), so a page
    of 50 runs costs about the points those runs logged.
    """
    if not run_ids:
        return {}
    m, lm = t.metrics, t.latest_metrics
    finite = sa.and_(m.c.is_nan.is_(False))
    stats = (
        sa.select(
            m.c.run_uuid,
            m.c.key,
            sa.func.min(sa.case((finite, m.c.value))),
            sa.func.max(sa.case((finite, m.c.value))),
            sa.func.count(),
        )
        .where(m.c.run_uuid.in_(run_ids))
        .group_by(m.c.run_uuid, m.c.key)
    )
    latest = sa.select(lm.c.run_uuid, lm.c.key, lm.c.value, lm.c.is_nan, lm.c.step).where(
        lm.c.run_uuid.in_(run_ids)
    )
    if keys is not None:
        stats = stats.where(m.c.key.in_(keys))
        latest = latest.where(lm.c.key.in_(keys))
    out: dict[str, dict[str, MetricSummary]] = {}
    with store._db.read() as conn:
        last = {(r, k): (float("nan") if nan else v, s) for r, k, v, nan, s in conn.execute(latest)}
        for run, key, low, high, n in conn.execute(stats):
            value, step = last.get((run, key), (None, 0))
            out.setdefault(run, {})[key] = MetricSummary(value, int(step), low, high, int(n))
    return out


@dataclass(frozen=True, slots=True)
class RunColumns:
    """The param, metric and tag keys the active runs of some experiments have."""

    params: tuple[str, ...]
    metrics: tuple[str, ...]
    tags: tuple[str, ...]


def run_columns(store: SqlTrackingStore, experiment_ids: list[str]) -> RunColumns:
    """Every key any active run in these experiments has, sorted (for the column chooser).

    Reading all keys of 100,000 runs costs a scan of their params and tags
    (about 0.2 s), so callers cache the answer (see keel.server.ui.pages_runs).
    """
    ids = [int(e) for e in experiment_ids if e.isdigit()]
    r = t.runs
    active = sa.select(r.c.run_uuid).where(
        r.c.experiment_id.in_(ids), r.c.lifecycle_stage == "active"
    )
    found: dict[str, tuple[str, ...]] = {}
    with store._db.read() as conn:
        for name, table in (("params", t.params), ("metrics", t.latest_metrics), ("tags", t.tags)):
            stmt = sa.select(table.c.key).where(table.c.run_uuid.in_(active)).distinct()
            found[name] = tuple(sorted(k for (k,) in conn.execute(stmt)))
    return RunColumns(found["params"], found["metrics"], found["tags"])


@dataclass(frozen=True, slots=True)
class ChildRun:
    """A run whose ``mlflow.parentRunId`` tag names another run."""

    run_id: str
    run_name: str
    status: str
    start_time: int


def child_runs(store: SqlTrackingStore, parent_run_id: str, limit: int = 1000) -> list[ChildRun]:
    """The children of a run (any experiment, deleted ones too), oldest first.

    One scan of the tags table (about 20 ms for 300,000 tags), where a runs
    search would test the tag of every run in the experiment (about 0.3 s at
    100,000 runs).
    """
    tg, r = t.tags, t.runs
    stmt = (
        sa.select(r.c.run_uuid, r.c.name, r.c.status, r.c.start_time)
        .select_from(tg.join(r, r.c.run_uuid == tg.c.run_uuid))
        .where(tg.c.key == "mlflow.parentRunId", tg.c.value == parent_run_id)
        .order_by(r.c.start_time, r.c.run_uuid)
        .limit(limit)
    )
    with store._db.read() as conn:
        return [ChildRun(*row) for row in conn.execute(stmt)]
