"""reconciliation: runs grouped by run id with in-flight totals; per-currency halts and their acknowledgements

Revision ID: 0015
Revises: 0011
Create Date: 2026-12-01

`reconciliation_runs` (migration 0001) gets the run it belongs to (one row per currency per run), the
cut-off, the in-flight total and the customer liabilities. `reconciliation_halts` holds the currencies the
reconciliation circuit breaker halted (with the run that halted them and the clean runs seen since);
`reconciliation_acks` the staff acknowledgements needed to resume (two different staff, maker-checker).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(precision=36, scale=18)


def upgrade() -> None:
    op.add_column("reconciliation_runs", sa.Column("run_id", sa.Uuid(), nullable=True))
    op.add_column("reconciliation_runs", sa.Column("cut_off", sa.DateTime(timezone=True), nullable=True))
    op.add_column("reconciliation_runs", sa.Column("in_flight", MONEY, nullable=True))
    op.add_column("reconciliation_runs", sa.Column("customer_liabilities", MONEY, nullable=True))
    op.create_index("ix_reconciliation_runs_run_id", "reconciliation_runs", ["run_id"], unique=False)
    op.create_index(
        "uq_reconciliation_runs_run_currency", "reconciliation_runs", ["run_id", "currency"], unique=True
    )
    op.create_table(
        "reconciliation_halts",
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("clean_runs", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("currency"),
    )
    op.create_table(
        "reconciliation_acks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("halt_run_id", sa.Uuid(), nullable=False),
        sa.Column("staff_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('resume', 'override')", name="ck_reconciliation_acks_kind"),
        sa.ForeignKeyConstraint(["staff_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("currency", "halt_run_id", "staff_id", name="uq_reconciliation_acks_staff"),
    )


def downgrade() -> None:
    op.drop_table("reconciliation_acks")
    op.drop_table("reconciliation_halts")
    op.drop_index("uq_reconciliation_runs_run_currency", table_name="reconciliation_runs")
    op.drop_index("ix_reconciliation_runs_run_id", table_name="reconciliation_runs")
    op.drop_column("reconciliation_runs", "customer_liabilities")
    op.drop_column("reconciliation_runs", "in_flight")
    op.drop_column("reconciliation_runs", "cut_off")
    op.drop_column("reconciliation_runs", "run_id")
