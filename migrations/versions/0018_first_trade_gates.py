"""first-trade gates: FCA PS23/6 risk warning, cooling-off, categorisation, appropriateness (issue 15 item 6)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01

`first_trade_gates` is one row per customer with where each gate stands (the cooling-off's end is written
by its saga's durable timer); `appropriateness_attempts` every submitted assessment with its answers and
result (a failed one locks the next for 24 hours).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "first_trade_gates",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("risk_warning_version", sa.String(length=32), nullable=True),
        sa.Column("risk_warning_acknowledged_at", TS, nullable=True),
        sa.Column("cooling_off_started_at", TS, nullable=True),
        sa.Column("cooling_off_ends_at", TS, nullable=True),
        sa.Column("cooling_off_completed_at", TS, nullable=True),
        sa.Column("category", sa.String(length=20), nullable=True),
        sa.Column("declaration", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("categorised_at", TS, nullable=True),
        sa.Column("assessment_passed_at", TS, nullable=True),
        sa.Column("assessment_locked_until", TS, nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "category IS NULL OR category IN ('restricted', 'high_net_worth', 'sophisticated')",
            name="ck_first_trade_gates_category",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "appropriateness_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("questionnaire_version", sa.String(length=32), nullable=False),
        sa.Column("answers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("correct", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("missed_fundamental", sa.Boolean(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_appropriateness_attempts_user_id", "appropriateness_attempts", ["user_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_appropriateness_attempts_user_id", table_name="appropriateness_attempts")
    op.drop_table("appropriateness_attempts")
    op.drop_table("first_trade_gates")
