"""A served model's monitoring report: input and output drift, validation, latency.

Built from a prediction log directory (:mod:`keel.serving.prediction_log`)
over a period, by reading:

* the hourly **profiles** of inputs and predictions (kilobytes each, merged):
  input drift is the drift report (:mod:`keel.data.drift_report`) between the
  model's training profile and the period's inputs; output drift compares the
  last hour's predictions with the rest of the period's;
* five narrow **columns** of the rows (time, request, latency, validation
  outcome, problems): request and row counts, validation outcomes, problems
  by column and code, latency percentiles.

>>> report = monitor_report("keel-predictions", since=timedelta(hours=24))  # doctest: +SKIP
>>> report.input_drift.summary()                                          # doctest: +SKIP
'Drift in 1 of 30 columns: mean radius.'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keel.data.drift_report import DriftReport, drift
from keel.data.frames import DataError
from keel.data.profiles import Profile
from keel.serving.prediction_log import PREDICTION

INPUT_PREFIX = "input."
_ROW_COLUMNS = ["timestamp", "request_id", "latency_ms", "validation", "problems"]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``"30m"``, ``"24h"``, ``"7d"``, ``"2w"`` as a timedelta.

    >>> parse_duration("36h")
    datetime.timedelta(days=1, seconds=43200)
    """
    match = _DURATION.match(text)
    if match is None:
        raise DataError(
            f"Cannot read {text!r} as a duration: use a number and s, m, h, d or w (24h, 7d)."
        )
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


@dataclass
class MonitorReport:
    """What a model's traffic looked like over a period, against its training data."""

    model_uri: str
    since: datetime
    until: datetime
    requests: int = 0
    rows: int = 0
    validation: dict[str, int] = field(default_factory=dict)
    problems: dict[str, int] = field(default_factory=dict)  # "column:CODE" -> requests
    latency_ms: dict[str, float] = field(default_factory=dict)
    input_drift: DriftReport | None = None
    output_drift: DriftReport | None = None
    predictions: dict[str, Any] = field(default_factory=dict)
    # realised performance on the rows whose true values came back through /feedback
    performance: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return bool(self.input_drift and self.input_drift.drifted) or bool(
            self.output_drift and self.output_drift.drifted
        )

    def summary(self) -> str:
        flagged = sum(n for k, n in self.validation.items() if k != "passed")
        parts = [f"{self.requests:,} requests, {self.rows:,} rows"]
        if self.requests:
            parts.append(f"{flagged:,} flagged by validation")
        if self.input_drift is not None:
            parts.append("inputs: " + self.input_drift.summary().rstrip("."))
        if self.output_drift is not None:
            parts.append("predictions: " + self.output_drift.summary().rstrip("."))
        if self.performance:
            shown = ", ".join(
                f"{k} {v:.4g}" for k, v in self.performance.items() if k != "labelled_rows"
            )
            parts.append(f"on {self.performance['labelled_rows']:,} labelled rows: {shown}")
        return "; ".join(parts) + "."

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_uri": self.model_uri,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "summary": self.summary(),
            "drifted": self.drifted,
            "requests": self.requests,
            "rows": self.rows,
            "validation": self.validation,
            "problems": self.problems,
            "latency_ms": self.latency_ms,
            "predictions": self.predictions,
            "performance": self.performance,
            "input_drift": self.input_drift.to_dict() if self.input_drift else None,
            "output_drift": self.output_drift.to_dict() if self.output_drift else None,
            "notes": self.notes,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        from keel.data.drift_report import _finite

        text = json.dumps(_finite(self.to_dict()), indent=1)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_html(self, path: str | Path | None = None) -> str:
        from keel.data.html import monitor_page

        text = monitor_page(self)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


def monitor_report(
    log_dir: str | Path,
    *,
    training_profile: Profile | None = None,
    since: timedelta = timedelta(hours=24),
    model_uri: str = "",
    now: datetime | None = None,
) -> MonitorReport:
    """The report of the last ``since`` of a prediction log, against ``training_profile``."""
    root = Path(log_dir)
    if not root.is_dir():
        raise DataError(
            f"No prediction log at {str(root)!r}: pass the --log-dir keel serve wrote to."
        )
    until = now or datetime.now(timezone.utc)
    start = until - since
    report = MonitorReport(model_uri, start, until)
    _read_rows(report, root, start)
    report.performance = _performance(root, start)
    hours = _hourly_profiles(root, start)
    if not hours:
        report.notes.append("no profiles in this period: nothing was scored, or the log was off")
        return report
    merged = _merge(list(hours.values()))
    inputs = inputs_profile(merged)
    if training_profile is None:
        report.notes.append("the model package has no training profile: no input drift")
    else:
        shared = [c for c in training_profile.columns if c in inputs.columns]
        missing = [c for c in training_profile.columns if c not in inputs.columns]
        if missing:
            report.notes.append(f"training columns never seen in traffic: {', '.join(missing)}")
        if shared:
            try:
                report.input_drift = drift(training_profile, inputs, columns=shared)
                report.input_drift.reference, report.input_drift.current = (
                    "training data",
                    "traffic",
                )
            except DataError as exc:
                report.notes.append(f"input drift not computed: {exc.message}")
    if PREDICTION in merged.columns:
        report.predictions = merged[PREDICTION].summary()
        if len(hours) >= 2:
            *earlier, last = sorted(hours)
            before = _merge([hours[h] for h in earlier])
            try:
                report.output_drift = drift(before, hours[last], columns=[PREDICTION])
                report.output_drift.reference = f"{earlier[0]}:00 to {earlier[-1]}:59"
                report.output_drift.current = f"{last}:00 to {last}:59"
            except DataError as exc:
                report.notes.append(f"output drift not computed: {exc.message}")
    return report


