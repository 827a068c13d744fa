"""ledger adjustments by maker-checker: proposals and their one decision (issue 18)

Revision ID: 0034
Revises: 0032
Create Date: 2026-12-02

`ledger_adjustments` holds a staff member's proposed correction (currency, legs with signed amounts as
strings, reason, maker) and its decision by a different staff member (POSTED with the ledger transaction
it posted, or REJECTED, kept). The money itself is only in the ledger (`reference_type = 'adjustment'`).
The CHECKs keep the row honest whatever writes it: the checker is never the maker, a decided row names
its checker and time, and only a POSTED row names a transaction.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0034"
down_revision: str | Sequence[str] | None = "0032"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_adjustments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("legs", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="PROPOSED", nullable=False),
        sa.Column("maker_id", sa.Uuid(), nullable=False),
        sa.Column("checker_id", sa.Uuid(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('PROPOSED', 'POSTED', 'REJECTED')", name="ck_ledger_adjustments_status"
        ),
        sa.CheckConstraint(
            "checker_id IS NULL OR checker_id <> maker_id", name="ck_ledger_adjustments_four_eyes"
        ),
        sa.CheckConstraint(
            "(status = 'PROPOSED') = (checker_id IS NULL AND decided_at IS NULL)",
            name="ck_ledger_adjustments_decided",
        ),
        sa.CheckConstraint(
            "(status = 'POSTED') = (transaction_id IS NOT NULL)", name="ck_ledger_adjustments_posted"
        ),
        sa.ForeignKeyConstraint(["currency"], ["currencies.code"]),
        sa.ForeignKeyConstraint(["maker_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["checker_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["transaction_id"], ["ledger_transactions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_ledger_adjustments_status_created", "ledger_adjustments", ["status", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_adjustments_status_created", table_name="ledger_adjustments")
    op.drop_table("ledger_adjustments")
