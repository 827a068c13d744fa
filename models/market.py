"""Market and execution types shared by the exchange adapters, the router, the order saga and the API.

Pydantic models (never table rows) so they cross Temporal and HTTP unchanged. Every amount and price is
`Decimal`; JSON carries them as strings.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.enums import CaseInsensitiveEnum


class Side(CaseInsensitiveEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(CaseInsensitiveEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


class TimeInForce(CaseInsensitiveEnum):
    GTC = "GTC"
    IOC = "IOC"


# Our symbols are BASE-QUOTE ("BTC-GBP"); ccxt's are BASE/QUOTE ("BTC/GBP").
SYMBOLS: tuple[str, ...] = ("BTC-GBP", "ETH-GBP", "BNB-GBP")


def split_symbol(symbol: str) -> tuple[str, str]:
    base, _, quote = symbol.partition("-")
    return base, quote


def to_ccxt_symbol(symbol: str) -> str:
    return symbol.replace("-", "/")


def from_ccxt_symbol(symbol: str) -> str:
    return symbol.replace("/", "-")


class PriceLevel(BaseModel):
    model_config = ConfigDict(frozen=True)

    price: Decimal
    amount: Decimal


class OrderBook(BaseModel):
    """Bids best (highest) first, asks best (lowest) first."""

    provider: str
    symbol: str
    bids: list[PriceLevel]
    asks: list[PriceLevel]
    timestamp: datetime | None = None  # when the venue's book was last known to be this
    source: str | None = None  # "stream" (a live book) or "rest" (read on demand); None: a direct read


class MarketRules(BaseModel):
    """A venue's limits for one market, from ccxt's market structure (`precision`, `limits`)."""

    symbol: str
    amount_step: Decimal  # smallest base increment
    price_step: Decimal
    min_amount: Decimal = Decimal(0)
    min_notional: Decimal = Decimal(0)


class FeeSchedule(BaseModel):
    taker: Decimal
    maker: Decimal


class VenueOrderStatus(StrEnum):
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"  # includes IOC remainder expired with a partial or no fill
    REJECTED = "REJECTED"


class PlaceOrderRequest(BaseModel):
    """What the saga asks an adapter to place. `client_order_id` makes placement idempotent."""

    symbol: str
    side: Side
    type: OrderType
    amount: Decimal  # base amount
    price: Decimal | None = None  # limit price (also the protective price of an IOC market order)
    time_in_force: TimeInForce = TimeInForce.GTC
    client_order_id: str


class VenueFill(BaseModel):
    """One execution at the venue (a trade). Exact values come from the raw response, never floats."""

    trade_id: str | None = None
    price: Decimal
    amount: Decimal
    fee: Decimal
    fee_currency: str


class VenueOrder(BaseModel):
    """What a venue says about one of our orders."""

    provider: str
    provider_order_id: str
    client_order_id: str | None = None
    symbol: str
    side: Side
    status: VenueOrderStatus
    amount: Decimal  # requested base amount
    filled: Decimal  # executed base amount
    quote_filled: Decimal = Decimal(0)  # executed quote amount (before fees)
    average_price: Decimal | None = None
    fee: Decimal = Decimal(0)
    fee_currency: str | None = None
    fills: list[VenueFill] = Field(default_factory=list)
    raw: dict[str, Any] = Field(default_factory=dict)
    # Base amount of the request NOT sent because it was finer than the venue's lot step (the adapter
    # rounds amounts down, never up); the saga must not charge the customer for it.
    unplaced_amount: Decimal = Decimal(0)


class VenueBalance(BaseModel):
    currency: str
    free: Decimal
    used: Decimal
    total: Decimal


class DepositAddress(BaseModel):
    currency: str
    address: str
    tag: str | None = None
    network: str | None = None


class VenueDeposit(BaseModel):
    provider: str
    tx_id: str
    currency: str
    amount: Decimal
    address: str | None = None
    confirmations: int = 0
    status: str  # "pending" | "ok" | "failed"
    timestamp: datetime | None = None
    venue_ref: str | None = None  # the venue's own id for this deposit record (Kraken refid, Binance id)
    output_index: int | None = None  # the output of the transaction, when the venue reports it


class VenueWithdrawal(BaseModel):
    provider: str
    withdrawal_id: str
    currency: str
    amount: Decimal
    address: str
    status: str  # "pending" | "ok" | "failed"
    tx_hash: str | None = None
    fee: Decimal | None = None  # the network fee the venue took from our omnibus on top of `amount`


class ProviderQuote(BaseModel):
    """One venue's price for a size, as the router saw it (part of the best-execution record)."""

    provider: str
    symbol: str
    side: Side
    amount: Decimal  # base amount the quote covers (may be less than asked if depth ran out)
    quote_amount: Decimal  # quote currency paid (buy) or received (sell), before fees
    average_price: Decimal  # volume-weighted over the levels used
    worst_price: Decimal  # the deepest level touched: the protective limit for an IOC
    fee_rate: Decimal
    fee: Decimal  # in the quote currency
    all_in_price: Decimal  # average price including the venue fee (higher for buys, lower for sells)
    levels_used: int
    fully_filled: bool
    latency_ms: float
    error: str | None = None


