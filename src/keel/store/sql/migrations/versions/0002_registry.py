"""Model registry: registered models, versions, their tags, and aliases.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Additive only: the tracking tables are untouched, so upgrading a 0001 database
keeps every experiment and run.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
VERSION_FK = (["name", "version"], ["model_versions.name", "model_versions.version"])


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("creation_time", BigInt, nullable=False),
        sa.Column("last_updated_time", BigInt, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("next_version", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_table(
        "registered_model_tags",
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
    op.create_table(
        "model_versions",
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
    )
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
    op.create_index(
        "ix_model_versions_stage", "model_versions", ["name", "current_stage", "version"]
    )
    op.create_table(
        "model_version_tags",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(*VERSION_FK, onupdate="CASCADE", ondelete="CASCADE"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "registered_model_aliases",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("alias", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.ForeignKeyConstraint(*VERSION_FK, onupdate="CASCADE", ondelete="CASCADE"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    for name in (
        "registered_model_aliases",
        "model_version_tags",
        "model_versions",
        "registered_model_tags",
        "registered_models",
    ):
        op.drop_table(name)
