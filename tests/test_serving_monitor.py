"""Monitoring: served traffic against the training profile, from the prediction log."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from cli_runner import fails, ok  # noqa: E402
from keel.data.profiles import profile  # noqa: E402
from keel.serving import ScoringApp, ServedModel  # noqa: E402
from keel.serving.monitor import monitor_report, parse_duration  # noqa: E402
from keel.serving.prediction_log import PredictionLog  # noqa: E402
from live_server import serve  # noqa: E402
from test_serving import package  # noqa: E402, F401  (the fixture, shared)


@pytest.fixture(scope="module")
def traffic(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """A prediction log of normal traffic, then traffic with `age` shifted by a whole σ."""
    log_dir = tmp_path_factory.mktemp("traffic") / "log"
    served = ServedModel.load(str(package))
    app = ScoringApp(
        served, validation="warn", prediction_log=PredictionLog(log_dir, flush_seconds=0.1)
    )
    rng = np.random.default_rng(5)
    headers = {"content-type": "application/json"}
    with serve(app) as base, httpx.Client(base_url=base) as client:
        for i in range(40):
            x = pd.DataFrame(  # fresh rows from the training distribution
                {
                    "age": rng.normal(40, 10, 50).round(1) + (10 if i >= 20 else 0),
                    "spend": rng.exponential(50, 50).round(2),
                    "plan": rng.choice(["basic", "pro", "team"], 50),
                }
            )
            if i == 39:
                x.loc[0, "plan"] = "gold"
            split = {"columns": list(x.columns), "data": x.values.tolist()}
            response = client.post("/invocations", json={"dataframe_split": split}, headers=headers)
            assert response.status_code == 200
    app.close()
    return log_dir


def test_input_drift_against_the_training_profile(traffic: Path, package: Path) -> None:  # noqa: F811
    training = ServedModel.load(str(package)).profile
    report = monitor_report(traffic, training_profile=training, since=timedelta(hours=1))
    assert (report.requests, report.rows) == (40, 2_000)
    assert report.validation == {"passed": 39, "warn": 1}
    assert report.problems == {"plan:UNKNOWN_CATEGORY": 1}
    assert set(report.latency_ms) == {"p50", "p95", "p99", "mean"} and report.latency_ms["p50"] > 0
    assert report.input_drift is not None and report.input_drift.drifted_columns == ["age"]
    assert report.input_drift.new_categories == {"plan": [("gold", 1)]}
    assert report.predictions["count"] == 2_000
    data = json.loads(report.to_json())
    assert data["drifted"] is True and data["input_drift"]["drifted_columns"] == ["age"]
    page = report.to_html()
    assert "Inputs vs training data" in page and "plan" in page and "<svg" in page


def test_a_period_without_traffic_says_so(traffic: Path) -> None:
    later = datetime.now(timezone.utc) + timedelta(days=3)
    report = monitor_report(traffic, since=timedelta(hours=1), now=later)
    assert report.requests == 0 and report.input_drift is None
    assert any("no profiles" in n for n in report.notes)


def test_output_drift_compares_the_last_hour_with_the_ones_before(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "profiles"
    folder.mkdir()
    now = datetime(2026, 11, 22, 12, 30, tzinfo=timezone.utc)
    for hours_ago, share in ((3, 0.3), (2, 0.3), (1, 0.3), (0, 0.6)):
        hour = (now - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H")
        frame = pd.DataFrame(
            {"input.x": rng.normal(size=2_000), "prediction": rng.random(2_000) < share}
        )
        profile(frame).to_json(folder / f"{hour}--w1.json")
    report = monitor_report(tmp_path, since=timedelta(hours=6), now=now)
    assert report.output_drift is not None and report.output_drift.drifted_columns == ["prediction"]
    assert report.output_drift.current == "2026-11-22T12:00 to 2026-11-22T12:59"
    assert report.input_drift is None and any("no training profile" in n for n in report.notes)


def test_monitor_report_command(traffic: Path, package: Path, tmp_path: Path) -> None:  # noqa: F811
    out = ok(
        "monitor", "report", str(package), "--log-dir", str(traffic), "--since", "2h",
        "--html", str(tmp_path / "m.html"),
    )  # fmt: skip
    assert "40 requests, 2,000 rows" in out and "Drift in 1" in out and "age" in out
    assert "<svg" in (tmp_path / "m.html").read_text()
    data = json.loads(ok("monitor", "report", str(package), "--log-dir", str(traffic), "--json"))
    assert data["input_drift"]["drifted_columns"] == ["age"]
    assert "duration" in fails(
        "monitor", "report", str(package), "--log-dir", str(traffic), "--since", "soon"
    )
    assert "No prediction log" in fails(
        "monitor", "report", str(package), "--log-dir", str(tmp_path / "x")
    )


def test_durations() -> None:
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("2w") == timedelta(days=14)


def test_feedback_turns_into_realised_accuracy(package: Path, tmp_path: Path) -> None:  # noqa: F811
    served = ServedModel.load(str(package))
    app = ScoringApp(served, prediction_log=PredictionLog(tmp_path / "log", flush_seconds=0.05))
    rows = {
        "dataframe_records": [{"age": a, "spend": 10.0, "plan": "basic"} for a in (25, 35, 55, 65)]
    }
    with serve(app) as base, httpx.Client(base_url=base) as client:
        scored = client.post("/invocations", json=rows)
        rid, predicted = scored.headers["x-request-id"], scored.json()["predictions"]
        wrong_last = [*predicted[:3], 1 - predicted[3]]
        one = client.post("/feedback", json={"request_id": rid, "actuals": wrong_last[:2]})
        two = client.post(
            "/feedback", json=[{"request_id": rid, "row": 2, "actuals": wrong_last[2:]}]
        )
        assert (one.status_code, one.json(), two.json()) == (202, {"accepted": 2}, {"accepted": 2})
        bad = [
            client.post("/feedback", content=b"{", headers={"content-type": "application/json"}),
            client.post("/feedback", json={"actual": 1}),
            client.post("/feedback", json={"request_id": rid}),
            client.post("/feedback", json={"request_id": rid, "row": -1, "actual": 1}),
            client.post("/feedback", json={"request_id": rid, "actual": {"a": 1}}),
            client.post("/feedback", json=[]),
        ]
        assert [r.status_code for r in bad] == [400] * 6
        assert {r.json()["error_code"] for r in bad} == {"MALFORMED_JSON", "BAD_FEEDBACK"}
    app.close()
    report = monitor_report(tmp_path / "log", since=timedelta(hours=1))
    assert report.performance == {"labelled_rows": 4, "accuracy": 0.75}
    assert "on 4 labelled rows: accuracy 0.75" in report.summary()
    with serve(ScoringApp(served)) as base:
        refused = httpx.post(f"{base}/feedback", json={"request_id": rid, "actual": 1})
    assert (refused.status_code, refused.json()["error_code"]) == (409, "NO_PREDICTION_LOG")


def test_metrics_report_drift_scores_of_this_hour(package: Path, tmp_path: Path) -> None:  # noqa: F811
    import time

    served = ServedModel.load(str(package))
    log = PredictionLog(tmp_path / "log", flush_seconds=0.05)
    rng = np.random.default_rng(9)
    rows = pd.DataFrame(
        {
            "age": rng.normal(60, 10, 800).round(1),  # training saw a mean of 40
            "spend": rng.exponential(50, 800).round(2),
            "plan": rng.choice(["basic", "pro", "team"], 800),
        }
    )
    with serve(ScoringApp(served, validation="warn", prediction_log=log)) as base:
        split = {"columns": list(rows.columns), "data": rows.values.tolist()}
        assert httpx.post(f"{base}/invocations", json={"dataframe_split": split}).status_code == 200
        deadline = time.monotonic() + 10
        while log.written < 800 and time.monotonic() < deadline:
            time.sleep(0.02)
        text = httpx.get(f"{base}/metrics").text
    log.close()
    assert 'keel_drift_detected{column="age"} 1.0' in text
    assert 'keel_drift_detected{column="spend"} 0.0' in text
    score = next(
        line for line in text.splitlines() if line.startswith('keel_drift_score{column="age"}')
    )
    assert float(score.split()[-1]) > 1.5  # two standard deviations