# --- Best execution: what the router saw and decided, stored on the order (orders.execution_record) ---


class VenueKind(StrEnum):
    EXCHANGE = "exchange"
    OTC = "otc"


class QuoteOutcome(StrEnum):
    OK = "ok"  # book fetched and the size priced
    NO_LIQUIDITY = "no_liquidity"  # book fetched, but that side cannot price even the smallest unit
    ERROR = "error"  # the venue failed (error text in `reason`)
    TIMEOUT = "timeout"  # no answer within the per-venue deadline
    SKIPPED = "skipped"  # not asked: circuit breaker open, or excluded after failing this order


class QuoteSeen(BaseModel):
    """One venue as the router saw it for one decision, whether or not it answered."""

    provider: str
    kind: VenueKind = VenueKind.EXCHANGE
    outcome: QuoteOutcome
    reason: str | None = None  # error, timeout or skip reason
    latency_ms: float | None = None  # None when the venue was not asked
    breaker: str = "closed"  # breaker state when the router looked
    recent_failures: int = 0  # failures inside the reliability window (the reliability term's input)
    best_price: Decimal | None = None  # the touch: best ask (buy) or best bid (sell), before fees
    quote: ProviderQuote | None = None  # the full requested size priced on this venue's book
    slippage: Decimal | None = None  # of `quote`, against the record's `slippage_reference`
    score: Decimal | None = None  # all-in price adjusted by the reliability term (what ranks venues)
    book_source: str | None = None  # "stream" (live book) or "rest" (re-read); None: read directly
    book_age_ms: float | None = None  # how old the priced book was when priced
    depth_used: int | None = None  # book levels the size walked on this venue
    verdict: str | None = None  # why this venue won, lost, or was not priced


class ExecutionLeg(BaseModel):
    """One order to place: a venue, a size, and the protective limit for an IOC."""

    provider: str
    kind: VenueKind = VenueKind.EXCHANGE
    amount: Decimal  # base amount
    quote_amount: Decimal  # expected quote paid (buy) / received (sell), before fees
    average_price: Decimal
    fee_rate: Decimal
    fee: Decimal  # expected venue fee, quote currency
    all_in_price: Decimal
    limit_price: Decimal  # the deepest book level this leg touches: the IOC's protective limit
    levels_used: int


class RouteKind(StrEnum):
    SINGLE = "single"  # one exchange fills it all
    SPLIT = "split"  # several exchanges, greedy over their merged books
    OTC = "otc"  # above the OTC threshold: the OTC desk


class RefusalReason(StrEnum):
    NO_HEALTHY_PROVIDER = "NoHealthyProvider"
    NO_LIQUIDITY = "NoLiquidity"
    SLIPPAGE_EXCEEDED = "SlippageExceeded"


class BestExecutionRecord(BaseModel):
    """The router's decision for one order: every quote seen, the legs chosen, and why.

    Stored as `orders.execution_record` (`model_dump(mode="json")`: decimals as strings) and returned
    by `GET /orders/{id}/execution`. A refused order keeps its record too, with `refusal` set and no legs.
    """

    symbol: str
    side: Side
    requested_amount: Decimal | None = None  # base amount asked for, or
    requested_quote_amount: Decimal | None = None  # quote notional (before fees) asked for
    max_slippage: Decimal  # a fraction: 0.01 is 1 %
    slippage_reference: Decimal | None = None  # best fee-inclusive touch over the venues that answered
    notional_estimate: Decimal | None = None  # quote currency; what the OTC threshold is compared with
    quotes: list[QuoteSeen] = Field(default_factory=list)
    route: RouteKind | None = None
    legs: list[ExecutionLeg] = Field(default_factory=list)
    amount: Decimal = Decimal(0)  # totals over the legs
    quote_amount: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    all_in_price: Decimal | None = None
    expected_slippage: Decimal | None = None
    refusal: RefusalReason | None = None
    reason: str = ""  # the choice (or refusal) in words
    excluded: list[str] = Field(default_factory=list)  # venues left out after failing this order
    fallback_from: str | None = None  # the venue whose failure produced this re-route
    fanout_ms: float = 0.0  # wall time of the whole quote fan-out
    decided_at: datetime | None = None
