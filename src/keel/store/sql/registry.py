"""The model registry on SQLAlchemy Core, in the tracking store's database.

It shares the tracking store's :class:`~keel.store.sql.engine.Database`: one
engine, and on SQLite one writer lock, so registry and tracking writes queue
on the same lock instead of failing with "database is locked".

Two rules keep concurrent writers correct on both databases:

- a registration takes its number with ``UPDATE registered_models SET
  next_version = next_version + 1 ... RETURNING`` in the transaction that
  inserts the version. SQLite runs one writer at a time (``BEGIN
  IMMEDIATE``); on PostgreSQL the UPDATE locks the model's row until commit
  and a waiting UPDATE re-reads the committed counter, so N racing
  registrations get exactly 1..N, and a number is never handed out twice;
- every other write to a model's versions, tags or aliases first locks the
  model's row (``SELECT ... FOR UPDATE``; SQLite needs no row lock), so
  "archive the other Production versions" or "point the alias at a live
  version" see what committed before them.

Reads are set-based: a page of models or versions is loaded with one query
per table (tags, aliases, newest version per stage), never one per object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection

from keel.entities import (
    ModelStage,
    ModelVersion,
    ModelVersionStatus,
    PagedList,
    RegisteredModel,
)
from keel.errors import AlreadyExists, InvalidParameter, NotFound
from keel.search.filter import parse_filter
from keel.search.order import parse_order_by
from keel.store import registry as limits
from keel.store import validation
from keel.store.base import now_ms
from keel.store.paging import decode_token, encode_token
from keel.store.registry import RegistryStore
from keel.store.registry_validation import (
    RESERVED_ALIAS,
    parse_stage,
    parse_version,
    validate_alias,
    validate_model_name,
    validate_tag,
    validate_tags,
)
from keel.store.sql import registry_rows as rows
from keel.store.sql import schema as t
from keel.store.sql.engine import Database, upsert
from keel.store.sql.migrate import ensure_schema
from keel.store.sql.registry_search import (
    model_version_filter_condition,
    model_version_order_by,
    registered_model_filter_condition,
    registered_model_order_by,
)
from keel.store.sql.store import SqlTrackingStore

_RM = t.registered_models
_MV = t.model_versions
_ARCHIVABLE = (ModelStage.STAGING, ModelStage.PRODUCTION)
_MAX_ID_LENGTH = 256  # run_id and model_id columns


class SqlRegistryStore(RegistryStore):
    """Registered models and their versions in a Keel SQL database.

    >>> from keel.store.sql.store import SqlTrackingStore
    >>> tracking = SqlTrackingStore("sqlite:///:memory:", artifact_root="/tmp/keel-artifacts")
    >>> registry = SqlRegistryStore.from_tracking_store(tracking)
    >>> _ = registry.create_registered_model("churn")
    >>> registry.create_model_version("churn", "runs:/abc/model").version
    1
    """

    def __init__(self, database: Database, *, owns_database: bool = False) -> None:
        """Use ``database`` (a tracking store's); ``owns_database``: close() disposes it."""
        self._db = database
        self._owns_database = owns_database
        ensure_schema(database)

    @classmethod
    def from_tracking_store(cls, store: SqlTrackingStore) -> SqlRegistryStore:
        """The registry in the same database (engine, writer lock) as ``store``."""
        return cls(store.database)

    @property
    def database(self) -> Database:
        return self._db

    def close(self) -> None:
        if self._owns_database:
            self._db.dispose()

    # -- registered models ---------------------------------------------------

    def create_registered_model(
        self,
        name: str,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> RegisteredModel:
        validate_model_name(name)
        checked = validate_tags(tags)
        description = _text("description", description)
        now = now_ms()
        row = {"name": name, "creation_time": now, "last_updated_time": now}
        with self._db.write() as conn:
            if not _insert_new(conn, _RM, {**row, "description": description}, key=["name"]):
                raise AlreadyExists(
                    f"Registered model {name!r} already exists. Register a new version of it "
                    "with create_model_version, or pick another name."
                )
            _write_tags(conn, t.registered_model_tags, {"name": name}, checked)
        return RegisteredModel(name, now, now, description, tags=checked)

    def get_registered_model(self, name: str) -> RegisteredModel:
        validate_model_name(name)
        with self._db.read() as conn:
            return rows.load_models(conn, [rows.model_row(conn, name)])[0]

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        validate_model_name(name)
        validate_model_name(new_name, "new registered model name")
        taken = AlreadyExists(
            f"Cannot rename registered model {name!r} to {new_name!r}: a registered model "
            f"named {new_name!r} already exists. Pick another name, or delete that model first."
        )
        try:
            with self._db.write() as conn:
                rows.lock_model(conn, name)
                if new_name != name:
                    if rows.find_model(conn, new_name) is not None:
                        raise taken
                    now = now_ms()
                    # ON UPDATE CASCADE carries the versions, their tags and the aliases.
                    conn.execute(
                        sa.update(_RM)
                        .where(_RM.c.name == name)
                        .values(name=new_name, last_updated_time=now)
                    )
                    conn.execute(
                        sa.update(_MV)
                        .where(_MV.c.name == new_name, _MV.c.deleted_time.is_(None))
                        .values(last_updated_time=now)
                    )
                return rows.load_models(conn, [rows.model_row(conn, new_name)])[0]
        except sa.exc.IntegrityError as exc:  # a concurrent create took the name
            raise taken from exc

    def update_registered_model(self, name: str, description: str) -> RegisteredModel:
        validate_model_name(name)
        description = _text("description", description)
        with self._db.write() as conn:
            rows.lock_model(conn, name)
            conn.execute(
                sa.update(_RM)
                .where(_RM.c.name == name)
                .values(description=description, last_updated_time=now_ms())
            )
            return rows.load_models(conn, [rows.model_row(conn, name)])[0]

    def delete_registered_model(self, name: str) -> None:
        validate_model_name(name)
        with self._db.write() as conn:
            # ON DELETE CASCADE removes versions (tombstones too), tags and aliases.
            if not conn.execute(sa.delete(_RM).where(_RM.c.name == name)).rowcount:
                raise rows.no_model(name)

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int = limits.DEFAULT_RESULTS_REGISTERED_MODELS,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[RegisteredModel]:
        validation.validate_max_results(
            max_results, limits.MAX_RESULTS_REGISTERED_MODELS, "registered models"
        )
        condition = registered_model_filter_condition(
            parse_filter(filter_string, "registered_models")
        )
        ordering = registered_model_order_by(parse_order_by(order_by, "registered_models"))
        query_id = f"registered_models|{filter_string}|{list(order_by or [])}"
        offset = decode_token(page_token, query_id)
        stmt = (
            sa.select(_RM)
            .where(condition)
            .order_by(*ordering)
            .limit(max_results + 1)
            .offset(offset)
        )
        with self._db.read() as conn:
            found = conn.execute(stmt).all()
            items = rows.load_models(conn, found[:max_results])
        token = encode_token(offset + max_results, query_id) if len(found) > max_results else None
        return PagedList(items, token)

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        validate_model_name(name)
        validate_tag(key, value)
        with self._db.write() as conn:
            rows.lock_model(conn, name)
            _write_tags(conn, t.registered_model_tags, {"name": name}, {key: value})

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        validate_model_name(name)
        validation.validate_key("registered model tag", key)
        tags = t.registered_model_tags
        with self._db.write() as conn:
            rows.lock_model(conn, name)
            conn.execute(sa.delete(tags).where(tags.c.name == name, tags.c.key == key))

    # -- model versions ------------------------------------------------------

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        run_link: str | None = None,
        description: str | None = None,
        model_id: str | None = None,
        user_id: str = "",
    ) -> ModelVersion:
        validate_model_name(name)
        checked = validate_tags(tags, "model version")
        source = _text("source", source)
        run_id = _identifier("run_id", run_id)
        model_id = _identifier("model_id", model_id)
        run_link, description = _text("run_link", run_link), _text("description", description)
        user_id = _text("user_id", user_id)
        now = now_ms()
        with self._db.write() as conn:
            # The counter's UPDATE is the registration's lock: see the module docstring.
            taken = conn.execute(
                sa.update(_RM)
                .where(_RM.c.name == name)
                .values(next_version=_RM.c.next_version + 1, last_updated_time=now)
                .returning(_RM.c.next_version)
            ).scalar()
            if taken is None:
                raise rows.no_model(name)
            version = int(taken) - 1
            conn.execute(
                sa.insert(_MV).values(
                    name=name,
                    version=version,
                    creation_time=now,
                    last_updated_time=now,
                    description=description,
                    user_id=user_id,
                    current_stage=ModelStage.NONE.value,
                    source=source,
                    run_id=run_id,
                    run_link=run_link,
                    status=ModelVersionStatus.READY.value,
                    status_message="",
                    model_id=model_id,
                )
            )
            tag_owner = {"name": name, "version": version}
            _write_tags(conn, t.model_version_tags, tag_owner, checked)
        return ModelVersion(
            name=name,
            version=version,
            creation_timestamp=now,
            last_updated_timestamp=now,
            source=source,
            run_id=run_id,
            description=description,
            user_id=user_id,
            run_link=run_link,
            model_id=model_id,
            tags=checked,
        )

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        validate_model_name(name)
        number = parse_version(version)
        with self._db.read() as conn:
            return rows.load_versions(conn, [rows.version_row(conn, name, number)])[0]

    def update_model_version(self, name: str, version: int | str, description: str) -> ModelVersion:
        validate_model_name(name)
        number = parse_version(version)
        description = _text("description", description)
        with self._db.write() as conn:
            rows.lock_model(conn, name)
            rows.version_row(conn, name, number)
            conn.execute(
                sa.update(_MV)
                .where(_MV.c.name == name, _MV.c.version == number)
                .values(description=description, last_updated_time=now_ms())
            )
            return rows.load_versions(conn, [rows.version_row(conn, name, number)])[0]

    def delete_model_version(self, name: str, version: int | str) -> None:
        validate_model_name(name)
        number = parse_version(version)
        now = now_ms()
        same = (_MV.c.name == name, _MV.c.version == number)
        with self._db.write() as conn:
            rows.lock_model(conn, name)
            rows.version_row(conn, name, number)
            aliases, tags = t.registered_model_aliases, t.model_version_tags
            conn.execute(
                sa.delete(aliases).where(aliases.c.name == name, aliases.c.version == number)
            )
            conn.execute(sa.delete(tags).where(tags.c.name == name, tags.c.version == number))
            # Keep the row as a tombstone (the number stays taken, and messages can say
            # "deleted"), but drop what it said, as MLflow redacts deleted versions.
            conn.execute(
                sa.update(_MV)
                .where(*same)
                .values(
                    deleted_time=now,
                    last_updated_time=now,
                    description="",
                    user_id="",
                    source="",
                    run_id=None,
                    run_link="",
                    status_message="",
                    model_id=None,
                )
            )
            conn.execute(sa.update(_RM).where(_RM.c.name == name).values(last_updated_time=now))

    def transition_model_version_stage(
        self,
        name: str,
        version: int | str,
        stage: ModelStage | str,
        archive_existing_versions: bool = False,
    ) -> ModelVersion:
        validate_model_name(name)
        number = parse_version(version)
        target = parse_stage(stage)
        if archive_existing_versions and target not in _ARCHIVABLE:
            raise InvalidParameter(
                f"archive_existing_versions cannot be used when moving version {number} of "
                f"{name!r} to {target.value!r}: it archives the versions already in the target "
                "stage, which only makes sense for Staging and Production. Call again without it."
            )
        now = now_ms()
        with self._db.write() as conn:
            rows.lock_model(conn, name)  # before reading who else is in the stage
            rows.version_row(conn, name, number)
            if archive_existing_versions:
                conn.execute(
                    sa.update(_MV)
                    .where(
                        _MV.c.name == name,
                        _MV.c.version != number,
                        _MV.c.current_stage == target.value,
                        _MV.c.deleted_time.is_(None),
                    )
                    .values(current_stage=ModelStage.ARCHIVED.value, last_updated_time=now)
                )
            conn.execute(
                sa.update(_MV)
                .where(_MV.c.name == name, _MV.c.version == number)
                .values(current_stage=target.value, last_updated_time=now)
            )
            conn.execute(sa.update(_RM).where(_RM.c.name == name).values(last_updated_time=now))
            return rows.load_versions(conn, [rows.version_row(conn, name, number)])[0]

    def get_latest_versions(
        self, name: str, stages: Sequence[ModelStage | str] | None = None
    ) -> list[ModelVersion]:
        validate_model_name(name)
        if isinstance(stages, (str, ModelStage)):
            stages = [stages]
        wanted = list(dict.fromkeys(parse_stage(s) for s in stages or ())) or list(ModelStage)
        with self._db.read() as conn:
            rows.model_row(conn, name)
            newest = rows.load_versions(conn, rows.newest_per_stage(conn, [name]))
        by_stage = {v.current_stage: v for v in newest}
        return [by_stage[stage] for stage in wanted if stage in by_stage]

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = limits.DEFAULT_RESULTS_MODEL_VERSIONS,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[ModelVersion]:
        validation.validate_max_results(
            max_results, limits.MAX_RESULTS_MODEL_VERSIONS, "model versions"
        )
        condition = model_version_filter_condition(parse_filter(filter_string, "model_versions"))
        ordering = model_version_order_by(parse_order_by(order_by, "model_versions"))
        query_id = f"model_versions|{filter_string}|{list(order_by or [])}"
        offset = decode_token(page_token, query_id)
        stmt = (
            sa.select(_MV)
            .where(_MV.c.deleted_time.is_(None), condition)
            .order_by(*ordering)
            .limit(max_results + 1)
            .offset(offset)
        )
        with self._db.read() as conn:
            found = conn.execute(stmt).all()
            items = rows.load_versions(conn, found[:max_results])
        token = encode_token(offset + max_results, query_id) if len(found) > max_results else None
        return PagedList(items, token)

    def set_model_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        validate_model_name(name)
        number = parse_version(version)
        validate_tag(key, value, "model version")
        with self._db.write() as conn:
            rows.lock_model(conn, name)
            rows.version_row(conn, name, number)
            owner = {"name": name, "version": number}
            _write_tags(conn, t.model_version_tags, owner, {key: value})

    def delete_model_version_tag(self, name: str, version: int | str, key: str) -> None:
        validate_model_name(name)
        number = parse_version(version)
        validation.validate_key("model version tag", key)
        tags = t.model_version_tags
        with self._db.write() as conn:
            rows.lock_model(conn, name)
            rows.version_row(conn, name, number)
            conn.execute(
                sa.delete(tags).where(
                    tags.c.name == name, tags.c.version == number, tags.c.key == key
                )
            )

    # -- aliases -------------------------------------------------------------

    def set_registered_model_alias(self, name: str, alias: str, version: int | str) -> None:
        validate_model_name(name)
        validate_alias(alias)
        number = parse_version(version)
        with self._db.write() as conn:
            rows.lock_model(conn, name)
            rows.version_row(conn, name, number)
            upsert(
                conn,
                t.registered_model_aliases,
                [{"name": name, "alias": alias, "version": number}],
                key=["name", "alias"],
                update=["version"],
            )

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        validate_model_name(name)
        validate_alias(alias, for_setting=False)
        aliases = t.registered_model_aliases
        with self._db.write() as conn:
            rows.lock_model(conn, name)
            conn.execute(sa.delete(aliases).where(aliases.c.name == name, aliases.c.alias == alias))

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        validate_model_name(name)
        validate_alias(alias, for_setting=False)
        aliases = t.registered_model_aliases
        with self._db.read() as conn:
            rows.model_row(conn, name)
            if alias.lower() == RESERVED_ALIAS:
                # As in MLflow: @latest is the newest live version, in whatever stage.
                newest = conn.execute(
                    sa.select(sa.func.max(_MV.c.version)).where(
                        _MV.c.name == name, _MV.c.deleted_time.is_(None)
                    )
                ).scalar()
                if newest is None:
                    raise NotFound(
                        f"Registered model {name!r} has no versions, so {name}@{alias} points "
                        "at nothing. Register one with create_model_version."
                    )
                return rows.load_versions(conn, [rows.version_row(conn, name, int(newest))])[0]
            number = conn.execute(
                sa.select(aliases.c.version).where(aliases.c.name == name, aliases.c.alias == alias)
            ).scalar()
            if number is None:
                raise NotFound(rows.missing_alias_message(conn, name, alias))
            return rows.load_versions(conn, [rows.version_row(conn, name, int(number))])[0]


# ---------------------------------------------------------------------------
# Writing helpers and argument checks


def _insert_new(conn: Connection, table: sa.Table, row: dict[str, Any], *, key: list[str]) -> bool:
    """INSERT unless the key exists (also against a concurrent insert); True if inserted."""
    mod: Any = sqlite_dialect if conn.dialect.name == "sqlite" else pg_dialect
    stmt = mod.insert(table).values(row).on_conflict_do_nothing(index_elements=key)
    # RETURNING, not rowcount: drivers need not report a rowcount for INSERT.
    returned = conn.execute(stmt.returning(*(table.c[k] for k in key))).first()
    return returned is not None


def _write_tags(
    conn: Connection, table: sa.Table, owner: dict[str, Any], tags: Mapping[str, str]
) -> None:
    rows = [{**owner, "key": k, "value": v} for k, v in tags.items()]
    upsert(conn, table, rows, key=[*owner, "key"], update=["value"])


def _text(what: str, value: object) -> str:
    """An optional free-text argument: None means empty; anything else must be a string."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidParameter(f"Invalid {what} {value!r}: it must be a string.")
    return value


def _identifier(what: str, value: object) -> str | None:
    """An optional id (run_id, model_id): None or empty means none."""
    text = _text(what, value)
    if len(text) > _MAX_ID_LENGTH:
        raise InvalidParameter(
            f"Invalid {what} {text[:40]!r}… ({len(text)} characters): the limit is "
            f"{_MAX_ID_LENGTH}."
        )
    return text or None
