"""The LoggedModelStore contract (MLflow 3's logged models) on every tracking store:
a SQLite file, PostgreSQL (with ``KEEL_TEST_POSTGRES_URL``) and REST over a live server.
"""

from __future__ import annotations

import math

import pytest

from keel.entities import LoggedModelOutput, LoggedModelStatus, Metric
from keel.errors import InvalidParameter, KeelError, NotFound
from keel.store import TrackingStore
from keel.store.logged_models import parse_status


def _run(store: TrackingStore, experiment_id: str = "0") -> str:
    return store.create_run(experiment_id, "ana", 0, [], None).info.run_id


def test_create_get_and_finalize(store: TrackingStore) -> None:
    exp = store.create_experiment("lm")
    run_id = _run(store, exp)
    created = store.create_logged_model(
        exp,
        "model",
        source_run_id=run_id,
        model_type="sklearn",
        params={"C": "1.0", "penalty": "l2"},
        tags={"team": "risk"},
    )
    assert created.model_id.startswith("m-") and len(created.model_id) == 34
    assert created.status is LoggedModelStatus.PENDING
    assert created.artifact_location.endswith(f"/{exp}/models/{created.model_id}/artifacts")
    got = store.get_logged_model(created.model_id)
    assert (got.name, got.experiment_id, got.source_run_id, got.model_type) == (
        "model",
        exp,
        run_id,
        "sklearn",
    )
    assert got.params == {"C": "1.0", "penalty": "l2"} and got.tags == {"team": "risk"}
    assert got.uri == f"models:/{got.model_id}"

    ready = store.finalize_logged_model(created.model_id, LoggedModelStatus.READY)
    assert ready.status is LoggedModelStatus.READY
    assert ready.last_updated_timestamp >= created.last_updated_timestamp
    failed = store.finalize_logged_model(created.model_id, parse_status("UPLOAD_FAILED"))
    assert failed.status is LoggedModelStatus.UPLOAD_FAILED

    unnamed = store.create_logged_model(exp)
    assert unnamed.name and unnamed.source_run_id is None  # a generated name


def test_bad_input_is_refused_with_what_to_do(store: TrackingStore) -> None:
    with pytest.raises(NotFound):
        store.create_logged_model("12345", "model")
    with pytest.raises(NotFound, match="Run"):
        store.create_logged_model("0", "model", source_run_id="f" * 32)
    with pytest.raises(InvalidParameter, match="exceeds the limit of 500"):
        store.create_logged_model("0", "x" * 501)
    with pytest.raises(InvalidParameter, match="Invalid param name"):
        store.create_logged_model("0", "model", params={"../etc": "1"})
    with pytest.raises(InvalidParameter, match="LOGGED_MODEL_READY"):
        parse_status("DONE")


def test_unknown_models_are_not_found_everywhere(store: TrackingStore) -> None:
    run_id = _run(store)
    for call in (
        lambda: store.get_logged_model("m-nope"),
        lambda: store.finalize_logged_model("m-nope", LoggedModelStatus.READY),
        lambda: store.set_logged_model_tags("m-nope", {"k": "v"}),
        lambda: store.delete_logged_model_tag("m-nope", "k"),
        lambda: store.log_logged_model_params("m-nope", {"k": "v"}),
        lambda: store.delete_logged_model("m-nope"),
        lambda: store.log_model_links(run_id, [LoggedModelOutput("m-nope", 0)]),
    ):
        with pytest.raises(NotFound, match="Logged model with ID 'm-nope' not found") as err:
            call()
        assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_tags_params_and_soft_delete(store: TrackingStore) -> None:
    m = store.create_logged_model("0", "model", params={"a": "1"})
    store.set_logged_model_tags(m.model_id, {"x": "1", "y": "2"})
    store.set_logged_model_tags(m.model_id, {"x": "3"})
    store.delete_logged_model_tag(m.model_id, "y")
    with pytest.raises(NotFound, match="no tag 'y'"):
        store.delete_logged_model_tag(m.model_id, "y")
    many = {f"p{i}": str(i) for i in range(150)}  # over HTTP: split into requests of 100
    store.log_logged_model_params(m.model_id, many)
    store.log_logged_model_params(m.model_id, {"a": "1"})  # the same value again: fine
    with pytest.raises(InvalidParameter, match="immutable") as changed:
        store.log_logged_model_params(m.model_id, {"a": "2"})
    assert "'1'" in changed.value.message and "'2'" in changed.value.message
    got = store.get_logged_model(m.model_id)
    assert got.tags == {"x": "3"}
    assert got.params == {"a": "1", **many}

    store.delete_logged_model(m.model_id)
    with pytest.raises(NotFound):
        store.get_logged_model(m.model_id)
    assert store.get_logged_model(m.model_id, allow_deleted=True).deleted
    assert list(store.search_logged_models(["0"])) == []


