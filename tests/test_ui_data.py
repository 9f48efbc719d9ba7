"""Data pages over a real SQLite store and a live server: datasets, profiles, reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import keel
from keel.entities import CONTEXT_TAG, DatasetInput, InputTag, RunTag
from keel.store import open_store
from keel.store.base import TrackingStore, now_ms
from ui_support import fragment, ui_client

pd = pytest.importorskip("pandas")
keel_data = pytest.importorskip("keel.data")

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ui.db'}"


@pytest.fixture
def ui_store(db: str, tmp_path: Path) -> Iterator[TrackingStore]:
    store = open_store(db, str(tmp_path / "artifacts"))
    yield store
    store.close()


def _frame(scale: float = 1.0) -> Any:
    return pd.DataFrame(
        {
            "age": [31.0 * scale, 45.0 * scale, 27.0 * scale, None, 52.0 * scale, 38.0 * scale],
            "plan": ["basic", "pro", "basic", "pro", "basic", "team"],
        }
    )


def _run(store: TrackingStore, experiment: str, name: str) -> str:
    exp = store.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else store.create_experiment(experiment)
    return str(store.create_run(exp_id, "ann", now_ms(), [], name).info.run_id)


def _log_profiled(store: TrackingStore, run_id: str, df: Any, name: str, context: str) -> Any:
    """Log ``df`` as a run input whose profile is a Keel profile (not just row counts)."""
    ds = keel_data.from_pandas(df, name=name, source="warehouse://customers")
    entity = dataclasses.replace(ds.to_entity(), profile=keel_data.profile(df).to_json())
    store.log_inputs(run_id, [DatasetInput(entity, (InputTag(CONTEXT_TAG, context),))])
    return ds


def test_datasets_list_counts_runs_and_searches(ui_store: TrackingStore) -> None:
    df = _frame()
    first = _run(ui_store, "churn", "train-1")
    second = _run(ui_store, "churn", "train-2")
    ds = _log_profiled(ui_store, first, df, "customers", "training")
    _log_profiled(ui_store, second, df, "customers", "eval")
    other = keel_data.from_pandas(pd.DataFrame({"x": [1, 2, 3]}), name="clicks")
    ui_store.log_inputs(_run(ui_store, "ads", "ctr"), [DatasetInput(other.to_entity())])
    with ui_client(ui_store) as client:
        twin = client.get("/data", params={"format": "json"}).json()
        rows = {d["name"]: d for d in twin["datasets"]}
        assert set(rows) == {"customers", "clicks"} and twin["datasets_total"] == 2
        customers = rows["customers"]
        assert customers["runs"] == 2 and customers["digest"] == ds.digest
        assert (customers["rows"], customers["columns"]) == (6, 2)
        assert customers["experiment"] == "churn"
        assert (rows["clicks"]["rows"], rows["clicks"]["columns"]) == (3, 1)
        page = client.get("/data").text
        assert f'href="{customers["url"].replace("&", "&amp;")}"' in page
        assert f">{ds.digest[:12]}</code>" in page
        found = client.get("/data", params={"q": "CLICK", "format": "json"}).json()
        assert [d["name"] for d in found["datasets"]] == ["clicks"]
        by_digest = client.get("/data", params={"q": ds.digest[:10], "format": "json"}).json()
        assert [d["name"] for d in by_digest["datasets"]] == ["customers"]
        assert "customers" not in fragment(client, "/data", q="clicks").text


def test_dataset_page_shows_schema_keel_profile_and_runs(ui_store: TrackingStore) -> None:
    df = _frame()
    run_id = _run(ui_store, "churn", "train-1")
    ds = _log_profiled(ui_store, run_id, df, "customers", "training")
    exp_id = ui_store.get_run(run_id).info.experiment_id
    params = {"experiment_id": exp_id, "name": "customers", "digest": ds.digest}
    with ui_client(ui_store) as client:
        twin = client.get("/data/dataset", params={**params, "format": "json"}).json()
        assert twin["dataset"]["digest"] == ds.digest
        assert twin["dataset"]["source"] == "warehouse://customers"
        assert twin["schema"] == [
            {"name": "age", "type": "double"},
            {"name": "plan", "type": "string"},
        ]
        profile = twin["profile"]
        assert profile["kind"] == "keel-stats" and profile["rows"] == 6
        age = {c["name"]: c for c in profile["columns"]}["age"]
        assert (age["count"], age["nulls"], age["min"], age["max"]) == (6, 1, 27.0, 52.0)
        assert age["mean"] == pytest.approx(df["age"].mean())
        assert twin["runs"] == [
            {
                "run_id": run_id,
                "run_name": "train-1",
                "status": "RUNNING",
                "start_time": twin["runs"][0]["start_time"],
                "lifecycle_stage": "active",
                "context": "training",
            }
        ]
        page = client.get("/data/dataset", params=params).text
        assert ds.digest in page and f'href="/runs/{run_id}"' in page
        assert '<iframe class="artifact" sandbox src="/data/dataset/profile.html?' in page
        assert 'aria-label="Column statistics"' in page

        html = client.get("/data/dataset/profile.html", params=params)
        assert html.status_code == 200
        assert html.headers["content-security-policy"] == "sandbox"
        assert html.headers["content-type"].startswith("text/html")
        assert "age" in html.text and "plan" in html.text


def test_a_counts_only_profile_and_unknown_datasets(ui_store: TrackingStore) -> None:
    run_id = _run(ui_store, "churn", "train-1")
    ds = keel_data.from_pandas(pd.DataFrame({"x": [1, 2]}), name="plain")
    ui_store.log_inputs(run_id, [DatasetInput(ds.to_entity())])
    exp_id = ui_store.get_run(run_id).info.experiment_id
    params = {"experiment_id": exp_id, "name": "plain", "digest": ds.digest}
    with ui_client(ui_store) as client:
        twin = client.get("/data/dataset", params={**params, "format": "json"}).json()
        assert twin["profile"]["kind"] == "counts" and twin["profile_html"] is None
        # MLflow's counts are no Keel profile: nothing to draw
        assert client.get("/data/dataset/profile.html", params=params).status_code == 404
        missing = client.get("/data/dataset", params={**params, "digest": "0" * 64})
        assert missing.status_code == 404
        no_exp = client.get("/data/dataset", params={**params, "experiment_id": "x1"})
        assert no_exp.status_code == 404
        assert client.get("/data/dataset", params={"name": "plain"}).status_code == 400


def test_reports_list_links_logged_drift_and_validation_reports(
    ui_store: TrackingStore, db: str
) -> None:
    reference, current = _frame(), _frame(scale=3.0)
    run_id = _run(ui_store, "churn", "checks")
    quiet = _run(ui_store, "churn", "no-reports")
    client_api = keel.Client(db)
    report = keel_data.drift(reference, current)
    assert report.drifted  # tripling ages moves their distribution
    client_api.log_report(run_id, report, "data/drift")
    client_api.log_report(run_id, keel_data.suite_from(reference).validate(current), "data/check")
    with ui_client(ui_store) as client:
        twin = client.get("/data", params={"format": "json"}).json()
        (row,) = twin["reports"]
        assert row["run_id"] == run_id and row["run_id"] != quiet
        assert row["drift"] == "drift" and "age" in row["drift_columns"]
        assert row["validation"] in ("passed", "failed")
        assert [f["path"] for f in row["files"]] == ["data/check", "data/drift"]
        drift = row["files"][1]
        assert drift["view"] == f"/runs/{run_id}?tab=artifacts&path=data%2Fdrift.html"
        assert drift["html"] == f"/runs/{run_id}/artifacts/raw?path=data%2Fdrift.html"
        raw = client.get(drift["html"])  # the run page's raw artifact view serves it sandboxed
        assert raw.status_code == 200 and "sandbox" in raw.headers["content-security-policy"]
        assert "age" in raw.text
        page = client.get("/data").text
        assert 'aria-label="Reports"' in page and f'href="/runs/{run_id}"' in page
        assert "/artifacts/raw?path=data%2Fdrift.html" in page
        # a filter narrows the runs, and a broken one says why on the page
        none = client.get(
            "/data", params={"filter": "tags.\"keel.drift.status\" = 'none'", "format": "json"}
        ).json()
        assert none["reports"] == []
        broken = client.get("/data", params={"filter": "metrics.x >>> 1"})
        assert broken.status_code == 200 and 'role="alert"' in broken.text


def test_monitoring_reports_logged_to_a_run_are_listed(ui_store: TrackingStore, db: str) -> None:
    run_id = _run(ui_store, "serving", "monitor")
    api = keel.Client(db)
    api.log_text(run_id, '{"drifted": true}', "monitoring/monitor.json")
    api.log_text(run_id, "<html><body>monitor</body></html>", "monitoring/monitor.html")
    api.set_tag(run_id, "keel.monitor.status", "drift")
    api.set_tag(run_id, "keel.monitor.model_uri", "models:/churn@production")
    api.set_tag(run_id, "keel.monitor.columns", "age,plan")
    with ui_client(ui_store) as client:
        twin = client.get("/data", params={"format": "json"}).json()
        (row,) = twin["monitoring"]
        assert row["monitor"] == "drift" and row["monitor_model"] == "models:/churn@production"
        assert [f["path"] for f in row["files"]] == ["monitoring/monitor"]
        assert row["monitor_columns"] == ["age", "plan"]
        assert twin["reports"] == []
        assert "models:/churn@production" in client.get("/data").text


def test_datasets_page_in_pages_and_escaped(ui_store: TrackingStore) -> None:
    run_id = _run(ui_store, EVIL, "r")
    for i in range(27):
        ds = keel_data.from_pandas(pd.DataFrame({"x": [i]}), name=f"set-{i:02d}")
        ui_store.log_inputs(run_id, [DatasetInput(ds.to_entity())])
    ui_store.set_tag(run_id, RunTag("keel.drift.status", EVIL))
    with ui_client(ui_store) as client:
        first = client.get("/data", params={"format": "json"}).json()
        second = client.get("/data", params={"page": 2, "format": "json"}).json()
        assert len(first["datasets"]) == 25 and first["has_next"] is True
        assert len(second["datasets"]) == 2 and second["has_next"] is False
        names = {d["name"] for d in first["datasets"] + second["datasets"]}
        assert names == {f"set-{i:02d}" for i in range(27)}
        for text in (client.get("/data").text, fragment(client, "/data").text):
            assert EVIL not in text and ESCAPED in text
