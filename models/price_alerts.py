"""Price alerts (docs/architecture.md §C.9): a customer's "tell me when BTC-GBP goes above £70,000".

The row holds the alert's whole state, so evaluation (services/price_alerts.py, run by the
`ops-price-alerts` schedule) is durable and idempotent: each check reads the state, decides with the pure
rules of `services.price_alert_rules`, and writes the new state and the notification's outbox row in one
transaction. `fired_count` numbers the firings; the outbox's dedupe key includes it, so one firing can
never be delivered twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import Boolean, CheckConstraint, Column, ForeignKey, Index, Integer, Uuid, text
from sqlmodel import Field, SQLModel

from models.api import DecimalStr, SymbolStr
from models.columns import money, timestamp


class AlertDirection(StrEnum):
    ABOVE = "ABOVE"  # fires when the best bid (what the customer could sell at) reaches the price
    BELOW = "BELOW"  # fires when the best ask (what the customer could buy at) reaches the price


class PriceAlert(SQLModel, table=True):
    __tablename__ = "price_alerts"
    __table_args__ = (
        CheckConstraint("direction IN ('ABOVE', 'BELOW')", name="ck_price_alerts_direction"),
        CheckConstraint("price > 0", name="ck_price_alerts_price_positive"),
        CheckConstraint("fired_count >= 0", name="ck_price_alerts_fired_count"),
        Index("ix_price_alerts_user_created", "user_id", "created_at"),
        Index("ix_price_alerts_active_symbol", "symbol", postgresql_where=text("active")),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(sa_column=Column(Uuid(), ForeignKey("users.id"), nullable=False))
    symbol: str = Field(max_length=21)
    direction: str = Field(max_length=5)
    price: Decimal = Field(sa_column=money())
    recurring: bool = Field(sa_column=Column(Boolean, nullable=False, server_default="false"))
    # False once a one-shot alert has fired: kept for the customer's list, never evaluated again.
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default="true"))
    # False after a firing until the price has moved back past the hysteresis band.
    armed: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default="true"))
    fired_count: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    last_fired_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    last_fired_price: Decimal | None = Field(default=None, sa_column=money(nullable=True))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class PriceAlertCreate(BaseModel):
    """`POST /price-alerts`: notify me when `symbol`'s price goes `direction` `price`."""

    symbol: SymbolStr
    direction: AlertDirection
    price: DecimalStr = PydanticField(description="In the quote currency, at most 8 decimal places.")
    recurring: bool = PydanticField(
        default=False, description="Fire again after the price moves back and crosses anew (with a cooldown)."
    )


class PriceAlertOut(BaseModel):
    id: uuid.UUID
    symbol: str
    direction: AlertDirection
    price: str
    recurring: bool
    active: bool
    armed: bool
    fired_count: int
    last_fired_at: AwareDatetime | None
    last_fired_price: str | None
    created_at: AwareDatetime


class PriceAlertList(BaseModel):
    items: list[PriceAlertOut]
    limit: int = PydanticField(description="How many alerts a customer may keep.")


class PriceAlertCheckInput(BaseModel):
    """One check of every active alert (the `ops-price-alerts` schedule's argument, from settings)."""

    band: Decimal = Decimal("0.005")
    cooldown_seconds: float = 900.0


class PriceAlertCheckResult(BaseModel):
    checked: int = 0
    fired: int = 0
    symbols_without_price: list[str] = PydanticField(default_factory=list)
