"""The server speaks MLflow's model-registry REST API: the unmodified mlflow client, and raw HTTP.

A real uvicorn server on 127.0.0.1 (ephemeral port) over a real SQLite file;
the client is mlflow-skinny's ``MlflowClient`` and fluent API, unchanged.
Promotion gates are declared with Keel's own client on the same database and
must hold for requests that arrive over REST.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
mlflow = pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

import keel  # noqa: E402
from keel.registry.gates import dump_gates, parse_gates  # noqa: E402
from keel.server import create_app  # noqa: E402
from keel.store.sql.store import SqlTrackingStore  # noqa: E402
from live_server import serve  # noqa: E402

PROMPT_TAG = "mlflow.prompt.is_prompt"
# The client warns that stages are deprecated (transition_model_version_stage,
# get_latest_versions); Keel serves them for the scripts that still use them.
pytestmark = pytest.mark.filterwarnings("ignore:.*is deprecated since 2.9.0:FutureWarning")


@dataclass
class Server:
    url: str
    db_uri: str
    app: Any

    @property
    def api(self) -> str:
        return f"{self.url}/api/2.0/mlflow"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a 5xx must fail the test
    db_uri = f"sqlite:///{tmp_path / 'server.db'}"
    store = SqlTrackingStore(db_uri, str(tmp_path / "artifacts"))
    app = create_app(store)
    try:
        with serve(app) as url:
            yield Server(url, db_uri, app)
    finally:
        store.close()


@pytest.fixture
def client(server: Server) -> MlflowClient:
    return MlflowClient(tracking_uri=server.url, registry_uri=server.url)


def _run(c: MlflowClient, experiment: str = "reg", **metrics: float) -> str:
    found = c.get_experiment_by_name(experiment)
    exp_id = found.experiment_id if found else c.create_experiment(experiment)
    run_id: str = c.create_run(exp_id).info.run_id
    for key, value in metrics.items():
        c.log_metric(run_id, key, value)
    return run_id


def _error(call: Any, *args: Any, **kwargs: Any) -> MlflowException:
    with pytest.raises(MlflowException) as caught:
        call(*args, **kwargs)
    return caught.value


# -- the mlflow client -----------------------------------------------------------


def test_mlflow_client_registered_models_versions_tags(client: MlflowClient) -> None:
    c = client
    created = c.create_registered_model("clf", tags={"team": "risk"}, description="first")
    assert created.name == "clf" and created.tags == {"team": "risk"}
    assert _error(c.create_registered_model, "clf").error_code == "RESOURCE_ALREADY_EXISTS"
    run_id = _run(c)
    v1 = c.create_model_version("clf", f"runs:/{run_id}/model", run_id=run_id, tags={"k": "v"})
    assert (str(v1.version), v1.run_id, v1.status, v1.current_stage) == (
        "1",
        run_id,
        "READY",
        "None",
    )
    assert v1.tags == {"k": "v"}
    v2 = c.create_model_version("clf", f"runs:/{run_id}/model", run_id=run_id)
    assert str(v2.version) == "2"

    got = c.get_registered_model("clf")
    assert (got.description, got.tags) == ("first", {"team": "risk"})
    assert [str(v.version) for v in got.latest_versions] == ["2"]  # newest per stage
    c.update_registered_model("clf", description="second")
    c.set_registered_model_tag("clf", "owner", "ml")
    c.delete_registered_model_tag("clf", "team")
    got = c.get_registered_model("clf")
    assert (got.description, got.tags) == ("second", {"owner": "ml"})

    c.update_model_version("clf", "1", description="v1 notes")
    c.set_model_version_tag("clf", "1", "validated", "yes")
    c.delete_model_version_tag("clf", "1", "k")
    mv = c.get_model_version("clf", "1")
    assert (mv.description, mv.tags) == ("v1 notes", {"validated": "yes"})
    run_root = c.get_run(run_id).info.artifact_uri
    assert c.get_model_version_download_uri("clf", "1") == f"{run_root}/model"

    c.rename_registered_model("clf", "clf2")
    assert c.get_registered_model("clf2").description == "second"
    assert {v.name for v in c.search_model_versions("name = 'clf2'")} == {"clf2"}
    c.delete_model_version("clf2", "1")
    assert _error(c.get_model_version, "clf2", "1").error_code == "RESOURCE_DOES_NOT_EXIST"
    c.delete_registered_model("clf2")
    assert _error(c.get_registered_model, "clf2").error_code == "RESOURCE_DOES_NOT_EXIST"


def test_mlflow_client_aliases_and_stages(client: MlflowClient) -> None:
    c = client
    c.create_registered_model("clf")
    run_id = _run(c)
    for _ in range(3):
        c.create_model_version("clf", f"runs:/{run_id}/model", run_id=run_id)

    c.set_registered_model_alias("clf", "champion", "1")
    c.set_registered_model_alias("clf", "challenger", 2)
    assert c.get_registered_model("clf").aliases == {"champion": "1", "challenger": "2"}
    c.set_registered_model_alias("clf", "champion", "3")  # moves
    by_alias = c.get_model_version_by_alias("clf", "champion")
    assert (str(by_alias.version), by_alias.aliases) == ("3", ["champion"])
    assert c.get_model_version("clf", "1").aliases == []
    c.delete_registered_model_alias("clf", "challenger")
    missing = _error(c.get_model_version_by_alias, "clf", "challenger")
    assert missing.error_code == "INVALID_PARAMETER_VALUE"  # MLflow's 400, not 404
    assert c.get_registered_model("clf").aliases == {"champion": "3"}

    c.transition_model_version_stage("clf", "1", "Production")
    c.transition_model_version_stage("clf", "2", "staging")
    moved = c.transition_model_version_stage(
        "clf", "3", "Production", archive_existing_versions=True
    )
    assert moved.current_stage == "Production"
    assert c.get_model_version("clf", "1").current_stage == "Archived"
    assert c.get_model_version("clf", "2").current_stage == "Staging"
    assert [str(v.version) for v in c.get_latest_versions("clf", ["Production"])] == ["3"]
    latest = {v.current_stage: str(v.version) for v in c.get_latest_versions("clf")}
    assert latest == {"Archived": "1", "Staging": "2", "Production": "3"}
    bad = _error(c.transition_model_version_stage, "clf", "1", "Shipped")
    assert bad.error_code == "INVALID_PARAMETER_VALUE"


def test_mlflow_client_search_filters_and_paging(server: Server, client: MlflowClient) -> None:
    c = client
    for name in ("alpha", "beta", "gamma", "alps"):
        c.create_registered_model(name, tags={"kind": "clf" if name != "beta" else "reg"})
    # A prompt (created over raw HTTP: the client will not make one a model); the
    # client's implicit ``tag.`mlflow.prompt.is_prompt` != 'true'`` must hide it.
    prompt = {"name": "a-prompt", "tags": [{"key": PROMPT_TAG, "value": "true"}]}
    assert httpx.post(f"{server.api}/registered-models/create", json=prompt).status_code == 200

    assert [m.name for m in c.search_registered_models()] == ["alpha", "alps", "beta", "gamma"]
    assert [m.name for m in c.search_registered_models("name LIKE 'al%'")] == ["alpha", "alps"]
    assert [m.name for m in c.search_registered_models("tags.kind = 'reg'")] == ["beta"]
    ordered = c.search_registered_models(order_by=["name DESC"])
    assert [m.name for m in ordered] == ["gamma", "beta", "alps", "alpha"]
    names, token = [], None
    while True:
        page = c.search_registered_models(max_results=1, page_token=token)
        assert len(page) <= 1
        names += [m.name for m in page]
        token = page.token
        if not token:
            break
    assert names == ["alpha", "alps", "beta", "gamma"]
    too_many = _error(c.search_registered_models, max_results=1001)
    assert too_many.error_code == "INVALID_PARAMETER_VALUE"

    runs = [_run(c) for _ in range(3)]
    for run_id in runs:
        c.create_model_version("alpha", f"runs:/{run_id}/model", run_id=run_id)
    c.create_model_version("beta", f"runs:/{runs[0]}/model", run_id=runs[0])
    alpha = c.search_model_versions("name='alpha'")
    assert [str(v.version) for v in alpha] == ["3", "2", "1"]
    both = c.search_model_versions(f"run_id IN ('{runs[0]}', '{runs[1]}')")
    assert sorted((v.name, str(v.version)) for v in both) == [
        ("alpha", "1"),
        ("alpha", "2"),
        ("beta", "1"),
    ]
    first = c.search_model_versions("name = 'alpha'", max_results=2)
    assert len(first) == 2 and first.token
    rest = c.search_model_versions("name = 'alpha'", max_results=2, page_token=first.token)
    assert [str(v.version) for v in rest] == ["1"] and not rest.token
    bad = _error(c.search_model_versions, "name = 'alpha' AND current_stage = 'None'")
    assert bad.error_code == "INVALID_PARAMETER_VALUE"


def test_mlflow_register_model_on_a_run_logged_through_the_server(
    server: Server, tmp_path: Path
) -> None:
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    try:
        mlflow.set_experiment("register")
        model_dir = tmp_path / "model"
        model_dir.mkdir()
        (model_dir / "MLmodel").write_text("flavors: {}\n")
        with mlflow.start_run() as run:
            mlflow.log_artifact(str(model_dir / "MLmodel"), "model")
        run_id = run.info.run_id
        first = mlflow.register_model(f"runs:/{run_id}/model", "clf")
        second = mlflow.register_model(f"runs:/{run_id}/model", "clf")  # the 400 is tolerated
        assert (str(first.version), str(second.version)) == ("1", "2")
        assert first.run_id == run_id
        c = MlflowClient()
        c.set_registered_model_alias("clf", "champion", "2")
        for uri in ("models:/clf/1", "models:/clf@champion"):
            got = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "dl")))
            assert (got / "MLmodel").read_text() == "flavors: {}\n"
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


# -- promotion gates over REST ----------------------------------------------------


def test_gates_hold_for_aliases_set_over_rest(server: Server, client: MlflowClient) -> None:
    c = client
    c.create_registered_model("clf")
    weak, strong = _run(c, acc=0.5), _run(c, acc=0.95)
    c.create_model_version("clf", f"runs:/{weak}/model", run_id=weak)
    c.create_model_version("clf", f"runs:/{strong}/model", run_id=strong)
    keel.Client(server.db_uri).set_promotion_gates("clf", "champion", ["metrics.acc >= 0.9"])

    refused = _error(c.set_registered_model_alias, "clf", "champion", "1")
    assert refused.error_code in ("INVALID_PARAMETER_VALUE", "INVALID_STATE")
    assert "metrics.acc >= 0.9" in refused.message and "FAIL" in refused.message
    assert c.get_registered_model("clf").aliases == {}
    assert "keel.gate.champion" in c.get_model_version("clf", "1").tags  # the report is kept

    c.set_registered_model_alias("clf", "champion", "2")
    assert c.get_registered_model("clf").aliases == {"champion": "2"}

    # A forced promotion is Keel's own field; MLflow clients never send it.
    forced = httpx.post(
        f"{server.api}/registered-models/alias",
        json={"name": "clf", "alias": "champion", "version": "1", "force_reason": "rollback"},
    )
    assert forced.status_code == 200, forced.text
    assert c.get_registered_model("clf").aliases == {"champion": "1"}


def test_gates_hold_for_stage_transitions_over_rest(server: Server, client: MlflowClient) -> None:
    c = client
    c.create_registered_model("clf")
    weak, strong = _run(c, acc=0.5), _run(c, acc=0.95)
    c.create_model_version("clf", f"runs:/{weak}/model", run_id=weak)
    c.create_model_version("clf", f"runs:/{strong}/model", run_id=strong)
    # Gates are a tag of the registered model, so they can be declared over REST too.
    gates = dump_gates(parse_gates(["metrics.acc >= 0.9"]))
    c.set_registered_model_tag("clf", "keel.gates.production", gates)
    assert keel.Client(server.db_uri).get_promotion_gates("clf", "production")[0].kind == "run"

    refused = _error(c.transition_model_version_stage, "clf", "1", "Production")
    assert refused.error_code in ("INVALID_PARAMETER_VALUE", "INVALID_STATE")
    assert "metrics.acc >= 0.9" in refused.message
    assert c.get_model_version("clf", "1").current_stage == "None"
    c.transition_model_version_stage("clf", "1", "Staging")  # no gates for staging
    assert c.transition_model_version_stage("clf", "2", "Production").current_stage == "Production"


def test_package_gates_on_sources_keel_cannot_read_refuse_without_5xx(
    server: Server, client: MlflowClient
) -> None:
    c = client
    c.create_registered_model("clf")
    # An MLflow 3 LoggedModel source: stored as given, although Keel has no LoggedModels.
    mv = c.create_model_version("clf", "models:/m-0123456789abcdef0123456789abcdef")
    assert mv.source == "models:/m-0123456789abcdef0123456789abcdef"
    c.create_model_version("clf", "s3://bucket/models/clf")
    keel.Client(server.db_uri).set_promotion_gates("clf", "champion", ["signature", "loads"])
    for version in ("1", "2"):
        refused = _error(c.set_registered_model_alias, "clf", "champion", version)
        assert refused.error_code in ("INVALID_PARAMETER_VALUE", "INVALID_STATE")
        assert "signature" in refused.message
    assert c.get_model_version_download_uri("clf", "2") == "s3://bucket/models/clf"


SIGNED_MLMODEL = 'flavors: {}\nsignature:\n  inputs: \'[{"type": "double", "name": "x"}]\'\n'


def _log_mlmodel(tmp_path: Path, text: str) -> str:
    """A run (through the active tracking URI) whose artifact model/MLmodel holds ``text``."""
    src = tmp_path / f"mlmodel-{len(list(tmp_path.iterdir()))}"
    src.mkdir()
    (src / "MLmodel").write_text(text)
    with mlflow.start_run() as run:
        mlflow.log_metric("acc", 0.9)
        mlflow.log_artifact(str(src / "MLmodel"), "model")
    return str(run.info.run_id)


def test_package_gates_read_runs_sources(
    server: Server, client: MlflowClient, tmp_path: Path
) -> None:
    mlflow.set_tracking_uri(server.url)
    try:
        mlflow.set_experiment("gated")
        signed = _log_mlmodel(tmp_path, SIGNED_MLMODEL)
        unsigned = _log_mlmodel(tmp_path, "flavors: {}\n")
    finally:
        mlflow.set_tracking_uri(None)
    c = client
    c.create_registered_model("clf")
    c.create_model_version("clf", f"runs:/{unsigned}/model", run_id=unsigned)
    c.create_model_version("clf", f"runs:/{signed}/model", run_id=signed)
    keel.Client(server.db_uri).set_promotion_gates("clf", "champion", ["signature"])
    refused = _error(c.set_registered_model_alias, "clf", "champion", "1")
    assert "no signature" in refused.message
    c.set_registered_model_alias("clf", "champion", "2")
    assert c.get_registered_model("clf").aliases == {"champion": "2"}


def test_gates_read_packages_uploaded_through_the_artifact_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.server.config import PROXY_ARTIFACT_ROOT

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    db_uri = f"sqlite:///{tmp_path / 'proxy.db'}"
    store = SqlTrackingStore(db_uri, PROXY_ARTIFACT_ROOT)
    app = create_app(store, artifacts_destination=str(tmp_path / "proxied"))
    work = tmp_path / "work"
    work.mkdir()
    try:
        with serve(app) as url:
            mlflow.set_tracking_uri(url)
            mlflow.set_registry_uri(url)
            try:
                mlflow.set_experiment("proxied")
                signed = _log_mlmodel(work, SIGNED_MLMODEL)
                unsigned = _log_mlmodel(work, "flavors: {}\n")
                first = mlflow.register_model(f"runs:/{unsigned}/model", "clf")
                second = mlflow.register_model(f"runs:/{signed}/model", "clf")
                assert first.source.startswith("mlflow-artifacts:/")
                assert second.source.startswith("mlflow-artifacts:/")
                keel.Client(db_uri).set_promotion_gates("clf", "champion", ["signature"])
                c = MlflowClient()
                refused = _error(c.set_registered_model_alias, "clf", "champion", "1")
                assert "no signature" in refused.message
                c.set_registered_model_alias("clf", "champion", "2")
                got = mlflow.artifacts.download_artifacts(
                    "models:/clf@champion", dst_path=str(work / "dl")
                )
                assert (Path(got) / "MLmodel").read_text() == SIGNED_MLMODEL
            finally:
                mlflow.set_tracking_uri(None)
                mlflow.set_registry_uri(None)
    finally:
        store.close()


# -- raw HTTP: wire shapes and errors ------------------------------------------------


def test_wire_shapes_match_mlflow(server: Server) -> None:
    api = server.api
    with httpx.Client(timeout=10) as http:
        created = http.post(f"{api}/registered-models/create", json={"name": "clf"})
        assert created.status_code == 200
        assert set(created.json()["registered_model"]) >= {"name", "creation_timestamp"}
        again = http.post(f"{api}/registered-models/create", json={"name": "clf"})
        assert again.status_code == 400
        assert again.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
        body = {"name": "clf", "source": "s3://bucket/somewhere/model", "run_id": "abc"}
        mv = http.post(f"{api}/model-versions/create", json=body).json()["model_version"]
        assert mv["version"] == "1" and mv["status"] == "READY" and mv["current_stage"] == "None"
        assert mv["source"] == "s3://bucket/somewhere/model" and mv["run_id"] == "abc"
        alias = {"name": "clf", "alias": "champion", "version": "1"}
        assert http.post(f"{api}/registered-models/alias", json=alias).json() == {}
        model = http.get(f"{api}/registered-models/get", params={"name": "clf"}).json()
        assert model["registered_model"]["aliases"] == [{"alias": "champion", "version": "1"}]
        by_alias = http.get(
            f"{api}/registered-models/alias", params={"name": "clf", "alias": "champion"}
        ).json()["model_version"]
        assert by_alias["aliases"] == ["champion"] and by_alias["version"] == "1"
        moved = http.post(
            f"{api}/model-versions/transition-stage",
            json={"name": "clf", "version": "1", "stage": "Staging"},
        ).json()["model_version"]
        assert moved["current_stage"] == "Staging"
        # get-latest-versions: POST, and GET with the stages as repeated query keys
        posted = http.post(
            f"{api}/registered-models/get-latest-versions",
            json={"name": "clf", "stages": ["Staging"]},
        ).json()
        got = http.get(
            f"{api}/registered-models/get-latest-versions",
            params=[("name", "clf"), ("stages", "Staging"), ("stages", "Production")],
        ).json()
        assert [v["version"] for v in posted["model_versions"]] == ["1"]
        assert got == posted
        page = http.get(f"{api}/model-versions/search", params={"max_results": 1}).json()
        assert [v["version"] for v in page["model_versions"]] == ["1"]
        assert "next_page_token" not in page
        uri = http.get(
            f"{api}/model-versions/get-download-uri", params={"name": "clf", "version": "1"}
        ).json()
        assert uri == {"artifact_uri": "s3://bucket/somewhere/model"}
        # DELETE requests carry JSON bodies
        deleted = http.request(
            "DELETE", f"{api}/registered-models/alias", json={"name": "clf", "alias": "champion"}
        )
        assert deleted.status_code == 200 and deleted.json() == {}
        spec = http.get(f"{server.url}/openapi.json").json()
        assert {"get", "post", "delete"} <= set(
            spec["paths"]["/api/2.0/mlflow/registered-models/alias"]
        )


def test_registry_errors_are_mlflow_codes_and_never_5xx(server: Server) -> None:
    api = server.api

    def expect(response: Any, status: int, code: str, *words: str) -> None:
        assert response.status_code == status, response.text
        body = response.json()
        assert body["error_code"] == code, body
        for word in words:
            assert word in body["message"], body

    with httpx.Client(timeout=10) as http:
        http.post(f"{api}/registered-models/create", json={"name": "clf"})
        http.post(f"{api}/model-versions/create", json={"name": "clf", "source": "s3://b/m"})
        get = f"{api}/registered-models/alias"
        expect(
            http.get(get, params={"name": "clf", "alias": "nope"}), 400, "INVALID_PARAMETER_VALUE"
        )
        expect(
            http.get(get, params={"name": "ghost", "alias": "x"}), 404, "RESOURCE_DOES_NOT_EXIST"
        )
        expect(
            http.get(f"{api}/registered-models/get", params={"name": "ghost"}),
            404,
            "RESOURCE_DOES_NOT_EXIST",
        )
        mv = f"{api}/model-versions/get"
        expect(
            http.get(mv, params={"name": "clf", "version": "99"}), 404, "RESOURCE_DOES_NOT_EXIST"
        )
        expect(
            http.get(mv, params={"name": "clf", "version": "abc"}), 400, "INVALID_PARAMETER_VALUE"
        )
        expect(http.get(mv, params={"name": "clf"}), 400, "INVALID_PARAMETER_VALUE", "'version'")
        expect(
            http.post(f"{api}/registered-models/create", json={}),
            400,
            "INVALID_PARAMETER_VALUE",
            "'name'",
        )
        expect(
            http.post(f"{api}/model-versions/create", json={"name": "clf"}),
            400,
            "INVALID_PARAMETER_VALUE",
            "'source'",
        )
        expect(
            http.post(f"{api}/model-versions/create", json={"name": "ghost", "source": "s3://b/m"}),
            404,
            "RESOURCE_DOES_NOT_EXIST",
        )
        stage = f"{api}/model-versions/transition-stage"
        expect(
            http.post(stage, json={"name": "clf", "version": "1", "stage": "Shipped"}),
            400,
            "INVALID_PARAMETER_VALUE",
            "Shipped",
        )
        expect(
            http.post(
                stage,
                json={
                    "name": "clf",
                    "version": "1",
                    "stage": "Archived",
                    "archive_existing_versions": True,
                },
            ),
            400,
            "INVALID_PARAMETER_VALUE",
        )
        expect(
            http.post(
                stage,
                json={
                    "name": "clf",
                    "version": "1",
                    "stage": "Staging",
                    "archive_existing_versions": "x",
                },
            ),
            400,
            "INVALID_PARAMETER_VALUE",
        )
        expect(
            http.post(
                f"{api}/registered-models/get-latest-versions",
                json={"name": "clf", "stages": ["Shipped"]},
            ),
            400,
            "INVALID_PARAMETER_VALUE",
        )
        alias = f"{api}/registered-models/alias"
        for bad_alias in ("latest", "v2", "has space"):
            expect(
                http.post(alias, json={"name": "clf", "alias": bad_alias, "version": "1"}),
                400,
                "INVALID_PARAMETER_VALUE",
            )
        expect(
            http.post(alias, json={"name": "clf", "alias": "a", "version": "-1"}),
            400,
            "INVALID_PARAMETER_VALUE",
        )
        expect(
            http.post(alias, json={"name": "clf", "alias": "a", "version": 1}),
            400,
            "INVALID_PARAMETER_VALUE",
        )
        search = f"{api}/registered-models/search"
        expect(http.get(search, params={"max_results": 1001}), 400, "INVALID_PARAMETER_VALUE")
        expect(http.get(search, params={"max_results": "x"}), 400, "INVALID_PARAMETER_VALUE")
        expect(http.get(search, params={"page_token": "garbage"}), 400, "INVALID_PARAMETER_VALUE")
        expect(http.get(search, params={"filter": "name = "}), 400, "INVALID_PARAMETER_VALUE")
        expect(
            http.get(search, params={"order_by": "bogus"}),
            400,
            "INVALID_PARAMETER_VALUE",
        )
        expect(
            http.get(f"{api}/model-versions/search", params={"max_results": 200_001}),
            400,
            "INVALID_PARAMETER_VALUE",
        )
        for garbage in ("not json", "[1]", '[{"kind": "run", "text": "metrics.x >"}]', "{}"):
            expect(
                http.post(
                    f"{api}/registered-models/set-tag",
                    json={"name": "clf", "key": "keel.gates.champion", "value": garbage},
                ),
                400,
                "INVALID_PARAMETER_VALUE",
                "gate",
            )
        expect(
            http.request(
                "DELETE", f"{api}/model-versions/delete", json={"name": "clf", "version": "7"}
            ),
            404,
            "RESOURCE_DOES_NOT_EXIST",
        )
        expect(
            http.request("DELETE", f"{api}/registered-models/delete", json={"name": "ghost"}),
            404,
            "RESOURCE_DOES_NOT_EXIST",
        )


def test_a_server_without_registry_says_so(server: Server) -> None:
    server.app.state.keel.registry = None
    answer = httpx.get(f"{server.api}/registered-models/get", params={"name": "clf"})
    assert answer.status_code == 501
    assert answer.json()["error_code"] == "NOT_IMPLEMENTED"
    assert "registry" in answer.json()["message"]
