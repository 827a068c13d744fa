"""sanctions and PEP screening

Revision ID: 0014
Revises: 0008
Create Date: 2026-12-01

Listed entities (versioned per entity by content hash), their screenable names with a trigram index for
candidate blocking (phonetic token keys via fuzzystrmatch, and a pg_trgm index), listed wallet addresses, list updates, the customer's screening subject and
reviewers' "no hit" dismissals per (customer, entity, entity version).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE EXTENSION IF NOT EXISTS fuzzystrmatch")
    op.create_table(
        "sanctions_entities",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("entity_type", sa.String(length=20), nullable=False),
        sa.Column("topic", sa.String(length=10), nullable=False),
        sa.Column("programmes", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("listed", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("topic IN ('SANCTION', 'PEP')", name="ck_sanctions_entities_topic"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_sanctions_entities_source_id", "sanctions_entities", ["source", "source_id"], unique=True
    )
    op.create_table(
        "sanctions_entity_versions",
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["sanctions_entities.id"]),
        sa.PrimaryKeyConstraint("entity_id", "version"),
    )
    op.create_table(
        "sanctions_names",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("norm", sa.String(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("quality", sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["sanctions_entities.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_sanctions_names_entity_id"), "sanctions_names", ["entity_id"], unique=False)
    op.create_index(
        "ix_sanctions_names_norm_trgm",
        "sanctions_names",
        ["norm"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={"norm": "gist_trgm_ops"},
    )
    op.create_table(
        "sanctions_name_keys",
        sa.Column("key", sa.String(length=16), nullable=False),
        sa.Column("name_id", sa.BigInteger(), nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["sanctions_entities.id"]),
        sa.ForeignKeyConstraint(["name_id"], ["sanctions_names.id"]),
        sa.PrimaryKeyConstraint("key", "name_id"),
    )
    op.create_table(
        "sanctions_crypto_addresses",
        sa.Column("address_key", sa.String(length=128), nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["sanctions_entities.id"]),
        sa.PrimaryKeyConstraint("address_key", "entity_id"),
    )
    op.create_index(
        op.f("ix_sanctions_crypto_addresses_entity_id"),
        "sanctions_crypto_addresses",
        ["entity_id"],
        unique=False,
    )
    op.create_table(
        "sanctions_list_updates",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "screening_subjects",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("full_name", sa.String(length=300), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("nationality", sa.String(length=100), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "screening_dismissals",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column("entity_version", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("aml_check_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["aml_check_id"], ["aml_checks.id"]),
        sa.ForeignKeyConstraint(["entity_id"], ["sanctions_entities.id"]),
        sa.ForeignKeyConstraint(["reviewer_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("user_id", "entity_id", "entity_version"),
    )


def downgrade() -> None:
    op.drop_table("screening_dismissals")
    op.drop_table("screening_subjects")
    op.drop_table("sanctions_list_updates")
    op.drop_index(op.f("ix_sanctions_crypto_addresses_entity_id"), table_name="sanctions_crypto_addresses")
    op.drop_table("sanctions_crypto_addresses")
    op.drop_table("sanctions_name_keys")
    op.drop_index("ix_sanctions_names_norm_trgm", table_name="sanctions_names")
    op.drop_index(op.f("ix_sanctions_names_entity_id"), table_name="sanctions_names")
    op.drop_table("sanctions_names")
    op.drop_table("sanctions_entity_versions")
    op.drop_index("uq_sanctions_entities_source_id", table_name="sanctions_entities")
    op.drop_table("sanctions_entities")
    op.execute("DROP EXTENSION IF EXISTS fuzzystrmatch")
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
