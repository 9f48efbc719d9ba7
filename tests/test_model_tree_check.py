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
