"""Request and response bodies of the customer trading API (orders, accounts, market data).

Money and prices travel as strings (`"1000.00"`, `"0.015"`), never JSON numbers: a float cannot hold
them exactly. Incoming amounts must match `DECIMAL_PATTERN` (plain digits, no exponent, no sign).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from models.market import BestExecutionRecord, OrderType, Side, TimeInForce
from models.order_flow import OrderStatus

DECIMAL_PATTERN = r"^[0-9]{1,18}(\.[0-9]{1,18})?$"
DecimalStr = Annotated[
    str, Field(pattern=DECIMAL_PATTERN, max_length=37, description="A decimal number as a string.")
]
SYMBOL_PATTERN = r"^[A-Z0-9]{2,10}-[A-Z0-9]{2,10}$"
SymbolStr = Annotated[str, Field(pattern=SYMBOL_PATTERN, max_length=21, examples=["BTC-GBP"])]


# --- orders ---------------------------------------------------------------------------------------


class OrderCreate(BaseModel):
    """`POST /orders` (docs/architecture.md §4 step 1). Give `amount` (base) or, for market buys only,
    `quote_amount`."""

    model_config = ConfigDict(extra="forbid")

    symbol: SymbolStr
    side: Side
    type: OrderType
    amount: DecimalStr | None = Field(default=None, description="Base amount (BTC for BTC-GBP).")
    quote_amount: DecimalStr | None = Field(
        default=None,
        description=(
            "Market buys only: spend at most this much quote currency (GBP), our fee included. The order "
            "is sized so that its cost plus fee at your protective price (the best price plus "
            "`max_slippage`) fits; you are charged the actual cost plus fee, never more than this amount."
        ),
    )
    price: DecimalStr | None = Field(default=None, description="Limit orders: the limit price.")
    max_slippage: DecimalStr | None = Field(
        default=None, description="Market orders: the worst acceptable slippage as a fraction (0.01 = 1 %)."
    )
    time_in_force: TimeInForce = TimeInForce.GTC
    expires_at: AwareDatetime | None = Field(
        default=None, description="Limit orders: cancel at this time if not filled (good-till-date)."
    )


class OrderLinks(BaseModel):
    self: str
    execution: str
    cancel: str


class OrderOut(BaseModel):
    id: uuid.UUID
    status: OrderStatus
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    amount: str | None
    quote_amount: str | None
    price: str | None
    max_slippage: str | None
    expires_at: datetime | None
    filled_amount: str
    filled_quote_amount: str
    average_price: str | None
    fee: str
    fee_currency: str | None
    venues: list[str]
    reason: str | None = Field(description="Why the order was rejected, failed or cancelled.")
    created_at: datetime | None
    updated_at: datetime | None
    links: OrderLinks


class OrderPage(BaseModel):
    orders: list[OrderOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null at the end."
    )


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="cancelled by customer", max_length=200)


ExecutionOut = BestExecutionRecord


# --- accounts -------------------------------------------------------------------------------------


class AccountBalance(BaseModel):
    currency: str
    balance: str = Field(description="Everything in the account.")
    available: str = Field(description="What can be traded or withdrawn now.")
    reserved: str = Field(description="Held for open orders and pending withdrawals.")


class BalancesOut(BaseModel):
    balances: list[AccountBalance]


class LedgerEntryOut(BaseModel):
    id: uuid.UUID
    created_at: datetime
    currency: str
    amount: str = Field(description="Positive credits the account, negative debits it.")
    balance_after: str
    reference_type: str
    reference_id: uuid.UUID
    transaction_id: uuid.UUID


class LedgerOut(BaseModel):
    entries: list[LedgerEntryOut]
    next_cursor: str | None


# --- market data ----------------------------------------------------------------------------------


class PriceOut(BaseModel):
    symbol: str
    bid: str | None = Field(description="The highest bid over the venues that answered.")
    bid_venue: str | None
    ask: str | None = Field(description="The lowest ask over the venues that answered.")
    ask_venue: str | None
    venues: list[str]
    unavailable: dict[str, str] = Field(description="Venues that did not answer, with why.")


class PricesOut(BaseModel):
    prices: list[PriceOut]
    as_of: datetime


class BookLevelOut(BaseModel):
    price: str
    amount: str
    venues: dict[str, str] = Field(description="The amount at this price per venue.")


class OrderBookOut(BaseModel):
    symbol: str
    venue: str = Field(description='"merged" (all venues, levels merged by price) or the venue asked for.')
    bids: list[BookLevelOut]
    asks: list[BookLevelOut]
    venues: list[str]
    unavailable: dict[str, str]
    as_of: datetime


class CandleOut(BaseModel):
    open_time: datetime
    open: str
    high: str
    low: str
    close: str
    volume: str


class CandlesOut(BaseModel):
    symbol: str
    interval: str
    venue: str
    candles: list[CandleOut]


class QuoteOut(BaseModel):
    symbol: str
    side: Side
    amount: str = Field(description="Base amount the quote covers.")
    quote_amount: str = Field(description="Quote currency at the venue price, before our fee.")
    price: str = Field(description="Average venue price.")
    fee: str = Field(description="Our fee, in the quote currency.")
    fee_currency: str
    total: str = Field(description="Buy: what you would pay, fee included. Sell: what you would receive.")
    all_in_price: str
    venues: list[str]
    route: str
    indicative: bool = Field(default=True, description="A price now, not a promise: books move.")
