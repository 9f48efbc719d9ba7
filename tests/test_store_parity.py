"""The TrackingStore contract, run against every implementation in conftest.IMPLEMENTATIONS."""

from __future__ import annotations

import math

import pytest

from keel.entities import (
    Dataset,
    DatasetInput,
    ExperimentTag,
    InputTag,
    LifecycleStage,
    Metric,
    Param,
    RunStatus,
    RunTag,
    ViewType,
)
from keel.errors import AlreadyExists, FilterSyntaxError, InvalidParameter, InvalidState, NotFound
from keel.store.base import TrackingStore


def _run(store: TrackingStore, exp_id: str = "0", name: str | None = None, start: int = 0) -> str:
    return store.create_run(exp_id, "ana", start, [], name).info.run_id


# -- experiments ---------------------------------------------------------------


def test_default_experiment_exists(store: TrackingStore) -> None:
    exp = store.get_experiment("0")
    assert exp.name == "Default"
    assert exp.lifecycle_stage is LifecycleStage.ACTIVE


def test_create_and_get_experiment(store: TrackingStore) -> None:
    exp_id = store.create_experiment("churn", tags=[ExperimentTag("team", "risk")])
    exp = store.get_experiment(exp_id)
    assert exp.name == "churn"
    assert exp.tags == {"team": "risk"}
    assert exp.artifact_location.endswith(f"/{exp_id}")
    assert exp.creation_time is not None
    assert store.get_experiment_by_name("churn") == exp
    assert store.get_experiment_by_name("nope") is None


def test_explicit_artifact_location(store: TrackingStore) -> None:
    # Remote: a server refuses locations on its own disk from clients (keel.server.locations).
    exp_id = store.create_experiment("x", artifact_location="s3://bucket/data/x")
    assert store.get_experiment(exp_id).artifact_location == "s3://bucket/data/x"
    run = store.create_run(exp_id, "u", 0, [], None)
    assert run.info.artifact_uri == f"s3://bucket/data/x/{run.info.run_id}/artifacts"


def test_duplicate_experiment_name(store: TrackingStore) -> None:
    store.create_experiment("dup")
    with pytest.raises(AlreadyExists, match="'dup' already exists"):
        store.create_experiment("dup")


@pytest.mark.parametrize("bad", ["", "   ", "x" * 501])
def test_invalid_experiment_name(store: TrackingStore, bad: str) -> None:
    with pytest.raises(InvalidParameter):
        store.create_experiment(bad)


def test_missing_experiment(store: TrackingStore) -> None:
    with pytest.raises(NotFound, match="'999'"):
        store.get_experiment("999")
    with pytest.raises(NotFound):
        store.get_experiment("not-a-number")


def test_delete_and_restore_experiment_with_runs(store: TrackingStore) -> None:
    exp_id = store.create_experiment("e")
    kept_deleted = _run(store, exp_id)
    store.delete_run(kept_deleted)
    live = _run(store, exp_id)
    store.delete_experiment(exp_id)
    assert store.get_experiment(exp_id).lifecycle_stage is LifecycleStage.DELETED
    assert store.get_run(live).info.lifecycle_stage is LifecycleStage.DELETED
    with pytest.raises(InvalidState, match="deleted"):
        store.create_run(exp_id, "u", 0, [], None)
    with pytest.raises(AlreadyExists, match="restore"):
        store.create_experiment("e")
    store.restore_experiment(exp_id)
    assert store.get_experiment(exp_id).lifecycle_stage is LifecycleStage.ACTIVE
    assert store.get_run(live).info.lifecycle_stage is LifecycleStage.ACTIVE
    # A run deleted on its own before the experiment stays deleted.
    assert store.get_run(kept_deleted).info.lifecycle_stage is LifecycleStage.DELETED


