"""Chart points for one metric of one run, downsampled in SQL.

A run may log a million points of a metric; a chart is about a thousand
pixels wide. :func:`metric_points` returns every point when there are at most
``max_points``, and otherwise, per x bucket, the point with the smallest and
the one with the largest value (plus the very first and last points), so
spikes survive and the line keeps its ends. Nothing but the chosen points
ever reaches Python.

On SQLite the buckets are ranges of ``step``, which the metrics primary key
(run, key, step, ...) clusters: each bucket is one short index range scan
that finds its minimum and maximum, and the row of one of them by SQLite's
documented "bare column" rule, plus a scan that stops at the other's row.
Elsewhere, or when steps cannot spread the points (everything logged at
step 0), one windowed query ranks the points within buckets of the x column.

>>> from keel.store import open_store
>>> from keel.entities import Metric
>>> store = open_store("sqlite:///:memory:")
>>> run = store.create_run("0", "me", 1000, [], "r").info.run_id
>>> store.log_batch(run, metrics=[Metric("loss", 1 / (i + 1), 1000 + i, i) for i in range(100)])
>>> s = metric_points(store, run, "loss", max_points=10)
>>> s.total_points, s.points[0], s.points[-1]
(100, (0, 1000, 1.0), (99, 1099, 0.01))
>>> len(s.points) <= 10
True
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from keel.store.sql import schema as t

if TYPE_CHECKING:
    from keel.store.sql.store import SqlTrackingStore

XMode = Literal["step", "time", "relative"]
X_MODES: tuple[str, ...] = ("step", "time", "relative")
Point = tuple[int, int, float | None]  # (step, timestamp ms, value or None for NaN/inf)


@dataclass(frozen=True, slots=True)
class Series:
    """One run's metric for a chart: the chosen points, ordered, and how many exist."""

    total_points: int
    points: list[Point]


# Downsampling a million points reads them all (~0.3 s); a chart is fetched
# again on every reload, Back and setting change. Answers are kept while the
# metric's latest point is unchanged (a new point invalidates them), for at
# most CACHE_TTL_S (a point backfilled below the latest step shows up then).
CACHE_TTL_S = 60.0
CACHE_ENTRIES = 64
CACHE_FROM_POINTS = 20_000  # smaller histories are cheaper to read than to cache
_cache: OrderedDict[tuple[Any, ...], tuple[float, Series]] = OrderedDict()
_cache_lock = threading.Lock()


def metric_points(
    store: SqlTrackingStore,
    run_id: str,
    key: str,
    *,
    max_points: int = 2000,
    by_time: bool = False,
) -> Series:
    """The points of ``key`` in ``run_id``: all of them, or at most ``max_points`` chosen.

    Points are ordered by step (``by_time``: by timestamp). Non-finite values
    come back as None, so a chart shows a gap. Downsampled answers for long
    histories are cached until the metric gets a new latest point.
    """
    lm = t.latest_metrics
    with store._db.read() as conn:
        latest = conn.execute(
            sa.select(lm.c.step, lm.c.timestamp, lm.c.value, lm.c.is_nan).where(
                lm.c.run_uuid == run_id, lm.c.key == key
            )
        ).first()
    cache_key = (id(store), run_id, key, max_points, by_time, tuple(latest or ()))
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(cache_key)
        if hit is not None and hit[0] > now:
            _cache.move_to_end(cache_key)
            return hit[1]
    found = _metric_points(store, run_id, key, max_points=max_points, by_time=by_time)
    if found.total_points >= CACHE_FROM_POINTS:
        with _cache_lock:
            _cache[cache_key] = (now + CACHE_TTL_S, found)
            while len(_cache) > CACHE_ENTRIES:
                _cache.popitem(last=False)
    return found


def _metric_points(
    store: SqlTrackingStore, run_id: str, key: str, *, max_points: int, by_time: bool
) -> Series:
    max_points = max(max_points, 4)
    m = t.metrics
    where = sa.and_(m.c.run_uuid == run_id, m.c.key == key)
    cols = (m.c.step, m.c.timestamp, m.c.value, m.c.is_nan)
    by_step = (m.c.step, m.c.timestamp)
    with store._db.read() as conn:
        # Reading one row past the cap says whether to downsample, without counting a million.
        head = conn.execute(sa.select(*cols).where(where).order_by(*by_step).limit(max_points + 1))
        rows = head.all()
        if len(rows) > max_points:
            first = rows[0]
            last = conn.execute(
                sa.select(*cols).where(where).order_by(*(c.desc() for c in by_step)).limit(1)
            ).one()
            sqlite = conn.dialect.name == "sqlite"
    if len(rows) <= max_points:
        points = [_point(*row) for row in rows]
        total = len(points)
    else:
        buckets = (max_points - 2) // 2
        span = int(last[0]) - int(first[0]) + 1
        if sqlite and span >= buckets:
            total, chosen = _step_buckets(store, run_id, key, int(first[0]), span, buckets)
        else:
            with store._db.read() as conn:
                total, chosen = _ranked_buckets(conn, run_id, key, buckets, by_time=by_time)
        points = [_point(*first), _point(*last), *chosen]
    order = (lambda p: (p[1], p[0])) if by_time else (lambda p: (p[0], p[1]))
    return Series(total, sorted(set(points), key=order))


