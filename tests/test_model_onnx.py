"""The ONNX twin: conversion, parity, and falling back to it when the native model cannot load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keel.models.package import KEEL_FILE, ModelRefused, load_model, save_model

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
pytest.importorskip("skl2onnx")
pytest.importorskip("onnxruntime")

from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

from keel.models import package  # noqa: E402
from keel.models.onnx_twin import FallbackWarning, OnnxModel, convert, parity  # noqa: E402


def _frame() -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 300),
            "income": rng.normal(50_000, 10_000, 300),
            "plan": rng.choice(["basic", "pro", "team"], 300),
        }
    )
    y = (x["income"] > 50_000).astype(int) ^ (x["plan"] == "pro").astype(int)
    return x, y


def _matrix() -> tuple[Any, Any]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4))
    return x, (x[:, 0] + x[:, 1] > 0).astype(int)


def _column_pipeline() -> Any:
    pre = ColumnTransformer(
        [("num", StandardScaler(), ["age", "income"]), ("cat", OneHotEncoder(), ["plan"])]
    )
    return make_pipeline(pre, LogisticRegression(max_iter=500))


# (model, data): numpy for the scaled logistic regression, numeric frames for the
# trees, the mixed frame for the ColumnTransformer.
CASES = {
    "logreg": (lambda: make_pipeline(StandardScaler(), LogisticRegression()), "matrix"),
    "tree": (lambda: DecisionTreeClassifier(random_state=0), "numeric"),
    # An odd tree count: with an even one, rows the forest splits 50/50 are
    # ties that float32 probabilities may break the other way.
    "forest": (lambda: RandomForestClassifier(n_estimators=25, random_state=0), "numeric"),
    "gboost": (lambda: GradientBoostingClassifier(n_estimators=20, random_state=0), "numeric"),
    "columns": (_column_pipeline, "frame"),
}


def _fit(name: str) -> tuple[Any, Any]:
    make, kind = CASES[name]
    if kind == "matrix":
        x, y = _matrix()
    else:
        x, y = _frame()
        x = x if kind == "frame" else x[["age", "income"]]
    return make().fit(x, y), x


def _meta(path: Path) -> dict[str, Any]:
    return json.loads((path / KEEL_FILE).read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", list(CASES))
def test_twin_passes_parity_and_predicts_like_the_native_model(name: str, tmp_path: Path) -> None:
    model, x = _fit(name)
    path = save_model(model, tmp_path / "pkg", input_example=x[:10], training_data=x)
    entry = _meta(path)["onnx"]
    assert entry["file"] == "model.onnx" and (path / "model.onnx").is_file()
    assert "model.onnx" in _meta(path)["files"]  # checksummed like every other file
    report = entry["parity"]
    assert report["passed"] and report["label_agreement"] == 1.0
    assert report["max_abs_diff"] <= 1e-4 and report["rows"] == 10 + 300
    assert entry["skl2onnx"] and entry["onnxruntime"] and entry["opset"]
    twin = OnnxModel((path / "model.onnx").read_bytes())
    assert twin.predict(x).tolist() == model.predict(x).tolist()
    assert np.abs(twin.predict_proba(x) - model.predict_proba(x)).max() <= 1e-4


def test_string_labels_come_back_as_strings() -> None:
    x, y = _frame()
    model = DecisionTreeClassifier(random_state=0).fit(x[["age"]], np.where(y == 1, "yes", "no"))
    twin = OnnxModel(convert(model, x[["age"]]).onnx_bytes or b"")
    assert twin.predict(x[["age"]]).tolist() == model.predict(x[["age"]]).tolist()


def test_hist_gradient_boosting_twin_or_reason(tmp_path: Path) -> None:
    """skl2onnx 1.20 with onnx 1.23 cannot build this converter's node; the reason is kept."""
    x, y = _frame()
    model = HistGradientBoostingClassifier(max_iter=10).fit(x[["age", "income"]], y)
    path = save_model(model, tmp_path / "pkg", training_data=x[["age", "income"]])
    entry = _meta(path)["onnx"]
    if entry["file"] is None:
        assert "HistGradientBoostingClassifier" in entry["reason"]
        assert not (path / "model.onnx").exists()
    else:
        assert entry["parity"]["passed"]
    assert load_model(path).backend == "native"


def _double(values: Any) -> Any:
    return values * 2