def test_rename_and_tags(store: TrackingStore) -> None:
    exp_id = store.create_experiment("old")
    store.create_experiment("taken")
    with pytest.raises(AlreadyExists):
        store.rename_experiment(exp_id, "taken")
    store.rename_experiment(exp_id, "new")
    assert store.get_experiment(exp_id).name == "new"
    store.set_experiment_tag(exp_id, ExperimentTag("k", "v1"))
    store.set_experiment_tag(exp_id, ExperimentTag("k", "v2"))
    assert store.get_experiment(exp_id).tags == {"k": "v2"}
    store.delete_experiment_tag(exp_id, "k")
    assert store.get_experiment(exp_id).tags == {}
    with pytest.raises(NotFound):
        store.delete_experiment_tag(exp_id, "k")


def test_search_experiments_filter_order_paging(store: TrackingStore) -> None:
    for i in range(7):
        exp_id = store.create_experiment(f"exp-{i}", tags=[ExperimentTag("n", str(i % 2))])
    store.delete_experiment(exp_id)  # exp-6
    names = [e.name for e in store.search_experiments(order_by=["name DESC"], max_results=100)]
    assert names == [f"exp-{i}" for i in range(5, -1, -1)] + ["Default"]
    odd = store.search_experiments(filter_string="tags.n = '1'", order_by=["name"])
    assert [e.name for e in odd] == ["exp-1", "exp-3", "exp-5"]
    deleted = store.search_experiments(view_type=ViewType.DELETED_ONLY)
    assert [e.name for e in deleted] == ["exp-6"]
    seen, token = [], None
    while True:
        page = store.search_experiments(
            ViewType.ALL, max_results=3, order_by=["name"], page_token=token
        )
        assert len(page) <= 3
        seen += [e.name for e in page]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(["Default"] + [f"exp-{i}" for i in range(7)])
    like = store.search_experiments(filter_string="name LIKE 'exp-%' AND name != 'exp-1'")
    assert len(like) == 5


# -- runs ----------------------------------------------------------------------


def test_create_and_get_run(store: TrackingStore) -> None:
    exp_id = store.create_experiment("e")
    run = store.create_run(exp_id, "ana", 1234, [RunTag("team", "risk")], "rf")
    got = store.get_run(run.info.run_id)
    assert got.info.run_name == "rf"
    assert got.info.status is RunStatus.RUNNING
    assert got.info.start_time == 1234
    assert got.info.end_time is None
    assert got.info.user_id == "ana"
    assert got.info.experiment_id == exp_id
    assert got.data.tags == {"team": "risk", "mlflow.runName": "rf"}
    assert got.info.artifact_uri.endswith(f"/{exp_id}/{run.info.run_id}/artifacts")


def test_generated_run_name(store: TrackingStore) -> None:
    run = store.create_run("0", "u", 0, [], None)
    assert run.info.run_name.count("-") == 2
    assert store.get_run(run.info.run_id).data.tags["mlflow.runName"] == run.info.run_name


def test_missing_run(store: TrackingStore) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        store.get_run("0" * 32)
    with pytest.raises(NotFound):
        store.log_metric("0" * 32, Metric("m", 1.0, 0, 0))


def test_update_run_info(store: TrackingStore) -> None:
    run_id = _run(store)
    info = store.update_run_info(run_id, RunStatus.FINISHED, 99, "renamed")
    assert (info.status, info.end_time, info.run_name) == (RunStatus.FINISHED, 99, "renamed")
    run = store.get_run(run_id)
    assert run.data.tags["mlflow.runName"] == "renamed"
    assert run.info.status is RunStatus.FINISHED


def test_delete_restore_run_and_writes_to_deleted(store: TrackingStore) -> None:
    run_id = _run(store)
    store.delete_run(run_id)
    assert store.get_run(run_id).info.lifecycle_stage is LifecycleStage.DELETED
    with pytest.raises(InvalidState, match="restore"):
        store.log_metric(run_id, Metric("m", 1.0, 0, 0))
    assert store.search_runs(["0"]).items == []
    assert len(store.search_runs(["0"], run_view_type=ViewType.DELETED_ONLY)) == 1
    store.restore_run(run_id)
    store.log_metric(run_id, Metric("m", 1.0, 0, 0))
    assert store.get_run(run_id).data.metrics == {"m": 1.0}


# -- params, tags, metrics -----------------------------------------------------


