"""Bare pickle and joblib files load through the allow-list and the tree check, or are refused.

The malicious files are written by ``pickle``/``joblib.dump`` of objects whose
``__reduce__`` returns ``(os.system, ("touch <canary>",))``: dumping only
records that pair, it never calls it, and the canary proves loading never did.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import keel
from keel.cli.main import app
from keel.errors import InvalidParameter
from keel.models.bare_file import BareFormat, detect_format, load_bare_file, load_joblib
from keel.models.package import ModelRefused, load_model
from keel.models.safety import UnsafePickle

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
joblib = pytest.importorskip("joblib")
pytest.importorskip("sklearn")

from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder  # noqa: E402

runner = CliRunner()
SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux, as pickle writes it

# How each file is written, and the format and compression Keel must read from its bytes.
WRITERS = {
    "pickle": (lambda m, p: p.write_bytes(pickle.dumps(m, protocol=5)), "pickle", None),
    "joblib": (lambda m, p: joblib.dump(m, p), "joblib", None),
    "joblib-zlib": (lambda m, p: joblib.dump(m, p, compress=3), "joblib", "zlib"),
    "joblib-gzip": (lambda m, p: joblib.dump(m, p, compress=("gzip", 3)), "joblib", "gzip"),
    "joblib-bz2": (lambda m, p: joblib.dump(m, p, compress=("bz2", 3)), "joblib", "bz2"),
    "joblib-xz": (lambda m, p: joblib.dump(m, p, compress=("xz", 3)), "joblib", "xz"),
}


class Payload:
    """Unpickling this runs a shell command: the canary proves it never ran."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.canary}",))


class LocalModel:
    """A user's own model class: unknown to Keel until trusted."""

    def predict(self, x: Any) -> Any:
        return np.zeros(len(x), dtype=int)


def _forest() -> tuple[Any, Any]:
    x = np.random.default_rng(0).normal(size=(120, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return RandomForestClassifier(n_estimators=7, random_state=0).fit(x, y), x


def _categorical_pipeline() -> tuple[Any, Any]:
    """OneHotEncoder keeps object arrays, which joblib writes as a nested pickle."""
    rng = np.random.default_rng(1)
    x = pd.DataFrame({"plan": rng.choice(["basic", "pro", "team"], 90), "n": rng.normal(size=90)})
    y = (x["plan"] == "pro").astype(int)
    pre = ColumnTransformer([("cat", OneHotEncoder(), ["plan"])], remainder="passthrough")
    return make_pipeline(pre, LogisticRegression()).fit(x, y), x


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_bare_files_load_and_predict(writer: str, tmp_path: Path) -> None:
    write, kind, compression = WRITERS[writer]
    model, x = _forest()
    path = tmp_path / "model.bin"  # the extension says nothing: the bytes decide
    write(model, path)
    assert detect_format(path.read_bytes()) == BareFormat(kind, compression)
    loaded = keel.models.load(path)
    assert loaded.flavor == "sklearn" and loaded.backend == "native"
    assert loaded.path == path and loaded.environment is None and not loaded.from_cache
    assert loaded.predict(x).tolist() == model.predict(x).tolist()
    assert loaded.predict_proba(x).tolist() == model.predict_proba(x).tolist()
    notes = "\n".join(loaded.warnings)
    for unverified in ("integrity", "environment", "outputs"):
        assert unverified in notes
    assert f"bare {BareFormat(kind, compression).describe()}" in notes
    assert "keel.models.save(" in notes


@pytest.mark.parametrize("compress", [0, 3])
def test_object_arrays_inside_joblib_files_load(compress: int, tmp_path: Path) -> None:
    model, x = _categorical_pipeline()
    path = tmp_path / "pipeline.joblib"
    joblib.dump(model, path, compress=compress)
    assert load_model(path).predict(x).tolist() == model.predict(x).tolist()


def test_a_joblib_file_named_pkl_and_a_pickle_named_joblib(tmp_path: Path) -> None:
    model, x = _forest()
    joblib.dump(model, tmp_path / "model.pkl", compress=3)
    (tmp_path / "model.joblib").write_bytes(pickle.dumps(model))
    for name, kind in (("model.pkl", "joblib"), ("model.joblib", "pickle")):
        loaded = load_model(tmp_path / name)
        assert f"bare {kind} file" in loaded.warnings[0]
        assert loaded.predict(x).tolist() == model.predict(x).tolist()


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3)], ids=["raw", "zlib", "gzip"])
def test_a_command_in_a_joblib_file_is_refused_and_never_runs(
    compress: Any, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "evil.joblib"
    # The array makes joblib write its own format, raw bytes and all.
    joblib.dump({"weights": np.arange(50.0), "model": Payload(canary)}, path, compress=compress)
    assert detect_format(path.read_bytes()).kind == "joblib"
    with pytest.raises(UnsafePickle) as err:
        load_model(path)
    assert [r.name for r in err.value.refusals] == [SYSTEM]
    assert "malicious" in err.value.message
    with pytest.raises(UnsafePickle):
        load_model(path, trusted=["os."])  # a prefix never unlocks os
    assert not canary.exists()


def test_a_command_inside_an_object_array_is_refused(tmp_path: Path) -> None:
    """joblib stores object arrays as a nested pickle; it goes through the same checks."""
    canary = tmp_path / "canary"
    path = tmp_path / "evil.joblib"
    joblib.dump(np.array([1, Payload(canary)], dtype=object), path)
    with pytest.raises(UnsafePickle, match=re.escape(SYSTEM)):
        load_model(path)
    assert not canary.exists()


def test_a_command_in_a_plain_pickle_is_refused(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "evil.pkl"
    joblib.dump(Payload(canary), path)  # no arrays: joblib writes a plain pickle
    assert detect_format(path.read_bytes()).kind == "pickle"
    with pytest.raises(UnsafePickle, match=re.escape(SYSTEM)):
        load_model(path)
    assert not canary.exists()


def test_extension_codes_are_refused_even_when_registered(tmp_path: Path) -> None:
    """A registered, already-resolved code would skip find_class; joblib files refuse them."""
    import copyreg

    copyreg.add_extension("collections", "OrderedDict", 240)
    try:
        pickle.loads(b"\x80\x02\x82\xf0)R.")  # resolves code 240 into copyreg's cache
        stream = b"\x80\x02\x82\xf0)R."  # EXT1 240, an empty tuple, REDUCE
        with pytest.raises(UnsafePickle, match="extension code 240"):
            load_joblib(stream, None)
    finally:
        copyreg.remove_extension("collections", "OrderedDict", 240)


def test_own_classes_need_trusting(tmp_path: Path) -> None:
    path = tmp_path / "local.joblib"
    joblib.dump([LocalModel(), np.arange(3)][0], path)
    with pytest.raises(UnsafePickle) as err:
        load_model(path)
    dotted = f"{__name__}.LocalModel"
    assert [r.name for r in err.value.refusals] == [dotted]
    loaded = load_model(path, trusted=[dotted])
    assert loaded.flavor == "python_function" and loaded.predict([[1], [2]]).tolist() == [0, 0]


def test_hidden_and_broken_data_is_refused(tmp_path: Path) -> None:
    model, _ = _forest()
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    data = buffer.getvalue()
    (tmp_path / "trailing.joblib").write_bytes(data + b"cos\nsystem\n.")
    with pytest.raises(UnsafePickle, match="after the pickle's STOP"):
        load_model(tmp_path / "trailing.joblib")
    (tmp_path / "short.joblib").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsafePickle, match="malformed joblib file"):
        load_model(tmp_path / "short.joblib")
    with pytest.raises(UnsafePickle, match="malformed joblib file"):
        load_joblib(b"x\x9c" + b"\0" * 20, "zlib")  # not zlib data after the magic byte


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"ZF0x1a\x00" + b"\0" * 20, "before 0.9.3"),
        (b"\x04\x22\x4d\x18" + b"\0" * 20, "pip install lz4"),
        (b"hello, world", "not a pickle, joblib or skops file"),
    ],
    ids=["joblib-zfile", "lz4", "text"],
)
def test_formats_keel_does_not_read_are_refused_clearly(
    data: bytes, match: str, tmp_path: Path
) -> None:
    if match == "pip install lz4":
        pytest.importorskip("joblib.compressor")
        if __import__("importlib").util.find_spec("lz4") is not None:
            pytest.skip("lz4 is installed here, so lz4 files are read")
    path = tmp_path / "model.joblib"
    path.write_bytes(data)
    with pytest.raises(ModelRefused, match=match):
        load_model(path)


