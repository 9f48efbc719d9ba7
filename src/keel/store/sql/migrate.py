"""Schema versions: create a fresh database at head, refuse or upgrade an old one.

>>> from keel.store.sql.engine import Database
>>> db = Database("sqlite:///:memory:")
>>> ensure_schema(db)
>>> current_revision(db) == head_revision()
True
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from keel.errors import SchemaOutOfDate
from keel.store.sql.engine import Database

_MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant: serialises concurrent first-time migrations on PostgreSQL.
_PG_MIGRATION_LOCK = 0x6B65656C


def _config(conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def current_revision(db: Database) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with db.read() as conn:
        return _revision(conn)


def _known_revisions() -> set[str]:
    return {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}


def ensure_schema(db: Database) -> None:
    """Create an empty database at head; refuse one made by an older or newer Keel."""
    with db.read() as conn:
        rev = _revision(conn)
        empty = rev is None and not sa.inspect(conn).has_table("experiments")
    head = head_revision()
    if rev == head:
        return
    if empty:
        upgrade(db, only_if_empty=True)
        return
    if rev is None or rev not in _known_revisions():
        raise SchemaOutOfDate(
            f"The database at {db.engine.url.render_as_string(hide_password=True)} has schema "
            f"revision {rev!r}, which this version of Keel does not know. It was made by a "
            "newer Keel or another tool: upgrade Keel (pip install -U keel) or use another "
            "database."
        )
    raise SchemaOutOfDate(
        f"The database at {db.engine.url.render_as_string(hide_password=True)} was made by an "
        f"older Keel (schema revision {rev}, this Keel needs {head}). Back it up, then run: "
        f"keel db upgrade {db.engine.url.render_as_string(hide_password=True)}"
    )


def upgrade(
    db: Database, *, only_if_empty: bool = False, target: str = "head"
) -> tuple[str | None, str]:
    """Migrate to ``target`` (head) in one transaction; return (revision before, after).

    Concurrent callers are serialised (SQLite's write lock, a PostgreSQL
    advisory lock), and each re-reads the revision once it holds the lock.
    An older ``target`` is for tests that build a database as an older Keel did.
    """
    with db.write() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        before = _revision(conn)
        if only_if_empty and before is not None:
            return before, before
        command.upgrade(_config(conn), target)
        after = _revision(conn)
    assert after is not None
    return before, after