def test_metrics_logged_with_a_model_id_link_to_it(store: TrackingStore) -> None:
    run_id = _run(store)
    m = store.create_logged_model("0", "model", source_run_id=run_id)
    store.log_batch(
        run_id,
        metrics=[
            Metric(
                "acc", 0.91, 10, 0, model_id=m.model_id, dataset_name="test", dataset_digest="d1"
            ),
            Metric("acc", math.nan, 11, 1, model_id=m.model_id),
            Metric("loss", 0.3, 12, 0),  # the run's alone
        ],
    )
    store.log_batch(
        run_id,
        metrics=[
            Metric(
                "acc", 0.91, 10, 0, model_id=m.model_id, dataset_name="test", dataset_digest="d1"
            )
        ],
    )  # a retry
    got = store.get_logged_model(m.model_id)
    assert [(x.key, x.step, x.dataset_name, x.dataset_digest, x.run_id) for x in got.metrics] == [
        ("acc", 0, "test", "d1", run_id),
        ("acc", 1, None, None, run_id),
    ]
    assert got.metrics[0].value == 0.91 and math.isnan(got.metrics[1].value)
    assert store.get_run(run_id).data.metrics["loss"] == 0.3

    with pytest.raises(NotFound, match="m-gone"):
        store.log_batch(run_id, metrics=[Metric("x", 1.0, 1, 0, model_id="m-gone")])
    assert "x" not in store.get_run(run_id).data.metrics  # all or nothing


def test_runs_record_the_models_they_produce_and_use(store: TrackingStore) -> None:
    run_id = _run(store)
    made = store.create_logged_model("0", "made", source_run_id=run_id)
    used = store.create_logged_model("0", "used")
    links = [LoggedModelOutput(made.model_id, 3), LoggedModelOutput(used.model_id, 0, "input")]
    store.log_model_links(run_id, links)
    store.log_model_links(run_id, links)  # repeating is a no-op
    assert set(store.get_run(run_id).models) == set(links)
    with pytest.raises(NotFound):
        store.log_model_links("f" * 32, links)
    with pytest.raises(InvalidParameter, match="'input' or 'output'"):
        store.log_model_links(run_id, [LoggedModelOutput(made.model_id, 0, "sideways")])


def test_search_filters_orders_and_pages(store: TrackingStore) -> None:
    exp = store.create_experiment("search")
    other = store.create_experiment("other")
    run_id = _run(store, exp)
    ids = {}
    for i, (name, acc) in enumerate([("a", 0.5), ("b", 0.9), ("c", None), ("a", 0.7)]):
        m = store.create_logged_model(
            exp,
            name,
            source_run_id=run_id if i % 2 else None,
            params={"i": str(i)},
            tags={"kind": "even" if i % 2 == 0 else "odd"},
        )
        ids[i] = m.model_id
        if acc is not None:
            store.log_batch(
                run_id,
                metrics=[Metric("acc", acc, i, 0, model_id=m.model_id, dataset_name=f"ds{i % 2}")],
            )
    store.finalize_logged_model(ids[1], LoggedModelStatus.READY)
    store.create_logged_model(other, "a")

    def found(filter_string: str | None = None, **kw: object) -> list[str]:
        page = store.search_logged_models([exp], filter_string, **kw)  # type: ignore[arg-type]
        return [m.model_id for m in page]

    assert set(found("name = 'a'")) == {ids[0], ids[3]}
    assert set(found("name='a'")) == {ids[0], ids[3]}  # the client sends it without spaces
    assert set(found("name IN ('b', 'c')")) == {ids[1], ids[2]}
    assert found("metrics.acc > 0.8 AND tags.kind = 'odd'") == [ids[1]]
    assert set(found("metrics.acc > 0.6")) == {ids[1], ids[3]}
    assert found("metrics.acc > 0.6", datasets=[{"dataset_name": "ds0"}]) == []
    assert found("metrics.acc >= 0.5", datasets=[{"dataset_name": "ds0"}]) == [ids[0]]
    assert set(found("params.i != '0'")) == {ids[1], ids[2], ids[3]}
    assert found("status = 'LOGGED_MODEL_READY'") == [ids[1]]
    assert set(found(f"source_run_id = '{run_id}'")) == {ids[1], ids[3]}
    assert set(found(f"source_run_id != '{run_id}'")) == {ids[0], ids[2]}
    assert found("creation_timestamp > 0 OR name = 'zzz'") == found()

    newest_first = list(store.search_logged_models([exp]))
    assert sorted(m.model_id for m in newest_first) == sorted(ids.values())
    stamps = [m.creation_timestamp for m in newest_first]
    assert stamps == sorted(stamps, reverse=True)
    by_acc = found(order_by=[{"field_name": "metrics.acc", "ascending": False}])
    assert by_acc == [ids[1], ids[3], ids[0], ids[2]]  # no metric: last
    by_name = found(order_by=[{"field_name": "name"}, {"field_name": "metrics.acc"}])
    assert by_name == [ids[0], ids[3], ids[1], ids[2]]

    seen, token = [], None
    while True:
        page = store.search_logged_models([exp], max_results=1, page_token=token)
        seen.extend(m.model_id for m in page)
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(ids.values())

    for bad in ("nope.x = 1", "metrics.acc = 'a'", "name >"):
        with pytest.raises(KeelError) as err:
            store.search_logged_models([exp], bad)
        assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(InvalidParameter, match="experiment"):
        store.search_logged_models([])
