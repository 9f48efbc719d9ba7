"""MLflow-format directories load through the environment and safety checks, or are refused."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pickle
import platform
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

import keel
from keel.models.mlflow_format import MAX_DESCRIPTOR_BYTES, load_mlflow_model
from keel.models.package import ModelRefused, load_model, read_meta
from keel.models.safety import UnsafePickle

np = pytest.importorskip("numpy")
sklearn = pytest.importorskip("sklearn")

from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

BENCH_PYTHON = Path(__file__).resolve().parent.parent / ".venv-bench" / "bin" / "python"


def _data() -> tuple[Any, Any]:
    x = np.random.default_rng(0).normal(size=(60, 3))
    return x, (x[:, 0] + x[:, 1] > 0).astype(int)


def _mlmodel(
    file: str = "model.pkl", fmt: str = "cloudpickle", sklearn_version: str | None = None
) -> dict[str, Any]:
    """MLflow 3's descriptor for a sklearn model (mlflow-wire.md §14), trimmed."""
    return {
        "flavors": {
            "python_function": {
                "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                "loader_module": "mlflow.sklearn",
                "model_path": file,
                "predict_fn": "predict",
                "python_version": platform.python_version(),
            },
            "sklearn": {
                "code": None,
                "pickled_model": file,
                "serialization_format": fmt,
                "sklearn_version": sklearn_version or sklearn.__version__,
                "skops_trusted_types": None,
            },
        },
        "mlflow_version": "3.17.2",
        "model_uuid": "f5aad91d4ffc42b0bdf0ab867ae62450",
    }


def _requirements(**overrides: str) -> str:
    """What MLflow writes: itself, cloudpickle, then the model's packages, all pinned."""
    names = ["cloudpickle", "numpy", "pandas", "scikit-learn", "scipy"]
    pins = {n: overrides.get(n, importlib.metadata.version(n)) for n in names}
    return "mlflow==3.17.2\n" + "".join(f"{n}=={v}\n" for n, v in pins.items())


def _write(
    root: Path,
    model: Any,
    *,
    descriptor: dict[str, Any] | None = None,
    requirements: str | None = None,
) -> Path:
    """An MLflow-layout directory written by hand: no mlflow needed."""
    root.mkdir(parents=True)
    (root / "model.pkl").write_bytes(pickle.dumps(model, protocol=4))
    (root / "MLmodel").write_text(yaml.safe_dump(descriptor or _mlmodel(), sort_keys=False))
    (root / "requirements.txt").write_text(requirements or _requirements())
    (root / "python_env.yaml").write_text(
        f"python: {platform.python_version()}\nbuild_dependencies:\n- pip\n"
        "dependencies:\n- -r requirements.txt\n"
    )
    return root


def _fitted() -> tuple[Any, Any]:
    x, y = _data()
    return LogisticRegression().fit(x, y), x


