"""The pickle allow-list refuses every malicious pickle and accepts real models and data.

The static checks only read opcodes. The corpus is unpickled only through
``safe_loads``, whose unpickler asks the same allow-list before importing any
global; the canary file proves no payload ran either way.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import importlib
import io
import pickle
import pickletools
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from keel.errors import InvalidParameter
from keel.models.pickle_refs import scan_pickle
from keel.models.safety import (
    ALLOWED_GLOBALS,
    UnsafePickle,
    check_names,
    check_pickle,
    safe_loads,
)
from malicious_corpus import Item, malicious_corpus, malicious_pickles

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
sparse = pytest.importorskip("scipy.sparse")
pytest.importorskip("sklearn")

CORPUS_NAMES = [name for name, _ in malicious_pickles(Path("canary-for-names"))]
BENIGN_PROTOCOLS = (2, 3, 4, 5)


class LocalModel:
    """A user's own estimator class: unknown to Keel until declared or trusted."""

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight


def local_function() -> None:
    """A user's own function: declaring its module does not allow functions."""


def stack_global(module: str, name: str) -> bytes:
    """A protocol 4 pickle that only imports ``module.name``."""
    parts = [s.encode() for s in (module, name)]
    pushes = b"".join(b"\x8c" + bytes([len(p)]) + p for p in parts)
    return b"\x80\x04" + pushes + b"\x93."


def refusal_names(exc: UnsafePickle) -> list[str]:
    return [r.name for r in exc.refusals]


# --- the malicious corpus ----------------------------------------------------


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("safety") / "canary"


@pytest.fixture(scope="module")
def corpus(canary: Path) -> dict[str, Item]:
    return {item.name: item for item in malicious_corpus(canary)}


def test_corpus_is_large_and_spans_protocols() -> None:
    assert len(CORPUS_NAMES) >= 50
    assert len(set(CORPUS_NAMES)) == len(CORPUS_NAMES)
    for protocol in range(6):
        assert sum(name.endswith(f"_p{protocol}") for name in CORPUS_NAMES) >= 5


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_malicious_pickle_is_refused_and_named(
    name: str, corpus: dict[str, Item], canary: Path
) -> None:
    item = corpus[name]
    with pytest.raises(UnsafePickle) as raised:
        check_pickle(item.data)
    assert item.offender in raised.value.message
    assert "trusted=True" not in raised.value.message
    assert not canary.exists()


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_checking_unpickler_refuses_before_the_payload_runs(
    name: str, corpus: dict[str, Item], canary: Path
) -> None:
    item = corpus[name]
    with pytest.raises(UnsafePickle) as raised:
        safe_loads(item.data)
    assert item.offender in raised.value.message
    assert not canary.exists()


def test_corpus_pickles_are_real_opcode_streams(corpus: dict[str, Item]) -> None:
    # Refused for what they do, not for being garbage: all but the deliberately
    # broken ones parse (read statically, never run).
    for item in corpus.values():
        if item.offender == "Malformed":
            continue
        ops = [op.name for op, _, _ in pickletools.genops(io.BytesIO(item.data))]
        assert ops[-1] == "STOP", item.name
        assert {
            "GLOBAL",
            "STACK_GLOBAL",
            "INST",
            "PERSID",
            "BINPERSID",
            "EXT1",
            "EXT2",
            "EXT4",
        } & set(ops), item.name


def test_trusting_a_prefix_never_unlocks_commands(corpus: dict[str, Item]) -> None:
    data = corpus["os_system_p4"].data
    for prefix in (["os."], ["posix."], ["builtins.", "subprocess."]):
        with pytest.raises(UnsafePickle):
            check_pickle(data, trusted=prefix)
    # Only the exact name does, and only because the caller said so.
    assert check_pickle(data, trusted=["os.system"]).globals[0].dotted == "os.system"


def test_dangerous_names_get_no_advice_to_trust_them(corpus: dict[str, Item]) -> None:
    with pytest.raises(UnsafePickle) as raised:
        check_pickle(corpus["subprocess_popen_p5"].data)
    message = raised.value.message
    assert "subprocess.Popen" in message
    assert "malicious" in message
    assert "trusted=[" not in message


def test_unreadable_pickles_cannot_be_trusted_through(corpus: dict[str, Item]) -> None:
    for name in ("raw_stack_global_computed_module_p4", "raw_ext_82_p2", "raw_persid_p0"):
        with pytest.raises(UnsafePickle) as raised:
            check_pickle(corpus[name].data, trusted=["os.system", "builtins.str", "_codecs."])
        assert "no option allows it" in raised.value.message


