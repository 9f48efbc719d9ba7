"""order_by clause parsing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.errors import FilterSyntaxError, InvalidParameter
from keel.search.order import OrderKey, format_order_key, parse_order_by


@pytest.mark.parametrize("clauses", [None, [], ()])
def test_no_clauses(clauses: list[str] | None) -> None:
    assert parse_order_by(clauses) == ()


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("metrics.x", OrderKey("metric", "x", True)),
        ("metrics.x DESC", OrderKey("metric", "x", False)),
        ("metric.x asc", OrderKey("metric", "x", True)),
        ("params.p desc", OrderKey("param", "p", False)),
        ("parameters.p Desc", OrderKey("param", "p", False)),
        ("tags.`mlflow.runName` ASC", OrderKey("tag", "mlflow.runName", True)),
        ("tags.mlflow.runName", OrderKey("tag", "mlflow.runName", True)),
        ('metrics."val loss" DESC', OrderKey("metric", "val loss", False)),
        ("attributes.start_time ASC", OrderKey("attribute", "start_time", True)),
        ("start_time", OrderKey("attribute", "start_time", True)),
        ("created DESC", OrderKey("attribute", "start_time", False)),
        ("Created", OrderKey("attribute", "start_time", True)),
        ("`Run name`", OrderKey("attribute", "run_name", True)),
        ("run_name", OrderKey("attribute", "run_name", True)),
        ("run_id", OrderKey("attribute", "run_id", True)),
        ("end_time", OrderKey("attribute", "end_time", True)),
        ("status", OrderKey("attribute", "status", True)),
        ("user_id", OrderKey("attribute", "user_id", True)),
        ("run.artifact_uri", OrderKey("attribute", "artifact_uri", True)),
        ("  metrics.x   DESC  ", OrderKey("metric", "x", False)),
    ],
)
def test_run_clauses(clause: str, expected: OrderKey) -> None:
    assert parse_order_by([clause]) == (expected,)


def test_several_clauses_keep_their_order() -> None:
    assert parse_order_by(["metrics.a DESC", "params.b", "created"]) == (
        OrderKey("metric", "a", False),
        OrderKey("param", "b", True),
        OrderKey("attribute", "start_time", True),
    )


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("name", OrderKey("attribute", "name", True)),
        ("name DESC", OrderKey("attribute", "name", False)),
        ("attributes.experiment_id", OrderKey("attribute", "experiment_id", True)),
        ("creation_time desc", OrderKey("attribute", "creation_time", False)),
        ("last_update_time ASC", OrderKey("attribute", "last_update_time", True)),
    ],
)
def test_experiment_clauses(clause: str, expected: OrderKey) -> None:
    assert parse_order_by([clause], kind="experiments") == (expected,)


@pytest.mark.parametrize(
    ("clause", "position", "fragment"),
    [
        ("metrics.x DESC, params.p", 14, "one clause"),
        ("metrics.x, params.p", 9, "one clause"),
        ("metrics.x sideways", 10, "unexpected 'sideways' at position 10; expected ASC or DESC"),
        ("metrics.x DESC DESC", 15, "expected the end of the clause"),
        ("metrics.x 1", 10, "expected ASC, DESC or the end"),
        ("", 0, "empty"),
        ("   ", 3, "empty"),
        ("DESC", 0, None),
        ("'x'", 0, "expected a field"),
        ("metrics.`x", 8, "unterminated identifier"),
    ],
)
def test_syntax_errors(clause: str, position: int, fragment: str | None) -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_order_by([clause])
    if fragment is None:  # "DESC" alone is an unknown attribute, not a syntax error
        assert "invalid attribute key 'DESC'" in info.value.message
        return
    assert isinstance(info.value, FilterSyntaxError)
    assert info.value.position == position
    assert fragment in info.value.message
    assert f'"{clause}"' in info.value.message


@pytest.mark.parametrize(
    ("clause", "kind", "fragment"),
    [
        ("experiment_id", "runs", "experiment ids"),
        ("lifecycle_stage", "runs", "view type"),
        ("datasets.name", "runs", "cannot be sorted by datasets"),
        ("foo.x", "runs", "unknown entity 'foo'"),
        ("acc", "runs", "invalid attribute key 'acc'"),
        ("tags.t", "experiments", "cannot be sorted by tags"),
        ("metrics.m", "experiments", "unknown entity 'metrics'"),
        ("run_name", "experiments", "invalid attribute key 'run_name'"),
    ],
)
def test_unsortable_fields(clause: str, kind: str, fragment: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_order_by([clause], kind=kind)
    assert not isinstance(info.value, FilterSyntaxError)
    assert fragment in info.value.message


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="Unknown search kind"):
        parse_order_by(None, kind="models")


order_keys = st.builds(
    OrderKey,
    entity=st.sampled_from(["metric", "param", "tag"]),
    key=st.text(min_size=1, max_size=10),
    ascending=st.booleans(),
) | st.builds(
    OrderKey,
    entity=st.just("attribute"),
    key=st.sampled_from(["start_time", "end_time", "run_name", "run_id", "status"]),
    ascending=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(order_keys)
def test_format_then_parse_is_identity(key: OrderKey) -> None:
    assert parse_order_by([format_order_key(key)]) == (key,)
