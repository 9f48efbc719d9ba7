"""Reading the registry's rows: look-ups whose NotFound names what exists, and set-based
loading of models and versions with their tags, aliases and newest version per stage.

A page of models costs one query per table (tags, aliases, newest versions, their
tags), whatever its size, never one query per model.

>>> from keel.store.sql.engine import Database
>>> from keel.store.sql.migrate import ensure_schema
>>> db = Database("sqlite:///:memory:")
>>> ensure_schema(db)
>>> with db.write() as conn:
...     _ = conn.execute(sa.insert(_RM).values(name="churn", creation_time=0, last_updated_time=0))
...     load_models(conn, [model_row(conn, "churn")])[0].latest_versions
()
>>> with db.read() as conn:
...     version_row(conn, "churn", 1)
Traceback (most recent call last):
...
keel.errors.NotFound: Model 'churn' has no version 1; it has no versions. ...
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.entities import ModelStage, ModelVersion, ModelVersionStatus, RegisteredModel
from keel.errors import NotFound
from keel.store.sql import schema as t
from keel.store.sql.engine import IN_CHUNK, chunks

_RM = t.registered_models
_MV = t.model_versions

# ---------------------------------------------------------------------------
# Row access and messages


def find_model(conn: Connection, name: str) -> Any:
    """The model's row, or None."""
    return conn.execute(sa.select(_RM).where(_RM.c.name == name)).first()


def model_row(conn: Connection, name: str) -> Any:
    """The model's row; NotFound if there is no such model."""
    row = find_model(conn, name)
    if row is None:
        raise no_model(name)
    return row


def lock_model(conn: Connection, name: str) -> Any:
    """The model's row, locked until commit on PostgreSQL (SQLite has one writer anyway)."""
    row = conn.execute(sa.select(_RM).where(_RM.c.name == name).with_for_update()).first()
    if row is None:
        raise no_model(name)
    return row


def no_model(name: str) -> NotFound:
    """The error for a missing model, with where to go next."""
    return NotFound(
        f"Registered model {name!r} does not exist. Create it with create_registered_model, "
        "or list models with search_registered_models."
    )


def version_row(conn: Connection, name: str, version: int) -> Any:
    """The live version's row; NotFound names the versions there are."""
    row = conn.execute(
        sa.select(_MV).where(
            _MV.c.name == name, _MV.c.version == version, _MV.c.deleted_time.is_(None)
        )
    ).first()
    if row is not None:
        return row
    model_row(conn, name)
    found = conn.execute(
        sa.select(_MV.c.version, _MV.c.deleted_time)
        .where(_MV.c.name == name)
        .order_by(_MV.c.version)
    ).all()
    live = [r.version for r in found if r.deleted_time is None]
    deleted = any(r.version == version and r.deleted_time is not None for r in found)
    what = f"Model {name!r} has no version {version}" + (" (it was deleted)" if deleted else "")
    if live:
        raise NotFound(f"{what}; its versions are {number_list(live)}.")
    raise NotFound(f"{what}; it has no versions. Register one with create_model_version.")


def missing_alias_message(conn: Connection, name: str, alias: str) -> str:
    """Why ``alias`` resolves to nothing, naming the aliases the model has."""
    aliases = t.registered_model_aliases
    found = conn.execute(
        sa.select(aliases.c.alias, aliases.c.version)
        .where(aliases.c.name == name)
        .order_by(aliases.c.alias)
    ).all()
    what = f"Registered model {name!r} has no alias {alias!r}"
    if not found:
        return f"{what}; it has no aliases. Point one at a version with set_registered_model_alias."
    listed = ", ".join(f"{r.alias} (v{r.version})" for r in found)
    return f"{what}; its aliases are: {listed}"


def number_list(numbers: Sequence[int]) -> str:
    """Sorted numbers for a message; runs of four or more collapse to ``first-last``.

    >>> number_list([1, 2, 3]), number_list([1, 2, 3, 4, 5, 9])
    ('1, 2, 3', '1-5, 9')
    """
    parts: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        if j - i >= 3:
            parts.append(f"{numbers[i]}-{numbers[j]}")
        else:
            parts.extend(str(n) for n in numbers[i : j + 1])
        i = j + 1
    return ", ".join(parts)


def newest_per_stage(conn: Connection, names: Sequence[str]) -> list[Any]:
    """For each model, its newest live version in each stage (a window query per chunk)."""
    rows: list[Any] = []
    for chunk in chunks(names, IN_CHUNK):
        newest_first = (
            sa.func.row_number()
            .over(partition_by=(_MV.c.name, _MV.c.current_stage), order_by=_MV.c.version.desc())
            .label("rank")
        )
        ranked = (
            sa.select(_MV, newest_first)
            .where(_MV.c.name.in_(chunk), _MV.c.deleted_time.is_(None))
            .subquery()
        )
        columns = [ranked.c[c.name] for c in _MV.columns]
        rows += conn.execute(sa.select(*columns).where(ranked.c.rank == 1)).all()
    return rows