def test_refusal_is_an_invalid_parameter_error(corpus: dict[str, Item]) -> None:
    with pytest.raises(UnsafePickle) as raised:
        check_pickle(corpus["builtins_eval_p2"].data)
    assert isinstance(raised.value, InvalidParameter)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert raised.value.http_status == 400
    # Written as __builtin__.eval; named as what the unpickler would import.
    assert refusal_names(raised.value) == ["builtins.eval"]


# --- real models and data pass ----------------------------------------------


@pytest.fixture(scope="module")
def benign() -> dict[str, Any]:
    from scipy.special import expit
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.feature_selection import SelectKBest
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    rng = np.random.default_rng(0)
    x, y, yr = rng.normal(size=(60, 4)), rng.integers(0, 3, 60), rng.normal(size=60)
    frame = pd.DataFrame(
        {
            "num": rng.normal(size=60),
            "gap": [1.0, None] * 30,
            "cat": pd.Categorical(rng.choice(["a", "b"], 60)),
            "text": ["q"] * 60,
            "when": pd.date_range("2024-01-01", periods=60, freq="h"),
            "utc": pd.date_range("2024-01-01", periods=60, freq="D", tz="UTC"),
            "count": pd.array([1, None] * 30, dtype="Int64"),
        }
    )
    columns = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["num", "gap"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["cat", "text"]),
        ]
    )
    return {
        "logistic_regression": LogisticRegression().fit(x, y),
        "ridge": Ridge().fit(x, yr),
        "decision_tree_classifier": DecisionTreeClassifier(random_state=0).fit(x, y),
        "decision_tree_regressor": DecisionTreeRegressor(random_state=0).fit(x, yr),
        "random_forest_classifier": RandomForestClassifier(4, random_state=0).fit(x, y),
        "random_forest_regressor": RandomForestRegressor(4, random_state=0).fit(x, yr),
        "random_forest_randomstate": RandomForestClassifier(
            2, random_state=np.random.RandomState(0)
        ).fit(x, y),
        "gradient_boosting_classifier": GradientBoostingClassifier(n_estimators=3).fit(x, y),
        "gradient_boosting_regressor": GradientBoostingRegressor(n_estimators=3).fit(x, yr),
        "hist_gradient_boosting_classifier": HistGradientBoostingClassifier(max_iter=3).fit(x, y),
        "hist_gradient_boosting_regressor": HistGradientBoostingRegressor(max_iter=3).fit(x, yr),
        "column_transformer_pipeline": Pipeline(
            [("prep", columns), ("model", LogisticRegression())]
        ).fit(frame, y),
        "knn_kd_tree": KNeighborsClassifier().fit(x, y),
        "select_k_best": SelectKBest(k=2).fit(x, y),
        "grid_search_masked_arrays": GridSearchCV(
            LogisticRegression(), {"C": [0.5, 1.0]}, cv=2
        ).fit(x, y),
        "function_transformer_ufuncs": [FunctionTransformer(np.log1p), expit],
        "dataframe_categorical_datetime": frame,
        "series": frame["cat"],
        "csr_matrix": sparse.csr_matrix(np.eye(3)),
        "csr_array": sparse.csr_array(np.eye(3)),
        "coo_matrix": sparse.coo_matrix(np.eye(3)),
        "numpy_values": [np.float64(1.5), np.datetime64("2024-01-01"), np.array(["a", "b"])],
        "numpy_generators": [np.random.default_rng(0), np.random.RandomState(0)],
        "pandas_scalars": [pd.Timestamp("2024-01-01", tz="UTC"), pd.Timedelta(1), pd.NaT, pd.NA],
        "stdlib_values": [
            collections.OrderedDict(a=1),
            collections.defaultdict(list, a=[1]),
            datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
            datetime.date(2024, 1, 1),
            datetime.timedelta(days=1),
            decimal.Decimal("1.5"),
            fractions.Fraction(1, 3),
            uuid.UUID(int=7),
            {1, 2},
            frozenset({3}),
            slice(1, 2),
            complex(1, 2),
            bytearray(b"x"),
            b"bytes",
            float,
            int,
        ],
    }


