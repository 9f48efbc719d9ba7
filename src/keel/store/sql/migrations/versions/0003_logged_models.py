"""Logged models (MLflow 3): models, their params, tags and metrics, and run links.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Additive only: existing tables are untouched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _model_fk(primary_key: bool = True) -> sa.Column[str]:
    return sa.Column(
        "model_id",
        sa.String(64),
        sa.ForeignKey("logged_models.model_id", ondelete="CASCADE"),
        primary_key=primary_key,
    )


def upgrade() -> None:
    op.create_table(
        "logged_models",
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
    )
    op.create_index(
        "ix_logged_models_experiment",
        "logged_models",
        ["experiment_id", "lifecycle_stage", "creation_time"],
    )
    op.create_index("ix_logged_models_source_run", "logged_models", ["source_run_id"])
    for name in ("logged_model_params", "logged_model_tags"):
        op.create_table(
            name,
            _model_fk(),
            sa.Column("key", sa.String(250), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
            sqlite_with_rowid=False,
        )
    op.create_table(
        "logged_model_metrics",
        _model_fk(),
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
    op.create_table(
        "run_models",
        sa.Column(
            "run_uuid",
            sa.String(32),
            sa.ForeignKey("runs.run_uuid", ondelete="CASCADE"),
            primary_key=True,
        ),
        _model_fk(),
        sa.Column("direction", sa.String(8), primary_key=True),
        sa.Column("step", BigInt, primary_key=True),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_run_models_model", "run_models", ["model_id"])


def downgrade() -> None:
    op.drop_index("ix_run_models_model", "run_models")
    for name in ("run_models", "logged_model_metrics", "logged_model_tags", "logged_model_params"):
        op.drop_table(name)
    op.drop_index("ix_logged_models_source_run", "logged_models")
    op.drop_index("ix_logged_models_experiment", "logged_models")
    op.drop_table("logged_models")
