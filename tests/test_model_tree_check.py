"""Crafted tree node arrays are refused before any predict could follow them."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from keel.models.package import KEEL_FILE, ModelRefused, load_model, save_model
from keel.models.tree_check import tree_problems

np = pytest.importorskip("numpy")
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402


def _xy() -> tuple[Any, Any]:
    x = np.random.default_rng(5).normal(size=(120, 4))
    return x, (x[:, 0] + x[:, 1] > 0).astype(int)


def _tamper(tree: Any, field: str, index: int, value: int) -> None:
    """Rewrite one node field through the Tree's own pickle state (never predict after)."""
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    nodes[field][index] = value
    state["nodes"] = nodes
    tree.__setstate__(state)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DecisionTreeClassifier(random_state=0),
        lambda: RandomForestClassifier(n_estimators=5, random_state=0),
        lambda: GradientBoostingClassifier(n_estimators=5, random_state=0),
        lambda: make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3)),
    ],
)
def test_real_models_pass(make: Any) -> None:
    x, y = _xy()
    assert tree_problems(make().fit(x, y)) == []


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("left_child", 10_000, "left child indices"),
        ("right_child", -7, "right child indices"),
        ("feature", 99, "feature indices"),
        ("left_child", 0, "left child indices"),  # back to the root: a loop
    ],
)
def test_crafted_nodes_are_found(field: str, value: int, problem: str) -> None:
    x, y = _xy()
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    _tamper(forest.estimators_[1].tree_, field, 0, value)
    found = tree_problems(make_pipeline(StandardScaler().fit(x), forest))
    assert any(problem in p and p.startswith("tree 1") for p in found), found


def test_crafted_package_is_refused_before_predict(tmp_path: Path) -> None:
    x, y = _xy()
    model = DecisionTreeClassifier(random_state=0).fit(x, y)
    path = save_model(model, tmp_path / "m", input_example=x[:10], onnx=False)
    _tamper(model.tree_, "left_child", 0, 1_000_000)
    payload = pickle.dumps(model, protocol=5)
    (path / "model.pkl").write_bytes(payload)
    meta = json.loads((path / KEEL_FILE).read_text())
    meta["files"]["model.pkl"] = hashlib.sha256(payload).hexdigest()
    (path / KEEL_FILE).write_text(json.dumps(meta))
    # If predict ran first, this process could crash instead of raising.
    with pytest.raises(ModelRefused, match="out of bounds"):
        load_model(path)


# --- HistGradientBoosting's TreePredictor ------------------------------------


def _hist(categorical: bool = False) -> Any:
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = _xy()
    frame = pd.DataFrame(x, columns=list("abcd"))
    if categorical:
        frame["d"] = pd.Categorical(np.where(x[:, 3] > 0, "u", np.where(x[:, 2] > 0, "v", "w")))
        y = ((frame["d"] == "u") ^ (x[:, 0] > 0)).astype(int)
    features = "from_dtype" if categorical else None
    model = HistGradientBoostingClassifier(
        max_iter=6, random_state=0, categorical_features=features
    )
    return model.fit(frame, y)


def _tamper_predictor(model: Any, field: str, value: int, categorical: bool = False) -> None:
    for iteration in model._predictors:
        for predictor in iteration:
            nodes = predictor.nodes.copy()
            where = np.flatnonzero(nodes["is_categorical"] == 1) if categorical else [0]
            if len(where):
                nodes[field][where[0]] = value
                predictor.nodes = nodes
                return
    raise AssertionError("no node to tamper with")


@pytest.mark.parametrize("categorical", [False, True])
def test_real_hist_gradient_boosting_passes(categorical: bool) -> None:
    assert tree_problems(make_pipeline(_hist(categorical))) == []


@pytest.mark.parametrize(
    ("field", "value", "categorical", "problem"),
    [
        ("left", 10_000, False, "left child indices"),
        ("right", 0, False, "right child indices"),  # back to the root: a loop
        ("feature_idx", 4, False, "feature indices outside 0..3"),
        ("feature_idx", -1, False, "feature indices outside 0..3"),
        ("bitset_idx", 500, True, "categorical bitset indices"),
        # Predictors index the preprocessed columns, categorical ones first: 1 is numeric.
        ("feature_idx", 1, True, "does not treat as categorical"),
    ],
)
def test_crafted_hist_nodes_are_found(
    field: str, value: int, categorical: bool, problem: str
) -> None:
    model = _hist(categorical)
    _tamper_predictor(model, field, value, categorical)
    found = tree_problems(model)
    assert any(problem in p and p.startswith("hist tree") for p in found), found


def test_a_predictor_placed_elsewhere_first_is_still_checked_under_its_model() -> None:
    model = _hist()
    _tamper_predictor(model, "feature_idx", 40, False)
    first = model._predictors[0][0]
    # Reached first outside the estimator (its feature bound unknown there)...
    found = tree_problems(make_pipeline(StandardScaler(), model).__dict__ | {"x": [first]})
    assert any("feature indices outside 0..3" in p for p in found), found


def test_trees_nested_too_deep_to_check_are_refused_not_skipped() -> None:
    x, y = _xy()
    nested: Any = DecisionTreeClassifier().fit(x, y)
    for _ in range(120):
        nested = [nested]
    assert tree_problems(nested) == [
        "objects nested more than 100 levels deep, too deep to check for trees"
    ]