def tags_by_owner(
    conn: Connection, table: sa.Table, owners: Sequence[str] | Sequence[tuple[str, int]]
) -> dict[tuple[Any, ...], dict[str, str]]:
    """Tags keyed by owner: ``(name,)`` for models, ``(name, version)`` for versions."""
    found: dict[tuple[Any, ...], dict[str, str]] = defaultdict(dict)
    if not owners:
        return found
    owner_key: sa.ColumnElement[Any]
    if isinstance(owners[0], tuple):
        key_columns = [table.c.name, table.c.version]
        owner_key = sa.tuple_(*key_columns)
        size = IN_CHUNK // 2  # two parameters per (name, version)
    else:
        key_columns = [table.c.name]
        owner_key = table.c.name
        size = IN_CHUNK
    for chunk in chunks(list(owners), size):
        stmt = sa.select(*key_columns, table.c.key, table.c.value).where(owner_key.in_(chunk))
        for row in conn.execute(stmt):
            found[tuple(row[: len(key_columns)])][row.key] = row.value
    return found


def aliases_of(conn: Connection, names: Sequence[str]) -> dict[tuple[str, int], list[str]]:
    """Aliases of these models: (name, version) -> alias names, sorted."""
    aliases = t.registered_model_aliases
    found: dict[tuple[str, int], list[str]] = defaultdict(list)
    for chunk in chunks(names, IN_CHUNK):
        stmt = (
            sa.select(aliases.c.name, aliases.c.version, aliases.c.alias)
            .where(aliases.c.name.in_(chunk))
            .order_by(aliases.c.alias)
        )
        for row in conn.execute(stmt):
            found[(row.name, row.version)].append(row.alias)
    return found


def _version_entity(
    r: Any, tags: dict[str, str], aliases: Mapping[tuple[str, int], list[str]]
) -> ModelVersion:
    return ModelVersion(
        name=r.name,
        version=r.version,
        creation_timestamp=r.creation_time,
        last_updated_timestamp=r.last_updated_time,
        source=r.source,
        run_id=r.run_id,
        description=r.description,
        user_id=r.user_id,
        current_stage=ModelStage(r.current_stage),
        status=ModelVersionStatus(r.status),
        status_message=r.status_message,
        run_link=r.run_link,
        model_id=r.model_id,
        tags=tags,
        aliases=tuple(aliases.get((r.name, r.version), ())),
    )


# ---------------------------------------------------------------------------
# Set-based loading


def load_models(conn: Connection, rows: Sequence[Any]) -> list[RegisteredModel]:
    """Models with tags, aliases and newest version per stage: three queries per chunk."""
    names = [r.name for r in rows]
    tags = tags_by_owner(conn, t.registered_model_tags, names)
    aliases = aliases_of(conn, names)
    newest: dict[str, list[ModelVersion]] = defaultdict(list)
    for latest in load_versions(conn, newest_per_stage(conn, names), aliases):
        newest[latest.name].append(latest)
    by_model: dict[str, dict[str, int]] = defaultdict(dict)
    for (name, version), alias_names in aliases.items():
        for alias in alias_names:
            by_model[name][alias] = version
    stage_order = {stage: i for i, stage in enumerate(ModelStage)}
    return [
        RegisteredModel(
            name=r.name,
            creation_timestamp=r.creation_time,
            last_updated_timestamp=r.last_updated_time,
            description=r.description,
            tags=tags.get((r.name,), {}),
            aliases=dict(sorted(by_model[r.name].items())),
            latest_versions=tuple(
                sorted(newest[r.name], key=lambda v: stage_order[v.current_stage])
            ),
        )
        for r in rows
    ]


def load_versions(
    conn: Connection,
    rows: Sequence[Any],
    aliases: Mapping[tuple[str, int], list[str]] | None = None,
) -> list[ModelVersion]:
    """Versions with their tags and aliases, loaded for all rows at once."""
    if not rows:
        return []
    keys = [(r.name, r.version) for r in rows]
    tags = tags_by_owner(conn, t.model_version_tags, keys)
    if aliases is None:
        aliases = aliases_of(conn, list(dict.fromkeys(r.name for r in rows)))
    return [_version_entity(r, tags.get((r.name, r.version), {}), aliases) for r in rows]