def _point(step: int, timestamp: int, value: float | None, is_nan: Any) -> Point:
    if is_nan or value is None or not math.isfinite(value):
        return (int(step), int(timestamp), None)
    return (int(step), int(timestamp), float(value))


# SQLite documents that with both min() and max() in a statement, the bare
# columns come from a row holding one of the two extremes: the bare value says
# which, and one more (early-stopping) scan for the other's value finds its row.
_FINITE = "CASE WHEN is_nan THEN NULL ELSE value END"
_BOUNDS = "FROM metrics WHERE run_uuid = ? AND key = ? AND step >= ? AND step < ?"
_BUCKET_SQL = (
    f"SELECT min({_FINITE}), max({_FINITE}), value, step, timestamp, count(*), sum(is_nan) "
    + _BOUNDS
)
_FIND_SQL = f"SELECT step, timestamp {_BOUNDS} AND value = ? AND NOT is_nan LIMIT 1"
_NAN_SQL = f"SELECT step, timestamp {_BOUNDS} AND is_nan LIMIT 1"


# SQLite releases the GIL while it scans: two halves of the buckets on two
# connections take 0.17-0.29 s for a million points instead of 0.34-0.45 s.
_SCANNERS = ThreadPoolExecutor(2, thread_name_prefix="keel-chart")


def _step_buckets(
    store: SqlTrackingStore, run_id: str, key: str, low: int, span: int, buckets: int
) -> tuple[int, list[Point]]:
    width = -(-span // buckets)
    starts = list(range(low, low + span, width))
    half = len(starts) // 2
    parts = _SCANNERS.map(
        lambda part: _scan_buckets(store, run_id, key, part, width), (starts[:half], starts[half:])
    )
    total, chosen = 0, []
    for count, points in parts:
        total += count
        chosen.extend(points)
    return total, chosen


def _scan_buckets(
    store: SqlTrackingStore, run_id: str, key: str, starts: list[int], width: int
) -> tuple[int, list[Point]]:
    total = 0
    chosen: list[Point] = []
    with store._db.read() as conn:
        # Plain DB-API: a thousand tiny statements, where SQLAlchemy's
        # per-statement overhead would cost as much as the scans themselves.
        cursor = conn.connection.cursor()
        try:
            for start in starts:
                args = (run_id, key, start, start + width)
                low, high, value, step, timestamp, count, nans = cursor.execute(
                    _BUCKET_SQL, args
                ).fetchone()
                if not count:
                    continue
                total += count
                if low is None:  # only NaN here: one gap marker keeps the break visible
                    chosen.append((int(step), int(timestamp), None))
                    continue
                chosen.append(_point(step, timestamp, value, False))
                other = high if value == low else low
                if other != value:
                    found = cursor.execute(_FIND_SQL, (*args, other)).fetchone()
                    chosen.append(_point(found[0], found[1], other, False))
                if nans:
                    row = cursor.execute(_NAN_SQL, args).fetchone()
                    chosen.append((int(row[0]), int(row[1]), None))
        finally:
            cursor.close()
    return total, chosen


def _ranked_buckets(
    conn: sa.Connection, run_id: str, key: str, buckets: int, *, by_time: bool
) -> tuple[int, list[Point]]:
    x = "timestamp" if by_time else "step"
    low, high, total = conn.execute(
        sa.text(
            f"SELECT min({x}), max({x}), count(*) FROM metrics WHERE run_uuid = :run AND key = :key"
        ),
        {"run": run_id, "key": key},
    ).one()
    span = int(high) - int(low) + 1
    # NaN sorts last either way, so a bucket's min and max are finite when it has any.
    rows = conn.execute(
        sa.text(
            f"""
            WITH pts AS (
                SELECT step, timestamp, value, is_nan,
                       CAST(({x} - :low) * :buckets / :span AS BIGINT) AS bucket
                FROM metrics WHERE run_uuid = :run AND key = :key
            ), ranked AS (
                SELECT step, timestamp, value, is_nan,
                       row_number() OVER (PARTITION BY bucket
                           ORDER BY CASE WHEN is_nan THEN 1 ELSE 0 END, value, step) AS lo,
                       row_number() OVER (PARTITION BY bucket
                           ORDER BY CASE WHEN is_nan THEN 1 ELSE 0 END, value DESC, step) AS hi
                FROM pts
            )
            SELECT step, timestamp, value, is_nan FROM ranked WHERE lo = 1 OR hi = 1
            """
        ),
        {"run": run_id, "key": key, "low": int(low), "buckets": buckets, "span": span},
    ).all()
    return int(total), [_point(*row) for row in rows]


def ranked_points_for_tests(
    store: SqlTrackingStore, run_id: str, key: str, max_points: int, *, by_time: bool = False
) -> list[Point]:
    """The portable (windowed) downsampling, whatever the database: for tests.

    >>> from keel.store import open_store
    >>> ranked_points_for_tests(open_store("sqlite:///:memory:"), "nope", "loss", 10)
    []
    """
    with store._db.read() as conn:
        exists = conn.execute(
            sa.select(sa.func.count())
            .select_from(t.metrics)
            .where(t.metrics.c.run_uuid == run_id, t.metrics.c.key == key)
        ).scalar_one()
        if not exists:
            return []
        _, points = _ranked_buckets(conn, run_id, key, (max_points - 2) // 2, by_time=by_time)
    return sorted(set(points))
