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
from typing import Any

import pytest
import sqlalchemy as sa

import keel
from browser import browser, page  # noqa: F401  (fixtures for the UI's browser tests)
from keel.store import TrackingStore, clear_store_cache
from keel.store.registry import RegistryStore
from keel.store.sql import schema
from keel.store.sql.engine import normalize_db_url
from keel.store.sql.registry import SqlRegistryStore
from keel.store.sql.store import SqlTrackingStore

POSTGRES_ENV = "KEEL_TEST_POSTGRES_URL"

# Every TrackingStore implementation the parity suites run against; add yours here.
# "rest-sqlite" is a RestTrackingStore talking HTTP to a live Keel server (real
# uvicorn on loopback) that serves a SqlTrackingStore on a SQLite file.
IMPLEMENTATIONS = ["sqlite", "postgres", "rest-sqlite"]
# The RegistryStore implementations: a test that uses the ``registry`` fixture
# runs against these. "rest-sqlite" is a RestRegistryStore talking to the same
# live server, whose app serves the registry of its SQLite database. A test that
# needs SQL internals narrows the list with @pytest.mark.implementations(...).
REGISTRY_IMPLEMENTATIONS = ["sqlite", "postgres", "rest-sqlite"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Lets fixtures see how the test went (the browser page screenshots failures).
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "implementations(*names): run only against these store implementations "
        "(e.g. 'sqlite', 'postgres' for tests of SQL internals)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # store_uri is parametrized here rather than in its decorator so that the
    # registry suites, which share the fixture chain, get their own list, and a
    # module that tests one implementation's internals can name its own with a
    # module-level STORE_IMPLEMENTATIONS (e.g. test_search_segments: SQL only).
    if "store_uri" in metafunc.fixturenames:
        if "registry" in metafunc.fixturenames:
            wanted = REGISTRY_IMPLEMENTATIONS
        else:
            wanted = getattr(metafunc.module, "STORE_IMPLEMENTATIONS", IMPLEMENTATIONS)
        marker = metafunc.definition.get_closest_marker("implementations")
        if marker is not None:
            wanted = [name for name in wanted if name in marker.args]
        metafunc.parametrize("store_uri", wanted, indirect=True)


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


@pytest.fixture
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A tracking URI for an empty store of each implementation (see pytest_generate_tests)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keel.db'}"
    if request.param == "rest-sqlite":
        url: str = request.getfixturevalue("rest_server_url")
        return url
    assert request.param == "postgres", request.param
    url = request.getfixturevalue("postgres_url")
    _truncate_postgres(url)
    return url


@pytest.fixture(scope="session")
def keel_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """One live Keel server (app, URL) for the session; ``rest_server_url`` swaps its store.

    Starting and stopping uvicorn costs ~0.4 s, more than most tests it serves.
    """
    pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    from keel.server import create_app
    from live_server import serve

    idle_dir = tmp_path_factory.mktemp("idle-server")
    idle = SqlTrackingStore(f"sqlite:///{idle_dir / 'idle.db'}", str(idle_dir / "artifacts"))
    app = create_app(idle)
    try:
        with serve(app) as url:
            yield app, url
    finally:
        idle.close()


@pytest.fixture
def rest_server_url(keel_server: tuple[Any, str], tmp_path: Path) -> Iterator[str]:
    """The URL of a live Keel server over an empty SqlTrackingStore on tmp_path/server.db."""
    app, url = keel_server
    backend = SqlTrackingStore(
        f"sqlite:///{tmp_path / 'server.db'}", artifact_root=str(tmp_path / "artifacts")
    )
    context = app.state.keel  # the ServerContext every handler reads its stores from
    previous = (context.tracking, context.registry)
    context.tracking = backend
    context.registry = SqlRegistryStore.from_tracking_store(backend)
    try:
        yield url
    finally:
        context.tracking, context.registry = previous
        backend.close()


@pytest.fixture
def store(store_uri: str, tmp_path: Path) -> Iterator[TrackingStore]:
    s: TrackingStore
    if store_uri.startswith(("http://", "https://")):
        from keel.store.rest import RestTrackingStore

        s = RestTrackingStore(store_uri)
    else:
        s = SqlTrackingStore(store_uri, artifact_root=str(tmp_path / "artifacts"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def registry(store: TrackingStore) -> RegistryStore:
    """An empty model registry in the same database as ``store`` (over HTTP: its server's)."""
    from keel.store.rest import RestTrackingStore

    if isinstance(store, RestTrackingStore):
        from keel.store.rest_registry import RestRegistryStore

        return RestRegistryStore(store)
    assert isinstance(store, SqlTrackingStore), store
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


@pytest.fixture(autouse=True)
def _mlflow_uris_do_not_leak() -> Iterator[None]:
    """``mlflow.set_registry_uri(url)`` also exports MLFLOW_REGISTRY_URI, and setting it back
    to None leaves that variable behind: later tests would reach a server that is gone."""
    names = ("MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_URI")
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# -- S3: moto's S3-protocol server on loopback ------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-protocol server (moto's) on 127.0.0.1, for the whole session."""
    import socket

    moto_server = pytest.importorskip("moto.server")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """A boto3 client of the loopback S3 server, to check what landed in a bucket."""
    boto3 = pytest.importorskip("boto3")
    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def bucket(s3_endpoint: str, s3: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket, with Keel's S3 settings pointing at the loopback server."""
    monkeypatch.setenv("KEEL_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"keel-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name
