"""The opcode walk finds exactly the globals unpickling would import, without running any."""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import io
import os
import pickle
import pickletools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.errors import InvalidParameter
from keel.models.pickle_refs import UNRESOLVED, scan_pickle

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


def imported_by_unpickling(data: bytes) -> set[str]:
    """The oracle: what a real Unpickler asks find_class for (benign data only)."""
    seen: set[str] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            seen.add(f"{module}.{name}")
            return super().find_class(module, name)

    Recorder(io.BytesIO(data)).load()
    return seen


def scanned(data: bytes) -> set[str]:
    return {g.dotted for g in scan_pickle(data).globals}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sklearn_pipeline_globals_match_unpickling(protocol: int) -> None:
    np = pytest.importorskip("numpy")
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), rng.integers(0, 2, 60)
    for model in (
        make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y),
        RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y),
    ):
        data = pickle.dumps(model, protocol=protocol)
        scan = scan_pickle(data)
        assert scanned(data) == imported_by_unpickling(data)
        assert not scan.unresolved
        assert "sklearn" in scan.modules and "numpy" in scan.modules
        assert scan.trailing_bytes == 0
        assert scan.protocol == (protocol if protocol >= 2 else 0)


_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.fractions()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.dates()
    | st.datetimes()
    | st.complex_numbers(allow_nan=False)
)
_values = st.recursive(
    _leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=4), children, max_size=4)
        | st.dictionaries(st.text(max_size=4), children, max_size=3).map(collections.OrderedDict)
        | st.frozensets(st.integers(), max_size=3)
        | st.lists(st.text(max_size=3), max_size=3).map(lambda xs: collections.Counter(xs))
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=_values, protocol=st.sampled_from(list(PROTOCOLS)))
def test_random_data_globals_match_unpickling(value: object, protocol: int) -> None:
    data = pickle.dumps(value, protocol=protocol)
    assert scanned(data) == imported_by_unpickling(data)


class _Payload:
    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.canary}",))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reduce_gadget_is_named_and_never_runs(protocol: int, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    data = pickle.dumps({"model": _Payload(canary)}, protocol=protocol)
    refs = scanned(data)
    assert {"posix.system", "nt.system", "os.system"} & refs
    assert not canary.exists()


def test_computed_stack_global_is_unresolved() -> None:
    # builtins.str('os') is only known after running it: the walk must not guess.
    data = (
        b"\x80\x04"
        + b"\x8c\x08builtins\x8c\x03str\x93"  # STACK_GLOBAL builtins.str
        + b"\x8c\x02os\x85R"  # ('os',) then REDUCE: an unknown string
        + b"\x8c\x06system\x93"  # STACK_GLOBAL <unknown>.system
        + b"."
    )
    scan = scan_pickle(data)
    assert [g.dotted for g in scan.globals if g.resolved] == ["builtins.str"]
    assert [(g.module, g.opcode) for g in scan.unresolved] == [(UNRESOLVED, "STACK_GLOBAL")]


def test_memoized_strings_resolve() -> None:
    # Protocol 4 memoizes the module name and fetches it again for the second global.
    data = pickle.dumps([collections.OrderedDict(), collections.Counter()], protocol=4)
    ops = [op.name for op, _, _ in pickletools.genops(data)]
    assert "BINGET" in ops or "LONG_BINGET" in ops or "MEMOIZE" in ops
    assert scanned(data) == {"collections.OrderedDict", "collections.Counter"}


def test_extension_codes_are_unresolved() -> None:
    data = b"\x80\x02\x82\x01)\x81."  # EXT1 1, EMPTY_TUPLE, NEWOBJ, STOP
    scan = scan_pickle(data)
    assert scan.unresolved and scan.unresolved[0].opcode == "EXT1"


def test_trailing_bytes_are_counted() -> None:
    data = pickle.dumps([1, 2, 3], protocol=5)
    assert scan_pickle(data + b"hidden payload").trailing_bytes == len(b"hidden payload")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a pickle at all",
        pickle.dumps({"a": [1, 2, 3]}, protocol=5)[:-5],  # truncated
        b"\x80\x05\x93.",  # STACK_GLOBAL on an empty stack
        b"\x80\x05e.",  # APPENDS without MARK
    ],
)
def test_malformed_pickles_are_rejected(data: bytes) -> None:
    with pytest.raises(InvalidParameter, match=r"[Mm]alformed pickle"):
        scan_pickle(data)


def test_standard_library_values() -> None:
    value = {
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "price": decimal.Decimal("1.10"),
        "ratio": fractions.Fraction(1, 3),
    }
    data = pickle.dumps(value, protocol=2)
    assert scanned(data) == imported_by_unpickling(data)