BENIGN_NAMES = [
    "logistic_regression",
    "ridge",
    "decision_tree_classifier",
    "decision_tree_regressor",
    "random_forest_classifier",
    "random_forest_regressor",
    "random_forest_randomstate",
    "gradient_boosting_classifier",
    "gradient_boosting_regressor",
    "hist_gradient_boosting_classifier",
    "hist_gradient_boosting_regressor",
    "column_transformer_pipeline",
    "knn_kd_tree",
    "select_k_best",
    "grid_search_masked_arrays",
    "function_transformer_ufuncs",
    "dataframe_categorical_datetime",
    "series",
    "csr_matrix",
    "csr_array",
    "coo_matrix",
    "numpy_values",
    "numpy_generators",
    "pandas_scalars",
    "stdlib_values",
]


def test_benign_names_cover_the_fixture(benign: dict[str, Any]) -> None:
    assert sorted(BENIGN_NAMES) == sorted(benign)


@pytest.mark.parametrize("protocol", BENIGN_PROTOCOLS)
@pytest.mark.parametrize("name", BENIGN_NAMES)
def test_real_models_and_data_pass(name: str, protocol: int, benign: dict[str, Any]) -> None:
    data = pickle.dumps(benign[name], protocol=protocol)
    scan = check_pickle(data)
    assert scan == scan_pickle(data)
    assert scan.globals


@pytest.mark.parametrize("protocol", [0, 1, *BENIGN_PROTOCOLS])
@pytest.mark.parametrize("name", BENIGN_NAMES)
def test_checking_unpickler_rebuilds_what_pickle_does(
    name: str, protocol: int, benign: dict[str, Any]
) -> None:
    data = pickle.dumps(benign[name], protocol=protocol)
    assert pickle.dumps(safe_loads(data), protocol=protocol) == pickle.dumps(
        pickle.loads(data), protocol=protocol
    )


def test_checking_unpickler_enforces_trusted_and_declared_names() -> None:
    data = pickle.dumps(LocalModel(2.0), protocol=5)
    with pytest.raises(UnsafePickle) as raised:
        safe_loads(data)
    assert f"{__name__}.LocalModel" in raised.value.message
    assert safe_loads(data, trusted=[f"{__name__}.LocalModel"]).weight == 2.0
    assert safe_loads(data, declared_modules=[__name__]).weight == 2.0
    with pytest.raises(UnsafePickle):  # declaring a module allows its classes only
        safe_loads(pickle.dumps(local_function), declared_modules=[__name__])


def test_checking_unpickler_refuses_hidden_bytes_and_broken_streams() -> None:
    with pytest.raises(UnsafePickle, match="after the STOP opcode"):
        safe_loads(pickle.dumps([1, 2]) + b"cos\nsystem\n.")
    with pytest.raises(UnsafePickle, match="malformed"):
        safe_loads(pickle.dumps({"a": list(range(10))})[:-5])


@pytest.mark.parametrize("protocol", [0, 1])
def test_python2_spellings_of_allowed_names_pass(protocol: int, benign: dict[str, Any]) -> None:
    # Protocols 0-1 write __builtin__ and copy_reg, which the unpickler maps.
    data = pickle.dumps(benign["random_forest_classifier"], protocol=protocol)
    dotted = {g.dotted for g in check_pickle(data).globals}
    assert "copy_reg._reconstructor" in dotted


def test_checking_a_forest_costs_little_beyond_the_scan(benign: dict[str, Any]) -> None:
    data = pickle.dumps(benign["random_forest_classifier"], protocol=5)
    check_pickle(data)  # the first call imports and caches the classes

    def best(func: Any) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            func(data)
            times.append(time.perf_counter() - start)
        return min(times)

    assert best(check_pickle) - best(scan_pickle) < 0.01


def test_named_time_zones_are_refused_for_their_getattr() -> None:
    # ZoneInfo pickles as builtins.getattr(ZoneInfo, "_unpickle"): a universal
    # gadget, so tz-aware data must use UTC offsets or be trusted explicitly.
    frame = pd.DataFrame({"t": pd.date_range("2024", periods=2, tz="Europe/Paris")})
    with pytest.raises(UnsafePickle) as raised:
        check_pickle(pickle.dumps(frame, protocol=5))
    assert "builtins.getattr" in refusal_names(raised.value)


# --- trusting and declaring the caller's own code -----------------------------


def test_own_class_needs_declaring_or_trusting() -> None:
    data = pickle.dumps(LocalModel(2.0), protocol=5)
    dotted = f"{LocalModel.__module__}.LocalModel"
    with pytest.raises(UnsafePickle) as raised:
        check_pickle(data)
    assert refusal_names(raised.value) == [dotted]
    assert f'trusted=["{dotted}"]' in raised.value.message
    assert check_pickle(data, declared_modules=[LocalModel.__module__]).globals
    assert check_pickle(data, trusted=[dotted]).globals
    assert check_pickle(data, trusted=[LocalModel.__module__ + "."]).globals


