"""Shared fixtures: real stores on SQLite files and on PostgreSQL.

PostgreSQL tests run when ``KEEL_TEST_POSTGRES_URL`` points at a server where
the user may create databases (CI sets it). Each test session gets its own
database, dropped at the end, so parallel sessions never see each other.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import keel
from keel.store import clear_store_cache
from keel.store.registry import RegistryStore
from keel.store.sql import schema
from keel.store.sql.engine import normalize_db_url
from keel.store.sql.registry import SqlRegistryStore
from keel.store.sql.store import SqlTrackingStore

POSTGRES_ENV = "KEEL_TEST_POSTGRES_URL"

# Every TrackingStore and RegistryStore implementation the parity suites run against;
# add yours here.
IMPLEMENTATIONS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this session (skips without the env var)."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql://postgres@127.0.0.1/postgres)"
        )
    name = f"keel_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(normalize_db_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = (
        sa.make_url(normalize_db_url(base)).set(database=name).render_as_string(hide_password=False)
    )
    try:
        yield url
    finally:
        clear_store_cache()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def private_postgres_url() -> Iterator[str]:
    """A PostgreSQL database for one test module alone (others truncate the shared one)."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql://postgres@127.0.0.1/postgres)"
        )
    name = f"keel_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(normalize_db_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(normalize_db_url(base)).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    names = ", ".join(t.name for t in schema.metadata.sorted_tables)
    with engine.begin() as conn:
        if sa.inspect(conn).has_table("experiments"):
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def empty_postgres_url(postgres_url: str) -> str:
    """The session's PostgreSQL database, emptied for this test."""
    _truncate_postgres(postgres_url)
    return postgres_url


@pytest.fixture(params=IMPLEMENTATIONS)
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A tracking URI for an empty store of each implementation."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keel.db'}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate_postgres(url)
    return url


@pytest.fixture
def store(store_uri: str, tmp_path: Path) -> Iterator[SqlTrackingStore]:
    s = SqlTrackingStore(store_uri, artifact_root=str(tmp_path / "artifacts"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def registry(store: SqlTrackingStore) -> RegistryStore:
    """An empty model registry in the same database as ``store``."""
    return SqlRegistryStore.from_tracking_store(store)


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fluent API pointed at a fresh SQLite file in tmp_path, with a clean slate."""
    monkeypatch.chdir(tmp_path)
    for var in (
        "KEEL_TRACKING_URI",
        "MLFLOW_TRACKING_URI",
        "KEEL_EXPERIMENT_NAME",
        "MLFLOW_EXPERIMENT_NAME",
        "KEEL_EXPERIMENT_ID",
        "MLFLOW_EXPERIMENT_ID",
        "KEEL_ARTIFACT_ROOT",
    ):
        monkeypatch.delenv(var, raising=False)
    keel.set_tracking_uri(str(tmp_path / "keel.db"))
    return tmp_path