class _Payload:
    """Unpickling this runs a shell command: the canary proves it never ran."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.canary}",))


# ---------------------------------------------------------------------------
# Hand-built directories


def test_hand_built_directory_loads_with_what_was_not_checked(tmp_path: Path) -> None:
    model, x = _fitted()
    root = _write(tmp_path / "m", model)
    loaded = load_model(root)  # dispatched: MLmodel and no keel.json
    assert loaded.flavor == "sklearn" and loaded.backend == "native"
    assert loaded.predict(x).tolist() == model.predict(x).tolist()
    assert loaded.environment is not None and loaded.environment.ok
    notes = "\n".join(loaded.warnings)
    assert "no checksums" in notes and "no golden sample" in notes
    # pandas is declared by MLflow but the pickle never names it.
    assert "not referenced by the pickle" in notes and "pandas==" in notes
    assert "mlflow" not in notes.replace("MLflow", "")  # MLflow's own pin is simply dropped
    assert keel.models.load(root).predict(x[:3]).tolist() == model.predict(x[:3]).tolist()
    assert not any("golden" in w for w in load_model(root, check_golden=False).warnings)


def test_pyfunc_only_descriptor_loads(tmp_path: Path) -> None:
    model, x = _fitted()
    descriptor = _mlmodel()
    del descriptor["flavors"]["sklearn"]
    loaded = load_mlflow_model(_write(tmp_path / "m", model, descriptor=descriptor))
    assert loaded.predict(x).tolist() == model.predict(x).tolist()


def test_symlink_inside_the_directory_is_followed(tmp_path: Path) -> None:
    model, x = _fitted()
    root = _write(tmp_path / "m", model)
    (root / "model.pkl").rename(root / "real.pkl")
    (root / "model.pkl").symlink_to("real.pkl")
    assert load_model(root).predict(x).tolist() == model.predict(x).tolist()


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "sub/dir.pkl", "..", "", "a\\b"])
def test_model_file_names_that_leave_the_directory_are_refused(tmp_path: Path, name: str) -> None:
    canary = tmp_path / "canary"
    (tmp_path / "x").write_bytes(pickle.dumps(_Payload(canary), protocol=4))
    root = _write(tmp_path / "m", _fitted()[0], descriptor=_mlmodel(file=name))
    (root / "sub").mkdir()
    (root / "sub" / "dir.pkl").write_bytes((root / "model.pkl").read_bytes())
    with pytest.raises(ModelRefused, match="not a plain file name"):
        load_model(root)
    assert not canary.exists()


def test_symlink_pointing_outside_is_refused_before_reading(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    outside = tmp_path / "outside.pkl"
    outside.write_bytes(pickle.dumps(_Payload(canary), protocol=4))
    root = _write(tmp_path / "m", _fitted()[0])
    (root / "model.pkl").unlink()
    (root / "model.pkl").symlink_to(outside)
    with pytest.raises(ModelRefused, match="leads outside the model directory"):
        load_model(root)
    assert not canary.exists()


def test_missing_model_file_is_refused(tmp_path: Path) -> None:
    root = _write(tmp_path / "m", _fitted()[0])
    (root / "model.pkl").unlink()
    with pytest.raises(ModelRefused, match="is missing"):
        load_model(root)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    root = _write(tmp_path / "m", _Payload(canary))
    with pytest.raises(UnsafePickle, match="system"):
        load_model(root)
    assert not canary.exists()


def test_crafted_tree_is_refused_before_any_predict(tmp_path: Path) -> None:
    x, y = _data()
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    tree = forest.estimators_[1].tree_
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = 1_000_000  # predict would read far past the node array
    state["nodes"] = nodes
    tree.__setstate__(state)
    with pytest.raises(ModelRefused, match="out of bounds"):
        load_model(_write(tmp_path / "m", forest))


def test_old_scikit_learn_is_refused_with_the_pip_fix(tmp_path: Path) -> None:
    model, x = _fitted()
    descriptor = _mlmodel(sklearn_version="1.3.2")
    root = _write(
        tmp_path / "m",
        model,
        descriptor=descriptor,
        requirements=_requirements(**{"scikit-learn": "1.3.2"}),
    )
    with pytest.raises(ModelRefused) as err:
        load_model(root)
    assert "scikit-learn: saved 1.3.2" in err.value.message
    assert "pip install 'scikit-learn==1.3.2'" in err.value.message
    assert "no ONNX twin" in err.value.message
    loaded = load_model(root, policy="warn")
    assert loaded.predict(x[:3]).tolist() == model.predict(x[:3]).tolist()
    assert any("scikit-learn" in w for w in loaded.warnings)


def test_flavor_sklearn_version_wins_over_requirements(tmp_path: Path) -> None:
    """requirements.txt can be overridden by the user; MLmodel records what pickled the model."""
    root = _write(
        tmp_path / "m", _fitted()[0], requirements=_requirements(**{"scikit-learn": "1.3.2"})
    )
    notes = "\n".join(load_model(root).warnings)
    assert "pins scikit-learn==1.3.2 but MLmodel says" in notes


def test_unpinned_requirements_are_noted_not_refused(tmp_path: Path) -> None:
    model = _fitted()[0]
    requirements = _requirements().replace("pandas==", "pandas>=") + "-r other.txt\n"
    root = _write(tmp_path / "m", model, requirements=requirements)
    notes = "\n".join(load_model(root).warnings)
    assert "not pinned to one version" in notes and "pandas>=" in notes and "-r other.txt" in notes


def test_scipy_is_checked_as_a_companion_of_scikit_learn(tmp_path: Path) -> None:
    """The pickle names only sklearn and numpy, but estimators can hold scipy objects."""
    root = _write(tmp_path / "m", _fitted()[0], requirements=_requirements(scipy="0.19.1"))
    with pytest.raises(ModelRefused, match=r"pip install 'scipy==0\.19\.1'"):
        load_model(root)


def _write_skops(root: Path, model: Any, **kwargs: Any) -> Path:
    """An MLflow skops directory by hand: skops.io.dump and MLflow's descriptor and pins."""
    skops_io = pytest.importorskip("skops.io")
    kwargs.setdefault("descriptor", _mlmodel(file="model.skops", fmt="skops"))
    kwargs.setdefault("requirements", _requirements() + f"skops=={skops_io_version()}\n")
    root = _write(root, None, **kwargs)
    (root / "model.pkl").unlink()
    skops_io.dump(model, root / "model.skops")
    return root


