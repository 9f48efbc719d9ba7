"""Many processes logging into one store at once: every acknowledged write is there, once.

8 processes × 2,500 per-call metrics into one SQLite file, and 16 into PostgreSQL.
All processes write the same metric key of the same run, the worst case for
both the metrics table and the latest-value upsert.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from keel.entities import Metric, Param, RunTag
from keel.store.sql.store import SqlTrackingStore

POINTS_PER_PROCESS = 2500


def _worker(uri: str, root: str, run_id: str, worker: int, n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    store = SqlTrackingStore(uri, root)
    acked = []
    try:
        for i in range(n):
            step = worker * 1_000_000 + i
            store.log_metric(run_id, Metric("loss", float(step), 1_700_000_000_000 + i, step))
            acked.append(step)
        store.log_batch(
            run_id, params=[Param(f"worker-{worker}", "done")], tags=[RunTag("last", str(worker))]
        )
    finally:
        out.put((worker, acked))
        store.close()


def _hammer(uri: str, root: str, processes: int) -> None:
    store = SqlTrackingStore(uri, root)
    run_id = store.create_run("0", "ci", 0, [], "concurrent").info.run_id
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [
        ctx.Process(target=_worker, args=(uri, root, run_id, w, POINTS_PER_PROCESS, out))
        for w in range(processes)
    ]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    acked = sorted(step for steps in results.values() for step in steps)
    assert len(acked) == processes * POINTS_PER_PROCESS

    history = store.get_all_metric_history(run_id, "loss")
    steps = [m.step for m in history]
    assert len(steps) == len(set(steps)), "a point was written twice"
    assert sorted(steps) == acked, "an acknowledged point is missing"
    run = store.get_run(run_id)
    assert run.data.metrics["loss"] == float(max(acked))
    assert len([k for k in run.data.params if k.startswith("worker-")]) == processes
    store.close()


@pytest.mark.slow
def test_eight_processes_into_one_sqlite_file(tmp_path: Path) -> None:
    _hammer(f"sqlite:///{tmp_path / 'keel.db'}", str(tmp_path / "artifacts"), 8)


@pytest.mark.slow
def test_sixteen_processes_into_postgres(empty_postgres_url: str, tmp_path: Path) -> None:
    _hammer(empty_postgres_url, str(tmp_path / "artifacts"), 16)
