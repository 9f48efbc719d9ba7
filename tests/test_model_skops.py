"""skops packages: saved with serialization="skops", loaded through Keel's checks.

Every crafted file here is built from a real skops dump whose ``schema.json``
is edited; none is loaded except through Keel, and the canary file proves no
payload ran.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import keel
from keel.cli.main import app
from keel.errors import InvalidParameter
from keel.models import skops_format, verified
from keel.models.doctor import diagnose
from keel.models.onnx_twin import FallbackWarning
from keel.models.package import KEEL_FILE, ModelRefused, load_model, save_model
from keel.models.safety import UnsafePickle

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
pytest.importorskip("sklearn")
skops_io = pytest.importorskip("skops.io")

from sklearn.cluster import Birch  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

SKOPS = "model.skops"


class LocalModel:
    """A user's own model class: unknown to Keel until trusted."""

    def __init__(self, threshold: float = 0.0) -> None:
        self.threshold = threshold

    def predict(self, x: Any) -> Any:
        return (np.asarray(x, dtype=float)[:, 0] > self.threshold).astype(int)


def _frame() -> tuple[Any, Any]:
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


def _matrix() -> tuple[Any, Any]:
    x = np.random.default_rng(1).normal(size=(200, 4))
    return x, (x[:, 0] + x[:, 1] > 0).astype(int)


def _pipeline() -> tuple[Any, Any]:
    x, y = _frame()
    pre = ColumnTransformer(
        [("num", StandardScaler(), ["age", "income"]), ("cat", OneHotEncoder(), ["plan"])]
    )
    return make_pipeline(pre, LogisticRegression(max_iter=500)).fit(x, y), x


def _forest() -> tuple[Any, Any]:
    x, y = _matrix()
    return RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y), x


def _hist() -> tuple[Any, Any]:
    x, y = _matrix()
    return HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, y), x


MODELS = {"pipeline": _pipeline, "forest": _forest, "histgb": _hist}


