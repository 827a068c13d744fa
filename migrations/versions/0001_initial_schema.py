"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24

The seed's tables (§2-§3) with its rules: balance CHECKs, UNIQUE(provider, provider_order_id),
NUMERIC(36,18) money, UUID keys, timestamptz, and append-only ledger entries and audit log
(UPDATE and DELETE raise, enforced by triggers so no code path can bypass them).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


APPEND_ONLY_TABLES = ("ledger_entries", "audit_log")

APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION reject_append_only_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("actor_type", sa.String(length=20), server_default="system", nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target_type", sa.String(length=50), nullable=True),
        sa.Column("target_id", sa.String(length=100), nullable=True),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_actor_created", "audit_log", ["actor_id", "created_at"], unique=False)
    op.create_index("ix_audit_log_target", "audit_log", ["target_type", "target_id"], unique=False)
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("provider_balance", sa.Numeric(precision=36, scale=18), nullable=True),
        sa.Column("on_chain_balance", sa.Numeric(precision=36, scale=18), nullable=True),
        sa.Column("ledger_balance", sa.Numeric(precision=36, scale=18), nullable=True),
        sa.Column("discrepancy", sa.Numeric(precision=36, scale=18), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_reconciliation_runs_currency_created",
        "reconciliation_runs",
        ["currency", "created_at"],
        unique=False,
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=True),
        sa.Column("last_name", sa.String(length=100), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("kyc_tier", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=20), server_default="ACTIVE", nullable=False),
        sa.Column("roles", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("email_verified", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("twofa_enabled", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("twofa_secret", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_login", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "roles <@ ARRAY['approver', 'ops', 'compliance', 'admin']::text[]", name="ck_users_roles"
        ),
        sa.CheckConstraint("status IN ('ACTIVE', 'FROZEN', 'SUSPENDED', 'CLOSED')", name="ck_users_status"),
        sa.CheckConstraint("kyc_tier BETWEEN 0 AND 3", name="ck_users_kyc_tier"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_index(op.f("ix_users_kyc_tier"), "users", ["kyc_tier"], unique=False)
    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), server_default="customer", nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("code", sa.String(length=100), nullable=True),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("balance", sa.Numeric(precision=36, scale=18), server_default="0", nullable=False),
        sa.Column(
            "available_balance", sa.Numeric(precision=36, scale=18), server_default="0", nullable=False
        ),
        sa.Column("reserved_balance", sa.Numeric(precision=36, scale=18), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(kind = 'customer' AND user_id IS NOT NULL AND code IS NULL) OR (kind = 'house' AND user_id IS NULL AND code IS NOT NULL)",
            name="ck_accounts_owner",
        ),
        sa.CheckConstraint(
            "kind <> 'customer' OR (balance >= 0 AND available_balance >= 0)",
            name="ck_accounts_customer_nonneg",
        ),
        sa.CheckConstraint("kind IN ('customer', 'house')", name="ck_accounts_kind"),
        sa.CheckConstraint("balance = available_balance + reserved_balance", name="ck_accounts_sum"),
        sa.CheckConstraint("reserved_balance >= 0", name="ck_accounts_reserved_nonneg"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_accounts_customer_currency",
        "accounts",
        ["user_id", "currency"],
        unique=True,
        postgresql_where=sa.text("kind = 'customer'"),
    )
    op.create_table(
        "aml_checks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("check_type", sa.String(length=50), nullable=True),
        sa.Column("provider", sa.String(length=50), nullable=True),
        sa.Column("result", sa.String(length=20), nullable=True),
        sa.Column("risk_score", sa.Integer(), nullable=True),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_aml_checks_user_id"), "aml_checks", ["user_id"], unique=False)
    op.create_table(
        "kyc_submissions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="PENDING", nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=True),
        sa.Column("provider_applicant_id", sa.String(length=100), nullable=True),
        sa.Column("document_front_url", sa.String(), nullable=True),
        sa.Column("document_back_url", sa.String(), nullable=True),
        sa.Column("selfie_url", sa.String(), nullable=True),
        sa.Column("rejection_reason", sa.String(), nullable=True),
        sa.Column("reviewed_by", sa.Uuid(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('PENDING', 'APPROVED', 'REJECTED')", name="ck_kyc_submissions_status"),
        sa.CheckConstraint("tier BETWEEN 1 AND 3", name="ck_kyc_submissions_tier"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_kyc_submissions_user_id"), "kyc_submissions", ["user_id"], unique=False)
    op.create_table(
        "withdrawals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.Numeric(precision=36, scale=18), nullable=False),
        sa.Column("fee", sa.Numeric(precision=36, scale=18), server_default="0", nullable=False),
        sa.Column("destination_address", sa.String(), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="PENDING", nullable=False),
        sa.Column("tx_hash", sa.String(length=100), nullable=True),
        sa.Column("provider", sa.String(length=50), nullable=True),
        sa.Column("approved_by", sa.Uuid(), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount > 0 AND fee >= 0", name="ck_withdrawals_amounts"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_withdrawals_status"), "withdrawals", ["status"], unique=False)
    op.create_index("ix_withdrawals_user_created", "withdrawals", ["user_id", "created_at"], unique=False)
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.Numeric(precision=36, scale=18), nullable=False),
        sa.Column("balance_after", sa.Numeric(precision=36, scale=18), nullable=False),
        sa.Column("reference_type", sa.String(length=50), nullable=False),
        sa.Column("reference_id", sa.Uuid(), nullable=False),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_ledger_entries_account_created", "ledger_entries", ["account_id", "created_at"], unique=False
    )
    op.create_index(
        "ix_ledger_entries_reference", "ledger_entries", ["reference_type", "reference_id"], unique=False
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("type", sa.String(length=10), nullable=False),
        sa.Column("time_in_force", sa.String(length=3), server_default="GTC", nullable=False),
        sa.Column("price", sa.Numeric(precision=36, scale=18), nullable=True),
        sa.Column("amount", sa.Numeric(precision=36, scale=18), nullable=True),
        sa.Column("quote_amount", sa.Numeric(precision=36, scale=18), nullable=True),
        sa.Column("max_slippage", sa.Numeric(precision=36, scale=18), nullable=True),
        sa.Column("filled_amount", sa.Numeric(precision=36, scale=18), server_default="0", nullable=False),
        sa.Column(
            "filled_quote_amount", sa.Numeric(precision=36, scale=18), server_default="0", nullable=False
        ),
        sa.Column("status", sa.String(length=20), server_default="PENDING", nullable=False),
        sa.Column("reject_reason", sa.String(), nullable=True),
        sa.Column("routed_to_provider", sa.String(length=50), nullable=True),
        sa.Column("provider_order_id", sa.String(length=100), nullable=True),
        sa.Column("average_fill_price", sa.Numeric(precision=36, scale=18), nullable=True),
        sa.Column("total_fee", sa.Numeric(precision=36, scale=18), server_default="0", nullable=False),
        sa.Column("fee_currency", sa.String(length=10), nullable=True),
        sa.Column("execution_record", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("filled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("side IN ('BUY', 'SELL')", name="ck_orders_side"),
        sa.CheckConstraint("type IN ('MARKET', 'LIMIT')", name="ck_orders_type"),
        sa.CheckConstraint("amount IS NOT NULL OR quote_amount IS NOT NULL", name="ck_orders_size"),
        sa.CheckConstraint("amount IS NULL OR amount > 0", name="ck_orders_amount_pos"),
        sa.CheckConstraint("filled_amount >= 0", name="ck_orders_filled_nonneg"),
        sa.CheckConstraint("quote_amount IS NULL OR quote_amount > 0", name="ck_orders_quote_pos"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_orders_status"), "orders", ["status"], unique=False)
    op.create_index("ix_orders_symbol_side", "orders", ["symbol", "side"], unique=False)
    op.create_index("ix_orders_user_created", "orders", ["user_id", "created_at"], unique=False)
    op.create_table(
        "deposits",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("currency", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.Numeric(precision=36, scale=18), nullable=False),
        sa.Column("payment_method", sa.String(length=50), nullable=True),
        sa.Column("provider", sa.String(length=50), nullable=True),
        sa.Column("provider_tx_id", sa.String(length=100), nullable=True),
        sa.Column("reference", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="PENDING", nullable=False),
        sa.Column("ledger_entry_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount > 0", name="ck_deposits_amount_pos"),
        sa.ForeignKeyConstraint(
            ["ledger_entry_id"],
            ["ledger_entries.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "provider_tx_id", name="uq_deposits_provider_tx"),
    )
    op.create_index("ix_deposits_user_created", "deposits", ["user_id", "created_at"], unique=False)
    op.create_table(
        "provider_fills",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("provider_order_id", sa.String(length=100), nullable=False),
        sa.Column("client_order_id", sa.String(length=100), nullable=True),
        sa.Column("our_order_id", sa.Uuid(), nullable=True),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("amount", sa.Numeric(precision=36, scale=18), nullable=False),
        sa.Column("price", sa.Numeric(precision=36, scale=18), nullable=False),
        sa.Column("quote_amount", sa.Numeric(precision=36, scale=18), server_default="0", nullable=False),
        sa.Column("fee", sa.Numeric(precision=36, scale=18), nullable=False),
        sa.Column("fee_currency", sa.String(length=10), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("raw_response", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("reconciled", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("side IN ('BUY', 'SELL')", name="ck_provider_fills_side"),
        sa.ForeignKeyConstraint(
            ["our_order_id"],
            ["orders.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "provider_order_id", name="uq_provider_fills_provider_order"),
    )
    op.create_index(op.f("ix_provider_fills_our_order_id"), "provider_fills", ["our_order_id"], unique=False)
    op.create_index(
        "ix_provider_fills_reconciled", "provider_fills", ["reconciled", "executed_at"], unique=False
    )
    op.create_table(
        "trades",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("amount", sa.Numeric(precision=36, scale=18), nullable=False),
        sa.Column("price", sa.Numeric(precision=36, scale=18), nullable=False),
        sa.Column("fee", sa.Numeric(precision=36, scale=18), nullable=False),
        sa.Column("fee_currency", sa.String(length=10), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("provider_trade_id", sa.String(length=100), nullable=True),
        sa.Column("executed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("side IN ('BUY', 'SELL')", name="ck_trades_side"),
        sa.CheckConstraint("amount > 0 AND price > 0 AND fee >= 0", name="ck_trades_positive"),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_trades_order_id"), "trades", ["order_id"], unique=False)
    op.create_index("ix_trades_symbol_executed", "trades", ["symbol", "executed_at"], unique=False)
    op.create_index("ix_trades_user_executed", "trades", ["user_id", "executed_at"], unique=False)

    op.execute(APPEND_ONLY_FUNCTION)
    for table in APPEND_ONLY_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION reject_append_only_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION reject_append_only_change()"
        )


def downgrade() -> None:
    for table in APPEND_ONLY_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.execute("DROP FUNCTION IF EXISTS reject_append_only_change()")
    op.drop_index("ix_trades_user_executed", table_name="trades")
    op.drop_index("ix_trades_symbol_executed", table_name="trades")
    op.drop_index(op.f("ix_trades_order_id"), table_name="trades")
    op.drop_table("trades")
    op.drop_index("ix_provider_fills_reconciled", table_name="provider_fills")
    op.drop_index(op.f("ix_provider_fills_our_order_id"), table_name="provider_fills")
    op.drop_table("provider_fills")
    op.drop_index("ix_deposits_user_created", table_name="deposits")
    op.drop_table("deposits")
    op.drop_index("ix_orders_user_created", table_name="orders")
    op.drop_index("ix_orders_symbol_side", table_name="orders")
    op.drop_index(op.f("ix_orders_status"), table_name="orders")
    op.drop_table("orders")
    op.drop_index("ix_ledger_entries_reference", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_account_created", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_index("ix_withdrawals_user_created", table_name="withdrawals")
    op.drop_index(op.f("ix_withdrawals_status"), table_name="withdrawals")
    op.drop_table("withdrawals")
    op.drop_index(op.f("ix_kyc_submissions_user_id"), table_name="kyc_submissions")
    op.drop_table("kyc_submissions")
    op.drop_index(op.f("ix_aml_checks_user_id"), table_name="aml_checks")
    op.drop_table("aml_checks")
    op.drop_index(
        "uq_accounts_customer_currency", table_name="accounts", postgresql_where=sa.text("kind = 'customer'")
    )
    op.drop_table("accounts")
    op.drop_index(op.f("ix_users_kyc_tier"), table_name="users")
    op.drop_table("users")
    op.drop_index("ix_reconciliation_runs_currency_created", table_name="reconciliation_runs")
    op.drop_table("reconciliation_runs")
    op.drop_index("ix_audit_log_target", table_name="audit_log")
    op.drop_index("ix_audit_log_actor_created", table_name="audit_log")
    op.drop_table("audit_log")
