"""Engines for SQLite and PostgreSQL, and every dialect difference in one place.

SQLite is set up the way an embedded, multi-process store needs it:

- WAL journal, so readers never block the writer and a commit costs one append;
- ``synchronous=NORMAL``: a commit survives a crash of the process; a power loss
  can lose the last transactions but never corrupts the file (see
  ``docs/decisions/0002-durability.md``);
- a 60 s busy timeout and ``BEGIN IMMEDIATE`` for every write, so writers from
  several processes queue on SQLite's lock instead of failing with
  "database is locked" when a read transaction tries to upgrade;
- one writer connection per process guarded by a lock (writes are serialized
  here rather than contended for), read connections per thread;
- foreign keys on and ``LIKE`` case-sensitive, as on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import QueuePool, StaticPool
from sqlalchemy.sql.selectable import Join

from keel.errors import InvalidParameter

T = TypeVar("T")

BUSY_TIMEOUT_S = 60.0


def normalize_db_url(url: str) -> str:
    """Pick the driver Keel ships for each scheme.

    >>> normalize_db_url("postgresql://u@localhost/db")
    'postgresql+psycopg://u@localhost/db'
    """
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith(("sqlite://", "postgresql+")):
        return url
    raise InvalidParameter(
        f"Unsupported database URI {url!r}. Use sqlite:///path/to/keel.db or "
        "postgresql://user@host:5432/dbname."
    )


class Database:
    """A database opened for Keel: a write path and a read path.

    ``with db.write() as conn:`` runs one transaction that holds the process's
    writer lock (SQLite) and commits on exit; ``with db.read() as conn:`` runs
    a read-only unit of work.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalize_db_url(url)
        self._write_lock = threading.RLock()
        # An in-memory database exists once per connection: readers must share
        # the writer's one connection (and its lock).
        self._shared = self.url in ("sqlite://", "sqlite:///:memory:")
        if self.url.startswith("sqlite"):
            self._writer = _sqlite_engine(self.url, echo=echo, write=True)
            self._reader = (
                self._writer if self._shared else _sqlite_engine(self.url, echo=echo, write=False)
            )
        else:
            try:
                self._writer = sa.create_engine(
                    self.url,
                    echo=echo,
                    poolclass=QueuePool,
                    pool_size=4,
                    max_overflow=8,
                    pool_pre_ping=True,
                )
            except ModuleNotFoundError as exc:  # psycopg missing
                raise InvalidParameter(
                    f"PostgreSQL needs the psycopg driver ({exc.name} is not installed). "
                    "Install it with: pip install 'keel[postgres]'"
                ) from exc
            self._reader = self._writer
            self._shared = False

    @property
    def engine(self) -> Engine:
        """The engine that writes (and that migrations run on)."""
        return self._writer

    @property
    def dialect_name(self) -> str:
        return self._writer.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        if self.dialect_name == "sqlite":
            with self._write_lock, self._writer.begin() as conn:
                yield conn
        else:
            with self._writer.begin() as conn:
                yield conn

    @contextmanager
    def write_raw(self) -> Iterator[Raw]:
        """Like :meth:`write`, but on the driver's connection: for the hot one-row writes."""
        sqlite = self.dialect_name == "sqlite"
        with self._write_lock if sqlite else contextlib.nullcontext():
            fairy = self._writer.raw_connection()
            try:
                dbapi: Any = fairy.dbapi_connection
                if sqlite:  # psycopg opens its transaction by itself
                    dbapi.execute("BEGIN IMMEDIATE")
                yield from _committed(dbapi, self._writer.dialect)
            finally:
                fairy.close()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        if self._shared:
            with self._write_lock, self._reader.connect() as conn:
                yield conn
        else:
            with self._reader.connect() as conn:
                yield conn

    def after_fork(self) -> None:
        """In a forked child: drop inherited connections without closing the parent's."""
        self._write_lock = threading.RLock()
        self._writer.dispose(close=False)
        if self._reader is not self._writer:
            self._reader.dispose(close=False)

    def dispose(self) -> None:
        self._writer.dispose()
        if self._reader is not self._writer:
            self._reader.dispose()


def _committed(dbapi: Any, dialect: sa.Dialect) -> Iterator[Raw]:
    try:
        yield Raw(dbapi, dialect)
    except BaseException:
        dbapi.rollback()
        raise
    dbapi.commit()


