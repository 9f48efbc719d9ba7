"""The RegistryStore contract, run against every implementation in
conftest.REGISTRY_IMPLEMENTATIONS (SQLite, PostgreSQL, and REST over a live server).

Real databases only: a SQLite file and, with ``KEEL_TEST_POSTGRES_URL``, PostgreSQL.
The search semantics are also checked against a plain-Python oracle
(``registry_oracle``) on random data and random filters.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keel.entities import ModelStage, ModelVersionStatus
from keel.errors import AlreadyExists, FilterSyntaxError, InvalidParameter, NotFound
from keel.store import open_registry_store
from keel.store.registry import RegistryStore
from keel.store.sql.engine import Database
from keel.store.sql.registry import SqlRegistryStore
from keel.store.sql.store import SqlTrackingStore

# -- registered models ---------------------------------------------------------------


def test_create_and_get_registered_model(registry: RegistryStore) -> None:
    created = registry.create_registered_model("churn", {"team": "risk"}, "Predicts churn")
    got = registry.get_registered_model("churn")
    assert got == created
    assert (got.name, got.description, got.tags) == ("churn", "Predicts churn", {"team": "risk"})
    assert got.creation_timestamp == got.last_updated_timestamp > 0
    assert got.aliases == {} and got.latest_versions == ()
    assert registry.create_registered_model("plain").description == ""


def test_duplicate_model_name(registry: RegistryStore) -> None:
    registry.create_registered_model("churn")
    with pytest.raises(AlreadyExists, match="Registered model 'churn' already exists") as err:
        registry.create_registered_model("churn")
    assert err.value.error_code == "RESOURCE_ALREADY_EXISTS"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("team/churn", "cannot contain '/' or ':'"),
        ("models:churn", "cannot contain '/' or ':'"),
        ("x" * 257, "the limit is 256"),
        (".", "cannot be '.'"),
        ("..churn", "start with '..'"),
    ],
)
def test_invalid_model_names(registry: RegistryStore, name: str, fragment: str) -> None:
    with pytest.raises(InvalidParameter, match=fragment) as err:
        registry.create_registered_model(name)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"


def test_names_mlflow_accepts(registry: RegistryStore) -> None:
    for name in ("x" * 256, "Churn Model v2", "a.b-c_d", "a%b", "it's", "模型"):
        assert registry.create_registered_model(name).name == name
        assert registry.get_registered_model(name).name == name


def test_missing_model_everywhere(registry: RegistryStore) -> None:
    calls: list[Callable[[], object]] = [
        lambda: registry.get_registered_model("nope"),
        lambda: registry.update_registered_model("nope", "d"),
        lambda: registry.rename_registered_model("nope", "other"),
        lambda: registry.delete_registered_model("nope"),
        lambda: registry.set_registered_model_tag("nope", "k", "v"),
        lambda: registry.delete_registered_model_tag("nope", "k"),
        lambda: registry.create_model_version("nope", "s3://bucket/s"),
        lambda: registry.get_model_version("nope", 1),
        lambda: registry.get_latest_versions("nope"),
        lambda: registry.set_registered_model_alias("nope", "a", 1),
        lambda: registry.delete_registered_model_alias("nope", "a"),
        lambda: registry.get_model_version_by_alias("nope", "a"),
    ]
    for call in calls:
        with pytest.raises(NotFound, match="Registered model 'nope' does not exist") as err:
            call()
        assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_update_description(registry: RegistryStore) -> None:
    created = registry.create_registered_model("churn", description="old")
    updated = registry.update_registered_model("churn", "new")
    assert updated.description == registry.get_registered_model("churn").description == "new"
    assert updated.last_updated_timestamp >= created.last_updated_timestamp


def test_rename_carries_versions_tags_and_aliases(registry: RegistryStore) -> None:
    registry.create_registered_model("old", {"team": "risk"})
    registry.create_model_version("old", "runs:/r1/model", run_id="r1", tags={"k": "v1"})
    registry.create_model_version("old", "runs:/r2/model", run_id="r2")
    registry.set_registered_model_alias("old", "champion", 1)
    registry.transition_model_version_stage("old", 2, "Production")
    registry.delete_model_version("old", 2)
    renamed = registry.rename_registered_model("old", "new")
    assert renamed.name == "new"
    assert renamed.tags == {"team": "risk"} and renamed.aliases == {"champion": 1}
    assert [(v.name, v.version) for v in renamed.latest_versions] == [("new", 1)]
    v1 = registry.get_model_version("new", 1)
    assert (v1.name, v1.tags, v1.aliases) == ("new", {"k": "v1"}, ("champion",))
    assert registry.get_model_version_by_alias("new", "champion").version == 1
    with pytest.raises(NotFound, match="'old' does not exist"):
        registry.get_registered_model("old")
    with pytest.raises(NotFound, match="version 2 \\(it was deleted\\)"):
        registry.get_model_version("new", 2)
    assert (
        registry.create_model_version("new", "s3://bucket/s").version == 3
    )  # the counter moved too
    found = registry.search_model_versions("name = 'new'")
    assert [v.version for v in found] == [3, 1]


def test_rename_conflicts_and_no_ops(registry: RegistryStore) -> None:
    registry.create_registered_model("a")
    registry.create_registered_model("b")
    with pytest.raises(AlreadyExists, match="'b' already exists"):
        registry.rename_registered_model("a", "b")
    with pytest.raises(InvalidParameter, match="new registered model name"):
        registry.rename_registered_model("a", "x/y")
    assert registry.rename_registered_model("a", "a").name == "a"


def test_delete_model_deletes_everything_and_name_starts_over(registry: RegistryStore) -> None:
    registry.create_registered_model("churn", {"t": "1"})
    for _ in range(3):
        registry.create_model_version("churn", "s3://bucket/s", tags={"k": "v"})
    registry.set_registered_model_alias("churn", "champion", 2)
    registry.delete_model_version("churn", 3)
    registry.delete_registered_model("churn")
    with pytest.raises(NotFound):
        registry.get_registered_model("churn")
    assert registry.search_model_versions("name = 'churn'").items == []
    again = registry.create_registered_model("churn")
    assert again.tags == {} and again.aliases == {}
    assert registry.create_model_version("churn", "s3://bucket/s").version == 1
    assert registry.get_model_version("churn", 1).tags == {}


def test_registered_model_tags(registry: RegistryStore) -> None:
    registry.create_registered_model("churn")
    registry.set_registered_model_tag("churn", "team", "risk")
    registry.set_registered_model_tag("churn", "team", "growth")
    registry.set_registered_model_tag("churn", "k" * 250, "v" * 100_000)
    assert registry.get_registered_model("churn").tags == {
        "team": "growth",
        "k" * 250: "v" * 100_000,
    }
    registry.delete_registered_model_tag("churn", "team")
    registry.delete_registered_model_tag("churn", "team")  # not set: not an error
    assert list(registry.get_registered_model("churn").tags) == ["k" * 250]


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("k" * 251, "v", "limit is 250"),
        ("", "v", "non-empty"),
        ("../x", "v", "relative path"),
        ("bad\nkey", "v", "may only contain"),
        ("k", "v" * 100_001, "limit is 100000"),
        ("k", 3, "not a string"),
    ],
)
def test_tag_validation(registry: RegistryStore, key: str, value: Any, fragment: str) -> None:
    registry.create_registered_model("churn")
    registry.create_model_version("churn", "s3://bucket/s")
    with pytest.raises(InvalidParameter, match=fragment):
        registry.set_registered_model_tag("churn", key, value)
    with pytest.raises(InvalidParameter, match=fragment):
        registry.set_model_version_tag("churn", 1, key, value)
    with pytest.raises(InvalidParameter, match=fragment):
        registry.create_registered_model("other", tags={key: value})
    with pytest.raises(InvalidParameter, match=fragment):
        registry.create_model_version("churn", "s3://bucket/s", tags={key: value})
    assert registry.get_model_version("churn", 1).tags == {}
    assert len(registry.search_model_versions("name = 'churn'")) == 1
    assert registry.create_model_version("churn", "s3://bucket/s").version == 2  # none was used up


# -- model versions ----------------------------------------------------------------


def test_create_model_version_fields(registry: RegistryStore) -> None:
    model = registry.create_registered_model("churn")
    v = registry.create_model_version(
        "churn",
        "models:/m-abc",
        run_id="r" * 32,
        tags={"k": "v"},
        run_link="http://x/runs/1",
        description="first",
        model_id="m-abc",
        user_id="ana",
    )
    assert v == registry.get_model_version("churn", "1")
    assert (v.version, v.source, v.run_id, v.model_id) == (1, "models:/m-abc", "r" * 32, "m-abc")
    assert (v.run_link, v.description, v.user_id) == ("http://x/runs/1", "first", "ana")
    assert v.status is ModelVersionStatus.READY and v.current_stage is ModelStage.NONE
    assert v.tags == {"k": "v"} and v.aliases == ()
    assert v.creation_timestamp == v.last_updated_timestamp
    assert registry.get_registered_model("churn").last_updated_timestamp >= (
        model.last_updated_timestamp
    )
    bare = registry.create_model_version("churn", "s3://bucket/s", run_id="")
    assert (bare.version, bare.run_id, bare.model_id, bare.description) == (2, None, None, "")


@pytest.mark.parametrize("bad", [0, -1, "0", "1.0", "abc", "", True, 2**31, "٣"])
def test_invalid_version_numbers(registry: RegistryStore, bad: Any) -> None:
    registry.create_registered_model("churn")
    registry.create_model_version("churn", "s3://bucket/s")
    with pytest.raises(InvalidParameter, match="Invalid model version"):
        registry.get_model_version("churn", bad)
    with pytest.raises(InvalidParameter, match="Invalid model version"):
        registry.set_registered_model_alias("churn", "a", bad)


def test_missing_version_names_the_versions(registry: RegistryStore) -> None:
    registry.create_registered_model("churn")
    with pytest.raises(NotFound, match=r"^Model 'churn' has no version 1; it has no versions"):
        registry.get_model_version("churn", 1)
    for _ in range(3):
        registry.create_model_version("churn", "s3://bucket/s")
    with pytest.raises(NotFound) as err:
        registry.get_model_version("churn", 7)
    assert err.value.message == "Model 'churn' has no version 7; its versions are 1, 2, 3."
    for _ in range(4):
        registry.create_model_version("churn", "s3://bucket/s")
    registry.delete_model_version("churn", 2)
    with pytest.raises(NotFound) as err:
        registry.update_model_version("churn", "2", "x")
    assert err.value.message == (
        "Model 'churn' has no version 2 (it was deleted); its versions are 1, 3-7."
    )


def test_update_model_version(registry: RegistryStore) -> None:
    registry.create_registered_model("churn")
    created = registry.create_model_version("churn", "s3://bucket/s", description="old")
    updated = registry.update_model_version("churn", 1, "new")
    assert updated.description == registry.get_model_version("churn", 1).description == "new"
    assert updated.last_updated_timestamp >= created.last_updated_timestamp


def test_deleted_versions_are_gone_and_never_reused(registry: RegistryStore) -> None:
    registry.create_registered_model("churn")
    for _ in range(3):
        registry.create_model_version("churn", "s3://bucket/s", run_id="abc", tags={"k": "v"})
    registry.set_registered_model_alias("churn", "champion", 3)
    registry.set_registered_model_alias("churn", "other", 1)
    registry.transition_model_version_stage("churn", 3, "Staging")
    registry.delete_model_version("churn", 3)
    assert registry.create_model_version("churn", "s3://bucket/s").version == 4
    registry.delete_model_version("churn", 4)
    registry.delete_model_version("churn", 1)
    assert registry.create_model_version("churn", "s3://bucket/s").version == 5
    model = registry.get_registered_model("churn")
    assert model.aliases == {}  # aliases of deleted versions went with them
    assert [v.version for v in model.latest_versions] == [5]
    assert [v.version for v in registry.search_model_versions("run_id = 'abc'")] == [2]
    assert registry.get_latest_versions("churn", ["Staging"]) == []
    with pytest.raises(NotFound, match="no version 3 \\(it was deleted\\); its versions are 2, 5"):
        registry.delete_model_version("churn", 3)
    with pytest.raises(NotFound, match="it was deleted"):
        registry.set_model_version_tag("churn", 3, "k", "v")
    with pytest.raises(NotFound, match="it was deleted"):
        registry.set_registered_model_alias("churn", "back", 3)


def test_model_version_tags(registry: RegistryStore) -> None:
    registry.create_registered_model("churn")
    registry.create_model_version("churn", "s3://bucket/s", tags={"a": "1"})
    registry.set_model_version_tag("churn", "1", "b", "2")
    registry.set_model_version_tag("churn", 1, "a", "3")
    assert registry.get_model_version("churn", 1).tags == {"a": "3", "b": "2"}
    registry.delete_model_version_tag("churn", 1, "a")
    registry.delete_model_version_tag("churn", 1, "a")
    assert registry.get_model_version("churn", 1).tags == {"b": "2"}
    with pytest.raises(NotFound, match="no version 2"):
        registry.delete_model_version_tag("churn", 2, "b")


# -- stages ---------------------------------------------------------------------------


def _versions(registry: RegistryStore, name: str, n: int) -> None:
    registry.create_registered_model(name)
    for _ in range(n):
        registry.create_model_version(name, "s3://bucket/s")


def _stages(registry: RegistryStore, name: str) -> dict[int, str]:
    found = registry.search_model_versions(f"name = '{name}'")
    return {v.version: v.current_stage.value for v in found}


def test_transition_stage_names_any_case(registry: RegistryStore) -> None:
    _versions(registry, "churn", 2)
    moved = registry.transition_model_version_stage("churn", 1, "production")
    assert moved.current_stage is ModelStage.PRODUCTION
    assert registry.transition_model_version_stage("churn", "2", "STAGING").current_stage is (
        ModelStage.STAGING
    )
    registry.transition_model_version_stage("churn", 2, ModelStage.ARCHIVED)
    assert _stages(registry, "churn") == {1: "Production", 2: "Archived"}
    with pytest.raises(InvalidParameter, match="Unknown stage 'prod'; use one of: None, Staging"):
        registry.transition_model_version_stage("churn", 1, "prod")


def test_archive_existing_versions(registry: RegistryStore) -> None:
    _versions(registry, "churn", 5)
    registry.create_registered_model("other")
    registry.create_model_version("other", "s3://bucket/s")
    registry.transition_model_version_stage("other", 1, "Production")
    for version, stage in [(1, "Production"), (2, "Production"), (3, "Staging")]:
        registry.transition_model_version_stage("churn", version, stage)
    registry.transition_model_version_stage("churn", 4, "Production", True)
    assert _stages(registry, "churn") == {
        1: "Archived",
        2: "Archived",
        3: "Staging",
        4: "Production",
        5: "None",
    }
    assert _stages(registry, "other") == {1: "Production"}  # other models are untouched
    registry.transition_model_version_stage("churn", 5, "staging", archive_existing_versions=True)
    assert _stages(registry, "churn")[3] == "Archived"


@pytest.mark.parametrize("stage", ["None", "archived"])
def test_archive_existing_only_for_staging_and_production(
    registry: RegistryStore, stage: str
) -> None:
    _versions(registry, "churn", 2)
    registry.transition_model_version_stage("churn", 1, stage)
    with pytest.raises(InvalidParameter, match="only makes sense for Staging and Production"):
        registry.transition_model_version_stage("churn", 2, stage, archive_existing_versions=True)
    assert _stages(registry, "churn")[2] == "None"


def test_get_latest_versions(registry: RegistryStore) -> None:
    _versions(registry, "churn", 6)
    assert registry.get_latest_versions("churn", ["Production"]) == []
    for version, stage in [(1, "Production"), (2, "Production"), (3, "Staging"), (4, "Archived")]:
        registry.transition_model_version_stage("churn", version, stage)
    registry.delete_model_version("churn", 6)

    def latest(stages: list[str] | None) -> list[tuple[int, str]]:
        found = registry.get_latest_versions("churn", stages)
        return [(v.version, v.current_stage.value) for v in found]

    everything = [(5, "None"), (3, "Staging"), (2, "Production"), (4, "Archived")]
    assert latest(None) == latest([]) == everything
    assert latest(["production", "Staging", "PRODUCTION"]) == [(2, "Production"), (3, "Staging")]
    assert [v.version for v in registry.get_registered_model("churn").latest_versions] == [
        5,
        3,
        2,
        4,
    ]
    with pytest.raises(InvalidParameter, match="Unknown stage"):
        registry.get_latest_versions("churn", ["Live"])


# -- aliases ---------------------------------------------------------------------------


def test_alias_set_move_delete_resolve(registry: RegistryStore) -> None:
    _versions(registry, "churn", 3)
    with pytest.raises(NotFound) as err:
        registry.get_model_version_by_alias("churn", "prod")
    assert "has no alias 'prod'; it has no aliases" in err.value.message
    registry.set_registered_model_alias("churn", "champion", 2)
    registry.set_registered_model_alias("churn", "challenger", "3")
    registry.set_registered_model_alias("churn", "backup", 2)
    assert registry.get_model_version_by_alias("churn", "champion").version == 2
    assert registry.get_model_version("churn", 2).aliases == ("backup", "champion")
    model = registry.get_registered_model("churn")
    assert model.aliases == {"backup": 2, "challenger": 3, "champion": 2}
    registry.set_registered_model_alias("churn", "champion", 1)  # move
    assert registry.get_model_version("churn", 2).aliases == ("backup",)
    assert registry.get_model_version_by_alias("churn", "champion").aliases == ("champion",)
    registry.delete_registered_model_alias("churn", "backup")
    registry.delete_registered_model_alias("churn", "backup")  # not set: not an error
    with pytest.raises(NotFound) as err:
        registry.get_model_version_by_alias("churn", "prod")
    assert err.value.message == (
        "Registered model 'churn' has no alias 'prod'; its aliases are: challenger (v3), "
        "champion (v1)"
    )
    with pytest.raises(NotFound, match="no version 9; its versions are 1, 2, 3"):
        registry.set_registered_model_alias("churn", "champion", 9)


def test_latest_alias_is_the_newest_version(registry: RegistryStore) -> None:
    registry.create_registered_model("churn")
    with pytest.raises(NotFound, match="has no versions"):
        registry.get_model_version_by_alias("churn", "latest")
    _ = [registry.create_model_version("churn", "s3://bucket/s") for _ in range(3)]
    registry.delete_model_version("churn", 3)
    assert registry.get_model_version_by_alias("churn", "Latest").version == 2


@pytest.mark.parametrize(
    ("alias", "fragment"),
    [
        ("latest", "reserved"),
        ("LATEST", "reserved"),
        ("v3", "shaped like a version"),
        ("V10", "shaped like a version"),
        ("a b", "may only contain"),
        ("a.b", "may only contain"),
        ("", "non-empty"),
        ("x" * 256, "the limit is 255"),
    ],
)
def test_invalid_aliases(registry: RegistryStore, alias: str, fragment: str) -> None:
    _versions(registry, "churn", 1)
    with pytest.raises(InvalidParameter, match=fragment):
        registry.set_registered_model_alias("churn", alias, 1)


def test_aliases_mlflow_accepts(registry: RegistryStore) -> None:
    _versions(registry, "churn", 1)
    for alias in ("v3a", "version3", "x" * 255, "prod-2024_01", "Champion"):
        registry.set_registered_model_alias("churn", alias, 1)
        assert registry.get_model_version_by_alias("churn", alias).version == 1


# -- search ----------------------------------------------------------------------------

PROMPT_FILTER = "tag.`mlflow.prompt.is_prompt` != 'true'"


@pytest.fixture
def catalog(registry: RegistryStore) -> RegistryStore:
    """Models with and without tags, a prompt, and versions with and without runs."""
    models: list[tuple[str, dict[str, str]]] = [
        ("churn-a", {"team": "risk", "my key": "x"}),
        ("churn-b", {"team": "growth"}),
        ("Churn-C", {"team": "Risk"}),
        ("fraud", {}),
        ("prompt-1", {"mlflow.prompt.is_prompt": "true", "team": "risk"}),
        ("not-a-prompt", {"mlflow.prompt.is_prompt": "false"}),
    ]
    for name, tags in models:
        registry.create_registered_model(name, tags)
    for i in range(3):
        registry.create_model_version("churn-a", f"runs:/r{i}/model", run_id=f"r{i}")
    registry.create_model_version("churn-a", "gs://bucket/local/path", tags={"k": "v"})
    # timestamps are milliseconds: the newest version must be newer, not a tie, for the
    # tests that order by creation time
    time.sleep(0.002)
    registry.create_model_version("fraud", "s3://b/fraud", run_id="r1", tags={"k": "w"})
    return registry


def _model_names(found: Any) -> list[str]:
    return [m.name for m in found]


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        (None, ["Churn-C", "churn-a", "churn-b", "fraud", "not-a-prompt", "prompt-1"]),
        (PROMPT_FILTER, ["Churn-C", "churn-a", "churn-b", "fraud", "not-a-prompt"]),
        (f"name LIKE 'churn%' AND {PROMPT_FILTER}", ["churn-a", "churn-b"]),
        ("name ILIKE 'churn%'", ["Churn-C", "churn-a", "churn-b"]),
        ("name = 'fraud'", ["fraud"]),
        ("name='fraud'", ["fraud"]),  # the MLflow client sends filters without spaces too
        ("name != 'fraud' AND name LIKE '%-_'", ["Churn-C", "churn-a", "churn-b", "prompt-1"]),
        ("name IN ('fraud', 'churn-b', 'nope')", ["churn-b", "fraud"]),
        ("name NOT IN ('fraud', 'prompt-1', 'not-a-prompt')", ["Churn-C", "churn-a", "churn-b"]),
        ("tags.team = 'risk'", ["churn-a", "prompt-1"]),
        ("tags.team ILIKE 'risk'", ["Churn-C", "churn-a", "prompt-1"]),
        ("tags.team LIKE 'r%'", ["churn-a", "prompt-1"]),
        ("tags.team != 'risk'", ["Churn-C", "churn-b", "fraud", "not-a-prompt"]),
        ("tags.`my key` = 'x'", ["churn-a"]),
        ("tag.team = 'growth' OR name = 'fraud'", ["churn-b", "fraud"]),
        ("(tags.team='growth' OR tags.team='Risk') AND name ILIKE 'CH%'", ["Churn-C", "churn-b"]),
        (f"({PROMPT_FILTER}) AND (name = 'fraud' OR (tags.team = 'risk'))", ["churn-a", "fraud"]),
    ],
)  # fmt: skip
def test_search_registered_models(
    catalog: RegistryStore, filter_string: str | None, expected: list[str]
) -> None:
    assert _model_names(catalog.search_registered_models(filter_string)) == expected


def test_search_results_are_whole_models(catalog: RegistryStore) -> None:
    catalog.set_registered_model_alias("churn-a", "champion", 2)
    catalog.transition_model_version_stage("churn-a", 1, "Production")
    (found,) = catalog.search_registered_models("name = 'churn-a'")
    assert found == catalog.get_registered_model("churn-a")
    assert found.aliases == {"champion": 2}
    assert [(v.version, v.current_stage.value) for v in found.latest_versions] == [
        (4, "None"),
        (1, "Production"),
    ]


def test_search_registered_models_order(catalog: RegistryStore) -> None:
    catalog.update_registered_model("churn-b", "touched last")
    names = _model_names(catalog.search_registered_models(order_by=["name DESC"]))
    assert names == ["prompt-1", "not-a-prompt", "fraud", "churn-b", "churn-a", "Churn-C"]
    newest = catalog.search_registered_models(order_by=["last_updated_timestamp DESC"])
    assert newest[0].name == "churn-b"
    created = catalog.search_registered_models(order_by=["timestamp ASC"])
    times = [m.creation_timestamp for m in created]
    assert times == sorted(times)
    with pytest.raises(InvalidParameter, match="twice"):
        catalog.search_registered_models(order_by=["name", "name DESC"])
    with pytest.raises(InvalidParameter, match="can be sorted by creation_timestamp"):
        catalog.search_registered_models(order_by=["run_id"])


@pytest.mark.parametrize(
    ("filter_string", "error", "fragment"),
    [
        ("creation_timestamp > 0", InvalidParameter, "filtered by name and tags only"),
        ("tags.team IS NULL", InvalidParameter, "invalid comparator 'IS NULL'"),
        ("metrics.acc > 1", InvalidParameter, "unknown entity 'metrics'"),
        ("name = 'a' AND", FilterSyntaxError, "end of input"),
        ("name > 'a'", InvalidParameter, "invalid comparator '>'"),
    ],
)
def test_registered_model_filter_errors(
    catalog: RegistryStore, filter_string: str, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        catalog.search_registered_models(filter_string)


def _walk(fetch: Callable[[str | None], Any]) -> tuple[list[Any], int]:
    items: list[Any] = []
    token, pages = None, 0
    while True:
        page = fetch(token)
        items += page.items
        pages += 1
        token = page.next_page_token
        if not token:
            return items, pages


def test_registered_model_paging(catalog: RegistryStore) -> None:
    everything = _model_names(catalog.search_registered_models(PROMPT_FILTER))
    walked, pages = _walk(
        lambda token: catalog.search_registered_models(PROMPT_FILTER, 2, page_token=token)
    )
    assert _model_names(walked) == everything and pages == 3
    first = catalog.search_registered_models(PROMPT_FILTER, 2)
    with pytest.raises(InvalidParameter, match="different search"):
        catalog.search_registered_models(None, 2, page_token=first.next_page_token)
    with pytest.raises(InvalidParameter, match="different search"):
        catalog.search_registered_models(PROMPT_FILTER, 2, ["name DESC"], first.next_page_token)
    with pytest.raises(InvalidParameter, match="above the limit of 1000"):
        catalog.search_registered_models(max_results=1001)
    with pytest.raises(InvalidParameter, match="positive integer"):
        catalog.search_registered_models(max_results=0)


def _version_keys(found: Any) -> list[tuple[str, int]]:
    return [(v.name, v.version) for v in found]


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        (None, [("churn-a", 4), ("churn-a", 3), ("churn-a", 2), ("churn-a", 1), ("fraud", 1)]),
        ("name = 'fraud'", [("fraud", 1)]),
        ("name IN ('fraud', 'churn-b')", [("fraud", 1)]),
        ("name NOT IN ('churn-a')", [("fraud", 1)]),
        ("run_id = 'r1'", [("churn-a", 2), ("fraud", 1)]),
        ("run_id IN ('r0', 'r2')", [("churn-a", 3), ("churn-a", 1)]),
        ("run_id != 'r1'", [("churn-a", 4), ("churn-a", 3), ("churn-a", 1)]),  # 4 has no run
        ("run_id NOT IN ('r0', 'r1')", [("churn-a", 4), ("churn-a", 3)]),
        ("version_number >= 3", [("churn-a", 4), ("churn-a", 3)]),
        ("version_number < 2.5 AND name = 'churn-a'", [("churn-a", 2), ("churn-a", 1)]),
        ("source_path LIKE 'runs:/%'", [("churn-a", 3), ("churn-a", 2), ("churn-a", 1)]),
        ("source_path ILIKE 'S3://%'", [("fraud", 1)]),
        ("tags.k = 'v'", [("churn-a", 4)]),
        ("tags.k != 'v'", [("churn-a", 3), ("churn-a", 2), ("churn-a", 1), ("fraud", 1)]),
        ("tag.k LIKE '%' AND (version_number = 1 OR run_id = 'zz')", [("fraud", 1)]),
        ("(name = 'fraud' OR version_number = 2) AND run_id='r1'", [("churn-a", 2), ("fraud", 1)]),
    ],
)  # fmt: skip
def test_search_model_versions(
    catalog: RegistryStore, filter_string: str | None, expected: list[tuple[str, int]]
) -> None:
    assert _version_keys(catalog.search_model_versions(filter_string)) == expected


def test_search_model_versions_order_paging_and_errors(catalog: RegistryStore) -> None:
    catalog.delete_model_version("churn-a", 2)
    by_number = catalog.search_model_versions(order_by=["version_number ASC"])
    assert _version_keys(by_number) == [
        ("churn-a", 1),
        ("fraud", 1),
        ("churn-a", 3),
        ("churn-a", 4),
    ]
    newest = catalog.search_model_versions(order_by=["creation_timestamp DESC"])
    assert newest[0].name == "fraud"
    catalog.update_model_version("churn-a", 1, "touched")
    touched = catalog.search_model_versions(order_by=["last_updated_timestamp DESC"])
    assert _version_keys(touched)[0] == ("churn-a", 1)
    everything = _version_keys(catalog.search_model_versions())
    walked, pages = _walk(lambda token: catalog.search_model_versions(None, 1, None, token))
    assert _version_keys(walked) == everything and pages == 4
    with pytest.raises(InvalidParameter, match="above the limit of 200000"):
        catalog.search_model_versions(max_results=200_001)
    for bad in ("current_stage = 'Production'", "creation_timestamp > 0", "version_number = 'x'"):
        with pytest.raises(InvalidParameter):
            catalog.search_model_versions(bad)
    with pytest.raises(InvalidParameter, match="sortable entities"):
        catalog.search_model_versions(order_by=["tags.k"])


# -- sharing the tracking store's database ------------------------------------------------


def test_open_registry_store_shares_the_tracking_database(tmp_path: Path) -> None:
    from keel.store import clear_store_cache, open_store

    uri = f"sqlite:///{tmp_path / 'keel.db'}"
    try:
        tracking = open_store(uri)
        registry = open_registry_store(uri)
        assert isinstance(tracking, SqlTrackingStore) and isinstance(registry, SqlRegistryStore)
        assert registry.database is tracking.database
        registry.create_registered_model("churn")
        registry.close()  # not the registry's to close: the tracking store keeps working
        assert tracking.get_experiment("0").name == "Default"
        assert open_registry_store(uri).get_registered_model("churn").name == "churn"
    finally:
        clear_store_cache()


def test_client_registry_over_http(rest_server_url: str) -> None:
    import keel
    from keel.store import clear_store_cache
    from keel.store.rest_registry import RestRegistryStore

    try:
        client = keel.Client(tracking_uri=rest_server_url)
        assert isinstance(client.registry_store, RestRegistryStore)
        client.create_registered_model("churn", {"team": "risk"})
        assert client.registry_store.create_model_version("churn", "s3://bucket/s").version == 1
        client.registry_store.set_registered_model_alias("churn", "champion", "1")
        found = client.get_registered_model("churn")
        assert (found.tags, found.aliases) == ({"team": "risk"}, {"champion": 1})
        with pytest.raises(NotFound, match="has no alias 'prod'; its aliases are: champion"):
            client.registry_store.get_model_version_by_alias("churn", "prod")
    finally:
        clear_store_cache()


# -- concurrency ----------------------------------------------------------------------------

WORKERS = 8
PER_WORKER = 5


def _register(registry: RegistryStore, worker: int) -> list[int]:
    with contextlib.suppress(AlreadyExists):  # another worker won: carry on, as MLflow does
        registry.create_registered_model("raced")
    return [
        registry.create_model_version("raced", f"s3://b/w{worker}/{i}").version
        for i in range(PER_WORKER)
    ]


def _process_worker(uri: str, root: str, worker: int, out: Any) -> None:
    store = SqlTrackingStore(uri, root)
    try:
        out.put((worker, _register(SqlRegistryStore.from_tracking_store(store), worker)))
    except Exception as exc:  # report instead of dying silently
        out.put((worker, repr(exc)))
    finally:
        store.close()


def _check_numbers(results: dict[int, Any], registry: RegistryStore) -> None:
    errors = {w: r for w, r in results.items() if not isinstance(r, list)}
    assert not errors, errors
    numbers = sorted(n for versions in results.values() for n in versions)
    assert numbers == list(range(1, WORKERS * PER_WORKER + 1))
    stored = registry.search_model_versions("name = 'raced'")
    assert sorted(v.version for v in stored) == numbers
    assert {v.source for v in stored} == {
        f"s3://b/w{w}/{i}" for w in results for i in range(PER_WORKER)
    }


@pytest.mark.slow
def test_racing_processes_get_distinct_numbers_on_sqlite(tmp_path: Path) -> None:
    uri, root = f"sqlite:///{tmp_path / 'keel.db'}", str(tmp_path / "artifacts")
    store = SqlTrackingStore(uri, root)  # create the schema once, before the race
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(uri, root, w, out)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    _check_numbers(results, SqlRegistryStore.from_tracking_store(store))
    store.close()


def _in_threads(
    databases: list[Database], work: Callable[[RegistryStore, int], Any]
) -> dict[int, Any]:
    """``work(registry, i)`` in one thread per database, all released at once."""
    results: dict[int, Any] = {}
    start = threading.Barrier(len(databases))

    def run(i: int) -> None:
        registry = SqlRegistryStore(databases[i])
        start.wait()
        try:
            results[i] = work(registry, i)
        except Exception as exc:
            results[i] = repr(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(databases))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    return results


@pytest.mark.slow
def test_racing_connections_get_distinct_numbers_on_postgres(empty_postgres_url: str) -> None:
    databases = [Database(empty_postgres_url) for _ in range(WORKERS)]  # one pool each
    try:
        SqlRegistryStore(databases[0])
        results = _in_threads(databases, _register)
        _check_numbers(results, SqlRegistryStore(databases[0]))
    finally:
        for db in databases:
            db.dispose()


@pytest.mark.implementations("sqlite", "postgres")  # one connection pool per racer: SQL only
def test_racing_promotions_leave_one_version_in_production(
    registry: RegistryStore, store: SqlTrackingStore
) -> None:
    _versions(registry, "churn", WORKERS)
    databases = [Database(store.db_uri) for _ in range(WORKERS)]
    try:
        results = _in_threads(
            databases,
            lambda reg, i: reg.transition_model_version_stage("churn", i + 1, "Production", True),
        )
        assert all(not isinstance(r, str) for r in results.values()), results
        stages = _stages(registry, "churn")
        assert sorted(stages.values()) == ["Archived"] * (WORKERS - 1) + ["Production"]
    finally:
        for db in databases:
            db.dispose()
