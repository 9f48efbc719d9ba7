"""Model packages: save, then load through integrity, safety, environment and golden checks."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml

from keel.errors import InvalidParameter, NotFound
from keel.models.package import KEEL_FILE, ModelRefused, load_model, save_model
from keel.models.safety import UnsafePickle

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
sklearn = pytest.importorskip("sklearn")

from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    GradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402


def _data() -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 200),
            "income": rng.normal(50_000, 10_000, 200),
            "plan": rng.choice(["basic", "pro", "team"], 200),
        }
    )
    y = (x["income"] > 50_000).astype(int) ^ (x["plan"] == "pro").astype(int)
    return x, y


def _pipeline() -> Any:
    pre = ColumnTransformer(
        [("num", StandardScaler(), ["age", "income"]), ("cat", OneHotEncoder(), ["plan"])]
    )
    return make_pipeline(pre, LogisticRegression(max_iter=500))


@pytest.mark.parametrize(
    "make",
    [
        _pipeline,
        lambda: DecisionTreeClassifier(random_state=0),
        lambda: RandomForestClassifier(n_estimators=10, random_state=0),
        lambda: GradientBoostingClassifier(n_estimators=10, random_state=0),
        lambda: HistGradientBoostingRegressor(max_iter=10),
    ],
    ids=["pipeline", "tree", "forest", "gboost", "histgb"],
)
def test_save_and_load_round_trip(make: Any, tmp_path: Path) -> None:
    x, y = _data()
    numeric = x if make is _pipeline else x[["age", "income"]]
    model = make().fit(numeric, y)
    path = save_model(model, tmp_path / "pkg", input_example=numeric.head(10))
    names = {p.name for p in path.iterdir()} - {"model.onnx"}  # the twin: test_model_onnx.py
    assert names == {
        "MLmodel", "model.pkl", "requirements.txt", "python_env.yaml",
        "input_example.json", KEEL_FILE,
    }  # fmt: skip
    meta = json.loads((path / KEEL_FILE).read_text())
    assert "scikit-learn" in meta["environment"]["packages"]
    assert f"scikit-learn=={sklearn.__version__}" in (path / "requirements.txt").read_text()
    assert any(g.startswith("sklearn.") for g in meta["pickle"]["globals"])
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["pickled_model"] == "model.pkl"
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "mlflow.sklearn"
    loaded = load_model(path)
    assert loaded.backend == "native"
    assert list(loaded.predict(numeric.head(20))) == list(model.predict(numeric.head(20)))


def test_numpy_input_example(tmp_path: Path) -> None:
    x = np.arange(40, dtype=float).reshape(20, 2)
    y = (x[:, 0] > 20).astype(int)
    path = save_model(LogisticRegression().fit(x, y), tmp_path / "pkg", training_data=x)
    sig = yaml.safe_load((path / "MLmodel").read_text())["signature"]
    assert json.loads(sig["inputs"])[0]["tensor-spec"]["shape"] == [-1, 2]
    assert load_model(path).predict(x).tolist() == y.tolist()


def test_tampered_file_is_refused(tmp_path: Path) -> None:
    x, y = _data()
    path = save_model(_pipeline().fit(x, y), tmp_path / "pkg", input_example=x.head())
    with (path / "MLmodel").open("a") as fh:
        fh.write("\n# edited\n")
    with pytest.raises(ModelRefused, match="MLmodel was changed"):
        load_model(path)


def test_swapped_pickle_is_refused_before_it_runs(tmp_path: Path) -> None:
    """A payload written in place of model.pkl, checksums updated to match, never runs."""
    import hashlib
    import os

    x, y = _data()
    path = save_model(_pipeline().fit(x, y), tmp_path / "pkg", input_example=x.head())
    canary = tmp_path / "canary"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {canary}",))

    evil = pickle.dumps(Payload(), protocol=4)
    (path / "model.pkl").write_bytes(evil)
    meta = json.loads((path / KEEL_FILE).read_text())
    meta["files"]["model.pkl"] = hashlib.sha256(evil).hexdigest()
    (path / KEEL_FILE).write_text(json.dumps(meta))
    with pytest.raises(UnsafePickle, match="system"):
        load_model(path)
    assert not canary.exists()


def test_model_file_outside_the_package_is_refused(tmp_path: Path) -> None:
    x, y = _data()
    path = save_model(_pipeline().fit(x, y), tmp_path / "pkg", input_example=x.head())
    meta = json.loads((path / KEEL_FILE).read_text())
    meta["model_file"] = "../model.pkl"
    meta["files"]["../model.pkl"] = meta["files"].pop("model.pkl")
    (path / KEEL_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelRefused, match="not a plain file name"):
        load_model(path)


def test_wrong_answers_are_refused(tmp_path: Path) -> None:
    """A model that loads but predicts differently from save time is refused."""
    x, y = _data()
    model = _pipeline().fit(x, y)
    path = save_model(model, tmp_path / "pkg", input_example=x.head(20))
    meta = json.loads((path / KEEL_FILE).read_text())
    labels = meta["golden"]["outputs"]["predict"]["data"]
    labels[0] = 1 - labels[0]  # as if the saved model had answered otherwise
    meta_text = json.dumps(meta)
    (path / KEEL_FILE).write_text(meta_text)
    with pytest.raises(ModelRefused, match=r"predict: 1 of 20 labels differ"):
        load_model(path)
    assert load_model(path, check_golden=False).predict(x.head(3)) is not None


def test_environment_mismatch_is_refused_with_the_fix(tmp_path: Path) -> None:
    x, y = _data()
    path = save_model(_pipeline().fit(x, y), tmp_path / "pkg", input_example=x.head())
    meta = json.loads((path / KEEL_FILE).read_text())
    meta["environment"]["packages"]["scikit-learn"] = "1.3.2"
    (path / KEEL_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelRefused) as err:
        load_model(path, fallback=False)
    assert "scikit-learn" in err.value.message and "1.3.2" in err.value.message
    assert "pip install" in err.value.message
    assert load_model(path, policy="warn").warnings


def test_save_errors(tmp_path: Path) -> None:
    x, y = _data()
    model = _pipeline().fit(x, y)
    with pytest.raises(InvalidParameter, match="input_example"):
        save_model(model, tmp_path / "a")
    save_model(model, tmp_path / "a", input_example=x.head())
    with pytest.raises(InvalidParameter, match="already exists"):
        save_model(model, tmp_path / "a", input_example=x.head())
    with pytest.raises(InvalidParameter, match="no predict"):
        save_model(object(), tmp_path / "b", input_example=x.head())
    with pytest.raises(NotFound):
        load_model(tmp_path / "nothing")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging left behind"


def test_log_model_in_a_run_and_load_by_runs_uri(tracking: Path) -> None:
    import keel

    x, y = _data()
    with keel.start_run() as run:
        keel.log_input(keel.Dataset("train", "abc123"), context="training")
        uri = keel.sklearn.log_model(_pipeline().fit(x, y), "model", input_example=x.head())
    assert uri == f"runs:/{run.info.run_id}/model"
    files = {f.path for f in keel.Client().list_artifacts(run.info.run_id, "model")}
    assert "model/MLmodel" in files and "model/keel.json" in files
    loaded = keel.models.load(uri)
    assert list(loaded.predict(x.head(5))) == list(_pipeline().fit(x, y).predict(x.head(5)))
    meta = json.loads((loaded.path / KEEL_FILE).read_text())
    assert meta["provenance"]["run_id"] == run.info.run_id
    assert meta["provenance"]["datasets"][0]["digest"] == "abc123"


class _Contrarian:
    """A classifier whose predict is not the class of highest probability."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x: Any) -> Any:
        p = np.clip(np.asarray(x, dtype=float)[:, 0] / 10, 0, 1)
        return np.column_stack([1 - p, p])

    def predict(self, x: Any) -> Any:
        return (self.predict_proba(x)[:, 1] < 0.5).astype(int)


def test_golden_labels_come_from_proba_only_where_predict_agrees() -> None:
    from keel.models.golden import GoldenSample, capture_golden, compare_golden

    x = np.arange(20, dtype=float).reshape(-1, 1) % 10
    y = (x[:, 0] > 4).astype(int)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    sample = capture_golden(forest, x)
    assert sample.labels_from_proba
    assert GoldenSample.from_dict(json.loads(json.dumps(sample.to_dict()))) == sample
    assert compare_golden(forest, sample) == []
    # A changed label is still caught, through the probabilities' argmax.
    flipped = dict(sample.outputs)
    labels = dict(flipped["predict"], data=list(flipped["predict"]["data"]))
    labels["data"][3] = 1 - labels["data"][3]
    flipped["predict"] = labels
    changed = GoldenSample(sample.inputs, flipped, labels_from_proba=True)
    assert compare_golden(forest, changed) == ["predict: 1 of 20 labels differ"]

    contrarian = capture_golden(_Contrarian(), x)
    assert not contrarian.labels_from_proba
    assert "labels_from_proba" not in contrarian.to_dict()
    assert compare_golden(_Contrarian(), contrarian) == []
