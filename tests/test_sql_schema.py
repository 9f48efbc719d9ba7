"""Migrations and schema.py agree, fresh databases start at head, old ones are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from keel.errors import SchemaOutOfDate
from keel.store.sql import schema
from keel.store.sql.engine import Database
from keel.store.sql.migrate import current_revision, ensure_schema, head_revision, upgrade
from keel.store.sql.registry import SqlRegistryStore
from keel.store.sql.store import SqlTrackingStore


def _db_uri(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'schema.db'}"
    url: str = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
        schema.metadata.drop_all(conn)
    engine.dispose()
    return url


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_migrated_schema_matches_schema_module(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = Database(_db_uri(kind, tmp_path, request))
    ensure_schema(db)
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), schema.metadata
        )
    db.dispose()
    assert diff == [], (
        "The migrations and src/keel/store/sql/schema.py disagree. HOW TO FIX: add an "
        f"Alembic revision under store/sql/migrations/versions that makes them equal: {diff}"
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_upgrade_from_0001_adds_the_registry_and_keeps_runs(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    uri = _db_uri(kind, tmp_path, request)
    db = Database(uri)
    assert upgrade(db, target="0001") == (None, "0001")
    with db.write() as conn:  # what a Keel of revision 0001 wrote
        conn.execute(
            sa.insert(schema.experiments).values(
                experiment_id=7, name="old", artifact_location="/a/7", creation_time=1
            )
        )
        conn.execute(
            sa.insert(schema.runs).values(
                run_uuid="r" * 32, experiment_id=7, status="FINISHED", start_time=5,
                artifact_uri="/a/7/r",
            )
        )  # fmt: skip
    with pytest.raises(SchemaOutOfDate, match="older Keel"):
        SqlTrackingStore(uri, str(tmp_path))
    assert upgrade(db) == ("0001", head_revision())
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), schema.metadata
        )
    assert diff == []
    db.dispose()
    store = SqlTrackingStore(uri, str(tmp_path))
    assert store.get_experiment("7").name == "old"
    assert store.get_run("r" * 32).info.start_time == 5
    registry = SqlRegistryStore.from_tracking_store(store)
    registry.create_registered_model("churn")
    assert registry.create_model_version("churn", "runs:/" + "r" * 32 + "/model").version == 1
    store.close()


def test_fresh_database_is_created_at_head(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    assert current_revision(db) is None
    ensure_schema(db)
    assert current_revision(db) == head_revision()
    assert upgrade(db) == (head_revision(), head_revision())
    db.dispose()


def test_old_database_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SqlTrackingStore(f"sqlite:///{path}", str(tmp_path)).close()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff'"))
    engine.dispose()
    with pytest.raises(SchemaOutOfDate, match="newer Keel"):
        SqlTrackingStore(f"sqlite:///{path}", str(tmp_path))


def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000
    db.dispose()


def test_unreadable_database_is_a_clear_error(tmp_path: Path) -> None:
    from keel.errors import StoreUnavailable

    bogus = tmp_path / "not-a-db.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreUnavailable, match="Cannot open the tracking database"):
        SqlTrackingStore(f"sqlite:///{bogus}", str(tmp_path))


def test_missing_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "keel.db"
    SqlTrackingStore(f"sqlite:///{path}", str(tmp_path)).close()
    assert path.exists()


def test_unreachable_postgres_is_a_clear_error(tmp_path: Path) -> None:
    from keel.errors import StoreUnavailable

    with pytest.raises(StoreUnavailable) as err:
        SqlTrackingStore("postgresql://keel:secret@127.0.0.1:1/nowhere", str(tmp_path))
    assert "secret" not in err.value.message