def test_declaring_a_module_allows_its_classes_not_its_functions() -> None:
    data = pickle.dumps([LocalModel(), local_function], protocol=4)
    with pytest.raises(UnsafePickle) as raised:
        check_pickle(data, declared_modules=[LocalModel.__module__])
    assert refusal_names(raised.value) == [f"{LocalModel.__module__}.local_function"]


def test_trusting_one_name_still_refuses_the_payload(corpus: dict[str, Item]) -> None:
    own = pickle.dumps(LocalModel(), protocol=4)
    payload = corpus["os_system_p4"].data
    # Two pickles' globals in one stream: the trusted class next to os.system.
    mixed = own[:-1] + b"0" + payload[2:]
    with pytest.raises(UnsafePickle) as raised:
        check_pickle(
            mixed,
            trusted=[f"{LocalModel.__module__}.LocalModel"],
            declared_modules=[LocalModel.__module__],
        )
    assert refusal_names(raised.value) == ["os.system"]


def test_declaring_a_package_does_not_open_its_scripts() -> None:
    # Importing pkg.__main__ would run the package's command line.
    module = f"{LocalModel.__module__}.__main__"
    with pytest.raises(UnsafePickle, match="deny-listed"):
        check_pickle(stack_global(module, "LocalModel"), declared_modules=[LocalModel.__module__])
    assert module not in sys.modules


@pytest.mark.parametrize(
    "trusted",
    ["os.system", ["."], [""], ["system"], ["os system"], [None], ["*"]],
)
def test_malformed_trusted_entries_are_rejected(trusted: Any) -> None:
    with pytest.raises(InvalidParameter, match="trusted"):
        check_pickle(pickle.dumps(1), trusted=trusted)


@pytest.mark.parametrize("declared", ["mypkg", ["os"], ["subprocess"], ["builtins"], ["a..b"]])
def test_declaring_the_standard_library_or_garbage_is_rejected(declared: Any) -> None:
    with pytest.raises(InvalidParameter, match="declare"):
        check_pickle(pickle.dumps(1), declared_modules=declared)


# --- what the allowed packages still may not provide --------------------------

DENIED_CLASSES = [
    ("numpy", "memmap"),
    ("numpy", "vectorize"),
    ("numpy.lib.npyio", "DataSource"),
    ("numpy.lib.npyio", "NpzFile"),
    ("numpy.testing", "suppress_warnings"),
    ("pandas", "HDFStore"),
    ("pandas", "ExcelWriter"),
    ("pandas", "ExcelFile"),
    ("pandas.io.pytables", "HDFStore"),
    ("scipy.io", "netcdf_file"),
    ("scipy.io", "FortranFile"),
    ("scipy", "LowLevelCallable"),
    ("sklearn.utils.parallel", "Parallel"),
    ("sklearn.callback._progressbar", "RichProgressMonitor"),
    ("scipy._lib._util", "MapWrapper"),
]


@pytest.mark.parametrize(("module", "name"), DENIED_CLASSES)
def test_deny_listed_classes_are_refused(module: str, name: str) -> None:
    assert isinstance(getattr(importlib.import_module(module), name), type)
    with pytest.raises(UnsafePickle) as raised:
        check_pickle(stack_global(module, name))
    (refusal,) = raised.value.refusals
    assert refusal.name == f"{module}.{name}"
    assert refusal.reason.startswith("deny-listed")
    assert "malicious" in raised.value.message


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("numpy", "load"),
        ("numpy", "frompyfunc"),
        ("pandas", "read_pickle"),
        ("pandas", "eval"),
        ("scipy.io", "loadmat"),
        ("numpy.testing._private.utils", "runstring"),
        ("sklearn.utils", "_safe_indexing"),
        ("numpy", "ndarray.tofile"),
        ("numpy", "ndarray.__class__"),
        ("numpy._core._methods", "os.system"),
        ("sklearn.base", "inspect.Signature"),
        ("numpy.random.bit_generator", "__pyx_unpickle_NotAClass"),
        ("numpy", "not_an_attribute_xyz"),
        ("sklearn.no_such_module_xyz", "Estimator"),
    ],
)
def test_functions_and_smuggled_names_from_allowed_packages_are_refused(
    module: str, name: str
) -> None:
    with pytest.raises(UnsafePickle) as raised:
        check_pickle(stack_global(module, name))
    assert refusal_names(raised.value) == [f"{module}.{name}"]