def _sqlite_engine(url: str, *, echo: bool, write: bool) -> Engine:
    in_memory = url in ("sqlite://", "sqlite:///:memory:")
    if not in_memory and write:
        # SQLite creates a missing file but not its directory.
        db_path = sa.make_url(url).database
        if db_path:
            Path(db_path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        echo=echo,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S},
        # The writer is one connection behind a lock; readers get one per thread.
        poolclass=StaticPool if (write or in_memory) else sa.pool.SingletonThreadPool,
        **({} if write or in_memory else {"pool_size": 64}),
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module: SQLAlchemy's
        # "begin" event below decides how each transaction starts.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if not in_memory:
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA case_sensitive_like = ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class DrivingJoin(Join):
    """``left JOIN right``, where SQLite must loop over ``left`` first.

    SQLite's planner does not weigh ``ORDER BY ... LIMIT`` when it picks the
    outer table; ``CROSS JOIN`` is its documented way to fix the join order.
    Other databases get a plain JOIN and plan it themselves.
    """

    inherit_cache = True


@compiles(DrivingJoin, "sqlite")
def _driving_join_sqlite(element: DrivingJoin, compiler: Any, **kw: Any) -> str:
    kw["asfrom"] = True
    left = compiler.process(element.left, **kw)
    right = compiler.process(element.right, **kw)
    return f"{left} CROSS JOIN {right} ON {compiler.process(element.onclause, **kw)}"