def _read_rows(report: MonitorReport, root: Path, start: datetime) -> None:
    first_day = start.strftime("%Y-%m-%d")
    tables = []
    for folder in sorted(root.glob("date=*")):
        if folder.name[len("date=") :] < first_day:
            continue
        for file in sorted(folder.glob("part-*.parquet")):
            table = pq.read_table(file, columns=_ROW_COLUMNS)
            since = pa.scalar(start, type=table.schema.field("timestamp").type)
            tables.append(table.filter(pc.greater_equal(table["timestamp"], since)))
    if not tables:
        return
    rows = pa.concat_tables(tables)
    report.rows = rows.num_rows
    if not rows.num_rows:
        return
    first = rows.group_by("request_id").aggregate(
        [("latency_ms", "max"), ("validation", "max"), ("problems", "max")]
    )
    report.requests = first.num_rows
    validation = first["validation_max"].to_pylist()
    report.validation = {v: validation.count(v) for v in sorted(set(validation))}
    counts: dict[str, int] = {}
    for text in first["problems_max"].to_pylist():
        for item in filter(None, (text or "").split(",")):
            counts[item] = counts.get(item, 0) + 1
    report.problems = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
    latency = first["latency_ms_max"].to_numpy()
    report.latency_ms = {
        "p50": float(np.percentile(latency, 50)),
        "p95": float(np.percentile(latency, 95)),
        "p99": float(np.percentile(latency, 99)),
        "mean": float(latency.mean()),
    }


def _performance(root: Path, start: datetime) -> dict[str, Any]:
    """Accuracy (labels) or MAE and RMSE (numbers) of the predictions that got feedback."""
    from keel.serving.prediction_log import read_feedback

    feedback = read_feedback(root)
    if not feedback.num_rows:
        return {}
    # the latest value per row wins: feedback can be corrected by sending it again
    feedback = feedback.sort_by([("timestamp", "ascending")])
    actual = {
        (r, i): a
        for r, i, a in zip(
            *(feedback[c].to_pylist() for c in ("request_id", "row", "actual")), strict=True
        )
    }
    pairs = []
    first_day = start.strftime("%Y-%m-%d")
    for folder in sorted(root.glob("date=*")):
        if folder.name[len("date=") :] < first_day:
            continue
        for file in sorted(folder.glob("part-*.parquet")):
            table = pq.read_table(file, columns=["timestamp", "request_id", "row", PREDICTION])
            since = pa.scalar(start, type=table.schema.field("timestamp").type)
            table = table.filter(pc.greater_equal(table["timestamp"], since))
            for r, i, predicted in zip(
                *(table[c].to_pylist() for c in ("request_id", "row", PREDICTION)), strict=True
            ):
                if (r, i) in actual:
                    pairs.append((predicted, json.loads(actual[(r, i)])))
    if not pairs:
        return {}
    predicted, truth = zip(*pairs, strict=True)
    if all(isinstance(p, float) for p in predicted) and all(
        isinstance(t, int | float) and not isinstance(t, bool) for t in truth
    ):
        errors = np.asarray(predicted, dtype=float) - np.asarray(truth, dtype=float)
        return {
            "labelled_rows": len(pairs),
            "mae": float(np.abs(errors).mean()),
            "rmse": float(np.sqrt((errors**2).mean())),
        }
    hits = sum(str(p) == str(t) for p, t in pairs)
    return {"labelled_rows": len(pairs), "accuracy": hits / len(pairs)}


def _hourly_profiles(root: Path, start: datetime) -> dict[str, Profile]:
    first_hour = start.strftime("%Y-%m-%dT%H")
    hours: dict[str, list[Profile]] = {}
    for file in sorted((root / "profiles").glob("*--*.json")):
        hour = file.name.split("--", 1)[0]
        if hour >= first_hour:
            hours.setdefault(hour, []).append(Profile.from_json(file))
    return {hour: _merge(parts) for hour, parts in hours.items()}


def _merge(parts: list[Profile]) -> Profile:
    merged = parts[0]
    for part in parts[1:]:
        if list(part.columns) == list(merged.columns):
            merged = merged.merge(part)
    return merged


def inputs_profile(merged: Profile) -> Profile:
    """The ``input.<column>`` part of a log profile, named as the model's columns."""
    columns = {}
    for name, col in merged.columns.items():
        if name.startswith(INPUT_PREFIX):
            col = type(col).from_dict(col.to_dict())  # a copy: the merged profile stays as it is
            col.name = name[len(INPUT_PREFIX) :]
            columns[col.name] = col
    return Profile(columns, merged.rows, "traffic")
