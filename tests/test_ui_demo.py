"""The web UI on what ``keel demo`` logs: its runs, models, datasets and reports, page by page."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import keel
from keel.demo import (
    EXPERIMENT_NAME,
    PARENT_RUN_NAME,
    PROMOTION_ALIAS,
    REGISTERED_MODEL_NAME,
    DemoResult,
    run_demo,
)
from keel.store import open_store
from ui_support import ui_client

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoResult, Any]]:
    where = tmp_path_factory.mktemp("demo")
    cwd = Path.cwd()
    os.chdir(where)  # the prediction log lands beside the database
    try:
        result = run_demo(str(where / "keel.db"), quick=True, verify=False)
    finally:
        keel.set_tracking_uri(None)
        os.chdir(cwd)
    store = open_store(f"sqlite:///{where / 'keel.db'}")
    with ui_client(store) as client:
        yield result, client


def _json(client: httpx.Client, url: str, **params: Any) -> Any:
    response = client.get(url, params={**params, "format": "json"})
    assert response.status_code == 200, response.text
    return response.json()


def test_experiments_and_runs_table(demo: tuple[DemoResult, Any]) -> None:
    result, client = demo
    listed = {e["name"]: e for e in _json(client, "/")["experiments"]}
    assert listed[EXPERIMENT_NAME]["runs"] == len(result.runs) + 1
    table = _json(client, f"/experiments/{result.experiment_id}", sort="metrics.accuracy")
    names = [r["run_name"] for r in table["runs"]]
    assert names[0] == result.best_run.info.run_name and PARENT_RUN_NAME in names
    assert "metrics.accuracy" in [c["id"] for c in table["columns"]]


def test_run_page_of_the_best_run(demo: tuple[DemoResult, Any]) -> None:
    result, client = demo
    best = result.best_run.info.run_id
    page = client.get(f"/runs/{best}")
    assert page.status_code == 200
    assert result.best_run.info.run_name in page.text and "accuracy" in page.text
    artifacts = client.get(f"/runs/{best}", params={"tab": "artifacts"})
    assert "confusion_matrix.png" in artifacts.text and "report.json" in artifacts.text


def test_registry_pages(demo: tuple[DemoResult, Any]) -> None:
    result, client = demo
    registration = result.registration
    assert registration is not None
    models = {m["name"]: m for m in _json(client, "/models")["models"]}
    aliases = {a["alias"]: a["version"] for a in models[REGISTERED_MODEL_NAME]["aliases"]}
    assert str(aliases[PROMOTION_ALIAS]) == str(registration.version)
    version = _json(client, f"/models/{REGISTERED_MODEL_NAME}/versions/{registration.version}")
    assert version["lineage"]["datasets"], version["lineage"]
    commands = [s["command"] for s in version["serve"]]
    assert f"keel serve models:/{REGISTERED_MODEL_NAME}@{PROMOTION_ALIAS}" in commands


def test_data_page_lists_the_dataset_and_every_report(demo: tuple[DemoResult, Any]) -> None:
    result, client = demo
    data = _json(client, "/data")
    names = {d["name"] for d in data["datasets"]}
    assert any("breast_cancer" in n for n in names), names
    reports = {r["run_id"]: r for r in data["reports"]}
    parent = reports[result.parent_run_id]
    assert parent["validation"] in ("passed", "failed") and parent["drift"] == "drift"
    monitored = [m for m in data["monitoring"] if m["run_id"] == result.parent_run_id]
    assert monitored and monitored[0]["monitor"] == "drift"
    dataset = data["datasets"][0]
    page = client.get(dataset["url"])
    assert page.status_code == 200 and dataset["digest"] in page.text
