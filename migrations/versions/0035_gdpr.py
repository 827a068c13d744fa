"""GDPR: subject-access export requests and account closures (issue 18 item 4)

Revision ID: 0035
Revises: 0026
Create Date: 2026-12-02

`gdpr_export_requests`: one row per export, at most one REQUESTED per customer (a partial unique index),
with its one-month deadline (`due_at`) so overdue requests can be listed, and the zip itself (`content`)
while its link is valid. `account_closures`: when an
account closed and when its personal data is due to be pseudonymised (five years later, MLR 2017 reg. 40).
`users.status` already allows CLOSED (0001).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0035"
down_revision: str | Sequence[str] | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gdpr_export_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=12), server_default="REQUESTED", nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("emailed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('REQUESTED', 'READY', 'EXPIRED')", name="ck_gdpr_export_requests_status"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_gdpr_export_requests_open",
        "gdpr_export_requests",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("status = 'REQUESTED'"),
    )
    op.create_index("ix_gdpr_export_requests_user_created", "gdpr_export_requests", ["user_id", "created_at"])
    op.create_table(
        "account_closures",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purge_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pseudonymised_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade() -> None:
    op.drop_table("account_closures")
    op.drop_index("ix_gdpr_export_requests_user_created", table_name="gdpr_export_requests")
    op.drop_index("uq_gdpr_export_requests_open", table_name="gdpr_export_requests")
    op.drop_table("gdpr_export_requests")
