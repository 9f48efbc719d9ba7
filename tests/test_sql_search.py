"""Filters and orderings compiled to SQL agree with the plain-Python oracle.

Everything runs against real databases: SQLite in a temporary file always, and
PostgreSQL when ``KEEL_TEST_POSTGRES_URL`` names a server (the tests create a
throw-away database there and drop it at the end).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.entities import CONTEXT_TAG, RunStatus
from keel.search.filter import (
    EQUALITY_OPS,
    LIST_OPS,
    NULL_OPS,
    NUMERIC_OPS,
    PATTERN_OPS,
    And,
    Comparison,
    Expr,
    Or,
    format_filter,
    parse_filter,
)
from keel.search.order import OrderKey, parse_order_by
from keel.store.sql import schema
from keel.store.sql.engine import Database, normalize_db_url
from keel.store.sql.search import (
    experiment_filter_condition,
    experiment_order_by,
    run_filter_condition,
    run_order_by,
)
from search_oracle import (
    ExperimentRow,
    InputRow,
    RunRow,
    order_experiments,
    order_runs,
    select_experiments,
    select_runs,
)

# -- fixture data -------------------------------------------------------------------

# ASCII only: ILIKE folds ASCII case the same way in SQLite, PostgreSQL and the oracle.
STRINGS = ["a", "A", "ab", "Ab", "aB", "abc", "ABC", "a%b", "a_b", "axb", "a\\b", "10%", "%"]
STRINGS += ["_", "", " ", "b", "B", "it's", "run-1", "Run-2"]
METRIC_VALUES = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, 0.5, -1.5, 3.0, 1e300, -1e-300]
METRIC_VALUES += [2.0**53, 2.0**53 + 2, 0.1]
TIMES = [0, 1, 5, 1_700_000_000_000, 2**53, 2**53 + 1, 2**53 + 2, 2**62]
METRIC_KEYS = ["acc", "loss", "m.x", "a b"]
PARAM_KEYS = ["lr", "opt", "p%"]
TAG_KEYS = ["team", "mlflow.runName", "Team"]
DATASETS = [("train", "f9ab"), ("Train", "F9AB"), ("eval%", "00_1"), ("eval_x", "f9ab")]
CONTEXTS = [None, "training", "Training", "eval", "ev%"]
USERS = ["alice", "Alice", "bob", "a_b"]
URIS = ["s3://b/1", "file:///x%y", "file:///x_y", "mlflow-artifacts:/1/abc"]
EXPERIMENT_IDS = [1, 2, 3, 10, 11, 100]
EXPERIMENT_NAMES = ["Default", "exp-a", "Exp_A", "exp%b", "b", "a\\b"]
ORDER_EXPERIMENT = 999  # hand-made runs for the explicit ordering tests


def _maybe(rng: random.Random, values: Sequence[Any], p: float = 0.6) -> Any:
    return rng.choice(values) if rng.random() < p else None


def _random_run(rng: random.Random, experiment_id: int) -> RunRow:
    def keyed(keys: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
        return {k: rng.choice(values) for k in keys if rng.random() < 0.6}

    start = rng.choice(TIMES)
    inputs: list[InputRow] = [
        {"name": name, "digest": digest, "context": rng.choice(CONTEXTS)}
        for name, digest in rng.sample(DATASETS, rng.randint(0, 2))
    ]
    return {
        "run_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "experiment_id": experiment_id,
        "run_name": rng.choice(STRINGS),
        "user_id": rng.choice(USERS),
        "status": rng.choice(list(RunStatus)).value,
        "start_time": start,
        "end_time": None if rng.random() < 0.3 else start + rng.choice([0, 1, 10**6]),
        "artifact_uri": rng.choice(URIS),
        "metrics": keyed(METRIC_KEYS, METRIC_VALUES),
        "params": keyed(PARAM_KEYS, STRINGS),
        "tags": keyed(TAG_KEYS, STRINGS),
        "inputs": inputs,
    }


def _order_run(
    name: str, start: int, metric: float | None, param: str | None, end: int | None
) -> RunRow:
    return {
        "run_id": name * 32,
        "experiment_id": ORDER_EXPERIMENT,
        "run_name": name,
        "user_id": "u",
        "status": "FINISHED",
        "start_time": start,
        "end_time": end,
        "artifact_uri": "x",
        "metrics": {} if metric is None else {"m": metric},
        "params": {} if param is None else {"p": param},
        "tags": {},
        "inputs": [],
    }


ORDER_RUNS = [
    _order_run("a", 10, 1.0, "b", 11),
    _order_run("b", 20, math.nan, "B", None),
    _order_run("c", 30, -math.inf, None, 31),
    _order_run("d", 40, None, "a", 5),
    _order_run("e", 40, math.inf, "a", None),
    _order_run("f", 50, 1.0, "", 60),
]


def build_data(seed: int = 20240601) -> tuple[list[ExperimentRow], list[RunRow]]:
    rng = random.Random(seed)
    experiments: list[ExperimentRow] = [
        {
            "experiment_id": eid,
            "name": name,
            "creation_time": _maybe(rng, TIMES, 0.8),
            "last_update_time": _maybe(rng, TIMES, 0.8),
            "tags": {k: rng.choice(STRINGS) for k in TAG_KEYS if rng.random() < 0.5},
        }
        for eid, name in zip(EXPERIMENT_IDS, EXPERIMENT_NAMES, strict=True)
    ]
    experiments.append(
        {
            "experiment_id": ORDER_EXPERIMENT,
            "name": "ordering",
            "creation_time": 5,
            "last_update_time": None,
            "tags": {},
        }
    )
    runs = [_random_run(rng, rng.choice(EXPERIMENT_IDS)) for _ in range(60)]
    return experiments, runs + ORDER_RUNS


EXPERIMENTS, RUNS = build_data()
RUN_IDS = [r["run_id"] for r in RUNS]


def _dataset_uuid(experiment_id: int, name: str, digest: str) -> str:
    return hashlib.md5(f"{experiment_id}/{name}/{digest}".encode()).hexdigest()


def insert_data(db: Database, experiments: list[ExperimentRow], runs: list[RunRow]) -> None:
    """Write the rows straight into the tables, the way the store lays them out."""
    exp_rows = [
        {
            "experiment_id": e["experiment_id"],
            "name": e["name"],
            "artifact_location": f"/tmp/{e['experiment_id']}",
            "creation_time": e["creation_time"],
            "last_update_time": e["last_update_time"],
        }
        for e in experiments
    ]
    exp_tags = [
        {"experiment_id": e["experiment_id"], "key": k, "value": v}
        for e in experiments
        for k, v in e["tags"].items()
    ]
    run_rows = [
        {
            "run_uuid": r["run_id"],
            "experiment_id": r["experiment_id"],
            "name": r["run_name"],
            "user_id": r["user_id"],
            "status": r["status"],
            "start_time": r["start_time"],
            "end_time": r["end_time"],
            "artifact_uri": r["artifact_uri"],
        }
        for r in runs
    ]
    metric_rows = [
        {
            "run_uuid": r["run_id"],
            "key": k,
            "step": 0,
            "timestamp": 0,
            "value": 0.0 if math.isnan(v) else v,
            "is_nan": math.isnan(v),
        }
        for r in runs
        for k, v in r["metrics"].items()
    ]

    def keyed_rows(field: str) -> list[dict[str, Any]]:
        return [
            {"run_uuid": r["run_id"], "key": k, "value": v}
            for r in runs
            for k, v in r[field].items()
        ]

    datasets: dict[str, dict[str, Any]] = {}
    run_inputs: list[dict[str, Any]] = []
    input_tags: list[dict[str, Any]] = []
    for r in runs:
        for i in r["inputs"]:
            ds_uuid = _dataset_uuid(r["experiment_id"], i["name"], i["digest"])
            datasets[ds_uuid] = {
                "dataset_uuid": ds_uuid,
                "experiment_id": r["experiment_id"],
                "name": i["name"],
                "digest": i["digest"],
            }
            run_inputs.append({"run_uuid": r["run_id"], "dataset_uuid": ds_uuid})
            if i["context"] is not None:
                tag = {"key": CONTEXT_TAG, "value": i["context"]}
                input_tags.append({"run_uuid": r["run_id"], "dataset_uuid": ds_uuid, **tag})
                # Another input tag, so context matching must look at the key.
                other = {"key": "mlflow.data.other", "value": i["context"] + "-x"}
                input_tags.append({"run_uuid": r["run_id"], "dataset_uuid": ds_uuid, **other})

    schema.metadata.create_all(db.engine)
    with db.write() as conn:
        for table, rows in [
            (schema.experiments, exp_rows),
            (schema.experiment_tags, exp_tags),
            (schema.runs, run_rows),
            (schema.latest_metrics, metric_rows),
            (schema.params, keyed_rows("params")),
            (schema.tags, keyed_rows("tags")),
            (schema.datasets, list(datasets.values())),
            (schema.run_inputs, run_inputs),
            (schema.input_tags, input_tags),
        ]:
            if rows:
                conn.execute(sa.insert(table), rows)


# -- databases ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def search_postgres_url() -> Iterator[str]:
    """A PostgreSQL database of its own (other suites truncate theirs), dropped at the end."""
    base = os.environ.get("KEEL_TEST_POSTGRES_URL")
    if not base:
        pytest.skip(
            "PostgreSQL tests need KEEL_TEST_POSTGRES_URL, "
            "e.g. postgresql://postgres@127.0.0.1:5432/postgres"
        )
    name = f"keel_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(normalize_db_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(normalize_db_url(base)).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(
    scope="session",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("search") / "keel.db"
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("search_postgres_url")
    database = Database(url)
    insert_data(database, EXPERIMENTS, RUNS)
    try:
        yield database
    finally:
        database.dispose()


def sql_runs(db: Database, expr: Expr | None) -> set[str]:
    stmt = sa.select(schema.runs.c.run_uuid).where(run_filter_condition(expr))
    with db.read() as conn:
        return set(conn.execute(stmt).scalars())


def sql_run_order(
    db: Database, keys: Sequence[OrderKey], experiment: int | None = None
) -> list[str]:
    stmt = sa.select(schema.runs.c.run_uuid).order_by(*run_order_by(keys))
    if experiment is not None:
        stmt = stmt.where(schema.runs.c.experiment_id == experiment)
    with db.read() as conn:
        return list(conn.execute(stmt).scalars())


def sql_experiments(db: Database, expr: Expr | None) -> set[int]:
    exps = schema.experiments
    stmt = sa.select(exps.c.experiment_id).where(experiment_filter_condition(expr))
    with db.read() as conn:
        return set(conn.execute(stmt).scalars())


def sql_experiment_order(db: Database, keys: Sequence[OrderKey]) -> list[int]:
    stmt = sa.select(schema.experiments.c.experiment_id).order_by(*experiment_order_by(keys))
    with db.read() as conn:
        return list(conn.execute(stmt).scalars())


def check_runs(db: Database, text: str) -> set[str]:
    """The runs a filter selects, after checking SQL and the oracle agree."""
    expr = parse_filter(text)
    expected = select_runs(expr, RUNS)
    assert sql_runs(db, expr) == expected, text
    return expected


def ids(*names: str) -> set[str]:
    return {name * 32 for name in names}


# -- hand-written cases -------------------------------------------------------------------


def test_fixture_data_is_varied() -> None:
    metrics = [v for r in RUNS for v in r["metrics"].values()]
    assert any(math.isnan(v) for v in metrics)
    assert math.inf in metrics and -math.inf in metrics
    assert any(r["end_time"] is None for r in RUNS)
    assert any(not r["params"] for r in RUNS)
    assert any(len(r["inputs"]) == 2 for r in RUNS)


def test_no_filter_selects_everything(db: Database) -> None:
    assert sql_runs(db, None) == set(RUN_IDS)
    assert sql_experiments(db, None) == {e["experiment_id"] for e in EXPERIMENTS}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.m = 1", ids("a", "f")),
        ("metrics.m != 1", ids("b", "c", "e")),  # NaN is unequal; missing (d) is nothing
        ("metrics.m > 0", ids("a", "e", "f")),
        ("metrics.m <= 1e308", ids("a", "c", "f")),
        ("params.p != 'a'", ids("a", "b", "f")),  # c has no p
        ("params.p IS NULL", ids("c")),
        ("params.p IS NOT NULL", ids("a", "b", "d", "e", "f")),
        ("params.p = ''", ids("f")),
        ("params.p ILIKE 'B'", ids("a", "b")),
        ("params.p LIKE 'B'", ids("b")),
        ("metrics.m > 0 OR params.p IS NULL", ids("a", "c", "e", "f")),
        ("(metrics.m = 1 OR metrics.m < 0) AND params.p != 'b'", ids("f")),
        ("end_time >= 0", ids("a", "c", "d", "f")),  # running runs have no end_time
        ("end_time != 11", ids("c", "d", "f")),
        ("start_time > 39.5", ids("d", "e", "f")),
        ("start_time < 40.5 AND start_time > 39.9", ids("d", "e")),
        ("start_time = 40.0", ids("d", "e")),
        ("start_time = 40.5", set()),
        ("start_time != 40.5", ids("a", "b", "c", "d", "e", "f")),
        ("start_time < 99999999999999999999999", ids("a", "b", "c", "d", "e", "f")),
        ("start_time > -99999999999999999999999", ids("a", "b", "c", "d", "e", "f")),
        ("start_time > 1e300", set()),
        ("run_name = 'a' OR run_name = 'b' OR run_id = '" + "c" * 32 + "'", ids("a", "b", "c")),
        ("run_id NOT IN ('" + "a" * 32 + "')", ids("b", "c", "d", "e", "f")),
    ],
)
def test_semantics_on_hand_made_runs(db: Database, text: str, expected: set[str]) -> None:
    expr = And((parse_filter(text), parse_filter("user_id = 'u'")))
    got = sql_runs(db, expr)
    assert got == expected
    assert select_runs(expr, RUNS) == expected


def test_large_timestamps_compare_exactly(db: Database) -> None:
    exact = check_runs(db, f"start_time = {2**53 + 1}")
    assert exact
    assert all(r["start_time"] == 2**53 + 1 for r in RUNS if r["run_id"] in exact)
    assert check_runs(db, f"start_time > {2**53}") == check_runs(db, f"start_time >= {2**53 + 1}")


@pytest.mark.parametrize(
    "text",
    [
        "datasets.name = 'train'",
        "datasets.name != 'train'",
        "datasets.name IN ('train', 'eval%')",
        "datasets.name NOT IN ('train')",
        "datasets.name LIKE 'eval\\%'",
        "datasets.name LIKE 'eval_%'",
        "datasets.name ILIKE 'TRAIN'",
        "datasets.digest LIKE 'f9%'",
        "datasets.context = 'training'",
        "datasets.context != 'training'",
        "datasets.context ILIKE 'TRAINING'",
        "datasets.context LIKE 'ev\\%'",
        "datasets.context IN ('eval', 'ev%')",
        "datasets.context = 'training-x'",  # the value of another input tag: no match
        "datasets.name = 'train' AND datasets.context = 'eval'",
        "datasets.name = 'train' OR datasets.digest = '00_1'",
    ],
)
def test_dataset_filters(db: Database, text: str) -> None:
    check_runs(db, text)


def test_dataset_other_input_tags_do_not_count_as_context(db: Database) -> None:
    assert check_runs(db, "datasets.context = 'training-x'") == set()
    assert check_runs(db, "datasets.context LIKE '%'")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("experiment_id = '3'", {3}),
        ("experiment_id = '03'", set()),
        ("experiment_id = 'x'", set()),
        ("experiment_id = '99999999999999999999999'", set()),
        ("experiment_id != 'x'", {*EXPERIMENT_IDS, ORDER_EXPERIMENT}),
        ("experiment_id != '3'", {*EXPERIMENT_IDS, ORDER_EXPERIMENT} - {3}),
        ("experiment_id IN ('1', '10', 'nope', '-1')", {1, 10}),
        ("experiment_id NOT IN ('1', '10', 'nope')", {*EXPERIMENT_IDS, ORDER_EXPERIMENT} - {1, 10}),
        ("experiment_id IN ('nope')", set()),
        ("name = 'exp-a' OR name ILIKE 'exp\\_a'", {2, 3}),
        ("name LIKE 'exp%'", {2, 10}),
        ("name LIKE 'a\\\\\\\\b'", {100}),  # pattern a\\b: a literal backslash
    ],
)
def test_experiment_filters(db: Database, text: str, expected: set[int]) -> None:
    expr = parse_filter(text, kind="experiments")
    assert select_experiments(expr, EXPERIMENTS) == expected
    assert sql_experiments(db, expr) == expected


# -- ordering ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        # numbers, then NaN (b), then missing (d) in both directions; f/a tie on 1.0 and
        # fall back to start_time DESC.
        ("metrics.m ASC", "cfaebd"),
        ("metrics.m DESC", "efacbd"),
        # Code point order: '' < 'B' < 'a' < 'b'; missing (c) last; d/e tie on 'a' and on
        # start_time, so run_uuid decides.
        ("params.p ASC", "fbdeac"),
        ("params.p DESC", "adebfc"),
        ("end_time ASC", "dacfeb"),
        ("end_time DESC", "fcadeb"),
        ("start_time", "abcdef"),
        ("created DESC", "fdecba"),
        ("run_name DESC", "fedcba"),
    ],
)
def test_hand_made_order(db: Database, clause: str, expected: str) -> None:
    keys = parse_order_by([clause])
    wanted = [name * 32 for name in expected]
    assert sql_run_order(db, keys, experiment=ORDER_EXPERIMENT) == wanted
    assert [r for r in order_runs(RUNS, keys) if r in set(wanted)] == wanted


def test_default_order_is_newest_first_then_run_id(db: Database) -> None:
    assert sql_run_order(db, [], experiment=ORDER_EXPERIMENT) == [n * 32 for n in "fdecba"]
    assert sql_run_order(db, []) == order_runs(RUNS, [])


def test_default_experiment_order(db: Database) -> None:
    got = sql_experiment_order(db, [])
    assert got == order_experiments(EXPERIMENTS, [])
    times = {e["experiment_id"]: e["creation_time"] for e in EXPERIMENTS}
    present = [times[i] for i in got if times[i] is not None]
    assert present == sorted(present, reverse=True)
    assert all(times[i] is None for i in got[len(present) :])  # missing times last


# -- properties: SQL == oracle --------------------------------------------------------------

patterns = st.text(alphabet="aAbB%_\\x'", max_size=5).filter(
    lambda s: (len(s) - len(s.rstrip("\\"))) % 2 == 0
)
texts = st.one_of(st.sampled_from(STRINGS), patterns)
metric_values = st.one_of(
    st.sampled_from([v for v in METRIC_VALUES if math.isfinite(v)]),
    st.sampled_from([0, 1, 3, -1, 2**53 + 1, 10**400 // 10**100]),
    st.floats(allow_nan=False, allow_infinity=False),
)
time_values = st.one_of(
    st.sampled_from(TIMES),
    st.sampled_from([2.5, -0.5, float(2**53), 2**53 + 0.0, 2**64, -(2**64), 2**63, 2**63 - 1]),
    st.integers(min_value=-3, max_value=10**13),
    st.floats(allow_nan=False, allow_infinity=False),
)


def _string_comparison(
    draw: st.DrawFn, entity: str, key: str, ops: frozenset[str], pool: Any = texts
) -> Comparison:
    op = draw(st.sampled_from(sorted(ops)))
    value: Any
    if op in NULL_OPS:
        value = None
    elif op in LIST_OPS:
        value = tuple(draw(st.lists(pool, min_size=1, max_size=3)))
    elif op in PATTERN_OPS:
        value = draw(patterns if draw(st.booleans()) else st.sampled_from(STRINGS))
    else:
        value = draw(pool)
    return Comparison(entity, key, op, value)


@st.composite
def run_comparisons(draw: st.DrawFn) -> Comparison:
    entity = draw(st.sampled_from(["metric", "param", "tag", "attribute", "dataset"]))
    string_ops = EQUALITY_OPS | PATTERN_OPS
    if entity == "metric":
        key = draw(st.sampled_from([*METRIC_KEYS, "missing"]))
        op = draw(st.sampled_from(sorted(NUMERIC_OPS)))
        return Comparison("metric", key, op, draw(metric_values))
    if entity in ("param", "tag"):
        key = draw(st.sampled_from([*(PARAM_KEYS if entity == "param" else TAG_KEYS), "nope"]))
        return _string_comparison(draw, entity, key, string_ops | NULL_OPS)
    if entity == "dataset":
        key = draw(st.sampled_from(["name", "digest", "context"]))
        pool = st.sampled_from([n for pair in DATASETS for n in pair] + ["training", "eval"])
        return _string_comparison(draw, entity, key, string_ops | LIST_OPS, st.one_of(pool, texts))
    key = draw(
        st.sampled_from(
            ["run_id", "run_name", "status", "user_id", "artifact_uri", "start_time", "end_time"]
        )
    )
    if key.endswith("_time"):
        op = draw(st.sampled_from(sorted(NUMERIC_OPS)))
        return Comparison("attribute", key, op, draw(time_values))
    pools = {
        "run_id": st.sampled_from(RUN_IDS),
        "status": st.sampled_from([s.value for s in RunStatus] + ["finished"]),
        "user_id": st.sampled_from(USERS),
        "artifact_uri": st.sampled_from(URIS),
        "run_name": st.sampled_from(STRINGS),
    }
    ops = string_ops | LIST_OPS if key == "run_id" else string_ops
    return _string_comparison(draw, "attribute", key, ops, st.one_of(pools[key], texts))


def boolean_trees(leaves: st.SearchStrategy[Comparison]) -> st.SearchStrategy[Expr]:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
            st.lists(children, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        ),
        max_leaves=5,
    )


@settings(max_examples=150, deadline=None)
@given(boolean_trees(run_comparisons()))
def test_run_filters_match_oracle(db: Database, expr: Expr) -> None:
    # Through the text form, so the parser is part of what is checked.
    text = format_filter(expr)
    parsed = parse_filter(text)
    assert parsed == expr
    assert sql_runs(db, parsed) == select_runs(parsed, RUNS), text


@st.composite
def experiment_comparisons(draw: st.DrawFn) -> Comparison:
    field = draw(st.sampled_from(["name", "experiment_id", "creation_time", "tag"]))
    if field == "tag":
        key = draw(st.sampled_from([*TAG_KEYS, "nope"]))
        return _string_comparison(draw, "tag", key, EQUALITY_OPS | PATTERN_OPS | NULL_OPS)
    if field == "name":
        pool = st.one_of(st.sampled_from(EXPERIMENT_NAMES), texts)
        return _string_comparison(draw, "attribute", "name", EQUALITY_OPS | PATTERN_OPS, pool)
    if field == "experiment_id":
        pool = st.one_of(
            st.sampled_from([str(i) for i in EXPERIMENT_IDS] + ["03", "x", "", "-1", "1e1"]),
            st.sampled_from([2**31 - 1, 2**31, 2**63, 2**70]).map(str),
            st.integers(min_value=0, max_value=2**70).map(str),
        )
        return _string_comparison(draw, "attribute", "experiment_id", EQUALITY_OPS | LIST_OPS, pool)
    key = draw(st.sampled_from(["creation_time", "last_update_time"]))
    return Comparison(
        "attribute", key, draw(st.sampled_from(sorted(NUMERIC_OPS))), draw(time_values)
    )


@settings(max_examples=100, deadline=None)
@given(boolean_trees(experiment_comparisons()))
def test_experiment_filters_match_oracle(db: Database, expr: Expr) -> None:
    text = format_filter(expr)
    parsed = parse_filter(text, kind="experiments")
    assert parsed == expr
    assert sql_experiments(db, parsed) == select_experiments(parsed, EXPERIMENTS), text


run_order_keys = st.one_of(
    st.builds(
        OrderKey,
        entity=st.just("metric"),
        key=st.sampled_from([*METRIC_KEYS, "missing"]),
        ascending=st.booleans(),
    ),
    st.builds(
        OrderKey,
        entity=st.sampled_from(["param", "tag"]),
        key=st.sampled_from([*PARAM_KEYS, *TAG_KEYS]),
        ascending=st.booleans(),
    ),
    st.builds(
        OrderKey,
        entity=st.just("attribute"),
        key=st.sampled_from(
            ["start_time", "end_time", "run_name", "run_id", "status", "user_id", "artifact_uri"]
        ),
        ascending=st.booleans(),
    ),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(run_order_keys, max_size=3))
def test_run_order_matches_oracle(db: Database, keys: list[OrderKey]) -> None:
    assert sql_run_order(db, keys) == order_runs(RUNS, keys)


experiment_order_keys = st.builds(
    OrderKey,
    entity=st.just("attribute"),
    key=st.sampled_from(["name", "experiment_id", "creation_time", "last_update_time"]),
    ascending=st.booleans(),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(experiment_order_keys, max_size=2))
def test_experiment_order_matches_oracle(db: Database, keys: list[OrderKey]) -> None:
    assert sql_experiment_order(db, keys) == order_experiments(EXPERIMENTS, keys)