def test_what_is_not_a_model_or_not_allowed_by_policy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.joblib"
    joblib.dump({"weights": np.arange(3.0)}, path)
    with pytest.raises(ModelRefused, match="holding a dict, which has no predict"):
        load_model(path)
    model, _ = _forest()
    joblib.dump(model, tmp_path / "model.joblib")
    with pytest.raises(ModelRefused, match="strict policy cannot be met"):
        load_model(tmp_path / "model.joblib", policy="strict")
    with pytest.raises(InvalidParameter, match="Unknown environment policy"):
        load_bare_file(tmp_path / "model.joblib", policy="lax")
    assert load_model(tmp_path / "model.joblib", policy="warn").warnings


def test_crafted_trees_in_a_bare_file_are_refused(tmp_path: Path) -> None:
    model, _ = _forest()
    tree = model.estimators_[2].tree_
    state = tree.__getstate__()
    state["nodes"] = state["nodes"].copy()
    state["nodes"]["right_child"][0] = 10_000_000
    tree.__setstate__(state)
    joblib.dump(model, tmp_path / "model.joblib", compress=3)
    with pytest.raises(ModelRefused, match="out of bounds"):
        load_model(tmp_path / "model.joblib")


def test_a_file_logged_to_a_run_loads_by_runs_uri(tracking: Path) -> None:
    model, x = _forest()
    joblib.dump(model, tracking / "model.joblib")
    with keel.start_run() as run:
        keel.log_artifact(str(tracking / "model.joblib"))
    loaded = keel.models.load(f"runs:/{run.info.run_id}/model.joblib")
    assert loaded.predict(x).tolist() == model.predict(x).tolist()


@pytest.mark.parametrize("command", ["inspect", "doctor", "lock"])
@pytest.mark.parametrize("compress", [0, 3])
def test_cli_explains_a_bare_file(command: str, compress: int, tmp_path: Path) -> None:
    model, _ = _forest()
    path = tmp_path / "model.joblib"
    joblib.dump(model, path, compress=compress)
    result = runner.invoke(app, ["models", command, str(path)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    assert "is a file, not a model package" in result.output
    assert "bare joblib file" in result.output
    assert "never unpickles" in result.output and "keel.models.save(" in result.output
