"""Registry searches through the store agree with the plain-Python oracle.

Random registered models, tags and versions (some deleted) are written through
the store into a SQLite file and, with ``KEEL_TEST_POSTGRES_URL``, a PostgreSQL
database of this module's own; then random filters, orderings and page sizes
are run through the store (text in, so parsing and compiling are both checked)
and compared with ``registry_oracle``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.search.filter import (
    EQUALITY_OPS,
    LIST_OPS,
    NUMERIC_OPS,
    PATTERN_OPS,
    And,
    Comparison,
    Expr,
    Or,
    format_filter,
    parse_filter,
)
from keel.search.order import OrderKey, format_order_key
from keel.store.sql.registry import SqlRegistryStore
from keel.store.sql.store import SqlTrackingStore
from registry_oracle import (
    ModelRow,
    VersionRow,
    order_models,
    order_versions,
    select_models,
    select_versions,
)

# ASCII only: ILIKE folds ASCII case the same way in SQLite, PostgreSQL and the oracle.
NAMES = ["churn", "Churn", "churn-a", "a%b", "a_b", "axb", "it's", "a\\b", "x", "X", "m 1", "_"]
STRINGS = ["a", "A", "ab", "aB", "a%b", "a_b", "axb", "a\\b", "10%", "", " ", "true", "false"]
STRINGS += ["it's", "risk", "Risk"]
TAG_KEYS = ["team", "Team", "mlflow.prompt.is_prompt", "a b"]
RUN_IDS = ["r1", "R1", "r_2", "r%3"]
SOURCES = ["runs:/r1/model", "s3://b/x", "file:///x%y", "file:///x_y", "/local", ""]


@dataclass
class Catalog:
    registry: SqlRegistryStore
    models: list[ModelRow]
    versions: list[VersionRow]
    deleted: int


def _populate(registry: SqlRegistryStore, seed: int = 20261123) -> Catalog:
    rng = random.Random(seed)

    def some_tags() -> dict[str, str]:
        return {k: rng.choice(STRINGS) for k in TAG_KEYS if rng.random() < 0.4}

    deleted = 0
    for name in NAMES:
        registry.create_registered_model(name, some_tags())
        for _ in range(rng.randint(0, 4)):
            run_id = rng.choice([None, *RUN_IDS])
            registry.create_model_version(name, rng.choice(SOURCES), run_id, some_tags())
            if rng.random() < 0.2:  # tombstones must never match
                registry.delete_model_version(name, registry.get_latest_versions(name)[0].version)
                deleted += 1
    # The oracle reads values back one object at a time, never through search.
    models: list[ModelRow] = []
    versions: list[VersionRow] = []
    for name in NAMES:
        m = registry.get_registered_model(name)
        models.append(
            {
                "name": m.name,
                "creation_timestamp": m.creation_timestamp,
                "last_updated_timestamp": m.last_updated_timestamp,
                "tags": m.tags,
            }
        )
        for number in range(1, 6):
            try:
                v = registry.get_model_version(name, number)
            except Exception:  # never registered, or deleted
                continue
            versions.append(
                {
                    "name": v.name,
                    "version_number": v.version,
                    "run_id": v.run_id,
                    "source_path": v.source,
                    "creation_timestamp": v.creation_timestamp,
                    "last_updated_timestamp": v.last_updated_timestamp,
                    "tags": v.tags,
                }
            )
    return Catalog(registry, models, versions, deleted)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def catalog(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Catalog]:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("registry") / "keel.db"
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("private_postgres_url")
    store = SqlTrackingStore(url, artifact_root=str(tmp_path_factory.mktemp("artifacts")))
    try:
        yield _populate(SqlRegistryStore.from_tracking_store(store))
    finally:
        store.close()


def test_catalog_is_varied(catalog: Catalog) -> None:
    assert any(not m["tags"] for m in catalog.models)
    assert any(v["run_id"] is None for v in catalog.versions)
    assert any(v["tags"] for v in catalog.versions)
    names = {v["name"] for v in catalog.versions}
    assert any(m["name"] not in names for m in catalog.models)  # a model without versions
    assert catalog.deleted > 0


# -- strategies --------------------------------------------------------------------

patterns = st.text(alphabet="aAbB%_\\x'", max_size=4).filter(
    lambda s: (len(s) - len(s.rstrip("\\"))) % 2 == 0
)
texts = st.one_of(st.sampled_from(STRINGS), patterns)


def _string(draw: st.DrawFn, entity: str, key: str, ops: frozenset[str], pool: Any) -> Comparison:
    op = draw(st.sampled_from(sorted(ops)))
    value: Any
    if op in LIST_OPS:
        value = tuple(draw(st.lists(pool, min_size=1, max_size=3)))
    elif op in PATTERN_OPS:
        value = draw(st.one_of(patterns, pool))
    else:
        value = draw(pool)
    return Comparison(entity, key, op, value)


def _tag(draw: st.DrawFn) -> Comparison:
    key = draw(st.sampled_from([*TAG_KEYS, "nope"]))
    return _string(draw, "tag", key, EQUALITY_OPS | PATTERN_OPS, texts)


@st.composite
def model_comparisons(draw: st.DrawFn) -> Comparison:
    if draw(st.booleans()):
        return _tag(draw)
    pool = st.one_of(st.sampled_from(NAMES), texts)
    return _string(draw, "attribute", "name", EQUALITY_OPS | PATTERN_OPS | LIST_OPS, pool)


@st.composite
def version_comparisons(draw: st.DrawFn) -> Comparison:
    field = draw(st.sampled_from(["tag", "name", "run_id", "source_path", "version_number"]))
    if field == "tag":
        return _tag(draw)
    if field == "version_number":
        op = draw(st.sampled_from(sorted(NUMERIC_OPS)))
        bound = st.one_of(
            st.integers(min_value=-1, max_value=6),
            st.sampled_from([2.5, -0.5, 3.0, 2**40, 2**64, -(2**64)]),
        )
        return Comparison("attribute", "version_number", op, draw(bound))
    if field == "source_path":
        pool = st.one_of(st.sampled_from(SOURCES), texts)
        return _string(draw, "attribute", field, EQUALITY_OPS | PATTERN_OPS, pool)
    pool = st.one_of(st.sampled_from(NAMES if field == "name" else RUN_IDS), texts)
    return _string(draw, "attribute", field, EQUALITY_OPS | PATTERN_OPS | LIST_OPS, pool)


def trees(leaves: st.SearchStrategy[Comparison]) -> st.SearchStrategy[Expr]:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
            st.lists(children, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        ),
        max_leaves=5,
    )


def _orderings(fields: list[str]) -> st.SearchStrategy[list[OrderKey]]:
    keys = st.lists(st.sampled_from(fields), max_size=2, unique=True)
    return keys.flatmap(
        lambda names: st.tuples(*(st.booleans() for _ in names)).map(
            lambda dirs: [OrderKey("attribute", n, d) for n, d in zip(names, dirs, strict=True)]
        )
    )


MODEL_ORDER_FIELDS = ["name", "creation_timestamp", "last_updated_timestamp"]
VERSION_ORDER_FIELDS = [*MODEL_ORDER_FIELDS, "version_number"]


# -- properties --------------------------------------------------------------------


@settings(max_examples=120, deadline=None)
@given(trees(model_comparisons()))
def test_model_filters_match_oracle(catalog: Catalog, expr: Expr) -> None:
    text = format_filter(expr)
    assert parse_filter(text, "registered_models") == expr
    found = catalog.registry.search_registered_models(text, max_results=1000)
    assert {m.name for m in found} == select_models(expr, catalog.models), text


@settings(max_examples=120, deadline=None)
@given(trees(version_comparisons()))
def test_version_filters_match_oracle(catalog: Catalog, expr: Expr) -> None:
    text = format_filter(expr)
    assert parse_filter(text, "model_versions") == expr
    found = catalog.registry.search_model_versions(text, max_results=10_000)
    assert {(v.name, v.version) for v in found} == select_versions(expr, catalog.versions), text


@settings(max_examples=60, deadline=None)
@given(trees(model_comparisons()), _orderings(MODEL_ORDER_FIELDS), st.integers(1, 5))
def test_model_pages_follow_the_oracle_order(
    catalog: Catalog, expr: Expr, keys: list[OrderKey], page_size: int
) -> None:
    text, order_by = format_filter(expr), [format_order_key(k) for k in keys]
    wanted = [m for m in catalog.models if m["name"] in select_models(expr, catalog.models)]
    walked: list[str] = []
    token = None
    while True:
        page = catalog.registry.search_registered_models(text, page_size, order_by, token)
        assert len(page) <= page_size
        walked += [m.name for m in page]
        token = page.next_page_token
        if not token:
            break
    assert walked == order_models(wanted, keys), (text, order_by)


@settings(max_examples=60, deadline=None)
@given(trees(version_comparisons()), _orderings(VERSION_ORDER_FIELDS), st.integers(1, 7))
def test_version_pages_follow_the_oracle_order(
    catalog: Catalog, expr: Expr, keys: list[OrderKey], page_size: int
) -> None:
    text, order_by = format_filter(expr), [format_order_key(k) for k in keys]
    selected = select_versions(expr, catalog.versions)
    wanted = [v for v in catalog.versions if (v["name"], v["version_number"]) in selected]
    walked: list[tuple[str, int]] = []
    token = None
    while True:
        page = catalog.registry.search_model_versions(text, page_size, order_by, token)
        walked += [(v.name, v.version) for v in page]
        token = page.next_page_token
        if not token:
            break
    assert walked == order_versions(wanted, keys), (text, order_by)
