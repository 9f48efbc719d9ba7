"""What ``/metrics`` reports, in Prometheus' text format (prometheus_client, a registry per app).

* ``keel_requests_total{status}`` and ``keel_request_seconds`` (a histogram) for
  ``/invocations``;
* ``keel_batch_rows``: rows per request;
* ``keel_payload_errors_total{code}``: bodies that did not parse;
* ``keel_validation_problems_total{column, code}``: problems the checks found;
* ``keel_prediction_failures_total``: inputs the model itself refused;
* ``keel_model_calls``, ``keel_batched_requests``: micro-batching at work;
* ``keel_log_queued``, ``keel_log_dropped``, ``keel_log_written``: the prediction log;
* ``keel_drift_score{column}`` and ``keel_drift_detected{column}``: this hour's inputs
  against the training profile (needs the prediction log; refreshed when scraped);
* ``keel_predictions_total{value}`` for labels (up to ``MAX_LABELS`` of them) and
  ``keel_prediction_value`` (count and sum) for numbers.

>>> m = ServingMetrics()
>>> m.request(200, 0.002)
>>> b'keel_requests_total{status="200"} 1.0' in m.exposition()
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MAX_LABELS = 50
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 500, 1_000, 10_000, 100_000)


class ServingMetrics:
    """The counters of one scoring app."""

    content_type = CONTENT_TYPE_LATEST.encode()

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter(
            "keel_requests", "Scoring requests by status.", ["status"], registry=r
        )
        self._latency = Histogram(
            "keel_request_seconds",
            "Time to answer a scoring request.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._rows = Histogram(
            "keel_batch_rows", "Rows per scoring request.", buckets=ROW_BUCKETS, registry=r
        )
        self._payload = Counter(
            "keel_payload_errors", "Bodies that did not parse, by code.", ["code"], registry=r
        )
        self._problems = Counter(
            "keel_validation_problems",
            "Input problems found, by column and code.",
            ["column", "code"],
            registry=r,
        )
        self._failed = Counter(
            "keel_prediction_failures", "Inputs the model could not score.", registry=r
        )
        self._labels = Counter("keel_predictions", "Predicted labels.", ["value"], registry=r)
        self._values = Summary("keel_prediction_value", "Predicted numbers.", registry=r)
        self._seen_labels: set[str] = set()

    def request(self, status: int, seconds: float) -> None:
        self._requests.labels(str(status)).inc()
        self._latency.observe(seconds)

    def rows(self, count: int) -> None:
        self._rows.observe(count)

    def payload_error(self, code: str) -> None:
        self._payload.labels(code).inc()

    def problems(self, problems: Iterable[Any]) -> None:
        for p in problems:
            self._problems.labels(p.column, p.code).inc(p.count)

    def prediction_failed(self) -> None:
        self._failed.inc()

    def predictions(self, predictions: Any) -> None:
        values = np.asarray(predictions)
        if values.ndim != 1 or not len(values):
            return
        if values.dtype.kind == "f":
            finite = values[np.isfinite(values)]
            for v in finite[:1_000].tolist():
                self._values.observe(v)
            return
        if values.dtype.kind in "iub":  # labels as numbers: count them before making text
            found, counts = np.unique(values, return_counts=True)
            labels = [str(v) for v in found.tolist()]
        else:
            found, counts = np.unique(values.astype(str), return_counts=True)
            labels = found.tolist()
        for label, count in zip(labels, counts.tolist(), strict=True):
            if label not in self._seen_labels and len(self._seen_labels) >= MAX_LABELS:
                label = (
                    "other"  # bounded cardinality: a label per distinct value would grow forever
                )
            else:
                self._seen_labels.add(label)
            self._labels.labels(label).inc(count)

    def watch_log(self, prediction_log: Any) -> None:
        """Report the prediction log's queue, drops and writes (read when scraped)."""
        r = self.registry
        queued = Gauge(
            "keel_log_queued", "Prediction log entries waiting to be written.", registry=r
        )
        queued.set_function(lambda: prediction_log.queued)
        dropped = Gauge(
            "keel_log_dropped", "Rows dropped because the log queue was full.", registry=r
        )
        dropped.set_function(lambda: prediction_log.dropped)
        written = Gauge("keel_log_written", "Rows written to the prediction log.", registry=r)
        written.set_function(lambda: prediction_log.written)

    def watch_batcher(self, batcher: Any) -> None:
        """Report how many model calls were made, and how many requests shared one."""
        r = self.registry
        calls = Gauge("keel_model_calls", "Calls to the model's predict.", registry=r)
        calls.set_function(lambda: batcher.calls)
        shared = Gauge(
            "keel_batched_requests", "Requests scored in a call shared with others.", registry=r
        )
        shared.set_function(lambda: batcher.batched)

    def drift(self, report: Any) -> None:
        """Per column: the size of the change since training, and whether it counts as drift."""
        if not hasattr(self, "_drift_score"):
            r = self.registry
            self._drift_score = Gauge(
                "keel_drift_score",
                "Size of the change of an input since training (Wasserstein/std or "
                "Jensen-Shannon), this hour.",
                ["column"],
                registry=r,
            )
            self._drift_flag = Gauge(
                "keel_drift_detected", "1 when an input drifted from training, this hour.",
                ["column"], registry=r,
            )  # fmt: skip
        for column in report.columns:
            if column.skipped or column.effect is None:
                continue
            self._drift_score.labels(column.column).set(column.effect)
            self._drift_flag.labels(column.column).set(1.0 if column.drifted else 0.0)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))
