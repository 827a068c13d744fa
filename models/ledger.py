"""Ledger tables: accounts with balances, and immutable entries (seed §C.3, §3).

An account belongs either to a customer (`user_id` set) or to the house (`code` set, e.g.
`fee_revenue`, `provider:binance`). Customer balances can never be negative; house accounts
are the other side of every customer movement and may be (an asset seen from the liability side).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, Index, text
from sqlmodel import Field, SQLModel

from models.columns import jsonb, money, timestamp


class Account(SQLModel, table=True):
    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("kind IN ('customer', 'house')", name="ck_accounts_kind"),
        CheckConstraint(
            "(kind = 'customer' AND user_id IS NOT NULL AND code IS NULL)"
            " OR (kind = 'house' AND user_id IS NULL AND code IS NOT NULL)",
            name="ck_accounts_owner",
        ),
        CheckConstraint("balance = available_balance + reserved_balance", name="ck_accounts_sum"),
        CheckConstraint("reserved_balance >= 0", name="ck_accounts_reserved_nonneg"),
        CheckConstraint(
            "kind <> 'customer' OR (balance >= 0 AND available_balance >= 0)",
            name="ck_accounts_customer_nonneg",
        ),
        Index(
            "uq_accounts_customer_currency",
            "user_id",
            "currency",
            unique=True,
            postgresql_where=text("kind = 'customer'"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    kind: str = Field(default="customer", max_length=10, sa_column_kwargs={"server_default": "customer"})
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    code: str | None = Field(default=None, max_length=100)
    currency: str = Field(max_length=10)
    balance: Decimal = Field(default=Decimal(0), sa_column=money(server_default="0"))
    available_balance: Decimal = Field(default=Decimal(0), sa_column=money(server_default="0"))
    reserved_balance: Decimal = Field(default=Decimal(0), sa_column=money(server_default="0"))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())


class LedgerEntry(SQLModel, table=True):
    """One leg of a posting. Positive `amount` credits the account, negative debits it."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_account_created", "account_id", "created_at"),
        Index("ix_ledger_entries_reference", "reference_type", "reference_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    account_id: uuid.UUID = Field(foreign_key="accounts.id")
    currency: str = Field(max_length=10)
    amount: Decimal = Field(sa_column=money())
    balance_after: Decimal = Field(sa_column=money())
    reference_type: str = Field(max_length=50)
    reference_id: uuid.UUID
    description: str | None = None
    entry_metadata: dict[str, Any] | None = Field(default=None, sa_column=jsonb(name="metadata"))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    created_by: uuid.UUID | None = None
