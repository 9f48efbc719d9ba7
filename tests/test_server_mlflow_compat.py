"""The compatibility suite: the unmodified ``mlflow`` 3 client's everyday workflows against
``keel server`` with only the tracking URI changed.

One real uvicorn server on 127.0.0.1 with the artifact proxy on (as ``keel server
--artifacts-destination``), over a real SQLite file. Models are real scikit-learn
estimators; every model loaded back must predict exactly what the original did.
MLflow 3 logs models as LoggedModels (research/mlflow-wire.md §8), so these
workflows go through Keel's logged-model routes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("mlflow")
pytest.importorskip("sklearn")
np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")

import mlflow  # noqa: E402
import mlflow.sklearn  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

import keel  # noqa: E402
from keel.server import create_app  # noqa: E402
from keel.server.config import PROXY_ARTIFACT_ROOT  # noqa: E402
from keel.store.sql.store import SqlTrackingStore  # noqa: E402
from live_server import serve  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*is deprecated since 2.9.0:FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    # from inside mlflow and pandas, not from Keel
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Operation with range is deprecated"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("compat")
    store = SqlTrackingStore(f"sqlite:///{root / 'server.db'}", PROXY_ARTIFACT_ROOT)
    try:
        with serve(create_app(store, artifacts_destination=str(root / "dest"))) as url:
            yield url, root
    finally:
        store.close()


@pytest.fixture
def url(server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a 5xx must fail the test
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(server[0])
    mlflow.set_registry_uri(server[0])
    try:
        yield server[0]
    finally:
        mlflow.clear_active_model()  # else later tests' metrics carry this server's model id
        mlflow.sklearn.autolog(disable=True)
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


def _data(seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.RandomState(seed)
    X = pd.DataFrame(rng.rand(80, 4), columns=["a", "b", "c", "d"])
    y = ((X["a"] + X["b"]) > 1).astype(int)
    return X, y


def test_experiments_set_get_search_rename_delete_restore(url: str) -> None:
    exp = mlflow.set_experiment("compat-exp")
    assert mlflow.get_experiment_by_name("compat-exp").experiment_id == exp.experiment_id
    assert mlflow.set_experiment("compat-exp").experiment_id == exp.experiment_id  # get, not create
    c = MlflowClient()
    c.set_experiment_tag(exp.experiment_id, "team", "risk")
    found = mlflow.search_experiments(filter_string="tags.team = 'risk'")
    assert [e.name for e in found] == ["compat-exp"]
    c.rename_experiment(exp.experiment_id, "compat-exp-renamed")
    c.delete_experiment(exp.experiment_id)
    assert mlflow.get_experiment(exp.experiment_id).lifecycle_stage == "deleted"
    assert "compat-exp-renamed" not in [e.name for e in mlflow.search_experiments()]
    c.restore_experiment(exp.experiment_id)
    assert mlflow.get_experiment_by_name("compat-exp-renamed").lifecycle_stage == "active"


def test_log_model_register_and_load_by_every_uri(url: str) -> None:
    X, y = _data()
    mlflow.set_experiment("compat-models")
    with mlflow.start_run() as run:
        clf = LogisticRegression(max_iter=200).fit(X, y)
        mlflow.log_param("max_iter", 200)
        info = mlflow.sklearn.log_model(
            clf, name="model", registered_model_name="compat-clf", input_example=X.head(2)
        )
    expected = clf.predict(X)
    assert info.model_id.startswith("m-") and str(info.registered_model_version) == "1"

    c = MlflowClient()
    logged = c.get_logged_model(info.model_id)
    assert logged.status == "READY" and logged.source_run_id == run.info.run_id
    assert logged.params == {"max_iter": "200"}
    assert '"compat-clf"' in logged.tags["mlflow.modelVersions"]
    with httpx.Client(timeout=10) as http:  # the client's ModelVersion drops model_id
        version = http.get(
            f"{url}/api/2.0/mlflow/model-versions/get", params={"name": "compat-clf", "version": 1}
        ).json()["model_version"]
    assert (version["source"], version["model_id"]) == (f"models:/{info.model_id}", info.model_id)
    assert version["run_id"] == run.info.run_id  # from the logged model's source run
    assert [o.model_id for o in c.get_run(run.info.run_id).outputs.model_outputs] == [info.model_id]

    second = mlflow.register_model(f"runs:/{run.info.run_id}/model", "compat-clf")
    assert second.version == "2"
    c.set_registered_model_alias("compat-clf", "champion", "2")
    c.transition_model_version_stage("compat-clf", "1", "Production")
    for uri in (
        f"runs:/{run.info.run_id}/model",
        info.model_uri,  # models:/<model_id>
        "models:/compat-clf/1",
        "models:/compat-clf@champion",
        "models:/compat-clf/Production",
    ):
        assert (mlflow.pyfunc.load_model(uri).predict(X) == expected).all(), uri
    assert (mlflow.sklearn.load_model("models:/compat-clf/2").predict(X) == expected).all()


def test_autolog_logs_params_metrics_dataset_and_a_loadable_model(url: str) -> None:
    X, y = _data(1)
    mlflow.set_experiment("compat-autolog")
    mlflow.sklearn.autolog(log_input_examples=False)
    with mlflow.start_run() as run, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    got = mlflow.get_run(run.info.run_id)
    assert got.data.params["max_depth"] == "3"
    assert got.data.metrics["training_accuracy_score"] == pytest.approx(tree.score(X, y))
    assert len(got.inputs.dataset_inputs) == 1
    (model,) = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    )
    assert model.source_run_id == run.info.run_id
    linked = {m.key for m in model.metrics}
    assert "training_accuracy_score" in linked
    top = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string="metrics.training_accuracy_score > 0.5",
        output_format="list",
    )
    assert [m.model_id for m in top] == [model.model_id]
    loaded = mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/model")
    assert (loaded.predict(X) == tree.predict(X)).all()


def test_dataset_inputs_from_pandas(url: str) -> None:
    X, _ = _data(2)
    mlflow.set_experiment("compat-data")
    dataset = mlflow.data.from_pandas(X, source="s3://bucket/train.parquet", name="train")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    (di,) = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert (di.dataset.name, di.dataset.digest) == ("train", dataset.digest)
    assert {t.key: t.value for t in di.tags}["mlflow.data.context"] == "training"
    found = mlflow.search_runs(
        experiment_names=["compat-data"],
        filter_string=f"dataset.digest = '{dataset.digest}'",
        output_format="list",
    )
    assert [r.info.run_id for r in found] == [run.info.run_id]


def test_search_runs_filters_orders_and_pages(url: str) -> None:
    exp_id = mlflow.set_experiment("compat-search").experiment_id
    for i in range(25):
        with mlflow.start_run(run_name=f"r{i:02d}"):
            mlflow.log_metric("score", i / 25)
            mlflow.log_param("parity", "even" if i % 2 == 0 else "odd")
            for step in range(3):
                mlflow.log_metric("loss", 1.0 / (step + 1 + i), step=step)
    c = MlflowClient()
    seen, token = [], None
    while True:
        page = c.search_runs(
            [exp_id],
            "params.parity = 'even'",
            order_by=["metrics.score DESC"],
            max_results=5,
            page_token=token,
        )
        seen.extend(r.info.run_name for r in page)
        token = page.token
        if not token:
            break
    assert seen == [f"r{i:02d}" for i in range(24, -1, -2)]  # 13 runs over 3 pages
    frame = mlflow.search_runs([exp_id], "metrics.score >= 0.8", order_by=["attributes.run_name"])
    assert list(frame["tags.mlflow.runName"]) == ["r20", "r21", "r22", "r23", "r24"]
    run_id = c.search_runs([exp_id], "attributes.run_name = 'r03'")[0].info.run_id
    history = c.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 4)) for s in range(3)]


def test_optuna_loop_of_nested_runs_and_delete_restore(url: str) -> None:
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    mlflow.set_experiment("compat-optuna")

    def objective(trial: Any) -> float:
        x = trial.suggest_float("x", -10, 10)
        with mlflow.start_run(nested=True, run_name=f"trial-{trial.number}"):
            mlflow.log_params(trial.params)
            mlflow.log_metric("objective", (x - 2) ** 2)
        return float((x - 2) ** 2)

    with mlflow.start_run(run_name="study") as parent:
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
        study.optimize(objective, n_trials=8)
        mlflow.log_metric("best", study.best_value)
    children = mlflow.search_runs(
        experiment_names=["compat-optuna"],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["metrics.objective ASC"],
        output_format="list",
    )
    assert len(children) == 8
    assert children[0].data.metrics["objective"] == pytest.approx(study.best_value)
    c = MlflowClient()
    c.delete_run(children[0].info.run_id)
    assert c.get_run(children[0].info.run_id).info.lifecycle_stage == "deleted"
    c.restore_run(children[0].info.run_id)
    assert c.get_run(children[0].info.run_id).info.lifecycle_stage == "active"


def test_logged_model_api_directly(url: str) -> None:
    exp_id = mlflow.set_experiment("compat-logged").experiment_id
    c = MlflowClient()
    model = c.create_logged_model(
        exp_id, name="agent", model_type="agent", params={f"p{i}": str(i) for i in range(150)}
    )
    assert model.status == "PENDING" and len(c.get_logged_model(model.model_id).params) == 150
    c.set_logged_model_tags(model.model_id, {"a": "1", "b": "2"})
    c.delete_logged_model_tag(model.model_id, "b")
    c.finalize_logged_model(model.model_id, "READY")
    got = c.get_logged_model(model.model_id)
    assert (got.status, got.tags, got.model_type) == ("READY", {"a": "1"}, "agent")
    mlflow.set_active_model(name="active-model")  # searches by name='active-model', then creates
    active = mlflow.search_logged_models(
        experiment_ids=[exp_id], filter_string="name = 'active-model'", output_format="list"
    )
    assert len(active) == 1
    ordered = mlflow.search_logged_models(
        experiment_ids=[exp_id],
        order_by=[{"field_name": "name", "ascending": True}],
        output_format="list",
    )
    assert [m.name for m in ordered] == ["active-model", "agent"]
    c.delete_logged_model(model.model_id)
    with pytest.raises(MlflowException) as gone:
        c.get_logged_model(model.model_id)
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as bad:
        mlflow.search_logged_models(experiment_ids=[exp_id], filter_string="nope.x = 1")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"


def test_keel_reads_what_the_mlflow_client_logged(url: str) -> None:
    """Keel's own client over HTTP sees the same runs, logged models and registry."""
    X, y = _data(3)
    mlflow.set_experiment("compat-keel")
    with mlflow.start_run() as run:
        clf = LogisticRegression(max_iter=200).fit(X, y)
        mlflow.log_metric("acc", float(clf.score(X, y)))
        info = mlflow.sklearn.log_model(clf, name="model", registered_model_name="compat-keel")
    client = keel.Client(url)
    assert client.get_run(run.info.run_id).data.metrics["acc"] == pytest.approx(clf.score(X, y))
    store: Any = client.store
    model = store.get_logged_model(info.model_id)
    assert model.source_run_id == run.info.run_id
    assert [m.model_id for m in store.search_logged_models([run.info.experiment_id])] == [
        info.model_id
    ]
    version = client.get_model_version("compat-keel", 1)
    assert version.model_id == info.model_id
    with httpx.Client(timeout=10) as http:
        uri = http.get(
            f"{url}/api/2.0/mlflow/model-versions/get-download-uri",
            params={"name": "compat-keel", "version": "1"},
        ).json()["artifact_uri"]
    assert uri == model.artifact_location
    assert uri == f"mlflow-artifacts:/{run.info.experiment_id}/models/{info.model_id}/artifacts"


def test_keel_own_workflow_over_http(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keel's API against the same server: a checked package logged, registered,
    gated and promoted, loaded back by alias by Keel and by the mlflow client."""
    monkeypatch.setenv("KEEL_TRACKING_URI", url)
    X, y = _data(4)
    clf = LogisticRegression(max_iter=200).fit(X, y)
    keel.set_experiment("compat-keel-http")
    with keel.start_run() as run:
        keel.log_metric("accuracy", float(clf.score(X, y)))
        uri = keel.sklearn.log_model(clf, "model", input_example=X.head(3), onnx=False)
    client = keel.Client()
    version = client.register_model(uri, "keel-over-http")
    assert (version.version, version.run_id) == (1, run.info.run_id)
    client.set_promotion_gates("keel-over-http", "champion", ["metrics.accuracy >= 0.5"])
    report = client.promote("keel-over-http", 1, "champion")
    assert report.passed
    loaded = keel.models.load("models:/keel-over-http@champion")
    assert (loaded.predict(X) == clf.predict(X)).all()
    assert (
        mlflow.pyfunc.load_model("models:/keel-over-http@champion").predict(X) == clf.predict(X)
    ).all()