IN_CHUNK = 900  # values per IN (...) list: under SQLite's oldest limit of 999 parameters


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``, for IN lists that must stay under the limit.

    >>> [list(c) for c in chunks([1, 2, 3], 2)]
    [[1, 2], [3]]
    """
    for i in range(0, len(items), size):
        yield items[i : i + size]


def fetch_tuples(conn: Connection, stmt: sa.Select[Any]) -> list[tuple[Any, ...]]:
    """All rows of ``stmt`` as the driver's plain tuples, skipping SQLAlchemy's Row objects.

    For loops over hundreds of thousands of rows (loading a big search result),
    where building a Row per row costs as much as SQLite reading it. Values
    come as the driver returns them: use it for text, numbers and truthiness.
    """
    result = conn.execute(stmt)
    cursor = getattr(result, "cursor", None)
    if cursor is None:  # not a DBAPI-backed result: take the portable path
        return [tuple(row) for row in result]
    try:
        return list(cursor.fetchall())
    finally:
        result.close()


# Statements over an IN list of n bindparams, by (builder, n).
_IN_LISTS: dict[tuple[Callable[..., Any], int], Any] = {}


def in_list(
    build: Callable[[list[sa.BindParameter[Any]]], Any], values: Sequence[Any], **more: Any
) -> tuple[Any, dict[str, Any]]:
    """``build``'s statement over one bindparam per value, and its parameters.

    For :class:`Raw`, which runs only statements it can compile once: the
    list is padded (repeating its last value) to a power of two up to
    :data:`IN_CHUNK`, so each builder makes at most 11 statements. ``build``
    must be a module-level function; ``values`` holds 1 to ``IN_CHUNK`` items;
    ``more`` are the statement's other parameters.

    >>> stmt, params = in_list(lambda vs: sa.select(sa.literal(1)), ["a", "b", "c"], x=1)
    >>> params
    {'v0': 'a', 'v1': 'b', 'v2': 'c', 'v3': 'c', 'x': 1}
    """
    n = len(values)
    if not 0 < n <= IN_CHUNK:
        raise ValueError(f"an IN list takes 1 to {IN_CHUNK} values, not {n}")
    size = min(1 << (n - 1).bit_length(), IN_CHUNK)
    key = (build, size)
    stmt = _IN_LISTS.get(key)
    if stmt is None:
        stmt = _IN_LISTS[key] = build([sa.bindparam(f"v{i}") for i in range(size)])
    params = dict(zip(_IN_NAMES[:n], values, strict=True))
    if size > n:
        params.update(dict.fromkeys(_IN_NAMES[n:size], values[-1]))
    params.update(more)
    return stmt, params


_IN_NAMES = [f"v{i}" for i in range(IN_CHUNK)]


# Built statements by (dialect, table, key, update, where): building an upsert
# (its ``excluded`` alias above all) and computing its cache key cost more than
# running it for the one-row writes of log-metric. ``where`` must be a
# module-level function for the cache to hit.
_UPSERTS: dict[tuple[Any, ...], Any] = {}


def upsert(
    conn: Connection | Raw,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    *,
    key: Sequence[str],
    update: Sequence[str] = (),
    where: Any = None,
) -> None:
    """INSERT … ON CONFLICT (key) DO UPDATE/NOTHING on both dialects.

    ``where`` receives the dialect's insert statement and returns a condition
    over ``table`` and ``stmt.excluded`` restricting which conflicts update.
    """
    if not rows:
        return
    dialect = conn.dialect.name
    cache_key = (dialect, table, tuple(key), tuple(update), where)
    stmt = _UPSERTS.get(cache_key)
    if stmt is None:
        mod: Any = sqlite_dialect if dialect == "sqlite" else pg_dialect
        stmt = mod.insert(table)
        if update:
            stmt = stmt.on_conflict_do_update(
                index_elements=list(key),
                set_={c: stmt.excluded[c] for c in update},
                where=where(stmt) if where is not None else None,
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(key))
        _UPSERTS[cache_key] = stmt
    if isinstance(conn, Connection):
        conn.execute(stmt, list(rows))
    else:
        conn.executemany(stmt, rows)


# Compiled SQL by statement identity, dialect and parameter names; the
# statement itself is kept so that its id cannot be reused.
_COMPILED: dict[tuple[int, str, tuple[str, ...]], tuple[Any, str, tuple[str, ...] | None]] = {}


class Raw:
    """Prebuilt Core statements run straight on a DBAPI connection.

    SQLAlchemy's per-execution work (cache key, execution context, Result
    rows) costs several times what SQLite takes to run a one-row statement,
    so the tracking server's hot paths (log-metric, create-run, update-run)
    compile their statements once per dialect here and hand them to the
    driver's cursor. Statements must be module-level constants (the cache is
    keyed by identity) whose parameters are named ``bindparam`` s or, for
    INSERT and UPDATE, the columns given. Rows come back as plain tuples.

    >>> import sqlite3
    >>> stmt = sa.select(sa.literal_column("1")).where(sa.literal_column("2") == sa.bindparam("x"))
    >>> Raw(sqlite3.connect(":memory:"), sqlite_dialect.dialect()).all(stmt, {"x": 2})
    [(1,)]
    """

    __slots__ = ("_cursor", "dialect")

    def __init__(self, dbapi_connection: Any, dialect: sa.Dialect) -> None:
        self._cursor = dbapi_connection.cursor()
        self.dialect = dialect

    @classmethod
    def of(cls, conn: Connection | Raw) -> Raw:
        """The driver connection under ``conn``, inside ``conn``'s transaction."""
        if isinstance(conn, Raw):
            return conn
        return cls(conn.connection.dbapi_connection, conn.dialect)

    def _sql(self, stmt: Any, names: tuple[str, ...]) -> tuple[str, tuple[str, ...] | None]:
        key = (id(stmt), self.dialect.name, names)
        hit = _COMPILED.get(key)
        if hit is None or hit[0] is not stmt:
            compiled = stmt.compile(dialect=self.dialect, column_keys=list(names))
            order = tuple(compiled.positiontup or ()) if compiled.positional else None
            hit = _COMPILED[key] = (stmt, compiled.string, order)
        return hit[1], hit[2]

    def execute(self, stmt: Any, params: Mapping[str, Any] | None = None) -> Any:
        """Run ``stmt``; returns the driver cursor (``fetchall``, ``rowcount``)."""
        params = params or {}
        sql, order = self._sql(stmt, tuple(params))
        self._cursor.execute(sql, params if order is None else [params[n] for n in order])
        return self._cursor

    def executemany(self, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run ``stmt`` once per row; every row has the first row's keys."""
        if not rows:
            return
        sql, order = self._sql(stmt, tuple(rows[0]))
        if order is None:
            self._cursor.executemany(sql, rows)
        else:
            self._cursor.executemany(sql, [[r[n] for n in order] for r in rows])

    def all(self, stmt: Any, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        # Both drivers return rows as tuples (sqlite3 by default, psycopg's tuple_row).
        rows: list[tuple[Any, ...]] = self.execute(stmt, params).fetchall()
        return rows

    def scalar(self, stmt: Any, params: Mapping[str, Any] | None = None) -> Any:
        row = self.execute(stmt, params).fetchone()
        return None if row is None else row[0]
