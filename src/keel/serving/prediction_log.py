"""The prediction log: every scored row, written off the request path to Parquet files.

A request only puts its frame and predictions on a bounded queue; one writer
thread turns them into rows and writes them, every ``flush_rows`` rows or
``flush_seconds``, as a new Parquet file under ``date=YYYY-MM-DD/`` (written
to a temporary name, then renamed: a file that is there is complete). Each row
holds the request id, the time, the model's name and version, the request's
latency and validation outcome, the input columns (as their own columns) and
the prediction. DuckDB reads the directory as one table::

    SELECT date, count(*) FROM 'keel-predictions/**/*.parquet' GROUP BY date

Beside the rows, the writer keeps a mergeable profile (:mod:`keel.data.profiles`)
of the inputs and predictions per hour, in ``profiles/<hour>--<writer>.json``
(one file per worker), so monitoring reads kilobytes, not the whole log.

When the queue is full (the disk cannot keep up), new entries are dropped and
counted (``dropped``, and ``keel_log_dropped_total`` in ``/metrics``): a
request is never made to wait for the log. On a clean shutdown
(:meth:`PredictionLog.close`) everything queued is written first.

>>> import tempfile, pandas as pd
>>> log = PredictionLog(tempfile.mkdtemp())
>>> log.submit(pd.DataFrame({"x": [1.0, 2.0]}), [0, 1], LogMeta("r1", 0.001, "passed"))
True
>>> log.close()
>>> log.written
2
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger("keel.serving")

MAX_QUEUE = 10_000
FLUSH_ROWS = 5_000
FLUSH_SECONDS = 1.0
PREDICTION = "prediction"
_STOP = object()


@dataclass(frozen=True)
class LogMeta:
    """What the log keeps about a request besides its rows."""

    request_id: str
    latency: float  # seconds
    validation: str  # "passed", "warn" or "off"
    problems: str = ""  # column:CODE,... when validation found any
    at: float = 0.0  # epoch seconds; 0 means now

    def when(self) -> float:
        return self.at or time.time()


class PredictionLog:
    """A bounded queue and the thread that writes it to ``directory``."""

    def __init__(
        self,
        directory: str | Path,
        *,
        model_name: str | None = None,
        model_version: str | None = None,
        max_queue: int = MAX_QUEUE,
        flush_rows: int = FLUSH_ROWS,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.model_name = model_name or ""
        self.model_version = model_version or ""
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.dropped = 0
        self.written = 0
        self.failures = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._pending: list[tuple[pd.DataFrame, Any, LogMeta]] = []
        self._feedback: list[_Feedback] = []
        self._profiles: dict[str, Any] = {}
        self._closed = False
        self._writer = uuid.uuid4().hex[:8]
        self._thread = threading.Thread(target=self._run, name="keel-prediction-log", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def current_profile(self) -> Any:
        """This worker's profile of the open hour's inputs and predictions (None before any)."""
        profiles = self._profiles  # replaced whole by the writer: reading it needs no lock
        return next(iter(profiles.values()), None)

    def submit(
        self, frame: Any, predictions: Any, meta: LogMeta, columns: list[str] | None = None
    ) -> bool:
        """Queue one request's rows; False (and counted) when the queue is full or closed.

        ``frame`` is a DataFrame, or a 2-D array with its ``columns``: the writer
        thread, not the request, turns it into a table.
        """
        if isinstance(frame, np.ndarray):
            frame = _Rows(frame, columns or [str(i) for i in range(frame.shape[1])])
        if self._closed:
            self.dropped += len(frame)
            return False
        try:
            self._queue.put_nowait((frame, predictions, meta))
        except queue.Full:
            self.dropped += len(frame)
            return False
        return True

    def feedback(self, request_id: str, actuals: list[Any], first_row: int = 0) -> bool:
        """Queue the true values of a request's rows (from ``first_row`` on), as they arrive.

        They are written to ``feedback/`` beside the rows; the monitoring report
        joins them with the predictions on request id and row.
        """
        entry = _Feedback(request_id, first_row, [json.dumps(a) for a in actuals], time.time())
        if self._closed:
            return False
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped += len(actuals)
            return False
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop the writer."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- the writer thread ---------------------------------------------------------

    def _run(self) -> None:
        deadline = time.monotonic() + self.flush_seconds
        rows = 0
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = None
            if item is _STOP:
                self._flush()
                return
            if isinstance(item, _Feedback):
                self._feedback.append(item)
            elif item is not None:
                self._pending.append(item)
                rows += len(item[0])
            if rows >= self.flush_rows or time.monotonic() >= deadline:
                self._flush()
                rows = 0
                deadline = time.monotonic() + self.flush_seconds

    def _flush(self) -> None:
        if self._feedback:
            entries, self._feedback = self._feedback, []
            try:
                self._write(_feedback_table(entries), "feedback")
            except Exception:
                self.failures += 1
                log.exception("keel serve: could not write %d feedback entries", len(entries))
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        try:
            table = self._table(pending)
            self._write(table)
            self._profile(table)
            self.written += table.num_rows
        except Exception:  # the log must never take the server down; say so, count it
            self.failures += 1
            log.exception("keel serve: could not write %d prediction log entries", len(pending))

    def _table(self, pending: list[tuple[pd.DataFrame, Any, LogMeta]]) -> pa.Table:
        fast = self._matrix_table(pending)
        if fast is not None:
            return fast
        parts = []
        for frame, predictions, meta in pending:
            n = len(frame)
            if isinstance(frame, _Rows):
                part = pd.DataFrame(frame.values, columns=frame.columns)
            else:
                part = frame.reset_index(drop=True).copy()
            part.columns = [f"input.{c}" for c in part.columns]
            values = np.asarray(predictions)
            part[PREDICTION] = list(values) if values.ndim > 1 else values
            part.insert(0, "request_id", meta.request_id)
            part.insert(1, "row", np.arange(n))
            # naive here, UTC below: pandas 3 warns when pyarrow reads tz-aware columns
            part.insert(2, "timestamp", pd.Timestamp(meta.when(), unit="s"))
            part.insert(3, "latency_ms", meta.latency * 1000)
            part.insert(4, "validation", meta.validation)
            part.insert(5, "problems", meta.problems)
            parts.append(part)
        frame = pd.concat(parts, ignore_index=True)
        frame.insert(3, "model_name", self.model_name)
        frame.insert(4, "model_version", self.model_version)
        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            # served under "warn" or "off", a column can mix types: keep it as text
            mixed = frame.select_dtypes(include="object").columns
            frame[mixed] = frame[mixed].map(lambda v: v if v is None else str(v))
            table = pa.Table.from_pandas(frame, preserve_index=False)
        at = table.schema.get_field_index("timestamp")
        utc = table["timestamp"].cast(pa.timestamp("ns", "UTC"))
        return table.set_column(at, "timestamp", utc)

    def _matrix_table(self, pending: list[tuple[Any, Any, LogMeta]]) -> pa.Table | None:
        """The table straight from arrays, when every request came as a numeric matrix.

        The common case under load, and the cheap one: a few array operations for
        the whole flush instead of a DataFrame per request (the writer shares the
        interpreter with the server, so its time is the requests' time too).
        """
        first = pending[0][0]
        if not isinstance(first, _Rows):
            return None
        predictions = [np.asarray(p) for _, p, _ in pending]
        if any(
            not isinstance(f, _Rows) or f.columns != first.columns for f, _, _ in pending
        ) or any(p.ndim != 1 for p in predictions):
            return None
        counts = np.array([len(f) for f, _, _ in pending])
        metas = [m for _, _, m in pending]
        inputs = np.vstack([f.values for f, _, _ in pending])
        columns: dict[str, Any] = {
            "request_id": pa.array(np.repeat([m.request_id for m in metas], counts)),
            "row": pa.array(np.concatenate([np.arange(n) for n in counts])),
            "timestamp": pa.array(
                np.repeat([int(m.when() * 1e6) for m in metas], counts), pa.timestamp("us", "UTC")
            ),
            "model_name": pa.array(np.repeat(self.model_name, counts.sum())),
            "model_version": pa.array(np.repeat(self.model_version, counts.sum())),
            "latency_ms": pa.array(np.repeat([m.latency * 1000 for m in metas], counts)),
            "validation": pa.array(np.repeat([m.validation for m in metas], counts)),
            "problems": pa.array(np.repeat([m.problems for m in metas], counts)),
        }
        for i, name in enumerate(first.columns):
            columns[f"input.{name}"] = pa.array(inputs[:, i])
        columns[PREDICTION] = pa.array(np.concatenate(predictions))
        return pa.table(columns)

    def _write(self, table: pa.Table, kind: str = "") -> None:
        day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        folder = self.directory / kind / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = folder / f".{name}.tmp"
        pq.write_table(table, tmp)
        tmp.rename(folder / name)

    def _profile(self, table: pa.Table) -> None:
        from keel.data.profiles import profile

        hour = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H")
        columns = [c for c in table.column_names if c.startswith("input.") or c == PREDICTION]
        batch = table.select(columns)
        if pa.types.is_list(batch.schema.field(PREDICTION).type):
            batch = batch.drop_columns([PREDICTION])  # vectors per row: no single distribution
        current = profile(batch)
        previous = self._profiles.get(hour)
        if previous is not None and list(previous.columns) == list(current.columns):
            current = previous.merge(current)
        self._profiles = {hour: current}  # only the open hour is kept in memory
        folder = self.directory / "profiles"
        folder.mkdir(exist_ok=True)
        # one file per writer and hour: workers and restarts never overwrite each other,
        # and monitoring merges whatever files an hour has
        target = folder / f"{hour}--{self._writer}.json"
        tmp = folder / f".{target.name}.tmp"
        current.to_json(tmp)
        tmp.replace(target)


@dataclass(frozen=True)
class _Rows:
    """A request's rows as the fast path left them: an array and its column names."""

    values: np.ndarray
    columns: list[str]

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class _Feedback:
    request_id: str
    first_row: int
    actuals: list[str]  # JSON text: a label stays a string, a number a number
    at: float


def _feedback_table(entries: list[_Feedback]) -> pa.Table:
    rows = [
        (e.request_id, e.first_row + i, actual, e.at)
        for e in entries
        for i, actual in enumerate(e.actuals)
    ]
    request_ids, row_numbers, actuals, times = zip(*rows, strict=True)
    return pa.table(
        {
            "request_id": pa.array(request_ids, pa.string()),
            "row": pa.array(row_numbers, pa.int64()),
            "actual": pa.array(actuals, pa.string()),
            "timestamp": pa.array([int(t * 1e6) for t in times], pa.timestamp("us", "UTC")),
        }
    )


def read_feedback(directory: str | Path) -> pa.Table:
    """Every feedback row of a prediction log directory (request_id, row, actual as JSON text)."""
    files = sorted(Path(directory).glob("feedback/date=*/part-*.parquet"))
    if not files:
        return pa.table({})
    return pa.concat_tables([pq.read_table(f) for f in files])


def read_log(directory: str | Path) -> pa.Table:
    """Every row of a prediction log directory as one Arrow table (oldest file first)."""
    files = sorted(Path(directory).glob("date=*/part-*.parquet"))
    if not files:
        return pa.table({})
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
