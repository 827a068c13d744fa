"""Deposits and withdrawals (seed §C.7, §C.4)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.columns import money, timestamp


class Deposit(SQLModel, table=True):
    __tablename__ = "deposits"
    __table_args__ = (
        UniqueConstraint("provider", "provider_tx_id", name="uq_deposits_provider_tx"),
        CheckConstraint("amount > 0", name="ck_deposits_amount_pos"),
        Index("ix_deposits_user_created", "user_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    currency: str = Field(max_length=10)
    amount: Decimal = Field(sa_column=money())
    payment_method: str | None = Field(default=None, max_length=50)
    provider: str | None = Field(default=None, max_length=50)
    provider_tx_id: str | None = Field(default=None, max_length=100)
    reference: str | None = Field(default=None, max_length=100)
    status: str = Field(default="PENDING", max_length=20, sa_column_kwargs={"server_default": "PENDING"})
    ledger_entry_id: uuid.UUID | None = Field(default=None, foreign_key="ledger_entries.id")
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    confirmed_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))


class Withdrawal(SQLModel, table=True):
    __tablename__ = "withdrawals"
    __table_args__ = (
        CheckConstraint("amount > 0 AND fee >= 0", name="ck_withdrawals_amounts"),
        Index("ix_withdrawals_user_created", "user_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id")
    currency: str = Field(max_length=10)
    amount: Decimal = Field(sa_column=money())
    fee: Decimal = Field(default=Decimal(0), sa_column=money(server_default="0"))
    destination_address: str | None = None
    status: str = Field(
        default="PENDING", max_length=20, index=True, sa_column_kwargs={"server_default": "PENDING"}
    )
    tx_hash: str | None = Field(default=None, max_length=100)
    provider: str | None = Field(default=None, max_length=50)
    approved_by: uuid.UUID | None = None
    approved_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    completed_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