@pytest.mark.parametrize("dotted", sorted(ALLOWED_GLOBALS))
def test_every_allow_listed_name_exists_or_is_an_old_spelling(dotted: str) -> None:
    module, _, name = dotted.rpartition(".")
    if module.startswith("numpy.core"):
        pytest.skip("numpy 1.x spelling, kept for older pickles")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    assert callable(obj) or dotted.endswith((".NA", "Ellipsis", "NotImplemented"))


def test_numpy_ufuncs_pass_but_numpy_functions_do_not() -> None:
    assert check_pickle(stack_global("numpy", "log1p"))
    with pytest.raises(UnsafePickle):
        check_pickle(stack_global("numpy", "log1p.reduce"))


# --- modules outside the allowed packages are never imported -----------------


def test_modules_outside_allowed_packages_are_never_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evil = "keel_evil_module_xyz"
    canary = tmp_path / "imported"
    (tmp_path / f"{evil}.py").write_text(
        f"open({str(canary)!r}, 'w').close()\nclass Evil:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    attempts = [
        stack_global(evil, "Evil"),
        stack_global(f"{evil}.sub", "Evil"),
        f"c{evil}\nEvil\n.".encode(),
        pickle.dumps(LocalModel(), protocol=2).replace(
            LocalModel.__module__.encode(), evil.encode()
        ),
    ]
    for data in attempts:
        with pytest.raises(UnsafePickle, match=evil):
            check_pickle(data, declared_modules=["mycompany"], trusted=["mycompany."])
    assert evil not in sys.modules
    assert not {name for name in set(sys.modules) - before if evil in name}
    assert not canary.exists()


# --- names listed outside a pickle (a skops file's types) ----------------------


def test_check_names_judges_listed_names_like_globals() -> None:
    dotted = f"{LocalModel.__module__}.LocalModel"
    assert check_names(["collections.OrderedDict", ("datetime", "date")]) == (
        "collections.OrderedDict",
        "datetime.date",
    )
    with pytest.raises(UnsafePickle) as raised:
        check_names([dotted, "numpy.ndarray", "subprocess.Popen", ("builtins", "eval")])
    assert refusal_names(raised.value) == [dotted, "subprocess.Popen", "builtins.eval"]
    assert check_names([dotted], trusted=[dotted]) == (dotted,)
    assert check_names([dotted], declared_modules=[LocalModel.__module__]) == (dotted,)
    with pytest.raises(UnsafePickle):  # a prefix never unlocks os
        check_names(["os.system"], trusted=["os."])


def test_check_names_reads_a_method_as_module_and_qualname() -> None:
    # ("module", "Class.method") looks the method up on the class: a function, refused.
    with pytest.raises(UnsafePickle) as raised:
        check_names([("sklearn.linear_model", "LogisticRegression.fit")])
    assert refusal_names(raised.value) == ["sklearn.linear_model.LogisticRegression.fit"]
    assert "a function, not a class" in raised.value.message


def test_skops_refusals_are_worded_for_skops() -> None:
    with pytest.raises(UnsafePickle) as raised:
        check_names([f"{LocalModel.__module__}.LocalModel"], source="skops")
    message = raised.value.message
    assert raised.value.source == "skops"
    assert message.startswith("Refusing to load the skops file: 1 problem")
    assert "unpickl" not in message and "Prefer a format" not in message
    assert "trusted=[" in message


def test_arrow_backed_pandas_data_loads_and_crafted_arrow_buffers_are_refused() -> None:
    pa = pytest.importorskip("pyarrow")
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "s": pd.Series(["a", None, "ccc"], dtype="string[pyarrow]"),
            "l": pd.Series([[1, 2], [3], None], dtype=pd.ArrowDtype(pa.list_(pa.int64()))),
        }
    )
    assert safe_loads(pickle.dumps(frame, protocol=5)).equals(frame)

    class Crafted:
        # a string array claiming 1,000 values over buffers that hold two
        def __reduce__(self) -> Any:
            good = pa.array(["ab", "cd"])
            (state,) = good.__reduce__()[1]
            dtype, _length, nulls, offset, buffers, children, dictionary = state
            return pa.lib._restore_array, (
                (dtype, 1000, nulls, offset, buffers, children, dictionary),
            )

    with pytest.raises(UnsafePickle, match="not valid"):
        safe_loads(pickle.dumps(Crafted(), protocol=5))
