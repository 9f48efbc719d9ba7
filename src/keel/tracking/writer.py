"""Write-behind for metrics: ``log_metric`` returns at once, a thread commits in groups.

Per-call logging is the hot path of training loops. Committing each point on
its own costs a transaction per call; here points are queued in memory and a
background thread writes them with ``log_batch`` (up to 1000 per transaction).

What is durable when (docs/decisions/0002-durability.md):
- a queued point is committed within ``flush_interval`` seconds (0.2 s by default)
  or as soon as 1000 points are queued;
- ``flush()``, ``end_run`` (and leaving a ``with start_run()`` block), reading the
  run back through Keel, and normal interpreter exit all wait until every queued
  point is committed; errors from the background surface there too;
- a process killed with SIGKILL loses at most the last ``flush_interval``.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Sequence

from keel.entities import Metric
from keel.errors import KeelError
from keel.store.base import MAX_METRICS_PER_BATCH, TrackingStore

DEFAULT_FLUSH_INTERVAL = float(os.environ.get("KEEL_FLUSH_INTERVAL", "0.2"))


class BackgroundWriteError(KeelError):
    """Metrics queued earlier could not be written; the message says which and why."""


class MetricWriter:
    """Queue metrics per run and commit them from one background thread.

    >>> from keel.store import open_store
    >>> store = open_store("sqlite:///:memory:")
    >>> run = store.create_run("0", "ana", 0, [], "r")
    >>> w = MetricWriter(store)
    >>> w.submit(run.info.run_id, [Metric("loss", 0.1, 0, 0)])
    >>> w.flush()
    >>> store.get_run(run.info.run_id).data.metrics
    {'loss': 0.1}
    >>> w.close()
    """

    def __init__(self, store: TrackingStore, flush_interval: float = DEFAULT_FLUSH_INTERVAL):
        self._store = store
        self._interval = flush_interval
        self._cond = threading.Condition()
        self._pending: list[tuple[str, Metric]] = []
        self._in_flight = 0
        self._errors: list[str] = []
        self._closed = False
        self._flush_requested = False
        self._thread: threading.Thread | None = None

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="keel-metric-writer", daemon=True
            )
            self._thread.start()

    def submit(self, run_id: str, metrics: Sequence[Metric]) -> None:
        """Queue points for a run; raises first if an earlier background write failed."""
        with self._cond:
            self._raise_errors()
            if self._closed:
                raise BackgroundWriteError("The metric writer is closed.")
            self._ensure_thread()
            was_empty = not self._pending
            self._pending.extend((run_id, m) for m in metrics)
            if was_empty or len(self._pending) >= MAX_METRICS_PER_BATCH:
                self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + self._in_flight

    def flush(self) -> None:
        """Block until everything queued so far is committed; raise background errors."""
        with self._cond:
            while self._pending or self._in_flight:
                self._flush_requested = True
                self._ensure_thread()
                self._cond.notify_all()
                self._cond.wait(timeout=1.0)
            self._raise_errors()

    def _raise_errors(self) -> None:
        if self._errors:
            errors, self._errors = self._errors, []
            raise BackgroundWriteError(
                "Some metrics logged earlier could not be written: " + "; ".join(errors)
            )

    def _take_batch(self) -> list[tuple[str, Metric]] | None:
        """Wait for work, let a burst gather for up to one interval, take it. None: stop."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            deadline = time.monotonic() + self._interval
            while (
                not self._closed
                and not self._flush_requested
                and len(self._pending) < MAX_METRICS_PER_BATCH
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch, self._pending = self._pending, []
            self._flush_requested = False
            self._in_flight = len(batch)
            if not batch and self._closed:
                self._cond.notify_all()
                return None
            return batch

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            self._write(batch)
            with self._cond:
                self._in_flight = 0
                self._cond.notify_all()

    def _write(self, batch: list[tuple[str, Metric]]) -> None:
        by_run: dict[str, list[Metric]] = defaultdict(list)
        for run_id, metric in batch:
            by_run[run_id].append(metric)
        for run_id, metrics in by_run.items():
            for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                chunk = metrics[i : i + MAX_METRICS_PER_BATCH]
                try:
                    self._store.log_batch(run_id, metrics=chunk)
                except Exception as exc:  # reported to the caller at the next flush
                    with self._cond:
                        self._errors.append(f"{len(chunk)} points for run {run_id}: {exc}")

    def close(self) -> None:
        """Flush and stop the thread."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            if self._thread is not None:
                self._thread.join(timeout=30)


_writers: weakref.WeakKeyDictionary[TrackingStore, MetricWriter] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


_finalizer_pid: int | None = None


def writer_for(store: TrackingStore) -> MetricWriter:
    """The process's one writer for a store."""
    global _finalizer_pid
    with _writers_lock:
        writer = _writers.get(store)
        if writer is None:
            writer = _writers[store] = MetricWriter(store)
        if _finalizer_pid != os.getpid():
            # multiprocessing children end with os._exit, skipping atexit; its
            # own exit hook still runs finalizers, so flush from there too.
            import multiprocessing.util

            multiprocessing.util.Finalize(None, flush_all, exitpriority=10)
            _finalizer_pid = os.getpid()
        return writer


def flush_store(store: TrackingStore) -> None:
    """Flush the store's writer if it has one (cheap when nothing is queued)."""
    writer = _writers.get(store)
    if writer is not None and writer.pending():
        writer.flush()


def flush_all() -> None:
    for writer in list(_writers.values()):
        writer.flush()


def close_all() -> None:
    """Flush and stop every writer (before closing stores, e.g. between tests)."""
    with _writers_lock:
        writers = list(_writers.values())
        _writers.clear()
    for writer in writers:
        writer.close()


@atexit.register
def _flush_at_exit() -> None:
    for writer in list(_writers.values()):
        try:
            writer.close()
        except KeelError as exc:  # nothing left to raise to at exit; say it
            import sys

            print(f"keel: {exc}", file=sys.stderr)


def _after_fork_in_child() -> None:
    # The child has copies of the parent's queues but not its thread: the
    # parent writes what it queued, the child starts empty.
    _writers.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
