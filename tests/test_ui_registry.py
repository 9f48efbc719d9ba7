"""Registry pages over a real SQLite store and a live server: models, versions, lineage, aliases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import keel
from keel.entities import Dataset, DatasetInput, InputTag, Param, RunTag
from keel.server.ui import security
from keel.store import open_store
from keel.store.base import TrackingStore, now_ms
from keel.store.registry import RegistryStore
from keel.store.sql.registry import SqlRegistryStore
from ui_support import fragment, ui_client

EVIL = "<script>alert(1)</script>"
EVIL_NAME = "<img src=x onerror=alert(1)>"  # model names cannot hold "/"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def ui_store(tmp_path: Path) -> Iterator[TrackingStore]:
    store = open_store(f"sqlite:///{tmp_path / 'ui.db'}", str(tmp_path / "artifacts"))
    yield store
    store.close()


@pytest.fixture
def registry(ui_store: TrackingStore) -> RegistryStore:
    return SqlRegistryStore.from_tracking_store(ui_store)


def _trained_run(store: TrackingStore) -> str:
    """A run with a dataset input, a param, a metric and a git commit: what lineage follows."""
    exp = store.create_experiment("churn-exp")
    run = store.create_run(exp, "ann", now_ms(), [], "forest-1")
    run_id = str(run.info.run_id)
    store.log_batch(
        run_id,
        params=[Param("n_estimators", "200")],
        tags=[
            RunTag("mlflow.source.git.commit", COMMIT),
            RunTag("keel.source.git.dirty", "true"),
        ],
    )
    dataset = Dataset(
        name="customers",
        digest="feedc0de" * 8,
        source="s3://bucket/customers.parquet",
        source_type="s3",
        schema='{"mlflow_colspec": [{"type": "long", "name": "age", "required": true}]}',
        profile='{"num_rows": 10, "num_elements": 10}',
    )
    store.log_inputs(
        run_id, [DatasetInput(dataset, (InputTag("mlflow.data.context", "training"),))]
    )
    return run_id


def _csrf(client: httpx.Client) -> str:
    client.get("/models")
    return client.cookies[security.CSRF_COOKIE]


def test_models_list_shows_aliases_inline_and_searches_by_name(
    ui_store: TrackingStore, registry: RegistryStore
) -> None:
    registry.create_registered_model("churn", tags={"team": "growth"}, description="Who leaves.")
    for _ in range(3):
        registry.create_model_version("churn", "runs:/r/model")
    registry.set_registered_model_alias("churn", "champion", 2)
    registry.set_registered_model_alias("churn", "challenger", 3)
    registry.create_registered_model("fraud")
    with ui_client(ui_store) as client:
        page = client.get("/models")
        assert page.status_code == 200
        assert "@champion → v2" in page.text and "@challenger → v3" in page.text
        assert "team=growth" in page.text and "Who leaves." in page.text
        twin = client.get("/models", params={"format": "json"}).json()
        churn = next(m for m in twin["models"] if m["name"] == "churn")
        assert churn["latest_version"] == 3
        assert churn["aliases"] == [
            {"alias": "challenger", "version": 3},
            {"alias": "champion", "version": 2},
        ]
        found = client.get("/models", params={"q": "RAU", "format": "json"}).json()
        assert [m["name"] for m in found["models"]] == ["fraud"] and found["total"] == 1
        part = fragment(client, "/models", q="churn")
        assert "<header" not in part.text and ">churn</a>" in part.text and "fraud" not in part.text


def test_models_list_pages_in_the_url(ui_store: TrackingStore, registry: RegistryStore) -> None:
    for i in range(30):
        registry.create_registered_model(f"model-{i:02d}")
    with ui_client(ui_store) as client:
        first = client.get("/models", params={"format": "json"}).json()
        second = client.get("/models", params={"page": 2, "format": "json"}).json()
        assert len(first["models"]) == 25 and first["has_next"] is True
        assert [m["name"] for m in second["models"]] == [f"model-{i}" for i in range(25, 30)]
        assert second["has_next"] is False
        assert 'href="?page=2"' in client.get("/models").text


def test_model_page_lists_versions_newest_first_with_aliases(
    ui_store: TrackingStore, registry: RegistryStore
) -> None:
    run_id = _trained_run(ui_store)
    registry.create_registered_model("churn")
    registry.create_model_version("churn", "runs:/x/model", run_id=run_id, tags={"k": "v"})
    registry.create_model_version("churn", "runs:/x/model")
    registry.set_registered_model_alias("churn", "champion", 1)
    with ui_client(ui_store) as client:
        twin = client.get("/models/churn", params={"format": "json"}).json()
        assert [v["version"] for v in twin["versions"]] == [2, 1]
        assert twin["versions"][1]["aliases"] == ["champion"]
        assert twin["versions"][1]["run_id"] == run_id
        page = client.get("/models/churn").text
        row = page[page.index('href="/models/churn/versions/1"') :]
        assert row.index("@champion") < row.index("</tr>")
        assert f'href="/runs/{run_id}"' in page and "k=v" in page


def test_version_page_shows_the_lineage_chain_and_serve_commands(
    ui_store: TrackingStore, registry: RegistryStore, tmp_path: Path
) -> None:
    run_id = _trained_run(ui_store)
    # The search's parent run holds the data checks (as keel demo logs them).
    parent_id = ui_store.create_run(
        ui_store.get_run(run_id).info.experiment_id, "ann", now_ms(), [], "search"
    ).info.run_id
    ui_store.set_tag(run_id, RunTag("mlflow.parentRunId", parent_id))
    api = keel.Client(f"sqlite:///{tmp_path / 'ui.db'}")
    api.log_text(parent_id, "{}", "data/drift.json")
    api.log_text(parent_id, "<p>drift</p>", "data/drift.html")
    api.set_tag(parent_id, "keel.drift.status", "drift")
    api.set_tag(parent_id, "keel.drift.columns", "age")
    registry.create_registered_model("churn")
    registry.create_model_version("churn", f"runs:/{run_id}/model", run_id=run_id)
    registry.set_registered_model_alias("churn", "champion", 1)
    with ui_client(ui_store) as client:
        twin = client.get("/models/churn/versions/1", params={"format": "json"}).json()
        lineage = twin["lineage"]
        assert lineage["run"]["run_id"] == run_id
        assert lineage["run"]["params"] == {"n_estimators": "200"}
        (ds,) = lineage["datasets"]
        assert ds["name"] == "customers" and ds["context"] == "training"
        assert ds["url"].startswith("/data/dataset?experiment_id=")
        assert lineage["code"]["git_commit"] == COMMIT and lineage["code"]["git_dirty"] is True
        assert [s["command"] for s in twin["serve"]] == [
            "keel serve models:/churn/1",
            "keel serve models:/churn@champion",
        ]
        assert {"name": "drift", "ok": False, "detail": "drift in age"} in twin["checks"]
        assert [r["path"] for r in twin["reports"]] == ["data/drift"]
        page = client.get("/models/churn/versions/1").text
        assert COMMIT in page and "dirty" in page and "n_estimators=200" in page
        assert f"/runs/{parent_id}/artifacts/raw?path=data%2Fdrift.html" in page
        assert f"Keel {keel.__version__}" in page  # the page's data does not shadow the footer
        assert 'href="/data/dataset?experiment_id=' in page and "customers" in page
        assert 'data-copy="keel serve models:/churn@champion"' in page
        # the dataset link leads to the dataset's own page
        dataset = client.get(ds["url"] + "&format=json")
        assert dataset.status_code == 200 and dataset.json()["dataset"]["digest"] == ds["digest"]


def test_version_page_with_a_real_package_shows_environment_and_checks(
    tracking: Path,
) -> None:
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    with keel.start_run():
        keel.sklearn.log_model(
            LogisticRegression().fit(x, y),
            "model",
            input_example=x[:3],
            onnx=False,
            registered_model_name="churn",
        )
    keel.Client().set_promotion_gates("churn", "production", ["metrics.f1 >= 0.9"])
    store = open_store(f"sqlite:///{tracking / 'keel.db'}", str(tracking / "artifacts"))
    with ui_client(store) as client:
        twin = client.get("/models/churn/versions/1", params={"format": "json"}).json()
        assert "scikit-learn" in {p["name"] for p in twin["environment"]["packages"]}
        assert {c["name"]: c["ok"] for c in twin["checks"]}["integrity"] is True
        assert twin["gates"] == [
            {"alias": "production", "gates": ["metrics.f1 >= 0.9"], "result": None}
        ]
        # moving the gated alias runs the gate: the run has no f1, so it is refused
        token = client.cookies[security.CSRF_COOKIE]
        refused = client.post(
            "/models/churn/aliases",
            json={"alias": "production", "version": "1"},
            headers={"X-Keel-CSRF": token},
        )
        assert refused.status_code == 400
        assert "gate(s) failed" in refused.json()["error"]["message"]
        assert refused.json()["error"]["report"]["status"] == "failed"
        page = client.get("/models/churn/versions/1").text
        assert "scikit-learn==" in page and "metrics.f1 &gt;= 0.9" in page
        assert "@production" in page and ">failed<" in page  # the recorded report


def test_alias_moves_with_json_and_the_csrf_token(
    ui_store: TrackingStore, registry: RegistryStore
) -> None:
    registry.create_registered_model("churn")
    registry.create_model_version("churn", "runs:/x/model")
    registry.create_model_version("churn", "runs:/x/model")
    registry.set_registered_model_alias("churn", "champion", 1)
    with ui_client(ui_store) as client:
        token = _csrf(client)
        page = client.get("/models/churn/versions/2").text
        assert f'<meta name="keel-csrf" content="{token}">' in page
        moved = client.post(
            "/models/churn/aliases",
            json={"alias": "champion", "version": "2"},
            headers={"X-Keel-CSRF": token},
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["version"] == 2
        assert registry.get_registered_model("churn").aliases == {"champion": 2}
        removed = client.request(
            "DELETE",
            "/models/churn/aliases/champion",
            content=b"{}",
            headers={"X-Keel-CSRF": token, "Content-Type": "application/json"},
        )
        assert removed.status_code == 200 and removed.json()["deleted"] is True
        assert registry.get_registered_model("churn").aliases == {}


def test_alias_changes_are_refused_without_the_token_or_as_a_form(
    ui_store: TrackingStore, registry: RegistryStore
) -> None:
    registry.create_registered_model("churn")
    registry.create_model_version("churn", "runs:/x/model")
    with ui_client(ui_store) as client:
        token = _csrf(client)
        no_header = client.post("/models/churn/aliases", json={"alias": "a", "version": "1"})
        assert no_header.status_code == 403
        as_form = client.post(
            "/models/churn/aliases",
            data={"alias": "a", "version": "1"},
            headers={"X-Keel-CSRF": token},
        )
        assert as_form.status_code == 415
        assert registry.get_registered_model("churn").aliases == {}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"alias": "bad alias!", "version": "1"}, 400, "may only contain"),
        ({"alias": "latest", "version": "1"}, 400, "reserved"),
        ({"alias": "ok", "version": "seven"}, 400, "must be a number"),
        ({"alias": "ok", "version": "9"}, 404, "9"),
        (["not", "an", "object"], 400, "as JSON"),
    ],
)
def test_bad_alias_requests_say_why_and_never_500(
    ui_store: TrackingStore, registry: RegistryStore, body: object, status: int, words: str
) -> None:
    registry.create_registered_model("churn")
    registry.create_model_version("churn", "runs:/x/model")
    with ui_client(ui_store) as client:
        token = _csrf(client)
        answer = client.post(
            "/models/churn/aliases",
            content=json.dumps(body).encode(),
            headers={"X-Keel-CSRF": token, "Content-Type": "application/json"},
        )
        assert answer.status_code == status, answer.text
        assert words in answer.json()["error"]["message"]
        broken = client.post(
            "/models/churn/aliases",
            content=b"{not json",
            headers={"X-Keel-CSRF": token, "Content-Type": "application/json"},
        )
        assert broken.status_code == 400 and "not JSON" in broken.json()["error"]["message"]


def test_unknown_model_and_version_are_404_pages(
    ui_store: TrackingStore, registry: RegistryStore
) -> None:
    registry.create_registered_model("churn")
    with ui_client(ui_store) as client:
        for url in ("/models/nope", "/models/churn/versions/3", "/models/churn/versions/x"):
            page = client.get(url, headers={"Accept": "text/html"})
            assert page.status_code == 404, url
            assert "<header" in page.text and 'role="alert"' in page.text
        assert (
            client.get("/models/nope", params={"format": "json"}).json()["error"]["status"] == 404
        )


def test_user_text_is_escaped_on_registry_pages(
    ui_store: TrackingStore, registry: RegistryStore
) -> None:
    name = EVIL_NAME
    registry.create_registered_model(name, tags={"owner": EVIL}, description=EVIL)
    registry.create_model_version(name, "runs:/x/model", tags={"note": EVIL}, description=EVIL)
    registry.set_registered_model_alias(name, "champion", 1)
    with ui_client(ui_store) as client:
        model_url = "/models/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"
        for url in ("/models", model_url, model_url + "/versions/1"):
            for text in (client.get(url).text, fragment(client, url).text):
                assert EVIL not in text and EVIL_NAME not in text, url
                assert "&lt;img src=x onerror=alert(1)&gt;" in text, url
                if url != "/models":
                    assert ESCAPED in text, url
        assert f'href="{model_url}"' in client.get("/models").text


def test_a_remote_package_is_noted_not_downloaded_for_the_page(
    ui_store: TrackingStore, registry: RegistryStore
) -> None:
    pytest.importorskip("boto3")
    registry.create_registered_model("churn")
    # No S3 server answers here: fetching the package would fail or hang, noting it does not.
    registry.create_model_version("churn", "s3://keel-nowhere/models/churn")
    with ui_client(ui_store) as client:
        twin = client.get("/models/churn/versions/1", params={"format": "json"})
        assert twin.status_code == 200
        notes = " ".join(twin.json()["lineage"]["notes"])
        assert "stored remotely" in notes and "registered from a path" in notes