def skops_io_version() -> str:
    return importlib.metadata.version("skops")


def test_hand_built_skops_directory_loads(tmp_path: Path) -> None:
    x, y = _data()
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    descriptor = _mlmodel(file="model.skops", fmt="skops")
    descriptor["flavors"]["sklearn"]["skops_trusted_types"] = ["sklearn.tree._tree.Tree"]
    root = _write_skops(tmp_path / "m", model, descriptor=descriptor)
    loaded = load_model(root)
    assert loaded.flavor == "sklearn" and loaded.backend == "native"
    assert loaded.predict(x).tolist() == model.predict(x).tolist()
    notes = "\n".join(loaded.warnings)
    assert "no checksums" in notes and "no golden sample" in notes
    # The file's own list of trusted types is not how Keel decides.
    assert "does not take a file's word" in notes
    assert "not referenced by the skops file" in notes and "pandas==" in notes


def test_skops_pins_are_checked(tmp_path: Path) -> None:
    model, x = _fitted()
    pins = _requirements(**{"scikit-learn": "1.3.2"}) + f"skops=={skops_io_version()}\n"
    root = _write_skops(tmp_path / "m", model, requirements=pins)
    descriptor = _mlmodel(file="model.skops", fmt="skops", sklearn_version="1.3.2")
    (root / "MLmodel").write_text(yaml.safe_dump(descriptor))
    with pytest.raises(ModelRefused, match=r"pip install 'scikit-learn==1\.3\.2'"):
        load_model(root)
    assert load_model(root, policy="warn").predict(x[:3]).tolist() == model.predict(x[:3]).tolist()
    old_skops = _requirements() + "skops==0.9.0\n"
    other = _write_skops(tmp_path / "n", model, requirements=old_skops)
    assert any("skops: saved 0.9.0" in w for w in load_model(other).warnings)


def test_format_is_read_from_the_bytes(tmp_path: Path) -> None:
    model, x = _fitted()
    descriptor = _mlmodel(file="model.skops", fmt="skops")
    del descriptor["flavors"]["sklearn"]  # pyfunc only: no format recorded
    root = _write_skops(tmp_path / "m", model, descriptor=descriptor)
    assert load_model(root).predict(x).tolist() == model.predict(x).tolist()
    # MLmodel says skops, but the file is a pickle: refused, not unpickled.
    canary = tmp_path / "canary"
    other = _write(tmp_path / "n", _Payload(canary), descriptor=_mlmodel(fmt="skops"))
    with pytest.raises(ModelRefused, match="is not one"):
        load_model(other)
    assert not canary.exists()


def test_a_command_in_a_skops_file_is_refused_and_never_runs(tmp_path: Path) -> None:
    skops_io = pytest.importorskip("skops.io")
    canary = tmp_path / "canary"
    root = _write_skops(tmp_path / "m", _fitted()[0])
    data = skops_io.dumps([1])
    gadget = {
        "__class__": "system",
        "__module__": "os",
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [
                {
                    "__class__": "str",
                    "__module__": "builtins",
                    "__loader__": "JsonNode",
                    "content": json.dumps(f"touch {canary}"),
                    "is_json": True,
                }
            ],
        },
    }
    (root / "model.skops").write_bytes(_with_schema_node(data, gadget))
    with pytest.raises(UnsafePickle, match=r"os\.system"):
        load_model(root)
    assert not canary.exists()


def _with_schema_node(data: bytes, node: dict[str, Any]) -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            raw = src.read(info.filename)
            if info.filename == "schema.json":
                schema = json.loads(raw)
                schema["content"].append(node)
                raw = json.dumps(schema).encode()
            dst.writestr(info.filename, raw)
    return out.getvalue()