def test_params_are_immutable(store: TrackingStore) -> None:
    run_id = _run(store)
    store.log_param(run_id, Param("lr", "0.1"))
    store.log_param(run_id, Param("lr", "0.1"))  # same value: fine
    with pytest.raises(InvalidParameter) as err:
        store.log_param(run_id, Param("lr", "0.2"))
    assert "'0.1'" in err.value.message and "'0.2'" in err.value.message
    assert store.get_run(run_id).data.params == {"lr": "0.1"}


def test_batch_is_all_or_nothing(store: TrackingStore) -> None:
    run_id = _run(store)
    store.log_param(run_id, Param("a", "1"))
    with pytest.raises(InvalidParameter):
        store.log_batch(
            run_id,
            metrics=[Metric("m", 1.0, 0, 0)],
            params=[Param("b", "2"), Param("a", "changed")],
            tags=[RunTag("t", "x")],
        )
    data = store.get_run(run_id).data
    assert data.params == {"a": "1"}
    assert data.metrics == {}
    assert "t" not in data.tags


def test_tags_overwrite_and_delete(store: TrackingStore) -> None:
    run_id = _run(store)
    store.set_tag(run_id, RunTag("k", "1"))
    store.log_batch(run_id, tags=[RunTag("k", "2"), RunTag("k", "3")])
    assert store.get_run(run_id).data.tags["k"] == "3"
    store.delete_tag(run_id, "k")
    assert "k" not in store.get_run(run_id).data.tags
    with pytest.raises(NotFound):
        store.delete_tag(run_id, "k")


def test_setting_run_name_tag_renames_run(store: TrackingStore) -> None:
    run_id = _run(store, name="a")
    store.set_tag(run_id, RunTag("mlflow.runName", "b"))
    assert store.get_run(run_id).info.run_name == "b"


def test_metric_special_values_round_trip(store: TrackingStore) -> None:
    run_id = _run(store)
    values = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-308, 1.7976931348623157e308]
    store.log_batch(run_id, metrics=[Metric("v", x, 10, i) for i, x in enumerate(values)])
    history = store.get_metric_history(run_id, "v").items
    assert [m.step for m in history] == list(range(len(values)))
    got = [m.value for m in history]
    assert math.isnan(got[0])
    assert got[1:] == values[1:]
    latest = store.get_run(run_id).data.metrics["v"]
    assert latest == values[-1]
    store.log_metric(run_id, Metric("n", math.nan, 0, 0))
    assert math.isnan(store.get_run(run_id).data.metrics["n"])


def test_latest_metric_is_highest_step_then_timestamp(store: TrackingStore) -> None:
    run_id = _run(store)
    store.log_metric(run_id, Metric("m", 5.0, 100, 2))
    store.log_metric(run_id, Metric("m", 1.0, 200, 1))  # later, but lower step
    assert store.get_run(run_id).data.metrics["m"] == 5.0
    store.log_metric(run_id, Metric("m", 7.0, 150, 2))  # same step, later time
    assert store.get_run(run_id).data.metrics["m"] == 7.0
    store.log_batch(run_id, metrics=[Metric("m", 3.0, 1, 9), Metric("m", 4.0, 0, 8)])
    assert store.get_run(run_id).data.metrics["m"] == 3.0


def test_metric_retry_does_not_duplicate(store: TrackingStore) -> None:
    run_id = _run(store)
    batch = [Metric("m", float(i), 1000, i) for i in range(10)]
    store.log_batch(run_id, metrics=batch)
    store.log_batch(run_id, metrics=batch)
    assert len(store.get_metric_history(run_id, "m")) == 10


def test_int64_steps_and_timestamps(store: TrackingStore) -> None:
    run_id = _run(store)
    big = 2**53 + 1
    store.log_batch(
        run_id,
        metrics=[Metric("m", 1.0, big, -(2**63)), Metric("m", 2.0, 2**63 - 1, 2**63 - 1)],
    )
    history = store.get_metric_history(run_id, "m").items
    assert [(m.step, m.timestamp) for m in history] == [(-(2**63), big), (2**63 - 1, 2**63 - 1)]
    with pytest.raises(InvalidParameter, match="64-bit"):
        store.log_metric(run_id, Metric("m", 1.0, 0, 2**63))


