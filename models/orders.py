"""Orders, trades and provider fills (docs/architecture.md §3, §C.5).

An order is the customer's intent; provider fills are what venues reported (raw response kept);
trades are the customer-facing executions settled in the ledger.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.columns import jsonb, money, timestamp


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("side IN ('BUY', 'SELL')", name="ck_orders_side"),
        CheckConstraint("type IN ('MARKET', 'LIMIT')", name="ck_orders_type"),
        CheckConstraint("amount IS NOT NULL OR quote_amount IS NOT NULL", name="ck_orders_size"),
        CheckConstraint("amount IS NULL OR amount > 0", name="ck_orders_amount_pos"),
        CheckConstraint("quote_amount IS NULL OR quote_amount > 0", name="ck_orders_quote_pos"),
        CheckConstraint("filled_amount >= 0", name="ck_orders_filled_nonneg"),
        Index("ix_orders_user_created", "user_id", "created_at"),
        Index("ix_orders_symbol_side", "symbol", "side"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id")
    account_id: uuid.UUID | None = Field(default=None, foreign_key="accounts.id")
    symbol: str = Field(max_length=20)
    side: str = Field(max_length=4)
    type: str = Field(max_length=10)
    time_in_force: str = Field(default="GTC", max_length=3, sa_column_kwargs={"server_default": "GTC"})
    price: Decimal | None = Field(default=None, sa_column=money(nullable=True))
    amount: Decimal | None = Field(default=None, sa_column=money(nullable=True))
    quote_amount: Decimal | None = Field(default=None, sa_column=money(nullable=True))
    max_slippage: Decimal | None = Field(default=None, sa_column=money(nullable=True))
    filled_amount: Decimal = Field(default=Decimal(0), sa_column=money(server_default="0"))
    filled_quote_amount: Decimal = Field(default=Decimal(0), sa_column=money(server_default="0"))
    status: str = Field(
        default="PENDING", max_length=20, index=True, sa_column_kwargs={"server_default": "PENDING"}
    )
    reject_reason: str | None = None
    routed_to_provider: str | None = Field(default=None, max_length=50)
    provider_order_id: str | None = Field(default=None, max_length=100)
    average_fill_price: Decimal | None = Field(default=None, sa_column=money(nullable=True))
    total_fee: Decimal = Field(default=Decimal(0), sa_column=money(server_default="0"))
    fee_currency: str | None = Field(default=None, max_length=10)
    execution_record: dict[str, Any] | None = Field(default=None, sa_column=jsonb())
    notional_gbp: Decimal | None = Field(default=None, sa_column=money(nullable=True))
    hold_id: uuid.UUID | None = Field(default=None, foreign_key="holds.id")
    expires_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())
    filled_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    cancelled_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))


class Trade(SQLModel, table=True):
    __tablename__ = "trades"
    __table_args__ = (
        CheckConstraint("side IN ('BUY', 'SELL')", name="ck_trades_side"),
        CheckConstraint("amount > 0 AND price > 0 AND fee >= 0", name="ck_trades_positive"),
        Index("ix_trades_user_executed", "user_id", "executed_at"),
        Index("ix_trades_symbol_executed", "symbol", "executed_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    order_id: uuid.UUID = Field(foreign_key="orders.id", index=True)
    user_id: uuid.UUID = Field(foreign_key="users.id")
    symbol: str = Field(max_length=20)
    side: str = Field(max_length=4)
    amount: Decimal = Field(sa_column=money())
    price: Decimal = Field(sa_column=money())
    fee: Decimal = Field(sa_column=money())
    fee_currency: str = Field(max_length=10)
    provider: str = Field(max_length=50)
    provider_trade_id: str | None = Field(default=None, max_length=100)
    executed_at: datetime | None = Field(default=None, sa_column=timestamp())


class ProviderFill(SQLModel, table=True):
    __tablename__ = "provider_fills"
    __table_args__ = (
        UniqueConstraint("provider", "provider_order_id", name="uq_provider_fills_provider_order"),
        CheckConstraint("side IN ('BUY', 'SELL')", name="ck_provider_fills_side"),
        # No index on `reconciled`: marking a fill reconciled stays a HOT update (migration 0016).
        {"postgresql_with": {"fillfactor": 50}},
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    provider: str = Field(max_length=50)
    provider_order_id: str = Field(max_length=100)
    client_order_id: str | None = Field(default=None, max_length=100)
    our_order_id: uuid.UUID | None = Field(default=None, foreign_key="orders.id", index=True)
    symbol: str = Field(max_length=20)
    side: str = Field(max_length=4)
    amount: Decimal = Field(sa_column=money())
    price: Decimal = Field(sa_column=money())
    quote_amount: Decimal = Field(default=Decimal(0), sa_column=money(server_default="0"))
    fee: Decimal = Field(sa_column=money())
    fee_currency: str | None = Field(default=None, max_length=10)
    status: str = Field(max_length=20)
    raw_response: dict[str, Any] | None = Field(default=None, sa_column=jsonb())
    reconciled: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
    reconciled_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    executed_at: datetime = Field(sa_column=timestamp(now=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
