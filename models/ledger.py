"""Ledger tables: accounts with balances, and immutable entries (docs/architecture.md §C.3, §3).

An account belongs either to a customer (`user_id` set) or to the house (`code` set, e.g.
`fee_revenue`, `provider:binance`). Customer balances can never be negative; house accounts
are the other side of every customer movement and may be (an asset seen from the liability side).

A house account is a pool of `shard` rows (see services/ledger.py for why); a customer account is
one row (shard 0). Postings are `LedgerTransaction`s whose entries sum to zero per currency; holds
move money between an account's available and reserved parts without posting.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, String, UniqueConstraint, text
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
        CheckConstraint("kind = 'house' OR shard = 0", name="ck_accounts_customer_unsharded"),
        Index(
            "uq_accounts_house_code_currency_shard",
            "code",
            "currency",
            "shard",
            unique=True,
            postgresql_where=text("kind = 'house'"),
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
    currency: str = Field(max_length=10, foreign_key="currencies.code")
    shard: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    balance: Decimal = Field(default=Decimal(0), sa_column=money(server_default="0"))
    available_balance: Decimal = Field(default=Decimal(0), sa_column=money(server_default="0"))
    reserved_balance: Decimal = Field(default=Decimal(0), sa_column=money(server_default="0"))
    entry_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    last_hash: str | None = Field(default=None, max_length=64)
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())


class LedgerEntry(SQLModel, table=True):
    """One leg of a posting. Positive `amount` credits the account, negative debits it."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_account_created", "account_id", "created_at"),
        UniqueConstraint("account_id", "seq", name="uq_ledger_entries_account_seq"),
        CheckConstraint("amount <> 0", name="ck_ledger_entries_nonzero"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    transaction_id: uuid.UUID = Field(foreign_key="ledger_transactions.id", index=True)
    account_id: uuid.UUID = Field(foreign_key="accounts.id")
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=10)
    amount: Decimal = Field(sa_column=money())
    balance_after: Decimal = Field(sa_column=money())
    reference_type: str = Field(max_length=50)
    reference_id: uuid.UUID
    description: str | None = None
    entry_metadata: dict[str, Any] | None = Field(default=None, sa_column=jsonb(name="metadata"))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    created_by: uuid.UUID | None = None
    prev_hash: str | None = Field(default=None, max_length=64)
    hash: str = Field(max_length=64)


class Currency(SQLModel, table=True):
    """Currencies we hold, with their scale (decimal places); mirrors models/assets.py SCALES."""

    __tablename__ = "currencies"
    __table_args__ = (CheckConstraint("scale BETWEEN 0 AND 18", name="ck_currencies_scale"),)

    code: str = Field(primary_key=True, max_length=10)
    scale: int


class LedgerTransaction(SQLModel, table=True):
    """A journal transaction: the unit of idempotency. Its entries sum to zero per currency."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (Index("ix_ledger_transactions_reference", "reference_type", "reference_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    idempotency_key: str = Field(sa_column=Column(String(200), nullable=False, unique=True))
    request_hash: str = Field(max_length=64)
    kind: str = Field(max_length=50)
    reference_type: str = Field(max_length=50)
    reference_id: uuid.UUID
    created_by: uuid.UUID | None = None
    tx_metadata: dict[str, Any] | None = Field(default=None, sa_column=jsonb(name="metadata"))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class Hold(SQLModel, table=True):
    """Funds set aside (available -> reserved). active -> committed | released, never back."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'committed', 'released')", name="ck_holds_status"),
        CheckConstraint("amount > 0 AND consumed >= 0 AND consumed <= amount", name="ck_holds_amounts"),
        Index("ix_holds_reference", "reference_type", "reference_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    idempotency_key: str = Field(sa_column=Column(String(200), nullable=False, unique=True))
    account_id: uuid.UUID = Field(foreign_key="accounts.id", index=True)
    currency: str = Field(max_length=10)
    amount: Decimal = Field(sa_column=money())
    consumed: Decimal = Field(default=Decimal(0), sa_column=money(server_default="0"))
    status: str = Field(default="active", max_length=10, sa_column_kwargs={"server_default": "active"})
    reference_type: str = Field(max_length=50)
    reference_id: uuid.UUID
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    closed_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
