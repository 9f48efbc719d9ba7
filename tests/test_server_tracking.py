"""The server speaks MLflow's tracking REST API: the unmodified mlflow client, and raw HTTP.

A real uvicorn server on 127.0.0.1 (ephemeral port) over a real SQLite file;
the client is mlflow-skinny's ``MlflowClient`` and fluent API, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
mlflow = pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric as MlflowMetric  # noqa: E402
from mlflow.entities import Param as MlflowParam  # noqa: E402
from mlflow.entities import RunTag as MlflowRunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from keel.server import create_app  # noqa: E402
from keel.store.sql.store import SqlTrackingStore  # noqa: E402
from live_server import serve  # noqa: E402


@pytest.fixture
def server_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a 5xx must fail the test
    store = SqlTrackingStore(f"sqlite:///{tmp_path / 'server.db'}", str(tmp_path / "artifacts"))
    try:
        with serve(create_app(store, max_body_bytes=64 * 1024)) as url:
            yield url
    finally:
        store.close()


def test_mlflow_client_experiments_runs_metrics_params_tags(server_url: str) -> None:
    c = MlflowClient(tracking_uri=server_url)
    exp_id = c.create_experiment("wire", tags={"team": "risk"})
    assert c.get_experiment(exp_id).tags == {"team": "risk"}
    assert c.get_experiment_by_name("wire").experiment_id == exp_id
    assert c.get_experiment_by_name("nope") is None
    run = c.create_run(exp_id, run_name="first", tags={"src": "test"})
    run_id = run.info.run_id
    c.log_param(run_id, "lr", "0.01")
    c.log_metric(run_id, "loss", 0.5, step=1)
    c.log_metric(run_id, "loss", float("nan"), step=2)
    c.set_tag(run_id, "stage", "dev")
    c.log_batch(
        run_id,
        metrics=[MlflowMetric("acc", v / 10, 1000 + v, v) for v in range(5)],
        params=[MlflowParam("depth", "3")],
        tags=[MlflowRunTag("note", "batch")],
    )
    got = c.get_run(run_id)
    assert got.info.run_name == "first"
    assert got.data.params == {"lr": "0.01", "depth": "3"}
    assert got.data.metrics["acc"] == 0.4
    assert math.isnan(got.data.metrics["loss"])
    assert {("src", "test"), ("stage", "dev"), ("note", "batch")} <= set(got.data.tags.items())
    history = c.get_metric_history(run_id, "acc")
    assert [(m.step, m.value) for m in history] == [(v, v / 10) for v in range(5)]
    c.set_terminated(run_id, "FINISHED")
    assert c.get_run(run_id).info.status == "FINISHED"
    found = c.search_runs([exp_id], "metrics.acc > 0.3 and params.depth = '3'")
    assert [r.info.run_id for r in found] == [run_id]
    c.delete_run(run_id)
    assert c.search_runs([exp_id]) == []
    c.restore_run(run_id)
    c.delete_tag(run_id, "stage")
    assert "stage" not in c.get_run(run_id).data.tags
    c.rename_experiment(exp_id, "wire-renamed")
    assert [e.name for e in c.search_experiments(filter_string="name LIKE 'wire%'")] == [
        "wire-renamed"
    ]


def test_mlflow_client_errors_carry_mlflow_codes(server_url: str) -> None:
    c = MlflowClient(tracking_uri=server_url)
    exp_id = c.create_experiment("errors")
    with pytest.raises(MlflowException) as missing:
        c.get_run("f" * 32)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as exists:
        c.create_experiment("errors")
    assert exists.value.error_code == "RESOURCE_ALREADY_EXISTS"
    run_id = c.create_run(exp_id).info.run_id
    c.log_param(run_id, "lr", "0.1")
    with pytest.raises(MlflowException) as changed:
        c.log_param(run_id, "lr", "0.2")
    assert changed.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "0.1" in changed.value.message and "0.2" in changed.value.message


def test_mlflow_fluent_api_logs_to_keel(server_url: str, tmp_path: Path) -> None:
    mlflow.set_tracking_uri(server_url)
    try:
        mlflow.set_experiment("fluent")
        with mlflow.start_run(run_name="parent") as parent:
            mlflow.log_params({"a": 1, "b": "x"})
            mlflow.log_metrics({"m": 1.5})
            with mlflow.start_run(run_name="child", nested=True):
                mlflow.log_metric("m", 2.5)
        runs = mlflow.search_runs(experiment_names=["fluent"], output_format="list")
        assert {r.info.run_name for r in runs} == {"parent", "child"}
        child = next(r for r in runs if r.info.run_name == "child")
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert all(r.info.status == "FINISHED" for r in runs)
    finally:
        mlflow.set_tracking_uri(None)


def test_keel_answers_are_json_and_never_5xx_for_client_mistakes(server_url: str) -> None:
    api = f"{server_url}/api/2.0/mlflow"
    with httpx.Client(timeout=10) as http:
        unknown = http.get(f"{api}/does/not/exist")
        assert unknown.status_code == 404
        assert unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"
        wrong_verb = http.post(f"{api}/runs/get", json={})
        assert wrong_verb.status_code == 405 and "error_code" in wrong_verb.json()
        text = http.post(
            f"{api}/experiments/create",
            content=b'{"name": "x"}',
            headers={"content-type": "text/plain"},
        )
        assert text.status_code == 400 and "Content-Type" in text.json()["message"]
        broken = http.post(
            f"{api}/experiments/create",
            content=b'{"name": ',
            headers={"content-type": "application/json"},
        )
        assert (
            broken.status_code == 400 and broken.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        )
        huge = http.post(f"{api}/experiments/create", json={"name": "x" * 100_000})
        assert huge.status_code == 413
        bad_id = http.get(f"{api}/experiments/get", params={"experiment_id": "abc"})
        assert bad_id.status_code == 400 and "valid integer" in bad_id.json()["message"]
        missing = http.post(f"{api}/runs/log-metric", json={"run_id": "x", "key": "k"})
        assert missing.status_code == 400 and "'value'" in missing.json()["message"]
        typed = http.post(
            f"{api}/runs/log-metric",
            json={"run_id": "x", "key": "k", "value": 1, "timestamp": 1, "step": "abc"},
        )
        assert typed.status_code == 400 and "'step'" in typed.json()["message"]
        exp = http.post(f"{api}/experiments/create", json={"name": "raw"}).json()
        run = http.post(
            f"{api}/runs/create", json={"experiment_id": exp["experiment_id"], "start_time": "5"}
        ).json()["run"]
        assert run["info"]["start_time"] == 5  # int64 accepted as a string
        logged = http.post(
            f"{api}/runs/log-metric",
            json={
                "run_id": run["info"]["run_id"],
                "key": "inf",
                "value": "Infinity",
                "timestamp": 1,
            },
        )
        assert logged.status_code == 200 and logged.json() == {}
        again = http.get(f"{api}/runs/get", params={"run_uuid": run["info"]["run_id"]}).json()
        assert again["run"]["data"]["metrics"][0]["value"] == "Infinity"
        info = http.get(f"{server_url}/api/3.0/mlflow/server-info").json()
        assert info["multipart_uploads_enabled"] is False  # the client then uses plain PUT/GET
        spec = http.get(f"{server_url}/openapi.json").json()
        assert "/api/2.0/mlflow/runs/log-batch" in spec["paths"]
        assert "/ajax-api/2.0/mlflow/runs/log-batch" not in spec["paths"]