def test_metric_history_paging(store: TrackingStore) -> None:
    run_id = _run(store)
    store.log_batch(run_id, metrics=[Metric("m", float(i), i, i) for i in range(25)])
    steps, token = [], None
    while True:
        page = store.get_metric_history(run_id, "m", max_results=10, page_token=token)
        steps += [m.step for m in page]
        token = page.next_page_token
        if not token:
            break
    assert steps == list(range(25))
    assert store.get_metric_history(run_id, "unknown").items == []
    with pytest.raises(InvalidParameter, match="page token"):
        store.get_metric_history(run_id, "m", max_results=10, page_token="garbage!")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": [Metric(f"m{i}", 1.0, 0, 0) for i in range(1001)]}, "at most 1000 metrics"),
        ({"params": [Param(f"p{i}", "1") for i in range(101)]}, "at most 100 params"),
        ({"tags": [RunTag(f"t{i}", "1") for i in range(101)]}, "at most 100 tags"),
        ({"params": [Param("k" * 251, "1")]}, "limit is 250"),
        ({"params": [Param("p", "v" * 6001)]}, "limit is 6000"),
        ({"tags": [RunTag("t", "v" * 8001)]}, "limit is 8000"),
        ({"metrics": [Metric("../escape", 1.0, 0, 0)]}, "relative path"),
        ({"metrics": [Metric("bad\nname", 1.0, 0, 0)]}, "may only contain"),
    ],
)
def test_limits_rejected_with_clear_errors(
    store: TrackingStore, kwargs: dict[str, list[object]], message: str
) -> None:
    run_id = _run(store)
    with pytest.raises(InvalidParameter, match=message):
        store.log_batch(run_id, **kwargs)  # type: ignore[arg-type]


def test_values_at_the_limits_are_kept_whole(store: TrackingStore) -> None:
    run_id = _run(store)
    store.log_batch(run_id, params=[Param("p", "v" * 6000)], tags=[RunTag("k" * 250, "t" * 8000)])
    data = store.get_run(run_id).data
    assert data.params["p"] == "v" * 6000
    assert data.tags["k" * 250] == "t" * 8000


# -- dataset inputs ----------------------------------------------------------------


def test_log_inputs(store: TrackingStore) -> None:
    run_id = _run(store)
    train = Dataset("train", "abc123", "local", "/data/train.csv", '{"cols": ["a"]}')
    store.log_inputs(run_id, [DatasetInput(train, (InputTag("mlflow.data.context", "training"),))])
    store.log_inputs(run_id, [DatasetInput(train, (InputTag("mlflow.data.context", "training"),))])
    inputs = store.get_run(run_id).inputs
    assert len(inputs) == 1
    assert inputs[0].dataset == train
    assert inputs[0].context == "training"
    other = _run(store)
    store.log_inputs(other, [DatasetInput(Dataset("eval", "def456"))])
    found = store.search_runs(["0"], filter_string="datasets.context = 'training'")
    assert [r.info.run_id for r in found] == [run_id]
    found = store.search_runs(["0"], filter_string="datasets.name IN ('train', 'eval')")
    assert {r.info.run_id for r in found} == {run_id, other}


# -- run search ----------------------------------------------------------------


@pytest.fixture
def populated(store: TrackingStore) -> tuple[TrackingStore, str, list[str]]:
    exp_id = store.create_experiment("search")
    ids = []
    for i in range(12):
        run_id = store.create_run(exp_id, "ana" if i % 3 else "bob", 1000 + i, [], f"run-{i}")
        run_id = run_id.info.run_id
        metrics = [Metric("acc", i / 10, 0, 0)]
        if i % 4 == 0:
            metrics.append(Metric("loss", 1.0 / (i + 1), 0, 0))
        store.log_batch(
            run_id,
            metrics=metrics,
            params=[Param("model", "rf" if i % 2 else "lr"), Param("depth", str(i % 5))],
            tags=[RunTag("group", f"G{i % 3}")],
        )
        ids.append(run_id)
    return store, exp_id, ids


