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
