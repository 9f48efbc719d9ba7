"""The prediction log: off the request path, durable on a clean shutdown, bounded, queryable."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from keel.data.profiles import Profile  # noqa: E402
from keel.serving import ScoringApp, ServedModel  # noqa: E402
from keel.serving.prediction_log import LogMeta, PredictionLog, read_log  # noqa: E402
from live_server import serve  # noqa: E402
from test_serving import _post, _training, package  # noqa: E402, F401  (the fixture, shared)


def _frame(n: int, start: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(n, dtype=float) + start, "plan": ["a", "b"] * (n // 2)})


def test_close_writes_everything_queued(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, model_name="churn", model_version="3", flush_seconds=60)
    for i in range(50):
        assert log.submit(_frame(4, 10 * i), [0, 1, 0, 1], LogMeta(f"r{i}", 0.002, "passed"))
    log.close()
    table = read_log(tmp_path).to_pandas()
    assert len(table) == 200 and log.written == 200 and log.dropped == 0
    assert list(table.columns[:8]) == [
        "request_id", "row", "timestamp", "model_name", "model_version",
        "latency_ms", "validation", "problems",
    ]  # fmt: skip
    assert set(table["model_name"]) == {"churn"} and set(table["model_version"]) == {"3"}
    assert table["input.x"].tolist() == [10 * i + j for i in range(50) for j in range(4)]
    assert table.loc[5, ["request_id", "row", "prediction"]].tolist() == ["r1", 1, 1]
    assert table["latency_ms"].iloc[0] == pytest.approx(2.0)
    # no temporary files left; one hourly profile of inputs and predictions
    assert not list(tmp_path.rglob(".*tmp"))
    [profile_file] = (tmp_path / "profiles").glob("*.json")
    prof = Profile.from_json(profile_file)
    assert prof.rows == 200 and list(prof.columns) == ["input.x", "input.plan", "prediction"]
    assert not log.submit(_frame(2), [0, 1], LogMeta("late", 0.0, "passed"))  # closed: counted
    assert log.dropped == 2


def test_rows_are_written_without_waiting_for_shutdown(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, flush_seconds=0.05)
    log.submit(_frame(2), ["no", "yes"], LogMeta("r", 0.001, "warn", "plan:UNKNOWN_CATEGORY"))
    deadline = time.monotonic() + 10
    while log.written < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    table = read_log(tmp_path).to_pandas()
    assert table["prediction"].tolist() == ["no", "yes"]
    assert table["problems"].tolist() == ["plan:UNKNOWN_CATEGORY"] * 2
    log.close()


class _SlowDisk(PredictionLog):
    def _write(self, table: object) -> None:
        time.sleep(0.5)


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    log = _SlowDisk(tmp_path, max_queue=5, flush_rows=1, flush_seconds=60)
    started = time.perf_counter()
    accepted = sum(log.submit(_frame(2), [0, 1], LogMeta(str(i), 0, "passed")) for i in range(40))
    assert time.perf_counter() - started < 0.25  # never waits for the disk
    assert accepted < 40 and log.dropped == 2 * (40 - accepted)
    log.close()


def test_served_requests_land_in_the_log(package: Path, tmp_path: Path) -> None:  # noqa: F811
    served = ServedModel.load(str(package))
    log = PredictionLog(tmp_path / "log", model_name="churn", model_version="1")
    app = ScoringApp(served, validation="warn", prediction_log=log)
    x, _ = _training(6)
    with serve(app) as base:
        ok = _post(
            base, {"dataframe_records": x.to_dict(orient="records")}, **{"x-request-id": "a1"}
        )
        odd = _post(base, {"dataframe_records": [{"age": 30.0, "spend": 5.0, "plan": "gold"}]})
        metrics = httpx.get(f"{base}/metrics").text
    app.close()
    assert ok.status_code == odd.status_code == 200
    table = read_log(tmp_path / "log").to_pandas()
    assert len(table) == 7
    first = table[table["request_id"] == "a1"]
    assert first["prediction"].tolist() == ok.json()["predictions"]
    assert first["input.age"].tolist() == x["age"].tolist()
    assert set(first["validation"]) == {"passed"}
    flagged = table[table["request_id"] == odd.headers["x-request-id"]]
    assert flagged[["validation", "problems"]].values.tolist() == [
        ["warn", "plan:UNKNOWN_CATEGORY"]
    ]
    assert "keel_log_written" in metrics and "keel_log_dropped 0.0" in metrics
    json.loads((next((tmp_path / "log" / "profiles").glob("*.json"))).read_text())


def test_arrays_from_the_fast_path_are_logged_as_columns(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, model_name="m", model_version="2", flush_seconds=60)
    for i in range(30):
        rows = np.array([[i, 0.5], [i, 1.5]], dtype=float)
        log.submit(rows, np.array([i % 2, 1]), LogMeta(f"r{i}", 0.001, "passed"), ["a", "b"])
    log.close()
    table = read_log(tmp_path)
    assert table.schema.field("timestamp").type.tz == "UTC"
    frame = table.to_pandas()
    assert len(frame) == 60 and frame["input.a"].tolist() == [i for i in range(30) for _ in (0, 1)]
    assert frame["input.b"].tolist() == [0.5, 1.5] * 30 and frame["row"].tolist() == [0, 1] * 30
    assert frame.loc[7, ["request_id", "prediction", "model_version"]].tolist() == ["r3", 1, "2"]
    [profile_file] = (tmp_path / "profiles").glob("*.json")
    assert list(Profile.from_json(profile_file).columns) == ["input.a", "input.b", "prediction"]
