"""``keel serve``'s scoring app on a real uvicorn server: formats, checks, policies, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("sklearn")

from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

import keel.models  # noqa: E402
from keel.serving import ScoringApp, ServedModel  # noqa: E402
from live_server import KEEL_MAIN, keel_process, serve  # noqa: E402

PLANS = ["basic", "pro", "team"]


def _training(n: int = 600) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n).round(1),
            "spend": rng.exponential(50, n).round(2),
            "plan": rng.choice(PLANS, n),
        }
    )
    y = ((x["age"] > 40) ^ (x["plan"] == "pro")).astype(int).to_numpy()
    return x, y


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = _training()
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["age", "spend"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ]
        ),
        LogisticRegression(),
    ).fit(x, y)
    return keel.models.save(
        model, tmp_path_factory.mktemp("serve") / "pkg", training_data=x, onnx=False
    )


@pytest.fixture(scope="module")
def served(package: Path) -> ServedModel:
    result = ServedModel.load(str(package))
    assert result.ready, result.error
    return result


@pytest.fixture
def url(served: ServedModel) -> Iterator[str]:
    with serve(ScoringApp(served)) as base:
        yield base


def _post(url: str, body: Any, content_type: str = "application/json", **headers: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{url}/invocations", content=data, headers={"content-type": content_type, **headers}
    )


def test_every_mlflow_format_and_csv_give_the_models_predictions(
    url: str, served: ServedModel
) -> None:
    x, _ = _training(20)
    expected = served.model.predict(x).tolist()
    bodies = [
        {"dataframe_split": {"columns": list(x.columns), "data": x.to_numpy().tolist()}},
        {"dataframe_records": x.to_dict(orient="records")},
        {"instances": x.to_dict(orient="records")},
        {"inputs": x.to_dict(orient="list")},
    ]
    for body in bodies:
        response = _post(url, body)
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": expected}
        assert response.headers["x-keel-validation"] == "reject"
        assert len(response.headers["x-request-id"]) == 32
    csv = _post(url, x.to_csv(index=False).encode(), "text/csv")
    assert csv.json() == {"predictions": expected}
    given = _post(url, bodies[0], **{"x-request-id": "order-42"})
    assert given.headers["x-request-id"] == "order-42"


def test_health_version_metadata(url: str, package: Path) -> None:
    assert httpx.get(f"{url}/ping").status_code == 200
    assert httpx.get(f"{url}/health").json() == {"status": "ready", "model_uri": str(package)}
    assert httpx.get(f"{url}/version").json()["keel"] == keel.__version__
    meta = httpx.get(f"{url}/metadata").json()
    assert meta["backend"] == "native" and meta["validation"] == "reject"
    assert meta["signature"]["inputs"]["columns"] == [
        {"name": "age", "type": "double"},
        {"name": "spend", "type": "double"},
        {"name": "plan", "type": "string"},
    ]
    assert meta["training_profile"] == {"rows": 600, "columns": ["age", "spend", "plan"]}


BAD_ROWS = [
    ({"age": 30.0, "plan": "pro"}, "spend", "MISSING_COLUMN"),
    ({"age": 30.0, "spend": 5.0, "plan": "pro", "zip": "75001"}, "zip", "EXTRA_COLUMN"),
    ({"age": "thirty", "spend": 5.0, "plan": "pro"}, "age", "WRONG_TYPE"),
    ({"age": None, "spend": 5.0, "plan": "pro"}, "age", "UNEXPECTED_NULL"),
    ({"age": 30.0, "spend": 1e9, "plan": "pro"}, "spend", "OUT_OF_RANGE"),
    ({"age": 30.0, "spend": 5.0, "plan": "gold"}, "plan", "UNKNOWN_CATEGORY"),
]


@pytest.mark.parametrize(("row", "column", "code"), BAD_ROWS, ids=[c for _, _, c in BAD_ROWS])
def test_bad_input_is_rejected_with_the_column_and_a_stable_code(
    url: str, row: dict[str, Any], column: str, code: str
) -> None:
    good = {"age": 41.0, "spend": 20.0, "plan": "basic"}
    # a key missing from one record is a missing value there; from all, a missing column
    rows = [row] if code == "MISSING_COLUMN" else [good, row]
    response = _post(url, {"dataframe_records": rows})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error_code"] == "INVALID_INPUT" and column in body["message"]
    [problem] = body["problems"]
    assert (problem["column"], problem["code"]) == (column, code)
    if code not in ("MISSING_COLUMN", "EXTRA_COLUMN"):
        assert problem["rows"] == [1] and problem["count"] == 1


@pytest.mark.parametrize("policy", ["warn", "off"])
def test_warn_and_off_serve_bad_input(served: ServedModel, policy: str) -> None:
    with serve(ScoringApp(served, validation=policy)) as base:
        response = _post(base, {"dataframe_records": [{"age": 30.0, "spend": 5.0, "plan": "gold"}]})
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1
    assert response.headers["x-keel-validation"] == policy
    if policy == "warn":
        assert response.headers["x-keel-problems"] == "plan:UNKNOWN_CATEGORY"


def test_malformed_requests_get_4xx_with_codes(served: ServedModel) -> None:
    with serve(ScoringApp(served, max_body_bytes=10_000)) as base:
        cases = [
            (_post(base, b"{not json"), 400, "MALFORMED_JSON"),
            (_post(base, b"\xff\xfe{}"), 400, "MALFORMED_JSON"),
            (_post(base, b""), 400, "EMPTY_INPUT"),
            (_post(base, {"dataframe_records": []}), 400, "EMPTY_INPUT"),
            (_post(base, {"instances": [], "inputs": []}), 400, "BAD_FORMAT"),
            (_post(base, [1, 2]), 400, "BAD_FORMAT"),
            (_post(base, {"dataframe_split": {"data": 5}}), 400, "BAD_FORMAT"),
            (_post(base, b"[" * 100_000), 413, "PAYLOAD_TOO_LARGE"),
            (_post(base, b"[" * 5_000 + b"]" * 5_000), 400, "MALFORMED_JSON"),
            (_post(base, b"age\n1", "application/xml"), 415, "UNSUPPORTED_CONTENT_TYPE"),
            (_post(base, b'"a,b\n1', "text/csv"), 400, "MALFORMED_CSV"),
            (httpx.get(f"{base}/invocations"), 405, "METHOD_NOT_ALLOWED"),
            (httpx.get(f"{base}/nope"), 404, "NOT_FOUND"),
        ]
        for response, status, code in cases:
            assert (response.status_code, response.json()["error_code"]) == (status, code), (
                response.text
            )
            assert "Traceback" not in response.text
        metrics = httpx.get(f"{base}/metrics").text
    assert 'keel_payload_errors_total{code="MALFORMED_JSON"} 3.0' in metrics
    assert 'keel_requests_total{status="413"} 1.0' in metrics


def test_metrics_count_requests_problems_and_predictions(url: str) -> None:
    _post(url, {"dataframe_records": [{"age": 30.0, "spend": 5.0, "plan": "gold"}]})
    _post(url, {"dataframe_records": [{"age": 50.0, "spend": 5.0, "plan": "pro"}] * 3})
    text = httpx.get(f"{url}/metrics").text
    assert 'keel_validation_problems_total{code="UNKNOWN_CATEGORY",column="plan"}' in text
    assert (
        'keel_requests_total{status="422"}' in text and 'keel_requests_total{status="200"}' in text
    )
    assert "keel_request_seconds_bucket" in text and "keel_batch_rows_count" in text
    assert 'keel_predictions_total{value="' in text


def test_a_model_that_does_not_load_is_not_ready() -> None:
    app = ScoringApp(ServedModel.load("/no/such/package"))
    with serve(app) as base:
        assert httpx.get(f"{base}/ping").status_code == 503
        health = httpx.get(f"{base}/health")
        assert health.status_code == 503 and health.json()["status"] == "not ready"
        assert "/no/such/package" in health.json()["reason"]
        scored = _post(base, {"instances": [[1]]})
        assert (scored.status_code, scored.json()["error_code"]) == (503, "MODEL_NOT_READY")


def test_tensor_models_take_rows_of_numbers(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    package = keel.models.save(model, tmp_path / "tensor", training_data=x, onnx=False)
    with serve(ScoringApp(ServedModel.load(str(package)))) as base:
        ok = _post(base, {"instances": x[:5].tolist()})
        assert ok.json() == {"predictions": model.predict(x[:5]).tolist()}
        named = _post(base, {"dataframe_split": {"columns": list("abcd"), "data": x[:2].tolist()}})
        assert named.json() == {"predictions": model.predict(x[:2]).tolist()}
        short = _post(base, {"instances": [[1.0, 2.0]]})
        assert short.status_code == 422 and short.json()["problems"][0]["code"] == "WRONG_SHAPE"
        far = _post(base, {"instances": [[0.0, 0.0, 0.0, 1e6]]})
        assert far.json()["problems"][0] == {
            "column": "3",
            "code": "OUT_OF_RANGE",
            "message": far.json()["problems"][0]["message"],
            "count": 1,
            "rows": [0],
            "values": [1e6],
        }


def test_keel_serve_command_serves_a_registered_model(tracking: Path, package: Path) -> None:
    client = keel.Client()
    client.register_model(str(package), "churn")
    client.set_registered_model_alias("churn", "champion", 1)
    args = ["serve", "models:/churn@champion", "--validation", "warn"]
    with keel_process(args, tracking) as (base, port):
        version = httpx.get(f"{base}/version").json()
        assert (version["name"], version["version"]) == ("churn", "1")
        scored = _post(base, {"dataframe_records": [{"age": 30.0, "spend": 5.0, "plan": "gold"}]})
        assert scored.status_code == 200 and scored.headers["x-keel-validation"] == "warn"
    # SIGTERM is a clean shutdown: the scored row was written before the process exited
    from keel.serving.prediction_log import read_log

    logged = read_log(tracking / "keel-predictions").to_pandas()
    assert logged[["model_name", "model_version", "input.plan"]].values.tolist() == [
        ["churn", "1", "gold"]
    ]
    failing = subprocess.run(
        [sys.executable, "-c", KEEL_MAIN, "serve", "models:/nope@x", "--port", str(port)],
        cwd=tracking,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failing.returncode == 1 and "cannot serve models:/nope@x" in failing.stderr


def test_numeric_fast_path_agrees_with_the_general_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    x = pd.DataFrame(
        {"a": rng.normal(0, 1, 400), "b": rng.normal(10, 2, 400), "n": rng.integers(0, 9, 400)}
    )
    model = LogisticRegression().fit(x, (x["a"] > 0).astype(int))
    package = keel.models.save(model, tmp_path / "num", training_data=x, onnx=False)
    app = ScoringApp(ServedModel.load(str(package)))
    rows = x.iloc[:6]
    expected = model.predict(rows).tolist()
    with serve(app) as base:
        shuffled = {"columns": ["n", "b", "a"], "data": rows[["n", "b", "a"]].values.tolist()}
        for body in (
            {"dataframe_split": {"columns": ["a", "b", "n"], "data": rows.values.tolist()}},
            {"dataframe_split": shuffled},
            {"dataframe_records": rows.to_dict(orient="records")},
            {"inputs": rows.to_dict(orient="list")},
        ):
            assert _post(base, body).json() == {"predictions": expected}
        problems = {
            "UNEXPECTED_NULL": {"a": None, "b": 10.0, "n": 3},
            "OUT_OF_RANGE": {"a": 0.0, "b": 1e9, "n": 3},
            "WRONG_TYPE": {"a": 0.0, "b": 10.0, "n": 3.5},
        }
        for code, row in problems.items():
            response = _post(base, {"dataframe_records": [row]})
            assert response.status_code == 422 and response.json()["problems"][0]["code"] == code
        as_text = _post(base, {"dataframe_records": [{"a": "0.5", "b": "10", "n": "3"}]})
        assert as_text.status_code == 200  # numbers sent as text are read as numbers, both ways


def test_the_onnx_twin_can_answer_instead_of_the_model(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(6)
    x = pd.DataFrame({"a": rng.normal(0, 1, 300), "b": rng.normal(5, 2, 300)})
    model = LogisticRegression().fit(x, (x["a"] + x["b"] > 5).astype(int))
    with_twin = keel.models.save(model, tmp_path / "twin", training_data=x)
    served = ServedModel.load(str(with_twin), "onnx")
    assert served.ready and served.model.backend == "onnx"
    with serve(ScoringApp(served)) as base:
        body = {"dataframe_split": {"columns": ["a", "b"], "data": x.iloc[:50].values.tolist()}}
        assert _post(base, body).json() == {"predictions": model.predict(x.iloc[:50]).tolist()}
        assert httpx.get(f"{base}/metadata").json()["backend"] == "onnx"
    without = keel.models.save(model, tmp_path / "plain", training_data=x, onnx=False)
    refused = ServedModel.load(str(without), "onnx")
    assert not refused.ready and "--backend onnx: The package has no ONNX twin" in refused.error
    assert ServedModel.load(str(without), "auto").model.backend == "native"
    assert ServedModel.load(str(with_twin), "auto").model.backend == "onnx"


def test_keel_serve_with_two_workers_shares_one_log(tmp_path: Path, package: Path) -> None:
    from keel.serving.prediction_log import read_log

    args = ["serve", str(package), "--workers", "2", "--log-dir", "log"]
    with keel_process(args, tmp_path) as (base, _port):
        x, _ = _training(40)
        for i in range(40):
            row = {"dataframe_records": [x.iloc[i].to_dict()]}
            with httpx.Client() as fresh:  # a new connection each time: both workers get some
                assert fresh.post(f"{base}/invocations", json=row).status_code == 200
    assert read_log(tmp_path / "log").num_rows == 40  # both workers' rows, none lost on shutdown