def test_other_formats_and_flavors_are_refused(tmp_path: Path) -> None:
    root = _write(tmp_path / "m", _fitted()[0], descriptor=_mlmodel(fmt="joblib"))
    with pytest.raises(ModelRefused, match="serialization format 'joblib'"):
        load_model(root)
    pyfunc = {"flavors": {"python_function": {"loader_module": "mlflow.pyfunc.model"}}}
    other = _write(tmp_path / "n", _fitted()[0], descriptor=pyfunc)
    with pytest.raises(ModelRefused, match="only the sklearn flavor"):
        load_model(other)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("flavors: [unclosed\n", "not valid YAML"),
        ("- a\n- list\n", "expected a YAML mapping"),
        ("just a string\n", "expected a YAML mapping"),
        ("artifact_path: x\n", "no 'flavors' mapping"),
        ("x: " + "a" * MAX_DESCRIPTOR_BYTES + "\n", "refuses files over"),
        ("!!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ],
    ids=["broken", "list", "scalar", "no-flavors", "huge", "yaml-gadget"],
)
def test_bad_mlmodel_is_refused(tmp_path: Path, text: str, match: str) -> None:
    root = _write(tmp_path / "m", _fitted()[0])
    (root / "MLmodel").write_text(text)
    with pytest.raises(ModelRefused, match=match):
        load_model(root)


def test_read_meta_points_to_the_loader(tmp_path: Path) -> None:
    root = _write(tmp_path / "m", _fitted()[0])
    with pytest.raises(ModelRefused, match=r"keel\.models\.load can load it"):
        read_meta(root)


# ---------------------------------------------------------------------------
# A directory written by MLflow 3 itself

_SAVE_WITH_MLFLOW = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import mlflow.sklearn
    from sklearn.ensemble import RandomForestClassifier

    x = np.random.default_rng(0).normal(size=(80, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    trusted = ["sklearn.tree._tree.Tree"] if sys.argv[3] == "skops" else None
    mlflow.sklearn.save_model(
        model, sys.argv[1], serialization_format=sys.argv[3], skops_trusted_types=trusted
    )
    out = {"x": x.tolist(), "predict": model.predict(x).tolist(),
           "proba": model.predict_proba(x).tolist()}
    with open(sys.argv[2], "w") as fh:
        json.dump(out, fh)
    """
)


def _save_with_mlflow(tmp_path: Path, fmt: str) -> tuple[Path, dict[str, Any]]:
    """Run MLflow 3 in the bench venv to save a forest; skip without that venv."""
    if not BENCH_PYTHON.exists():
        pytest.skip(f"needs the MLflow 3 bench venv at {BENCH_PYTHON}")
    probe = subprocess.run(
        [str(BENCH_PYTHON), "-c", "import mlflow.sklearn"], capture_output=True, timeout=60
    )
    if probe.returncode != 0:
        pytest.skip("mlflow is not installed in the bench venv")
    root, expected = tmp_path / "mlflow-model", tmp_path / "expected.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "MLFLOW_"))}
    proc = subprocess.run(
        [str(BENCH_PYTHON), "-c", _SAVE_WITH_MLFLOW, str(root), str(expected), fmt],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    if not _bench_matches_here(root):
        pytest.skip("the bench venv's scikit-learn/numpy differ from this venv's")
    saved: dict[str, Any] = json.loads(expected.read_text())
    return root, saved


@pytest.mark.parametrize("fmt", ["cloudpickle", "skops"])
def test_directory_written_by_mlflow_loads_and_predicts_the_same(tmp_path: Path, fmt: str) -> None:
    root, saved = _save_with_mlflow(tmp_path, fmt)
    assert (root / ("model.skops" if fmt == "skops" else "model.pkl")).is_file()
    loaded = load_model(root)
    x = np.asarray(saved["x"])
    assert loaded.backend == "native" and loaded.flavor == "sklearn"
    assert loaded.predict(x).tolist() == saved["predict"]
    np.testing.assert_allclose(loaded.predict_proba(x), saved["proba"], rtol=1e-12)
    assert any("no golden sample" in w for w in loaded.warnings)


def _bench_matches_here(root: Path) -> bool:
    """The loads-here assertion only holds when MLflow saved under the same minor versions."""
    pins = dict(
        line.split("==", 1)
        for line in (root / "requirements.txt").read_text().split()
        if "==" in line
    )
    return all(
        pins.get(n, "").split(".")[:2] == importlib.metadata.version(n).split(".")[:2]
        for n in ("scikit-learn", "numpy")
    )
