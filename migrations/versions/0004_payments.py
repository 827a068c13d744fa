"""payments: deposit references, bank accounts, address whitelist, approvals, halts, float top-ups

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-24

GBP deposits arrive under a per-customer bank reference; GBP withdrawals go back only to a bank account the
customer paid in from; crypto withdrawals only to a whitelisted address after its 24 h cool-down. The
withdrawal saga records its hold, GBP notional, approvals and outcome on the `withdrawals` row.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(precision=36, scale=18)
TS = sa.DateTime(timezone=True)
STATUSES = (
    "PENDING",
    "AWAITING_APPROVAL",
    "HALTED",
    "APPROVED",
    "PROCESSING",
    "COMPLETED",
    "FAILED",
    "REJECTED",
    "CANCELLED",
)


def upgrade() -> None:
    op.create_table(
        "deposit_references",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("reference", sa.String(length=35), nullable=False),
        sa.Column("sort_code", sa.String(length=6), nullable=False),
        sa.Column("account_number", sa.String(length=8), nullable=False),
        sa.Column("account_name", sa.String(length=140), nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id"),
        sa.UniqueConstraint("reference"),
    )
    op.create_table(
        "bank_accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("holder_name", sa.String(length=140), nullable=False),
        sa.Column("sort_code", sa.String(length=6), nullable=False),
        sa.Column("account_number", sa.String(length=8), nullable=False),
        sa.Column("verified", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("verified_by", sa.String(length=50), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "sort_code", "account_number", name="uq_bank_accounts_user_account"),
    )
    op.create_index(op.f("ix_bank_accounts_user_id"), "bank_accounts", ["user_id"], unique=False)
    op.create_table(
        "withdrawal_addresses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.Column("tag", sa.String(length=64), server_default="", nullable=False),
        sa.Column("label", sa.String(length=100), nullable=True),
        sa.Column("usable_from", TS, nullable=False),
        sa.Column("removed_at", TS, nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "currency", "address", "tag", name="uq_withdrawal_addresses"),
    )
    op.create_index(
        op.f("ix_withdrawal_addresses_user_id"), "withdrawal_addresses", ["user_id"], unique=False
    )
    op.create_table(
        "currency_halts",
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("halted_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["currency"], ["currencies.code"]),
        sa.PrimaryKeyConstraint("currency"),
    )
    op.create_table(
        "crypto_deposit_addresses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.Column("tag", sa.String(length=64), server_default="", nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "currency", "address", "tag", name="uq_crypto_deposit_addresses"),
        sa.UniqueConstraint("user_id", "provider", "currency", name="uq_crypto_deposit_addresses_user"),
    )
    op.create_table(
        "float_topups",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("balance", MONEY, nullable=False),
        sa.Column("threshold", MONEY, nullable=False),
        sa.Column("target", MONEY, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("status", sa.String(length=20), server_default="REQUESTED", nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("completed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_float_topups_provider_currency", "float_topups", ["provider", "currency", "status"], unique=False
    )

    op.add_column("deposits", sa.Column("ledger_transaction_id", sa.Uuid(), nullable=True))
    op.add_column("deposits", sa.Column("details", postgresql.JSONB(), nullable=True))
    op.create_foreign_key(
        "fk_deposits_ledger_transaction", "deposits", "ledger_transactions", ["ledger_transaction_id"], ["id"]
    )

    op.add_column("withdrawals", sa.Column("destination_type", sa.String(length=10), nullable=True))
    op.add_column("withdrawals", sa.Column("address_id", sa.Uuid(), nullable=True))
    op.add_column("withdrawals", sa.Column("bank_account_id", sa.Uuid(), nullable=True))
    op.add_column("withdrawals", sa.Column("notional_gbp", MONEY, nullable=True))
    op.add_column("withdrawals", sa.Column("hold_id", sa.Uuid(), nullable=True))
    op.add_column(
        "withdrawals", sa.Column("approvals_required", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("withdrawals", sa.Column("flagged", sa.Boolean(), server_default="false", nullable=False))
    op.add_column("withdrawals", sa.Column("reason", sa.String(), nullable=True))
    op.add_column("withdrawals", sa.Column("provider_ref", sa.String(length=100), nullable=True))
    op.add_column("withdrawals", sa.Column("updated_at", TS, server_default=sa.text("now()"), nullable=False))
    op.create_foreign_key(
        "fk_withdrawals_address", "withdrawals", "withdrawal_addresses", ["address_id"], ["id"]
    )
    op.create_foreign_key(
        "fk_withdrawals_bank_account", "withdrawals", "bank_accounts", ["bank_account_id"], ["id"]
    )
    op.create_foreign_key("fk_withdrawals_hold", "withdrawals", "holds", ["hold_id"], ["id"])
    op.create_check_constraint(
        "ck_withdrawals_status", "withdrawals", "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")"
    )

    op.create_table(
        "withdrawal_approvals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("withdrawal_id", sa.Uuid(), nullable=False),
        sa.Column("approver_id", sa.Uuid(), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("decision IN ('approve', 'reject')", name="ck_withdrawal_approvals_decision"),
        sa.ForeignKeyConstraint(["approver_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["withdrawal_id"], ["withdrawals.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("withdrawal_id", "approver_id", "decision", name="uq_withdrawal_approvals"),
    )
    op.create_index(
        op.f("ix_withdrawal_approvals_withdrawal_id"), "withdrawal_approvals", ["withdrawal_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_withdrawal_approvals_withdrawal_id"), table_name="withdrawal_approvals")
    op.drop_table("withdrawal_approvals")
    op.drop_constraint("ck_withdrawals_status", "withdrawals", type_="check")
    op.drop_constraint("fk_withdrawals_hold", "withdrawals", type_="foreignkey")
    op.drop_constraint("fk_withdrawals_bank_account", "withdrawals", type_="foreignkey")
    op.drop_constraint("fk_withdrawals_address", "withdrawals", type_="foreignkey")
    for column in (
        "updated_at",
        "provider_ref",
        "reason",
        "flagged",
        "approvals_required",
        "hold_id",
        "notional_gbp",
        "bank_account_id",
        "address_id",
        "destination_type",
    ):
        op.drop_column("withdrawals", column)
    op.drop_constraint("fk_deposits_ledger_transaction", "deposits", type_="foreignkey")
    op.drop_column("deposits", "details")
    op.drop_column("deposits", "ledger_transaction_id")
    op.drop_index("ix_float_topups_provider_currency", table_name="float_topups")
    op.drop_table("float_topups")
    op.drop_table("crypto_deposit_addresses")
    op.drop_table("currency_halts")
    op.drop_index(op.f("ix_withdrawal_addresses_user_id"), table_name="withdrawal_addresses")
    op.drop_table("withdrawal_addresses")
    op.drop_index(op.f("ix_bank_accounts_user_id"), table_name="bank_accounts")
    op.drop_table("bank_accounts")
    op.drop_table("deposit_references")