class Memorizer(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """An estimator skl2onnx has never heard of."""

    def fit(self, x: Any, y: Any) -> Memorizer:
        self.classes_ = np.unique(y)
        return self

    def predict(self, x: Any) -> Any:
        return np.full(len(x), self.classes_[0])


@pytest.mark.parametrize(
    "make",
    [
        lambda: Memorizer(),
        lambda: make_pipeline(FunctionTransformer(_double), LogisticRegression()),
    ],
    ids=["custom", "function"],
)
def test_unconvertible_model_records_a_reason(make: Any, tmp_path: Path) -> None:
    x, y = _matrix()
    model = make().fit(x, y)
    assert convert(model, x[:5]).onnx_bytes is None
    path = save_model(model, tmp_path / "pkg", input_example=x[:5])
    entry = _meta(path)["onnx"]
    assert entry["file"] is None and "cannot convert" in entry["reason"]
    assert not (path / "model.onnx").exists()


def test_onnx_false_skips_conversion(tmp_path: Path) -> None:
    model, x = _fit("logreg")
    path = save_model(model, tmp_path / "pkg", input_example=x[:5], onnx=False)
    assert _meta(path)["onnx"] is None and not (path / "model.onnx").exists()


def test_parity_measures_a_wrong_twin() -> None:
    x, y = _matrix()
    model = LogisticRegression().fit(x, y)
    other = LogisticRegression(C=1e-4).fit(x, y)  # a different model's "twin"
    report = parity(model, convert(other, x).onnx_bytes, x[:20], x)
    assert not report.passed and report.max_abs_diff > 1e-4 and report.rows == 20 + 300


def _claim_old_sklearn(path: Path) -> None:
    meta = _meta(path)
    meta["environment"]["packages"]["scikit-learn"] = "1.3.2"
    (path / KEEL_FILE).write_text(json.dumps(meta))


def test_environment_failure_falls_back_without_unpickling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, x = _fit("columns")
    path = save_model(model, tmp_path / "pkg", input_example=x[:20])
    _claim_old_sklearn(path)

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the native pickle was unpickled")

    monkeypatch.setattr(package.pickle, "loads", forbidden)
    with pytest.warns(FallbackWarning, match="scikit-learn"):
        loaded = load_model(path)
    assert loaded.backend == "onnx" and "1.3.2" in loaded.warnings[0]
    assert loaded.predict(x).tolist() == model.predict(x).tolist()
    assert np.abs(loaded.predict_proba(x) - model.predict_proba(x)).max() <= 1e-4


def test_golden_failure_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = _fit("tree")
    path = save_model(model, tmp_path / "pkg", input_example=x[:20])
    # As if the unpickled model answered differently here (the twin is checked on its own).
    monkeypatch.setattr(package, "compare_golden", lambda *a: ["predict: 1 of 20 labels differ"])
    with pytest.warns(FallbackWarning, match="does not answer as it did"):
        loaded = load_model(path)
    assert loaded.backend == "onnx"
    assert loaded.predict(x).tolist() == model.predict(x).tolist()


def test_no_fallback_refuses_and_names_the_twin(tmp_path: Path) -> None:
    model, x = _fit("logreg")
    path = save_model(model, tmp_path / "pkg", input_example=x[:5])
    _claim_old_sklearn(path)
    with pytest.raises(ModelRefused, match="fallback=False") as err:
        load_model(path, fallback=False)
    assert "1.3.2" in err.value.message and "ONNX twin" in err.value.message


def test_without_a_twin_the_refusal_says_why(tmp_path: Path) -> None:
    model, x = _fit("logreg")
    path = save_model(model, tmp_path / "pkg", input_example=x[:5], onnx=False)
    _claim_old_sklearn(path)
    with pytest.raises(ModelRefused, match="no ONNX twin"):
        load_model(path)


def test_a_twin_that_no_longer_matches_the_golden_sample_is_refused(tmp_path: Path) -> None:
    model, x = _fit("logreg")
    path = save_model(model, tmp_path / "pkg", input_example=x[:5])
    meta = _meta(path)
    meta["golden"]["outputs"]["predict"]["data"][0] = (
        1 - meta["golden"]["outputs"]["predict"]["data"][0]
    )
    (path / KEEL_FILE).write_text(json.dumps(meta))
    _claim_old_sklearn(path)
    with pytest.raises(ModelRefused, match="ONNX twin was tried too"):
        load_model(path)


def test_tampered_twin_is_refused_when_it_would_answer(tmp_path: Path) -> None:
    """The twin is only hashed when it is about to be used, and then it must match."""
    import json

    from sklearn.tree import DecisionTreeClassifier

    from keel.models.package import KEEL_FILE, ModelRefused, load_model, save_model

    x = np.random.default_rng(3).normal(size=(80, 3))
    y = (x[:, 0] > 0).astype(int)
    path = save_model(
        DecisionTreeClassifier(random_state=0).fit(x, y), tmp_path / "m", input_example=x[:10]
    )
    with (path / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    assert load_model(path).backend == "native"  # the native model answers; twin unused
    meta = json.loads((path / KEEL_FILE).read_text())
    meta["environment"]["packages"]["scikit-learn"] = "1.3.2"
    (path / KEEL_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelRefused, match=r"model\.onnx was changed"):
        load_model(path)
