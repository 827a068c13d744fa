"""AML cases at work: notes, linked transactions, SARs with DAML, freezes; Travel Rule columns (issue 16)

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-01

`aml_case_notes` is append-only: a trigger refuses UPDATE and DELETE, so a case's file shows what was
known when. `aml_sar_reports` keeps one report per case with its DAML consent request and deadlines.
`aml_freezes` keeps at most one active freeze per customer (partial unique index), and a lifted one
names two different people (check constraint). `withdrawals` gains the UK Travel Rule fields.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0030"
down_revision: str | Sequence[str] | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTES_APPEND_ONLY = """
CREATE FUNCTION aml_case_notes_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'aml_case_notes are append-only';
END $$;
CREATE TRIGGER aml_case_notes_append_only BEFORE UPDATE OR DELETE ON aml_case_notes
    FOR EACH ROW EXECUTE FUNCTION aml_case_notes_append_only();
"""


def _ts(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=sa.text("now()") if now else None
    )


def upgrade() -> None:
    op.create_table(
        "aml_case_notes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        _ts("created_at", nullable=False, now=True),
        sa.ForeignKeyConstraint(["case_id"], ["aml_cases.id"]),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_aml_case_notes_case_created", "aml_case_notes", ["case_id", "created_at"])
    op.execute(NOTES_APPEND_ONLY)
    op.create_table(
        "aml_case_transactions",
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=False),
        sa.Column("linked_by", sa.Uuid(), nullable=False),
        _ts("created_at", nullable=False, now=True),
        sa.CheckConstraint(
            "kind IN ('withdrawal', 'deposit', 'trade', 'order')", name="ck_aml_case_transactions_kind"
        ),
        sa.ForeignKeyConstraint(["case_id"], ["aml_cases.id"]),
        sa.ForeignKeyConstraint(["linked_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("case_id", "kind", "transaction_id"),
    )
    op.create_table(
        "aml_sar_reports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("nca_reference", sa.String(length=64), nullable=False),
        sa.Column("narrative", sa.Text(), nullable=False),
        sa.Column("attachments", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("filed_by", sa.Uuid(), nullable=False),
        _ts("filed_at", nullable=False, now=True),
        sa.Column("daml_state", sa.String(length=20), server_default="none", nullable=False),
        sa.Column("daml_withdrawal_id", sa.Uuid(), nullable=True),
        _ts("notice_ends_at"),
        _ts("refused_at"),
        _ts("moratorium_ends_at"),
        sa.CheckConstraint(
            "daml_state IN ('none', 'awaiting_consent', 'consented', 'refused', 'moratorium_ended')",
            name="ck_aml_sar_reports_daml_state",
        ),
        sa.ForeignKeyConstraint(["case_id"], ["aml_cases.id"]),
        sa.ForeignKeyConstraint(["filed_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["daml_withdrawal_id"], ["withdrawals.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id"),
    )
    op.create_table(
        "aml_freezes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("frozen_by", sa.Uuid(), nullable=False),
        _ts("frozen_at", nullable=False, now=True),
        sa.Column("unfreeze_requested_by", sa.Uuid(), nullable=True),
        _ts("unfreeze_requested_at"),
        sa.Column("lifted_by", sa.Uuid(), nullable=True),
        _ts("lifted_at"),
        sa.CheckConstraint(
            "lifted_by IS NULL OR (unfreeze_requested_by IS NOT NULL AND lifted_by <> unfreeze_requested_by)",
            name="ck_aml_freezes_two_people",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["case_id"], ["aml_cases.id"]),
        sa.ForeignKeyConstraint(["frozen_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["unfreeze_requested_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["lifted_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_aml_freezes_active_per_user",
        "aml_freezes",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("lifted_at IS NULL"),
    )
    op.add_column("withdrawals", sa.Column("travel_rule_beneficiary", sa.String(length=140), nullable=True))
    op.add_column("withdrawals", sa.Column("travel_rule_wallet", sa.String(length=12), nullable=True))
    op.add_column("withdrawals", sa.Column("travel_rule_provider", sa.String(length=140), nullable=True))
    op.add_column("withdrawals", sa.Column("travel_rule_own_wallet", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("withdrawals", "travel_rule_own_wallet")
    op.drop_column("withdrawals", "travel_rule_provider")
    op.drop_column("withdrawals", "travel_rule_wallet")
    op.drop_column("withdrawals", "travel_rule_beneficiary")
    op.drop_index("uq_aml_freezes_active_per_user", table_name="aml_freezes")
    op.drop_table("aml_freezes")
    op.drop_table("aml_sar_reports")
    op.drop_table("aml_case_transactions")
    op.execute("DROP TRIGGER aml_case_notes_append_only ON aml_case_notes")
    op.execute("DROP FUNCTION aml_case_notes_append_only()")
    op.drop_index("ix_aml_case_notes_case_created", table_name="aml_case_notes")
    op.drop_table("aml_case_notes")
