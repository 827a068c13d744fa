"""deposit suspense, deposits keyed per output, payer-account name check

Revision ID: 0012
Revises: 0008
Create Date: 2026-12-01

- `deposit_suspense`: deposits we were told about but cannot credit (unlisted asset, amount finer than
  our scale, a signed bank event with an impossible currency or amount), kept verbatim for ops.
- `deposits.output`: a chain transaction can pay several of our addresses; deposits are now unique per
  (provider, tx id, output). Existing crypto rows get their receiving address as output, so the poller
  finds them again under the new key and credits nothing twice.
- `bank_accounts.status`, `name_match`, `name_score`, `confirmed_at`, `usable_from`: a payer account
  becomes a withdrawal destination only after a name check and the customer's TOTP confirmation.
  Accounts recorded before this revision had no name check: they start UNCONFIRMED and must be
  confirmed again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deposit_suspense",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=50), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("output", sa.String(length=140), server_default="", nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("currency", sa.String(length=20), nullable=False),
        sa.Column("amount", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.String(length=50), nullable=False),
        sa.Column("detail", sa.String(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="OPEN", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('OPEN', 'RESOLVED')", name="ck_deposit_suspense_status"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "external_id", "output", name="uq_deposit_suspense_source_tx"),
    )
    op.create_index("ix_deposit_suspense_status_created", "deposit_suspense", ["status", "created_at"])

    op.add_column("deposits", sa.Column("output", sa.String(length=140), server_default="", nullable=False))
    op.execute(
        "UPDATE deposits SET output = coalesce(details->>'address', '') "
        "WHERE payment_method = 'CRYPTO' AND details ? 'address'"
    )
    op.drop_constraint("uq_deposits_provider_tx", "deposits", type_="unique")
    op.create_unique_constraint(
        "uq_deposits_provider_tx_output", "deposits", ["provider", "provider_tx_id", "output"]
    )

    op.add_column(
        "bank_accounts",
        sa.Column("status", sa.String(length=20), server_default="UNCONFIRMED", nullable=False),
    )
    op.add_column("bank_accounts", sa.Column("name_match", sa.String(length=12), nullable=True))
    op.add_column("bank_accounts", sa.Column("name_score", sa.Integer(), nullable=True))
    op.add_column("bank_accounts", sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("bank_accounts", sa.Column("usable_from", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(
        "ck_bank_accounts_status",
        "bank_accounts",
        "status IN ('UNCONFIRMED', 'HELD_FOR_REVIEW', 'CONFIRMED', 'REJECTED')",
    )


def downgrade() -> None:
    op.drop_constraint("ck_bank_accounts_status", "bank_accounts", type_="check")
    for column in ("usable_from", "confirmed_at", "name_score", "name_match", "status"):
        op.drop_column("bank_accounts", column)
    op.drop_constraint("uq_deposits_provider_tx_output", "deposits", type_="unique")
    # Going back to one row per transaction: fails (as it should) while a tx has two outputs recorded.
    op.create_unique_constraint("uq_deposits_provider_tx", "deposits", ["provider", "provider_tx_id"])
    op.drop_column("deposits", "output")
    op.drop_index("ix_deposit_suspense_status_created", table_name="deposit_suspense")
    op.drop_table("deposit_suspense")