def _meta(path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((path / KEEL_FILE).read_text())
    return meta


def _replace_model_file(path: Path, data: bytes) -> None:
    """Write new skops bytes into a package with a matching checksum, as an attacker would."""
    (path / SKOPS).write_bytes(data)
    meta = _meta(path)
    meta["files"][SKOPS] = hashlib.sha256(data).hexdigest()
    (path / KEEL_FILE).write_text(json.dumps(meta))


def _edit_schema(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """The same skops archive with its schema.json changed by ``edit``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            raw = src.read(info.filename)
            if info.filename == "schema.json":
                schema = json.loads(raw)
                edit(schema)
                raw = json.dumps(schema).encode()
            dst.writestr(info.filename, raw)
    return out.getvalue()


def _nodes(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if isinstance(value.get("__loader__"), str):
            yield value
        for child in value.values():
            yield from _nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from _nodes(child)


def _json(value: Any) -> dict[str, Any]:
    return {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
    }


def _call(module: str, name: str, *args: Any) -> dict[str, Any]:
    """A node skops rebuilds as ``module.name(*args)`` once the name is trusted."""
    return {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [_json(a) for a in args],
        },
    }


def _with_extra_node(node: dict[str, Any]) -> bytes:
    """A real skops list dump with ``node`` appended to its items."""
    return _edit_schema(skops_io.dumps([1, 2]), lambda s: s["content"].append(node))


# ---------------------------------------------------------------------------
# Saving and loading


@pytest.mark.parametrize("name", sorted(MODELS))
def test_skops_round_trip(name: str, tmp_path: Path) -> None:
    model, x = MODELS[name]()
    path = save_model(model, tmp_path / "pkg", input_example=x[:20], serialization="skops")
    names = {p.name for p in path.iterdir()} - {"model.onnx"}
    assert names == {
        "MLmodel", SKOPS, "requirements.txt", "python_env.yaml", "input_example.json", KEEL_FILE
    }  # fmt: skip
    meta = _meta(path)
    assert meta["serializer"] == f"skops-{skops_format.skops_version()}"
    assert meta["model_file"] == SKOPS and "pickle" not in meta
    assert meta["skops"]["protocol"] >= 0
    assert f"{type(model).__module__}.{type(model).__name__}" in meta["skops"]["types"]
    packages = meta["environment"]["packages"]
    assert {"skops", "scikit-learn", "numpy"} <= set(packages)
    assert f"skops=={skops_format.skops_version()}" in (path / "requirements.txt").read_text()
    flavors = yaml.safe_load((path / "MLmodel").read_text())["flavors"]
    assert flavors["sklearn"]["pickled_model"] == SKOPS
    assert flavors["sklearn"]["serialization_format"] == "skops"
    assert flavors["python_function"]["model_path"] == SKOPS
    untrusted = skops_io.get_untrusted_types(file=path / SKOPS)
    assert flavors["sklearn"]["skops_trusted_types"] == untrusted

    loaded = load_model(path, cache=False)
    assert loaded.backend == "native" and loaded.flavor == "sklearn" and not loaded.warnings
    assert loaded.predict(x[:50]).tolist() == model.predict(x[:50]).tolist()
    assert (
        keel.models.load(path, cache=False).predict(x[:3]).tolist() == model.predict(x[:3]).tolist()
    )


def test_the_golden_sample_is_checked_for_skops(tmp_path: Path) -> None:
    model, x = _forest()
    path = save_model(
        model, tmp_path / "pkg", input_example=x[:20], serialization="skops", onnx=False
    )
    meta = _meta(path)
    labels = meta["golden"]["outputs"]["predict"]["data"]
    labels[0] = 1 - labels[0]
    (path / KEEL_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelRefused, match="1 of 20 labels differ"):
        load_model(path, cache=False)


def test_the_verified_cache_works_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("KEEL_VERIFIED_CACHE", raising=False)
    model, x = _forest()
    path = save_model(
        model, tmp_path / "pkg", input_example=x[:20], serialization="skops", onnx=False
    )
    time.sleep(verified.SETTLE_SECONDS + 0.1)  # the real rule: only settled files are remembered
    first = load_model(path)
    second = load_model(path)
    assert not first.from_cache and second.from_cache
    assert second.predict(x).tolist() == model.predict(x).tolist()
    assert not load_model(path, cache=False).from_cache
    # A replaced model file (checksum updated too) is checked in full again, and refused
    # by the allow-list, which runs on every load, cached or not.
    _replace_model_file(path, _with_extra_node(_call("os", "system", "true")))
    with pytest.raises(UnsafePickle, match=r"os\.system"):
        load_model(path)


def test_onnx_twin_still_answers_when_the_environment_differs(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model, x = _forest()
    path = save_model(model, tmp_path / "pkg", input_example=x[:20], serialization="skops")
    meta = _meta(path)
    assert meta["onnx"]["file"] == "model.onnx"
    meta["environment"]["packages"]["scikit-learn"] = "1.3.2"
    (path / KEEL_FILE).write_text(json.dumps(meta))
    with pytest.warns(FallbackWarning, match="scikit-learn"):
        loaded = load_model(path, cache=False)
    assert loaded.backend == "onnx"
    # The rows the twin passed parity on (elsewhere a 5/5 vote of 10 trees may tie).
    assert loaded.predict(x[:20]).tolist() == model.predict(x[:20]).tolist()


def test_log_model_with_skops_and_load_by_runs_uri(tracking: Path) -> None:
    model, x = _forest()
    with keel.start_run():
        uri = keel.sklearn.log_model(model, "model", input_example=x[:5], serialization="skops")
    loaded = keel.models.load(uri, cache=False)
    assert (loaded.path / SKOPS).is_file()
    assert loaded.predict(x[:5]).tolist() == model.predict(x[:5]).tolist()


def test_save_errors(tmp_path: Path) -> None:
    model, x = _forest()
    with pytest.raises(InvalidParameter, match="Unknown serialization 'json'"):
        save_model(model, tmp_path / "a", input_example=x[:5], serialization="json")
    birch = Birch(n_clusters=2).fit(x)
    with pytest.raises(InvalidParameter, match="skops cannot save this Birch") as err:
        save_model(birch, tmp_path / "b", input_example=x[:5], serialization="skops")
    assert "serialization='pickle'" in err.value.message
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


_WITHOUT_SKOPS = """
import sys
sys.modules["skops"] = None  # as if skops were not installed
import numpy as np
from sklearn.tree import DecisionTreeClassifier
from keel.errors import MissingDependency
from keel.models.package import load_model, save_model
x = np.arange(10.0).reshape(-1, 1); y = (x[:, 0] > 4).astype(int)
try:
    save_model(DecisionTreeClassifier().fit(x, y), sys.argv[1] + "/new", input_example=x,
               serialization="skops")
except MissingDependency as exc:
    print(exc.message)
try:
    load_model(sys.argv[1] + "/pkg", cache=False)
except MissingDependency as exc:
    print(exc.message)
"""


def test_without_skops_the_error_says_how_to_install_it(tmp_path: Path) -> None:
    model, x = _forest()
    save_model(model, tmp_path / "pkg", input_example=x[:5], serialization="skops", onnx=False)
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SKOPS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2, out.stdout
    assert all("pip install 'keel[skops]'" in line for line in lines)
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------
# The allow-list over a skops file's types


def test_a_local_class_is_refused_by_name_until_trusted(tmp_path: Path) -> None:
    x = np.arange(20.0).reshape(-1, 2)
    path = save_model(LocalModel(5.0), tmp_path / "pkg", input_example=x, serialization="skops")
    dotted = f"{__name__}.LocalModel"
    assert skops_io.get_untrusted_types(file=path / SKOPS) == [dotted]
    with pytest.raises(UnsafePickle) as err:
        load_model(path, cache=False)
    assert [r.name for r in err.value.refusals] == [dotted]
    assert err.value.message.startswith("Refusing to load the skops file")
    assert f'trusted=["{dotted}"]' in err.value.message
    assert "Prefer a format" not in err.value.message
    loaded = load_model(path, trusted=[dotted], cache=False)
    assert loaded.flavor == "python_function"
    assert loaded.predict(x).tolist() == LocalModel(5.0).predict(x).tolist()
    assert load_model(path, trusted=[f"{__name__}."], cache=False).model.threshold == 5.0


def test_a_command_in_the_schema_is_refused_and_never_runs(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    model, x = _pipeline()
    path = save_model(model, tmp_path / "pkg", input_example=x[:5], serialization="skops")
    _replace_model_file(path, _with_extra_node(_call("os", "system", f"touch {canary}")))
    with pytest.raises(UnsafePickle) as err:
        load_model(path, cache=False)
    assert [r.name for r in err.value.refusals] == ["os.system"]
    assert "malicious" in err.value.message
    with pytest.raises(UnsafePickle):  # trusting a prefix never unlocks os
        load_model(path, trusted=["os."], cache=False)
    assert not canary.exists()
    # doctor reads the same verdict without loading anything
    safety = next(c for c in diagnose(path).checks if c.name == "safety")
    assert not safety.ok and "os.system" in safety.detail
    assert not canary.exists()


def test_an_injected_popen_type_is_refused_before_anything_loads(tmp_path: Path) -> None:
    model, x = _forest()
    path = save_model(model, tmp_path / "pkg", input_example=x[:5], serialization="skops")
    data = (path / SKOPS).read_bytes()

    def popen(schema: dict[str, Any]) -> None:
        estimator = next(n for n in _nodes(schema) if n["__class__"] == "RandomForestClassifier")
        estimator["__module__"], estimator["__class__"] = "subprocess", "Popen"

    _replace_model_file(path, _edit_schema(data, popen))
    with pytest.raises(UnsafePickle) as err:
        load_model(path, cache=False)
    assert [r.name for r in err.value.refusals] == ["subprocess.Popen"]
    assert "module 'subprocess' runs commands" in err.value.message


def test_types_skops_trusts_by_default_are_still_judged_by_keel() -> None:
    # skops trusts builtins.map (a type value) by default; Keel's list does not.
    data = _with_extra_node(
        {"__class__": "map", "__module__": "builtins", "__loader__": "TypeNode"}
    )
    assert skops_io.get_untrusted_types(data=data) == []
    with pytest.raises(UnsafePickle, match=r"builtins\.map"):
        skops_format.loads(data)


def test_a_loader_is_judged_by_what_it_builds_not_by_the_name_in_the_file() -> None:
    from functools import partial

    data = skops_io.dumps([partial(np.add, 1)])
    assert skops_io.get_untrusted_types(data=data) == ["functools.partial"]

    def rename(schema: dict[str, Any]) -> None:
        node = next(n for n in _nodes(schema) if n["__loader__"] == "PartialNode")
        node["__module__"], node["__class__"] = "builtins", "dict"

    renamed = _edit_schema(data, rename)
    # skops now reports only the claimed name, yet would still build a partial.
    assert skops_io.get_untrusted_types(data=renamed) == ["builtins.dict"]
    with pytest.raises(UnsafePickle) as err:
        skops_format.loads(renamed, trusted=["builtins.dict"])
    assert [r.name for r in err.value.refusals] == ["functools.partial"]


def test_a_generator_naming_a_function_as_its_bit_generator_is_refused() -> None:
    data = skops_io.dumps([np.random.default_rng(0)])
    assert type(skops_format.loads(data)[0]).__name__ == "Generator"

    def seed(schema: dict[str, Any]) -> None:
        node = next(n for n in _nodes(schema) if n["__loader__"] == "RandomGeneratorNode")
        node["content"]["bit_generator"]["content"]["bit_generator"]["content"] = '"seed"'

    with pytest.raises(UnsafePickle) as err:
        skops_format.loads(_edit_schema(data, seed))
    assert [r.name for r in err.value.refusals] == ["numpy.random.seed"]
    assert "a function, not a class" in err.value.message


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s["content"].append({**_json(1), "__loader__": "EvalNode"}), "EvalNode"),
        (lambda s: s["content"].append({**_json(1), "__module__": 7}), "not two strings"),
        (lambda s: s.update(protocol="2"), "protocol '2'"),
    ],
    ids=["unknown-node-kind", "non-string-name", "bad-protocol"],
)
def test_malformed_schemas_are_refused(edit: Callable[[dict[str, Any]], None], match: str) -> None:
    data = _edit_schema(skops_io.dumps([1, 2]), edit)
    with pytest.raises(UnsafePickle, match=match) as err:
        skops_format.check_skops(data)
    assert err.value.refusals[0].name == "malformed skops file"
    assert "no option allows it" in err.value.message


def test_a_zip_without_a_schema_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("model.pkl", b"\x80\x05N.")
    with pytest.raises(UnsafePickle, match=r"no schema\.json"):
        skops_format.loads(out.getvalue())


def test_a_file_from_a_newer_skops_is_refused_with_the_fix() -> None:
    data = skops_io.dumps([1])
    newer = _edit_schema(data, lambda s: s.update(protocol=99, _skops_version="9.1.0"))
    with pytest.raises(ModelRefused, match=r"pip install 'skops==9\.1\.0'"):
        skops_format.loads(newer)


def test_every_node_kind_skops_knows_is_known_to_keel() -> None:
    """A skops upgrade that adds a node kind shows up here (until then Keel refuses it)."""
    from skops.io._audit import NODE_TYPE_MAPPING

    assert {loader for loader, _ in NODE_TYPE_MAPPING} <= set(skops_format._LOADERS)


def test_crafted_trees_are_refused_after_loading_before_predict(tmp_path: Path) -> None:
    """skops leaves Tree and TreePredictor untrusted for their node arrays; Keel checks them."""
    for make, label in ((_forest, "tree"), (_hist, "hist tree")):
        model, x = make()
        path = save_model(
            model, tmp_path / label, input_example=x[:10], serialization="skops", onnx=False
        )
        if label == "tree":
            tree = model.estimators_[1].tree_
            state = tree.__getstate__()
            state["nodes"] = state["nodes"].copy()
            state["nodes"]["left_child"][0] = 1_000_000
            tree.__setstate__(state)
        else:
            predictor = model._predictors[2][0]
            nodes = predictor.nodes.copy()
            nodes["feature_idx"][0] = 40  # the model has 4 features
            predictor.nodes = nodes
        _replace_model_file(path, skops_io.dumps(model))
        with pytest.raises(ModelRefused, match="out of bounds") as err:
            load_model(path, cache=False)
        assert f"{label} " in err.value.message


# ---------------------------------------------------------------------------
# doctor and the CLI


def test_doctor_and_inspect_on_a_skops_package(tmp_path: Path) -> None:
    model, x = _hist()
    path = save_model(model, tmp_path / "pkg", input_example=x[:5], serialization="skops")
    report = diagnose(path)
    assert report.ok
    safety = next(c for c in report.checks if c.name == "safety")
    assert safety.detail.startswith("skops file:") and "allow-list" in safety.detail
    runner = CliRunner()
    result = runner.invoke(app, ["models", "doctor", str(path)])
    assert result.exit_code == 0 and "would load" in result.output
    info = json.loads(runner.invoke(app, ["models", "inspect", str(path), "--json"]).stdout)
    assert info["serializer"].startswith("skops-") and info["pickle_globals"] == []
    assert any(t.endswith("HistGradientBoostingClassifier") for t in info["skops_types"])
    text = runner.invoke(app, ["models", "inspect", str(path)]).output
    assert "skops types" in text
    lock = runner.invoke(app, ["models", "lock", str(path)]).stdout
    assert "skops==" in lock and "scikit-learn==" in lock


def test_a_bare_skops_file_loads_too(tmp_path: Path) -> None:
    model, x = _forest()
    skops_io.dump(model, tmp_path / "forest.skops")
    loaded = keel.models.load(tmp_path / "forest.skops")
    assert loaded.predict(x).tolist() == model.predict(x).tolist()
    assert "bare skops file" in loaded.warnings[0]
