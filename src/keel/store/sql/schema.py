"""The tracking and model registry tables, as SQLAlchemy Core metadata.

This module is the shape the Alembic migrations produce; ``tests/test_sql_schema.py``
checks that a database migrated to head matches it, so change both together.

Design notes:
- ``metrics`` keeps every logged point. Its primary key is the whole point, so a
  write retried after a lost acknowledgement cannot duplicate it; on SQLite it is
  a WITHOUT ROWID table clustered on (run, key, step), which is the order history
  reads want.
- ``latest_metrics`` holds one row per (run, key): the point with the highest
  (step, timestamp, value). Search filters and orders on it, never on ``metrics``.
- NaN is stored as value 0 with ``is_nan`` set, because SQLite turns NaN into NULL.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("experiment_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(500), nullable=False, unique=True),
    sa.Column("artifact_location", sa.String(2000), nullable=False),
    sa.Column("lifecycle_stage", sa.String(32), nullable=False, server_default="active"),
    sa.Column("creation_time", BigInt, nullable=True),
    sa.Column("last_update_time", BigInt, nullable=True),
)

experiment_tags = sa.Table(
    "experiment_tags",
    metadata,
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_uuid", sa.String(32), primary_key=True),
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.String(250), nullable=False, server_default=""),
    sa.Column("user_id", sa.String(256), nullable=False, server_default=""),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("start_time", BigInt, nullable=False),
    sa.Column("end_time", BigInt, nullable=True),
    sa.Column("artifact_uri", sa.String(2000), nullable=False),
    sa.Column("lifecycle_stage", sa.String(32), nullable=False, server_default="active"),
    sa.Column("deleted_time", BigInt, nullable=True),
    sa.Index("ix_runs_experiment_start", "experiment_id", "lifecycle_stage", "start_time"),
)


def _run_key_values(name: str) -> sa.Table:
    """A (run, key) -> value table: params and tags have the same shape."""
    return sa.Table(
        name,
        metadata,
        sa.Column(
            "run_uuid",
            sa.String(32),
            sa.ForeignKey("runs.run_uuid", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sqlite_with_rowid=False,
    )


params = _run_key_values("params")
tags = _run_key_values("tags")

metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column(
        "run_uuid",
        sa.String(32),
        sa.ForeignKey("runs.run_uuid", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("step", BigInt, primary_key=True),
    sa.Column("timestamp", BigInt, primary_key=True),
    sa.Column("value", sa.Double, primary_key=True),
    sa.Column("is_nan", sa.Boolean, primary_key=True),
    sqlite_with_rowid=False,
)

latest_metrics = sa.Table(
    "latest_metrics",
    metadata,
    sa.Column(
        "run_uuid",
        sa.String(32),
        sa.ForeignKey("runs.run_uuid", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("step", BigInt, nullable=False),
    sa.Column("timestamp", BigInt, nullable=False),
    sa.Column("value", sa.Double, nullable=False),
    sa.Column("is_nan", sa.Boolean, nullable=False),
    sa.Index("ix_latest_metrics_key_value", "key", "value"),
    sqlite_with_rowid=False,
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("dataset_uuid", sa.String(32), primary_key=True),
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("digest", sa.String(128), nullable=False),
    sa.Column("source_type", sa.String(64), nullable=False, server_default=""),
    sa.Column("source", sa.Text, nullable=False, server_default=""),
    sa.Column("schema", sa.Text, nullable=True),
    sa.Column("profile", sa.Text, nullable=True),
    sa.UniqueConstraint("experiment_id", "name", "digest", name="uq_datasets_exp_name_digest"),
)

run_inputs = sa.Table(
    "run_inputs",
    metadata,
    sa.Column(
        "run_uuid",
        sa.String(32),
        sa.ForeignKey("runs.run_uuid", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "dataset_uuid",
        sa.String(32),
        sa.ForeignKey("datasets.dataset_uuid", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Index("ix_run_inputs_dataset", "dataset_uuid"),
)

input_tags = sa.Table(
    "input_tags",
    metadata,
    sa.Column("run_uuid", sa.String(32), primary_key=True),
    sa.Column("dataset_uuid", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.String(500), nullable=False),
    sa.ForeignKeyConstraint(
        ["run_uuid", "dataset_uuid"],
        ["run_inputs.run_uuid", "run_inputs.dataset_uuid"],
        ondelete="CASCADE",
    ),
)

# ---------------------------------------------------------------------------
# Model registry
#
# Everything hangs off ``registered_models.name`` through foreign keys with
# ON UPDATE CASCADE, so a rename is one UPDATE and the versions, their tags and
# the aliases follow; ON DELETE CASCADE makes deleting a model one DELETE.
# ``next_version`` is the number the next registration gets: incrementing it
# with an UPDATE in the registering transaction serialises concurrent
# registrations on the model's row, on SQLite and PostgreSQL alike, and a
# number once handed out is never handed out again.
# A deleted version keeps its row as a tombstone (``deleted_time`` set, the
# rest redacted), so error messages can tell "deleted" from "never existed".
# No index covers tag values: they may be 100,000 characters, more than a
# PostgreSQL B-tree entry holds; tag filters look tags up by (owner, key).

registered_models = sa.Table(
    "registered_models",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("creation_time", BigInt, nullable=False),
    sa.Column("last_updated_time", BigInt, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("next_version", sa.Integer, nullable=False, server_default="1"),
)

registered_model_tags = sa.Table(
    "registered_model_tags",
    metadata,
    sa.Column(
        "name",
        sa.String(256),
        sa.ForeignKey("registered_models.name", onupdate="CASCADE", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sqlite_with_rowid=False,
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column(
        "name",
        sa.String(256),
        sa.ForeignKey("registered_models.name", onupdate="CASCADE", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("creation_time", BigInt, nullable=False),
    sa.Column("last_updated_time", BigInt, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("user_id", sa.String(256), nullable=False, server_default=""),
    sa.Column("current_stage", sa.String(20), nullable=False, server_default="None"),
    sa.Column("source", sa.Text, nullable=False, server_default=""),
    sa.Column("run_id", sa.String(256), nullable=True),
    sa.Column("run_link", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.String(20), nullable=False, server_default="READY"),
    sa.Column("status_message", sa.Text, nullable=False, server_default=""),
    sa.Column("model_id", sa.String(256), nullable=True),
    sa.Column("deleted_time", BigInt, nullable=True),
    sa.Index("ix_model_versions_run_id", "run_id"),
    sa.Index("ix_model_versions_stage", "name", "current_stage", "version"),
)

_VERSION_FK = (["name", "version"], ["model_versions.name", "model_versions.version"])

model_version_tags = sa.Table(
    "model_version_tags",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.ForeignKeyConstraint(*_VERSION_FK, onupdate="CASCADE", ondelete="CASCADE"),
    sqlite_with_rowid=False,
)

registered_model_aliases = sa.Table(
    "registered_model_aliases",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("alias", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    # Through the version, not the model: an alias can only point at a version
    # that exists, and a rename reaches it along one cascade path.
    sa.ForeignKeyConstraint(*_VERSION_FK, onupdate="CASCADE", ondelete="CASCADE"),
    sqlite_with_rowid=False,
)

# ---------------------------------------------------------------------------
# Logged models (MLflow 3)
#
# A logged model belongs to an experiment and keeps its own params and tags.
# ``logged_model_metrics`` holds the points logged with the model's id (the same
# points are in ``metrics`` under their run); like ``metrics``, its primary key
# is the whole point, so a retried write cannot duplicate one. ``run_models``
# links runs to the models they produced (outputs) or used (inputs).

logged_models = sa.Table(
    "logged_models",
    metadata,
    sa.Column("model_id", sa.String(64), primary_key=True),
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("artifact_location", sa.String(2000), nullable=False),
    sa.Column("creation_time", BigInt, nullable=False),
    sa.Column("last_updated_time", BigInt, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("model_type", sa.String(500), nullable=False, server_default=""),
    sa.Column("source_run_id", sa.String(32), nullable=True),
    sa.Column("lifecycle_stage", sa.String(32), nullable=False, server_default="active"),
    sa.Index("ix_logged_models_experiment", "experiment_id", "lifecycle_stage", "creation_time"),
    sa.Index("ix_logged_models_source_run", "source_run_id"),
)


def _model_key_values(name: str) -> sa.Table:
    """A (model, key) -> value table: params and tags have the same shape."""
    return sa.Table(
        name,
        metadata,
        sa.Column(
            "model_id",
            sa.String(64),
            sa.ForeignKey("logged_models.model_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sqlite_with_rowid=False,
    )


logged_model_params = _model_key_values("logged_model_params")
logged_model_tags = _model_key_values("logged_model_tags")

logged_model_metrics = sa.Table(
    "logged_model_metrics",
    metadata,
    sa.Column(
        "model_id",
        sa.String(64),
        sa.ForeignKey("logged_models.model_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("step", BigInt, primary_key=True),
    sa.Column("timestamp", BigInt, primary_key=True),
    sa.Column("run_uuid", sa.String(32), primary_key=True),
    sa.Column("dataset_name", sa.String(500), primary_key=True),
    sa.Column("dataset_digest", sa.String(128), primary_key=True),
    sa.Column("value", sa.Double, primary_key=True),
    sa.Column("is_nan", sa.Boolean, primary_key=True),
    sqlite_with_rowid=False,
)

run_models = sa.Table(
    "run_models",
    metadata,
    sa.Column(
        "run_uuid",
        sa.String(32),
        sa.ForeignKey("runs.run_uuid", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "model_id",
        sa.String(64),
        sa.ForeignKey("logged_models.model_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("direction", sa.String(8), primary_key=True),
    sa.Column("step", BigInt, primary_key=True),
    sa.Index("ix_run_models_model", "model_id"),
    sqlite_with_rowid=False,
)