def _names(runs: object) -> list[str]:
    return [r.info.run_name for r in runs]  # type: ignore[attr-defined]


def test_search_filter_and_order(populated: tuple[TrackingStore, str, list[str]]) -> None:
    store, exp_id, _ = populated
    runs = store.search_runs(
        [exp_id],
        filter_string="metrics.acc > 0.5 and params.model = 'rf'",
        order_by=["metrics.acc DESC"],
    )
    assert _names(runs) == ["run-11", "run-9", "run-7"]


def test_search_or_and_parentheses(populated: tuple[TrackingStore, str, list[str]]) -> None:
    store, exp_id, _ = populated
    runs = store.search_runs(
        [exp_id],
        filter_string="(params.depth = '0' OR params.depth = '4') AND tags.group != 'G0'",
        order_by=["attributes.start_time"],
    )
    assert _names(runs) == ["run-4", "run-5", "run-10"]


def test_search_order_missing_metric_last(populated: tuple[TrackingStore, str, list[str]]) -> None:
    store, exp_id, _ = populated
    for direction in ("ASC", "DESC"):
        runs = store.search_runs([exp_id], order_by=[f"metrics.loss {direction}"])
        names = _names(runs)
        with_loss = ["run-0", "run-4", "run-8"]
        expected = sorted(with_loss, key=lambda n: 1 / (int(n[4:]) + 1))
        assert names[:3] == (expected if direction == "ASC" else expected[::-1])
        assert set(names[3:]) == {f"run-{i}" for i in range(12)} - set(with_loss)


def test_search_default_order_and_paging(populated: tuple[TrackingStore, str, list[str]]) -> None:
    store, exp_id, ids = populated
    seen, token = [], None
    while True:
        page = store.search_runs([exp_id], max_results=5, page_token=token)
        seen += [r.info.run_id for r in page]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]  # newest first
    with pytest.raises(InvalidParameter, match="different search"):
        first = store.search_runs([exp_id], max_results=5)
        store.search_runs(
            [exp_id], "metrics.acc > 0", max_results=5, page_token=first.next_page_token
        )


def test_search_attributes_and_like(populated: tuple[TrackingStore, str, list[str]]) -> None:
    store, exp_id, ids = populated
    assert len(store.search_runs([exp_id], "attributes.user_id = 'bob'")) == 4
    assert _names(store.search_runs([exp_id], "run_name LIKE 'run-1%'", order_by=["run_name"])) == [
        "run-1",
        "run-10",
        "run-11",
    ]
    assert len(store.search_runs([exp_id], "tags.group ILIKE 'g1'")) == 4
    assert len(store.search_runs([exp_id], "tags.group LIKE 'g1'")) == 0  # LIKE is case-sensitive
    picked = store.search_runs([exp_id], f"attributes.run_id IN ('{ids[0]}', '{ids[5]}')")
    assert {r.info.run_id for r in picked} == {ids[0], ids[5]}
    assert len(store.search_runs([exp_id], "params.missing IS NULL")) == 12
    assert len(store.search_runs([exp_id], "attributes.start_time >= 1006")) == 6


def test_search_limits_and_errors(populated: tuple[TrackingStore, str, list[str]]) -> None:
    store, exp_id, _ = populated
    with pytest.raises(InvalidParameter, match="50000"):
        store.search_runs([exp_id], max_results=50001)
    with pytest.raises(FilterSyntaxError) as err:
        store.search_runs([exp_id], "metrics.acc > > 1")
    assert "'>'" in err.value.message
    with pytest.raises(InvalidParameter):
        store.search_runs([exp_id], "params.model > 'a'")
    assert store.search_runs(["12345", "x"]).items == []


def test_search_across_experiments(store: TrackingStore) -> None:
    a = store.create_experiment("a")
    b = store.create_experiment("b")
    _run(store, a)
    _run(store, b)
    assert len(store.search_runs([a, b])) == 2
    assert len(store.search_runs([a])) == 1
