"""Public market data as the API shows it: best prices, order books, candles and an indicative quote.

The numbers come from `services.market_data` (live or briefly cached books, shared with the router); this
module checks the request (a refusal names the query or path field), calls it, and shapes the answer:
money at its asset's scale (`models.money`: amounts in the base, prices in the quote currency).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal

from models.api import (
    BookLevelOut,
    CandleOut,
    CandlesOut,
    OrderBookOut,
    PriceOut,
    PricesOut,
    QuoteOut,
)
from models.assets import PrecisionError, check_scale
from models.market import SYMBOLS, PriceLevel, Side, split_symbol
from models.money import money, money_or_none
from services.errors import DomainError
from services.market_data import (
    DEFAULT_MAX_SLIPPAGE,
    BestPrice,
    MarketData,
    MarketUnavailable,
    MergedLevel,
    UnknownVenue,
)
from services.orders.errors import OrderRejected
from services.router.errors import InvalidRouteRequest

MAX_SLIPPAGE = Decimal("0.5")


class UnknownSymbol(DomainError):
    """We do not trade this symbol. Use one of `models.market.SYMBOLS`: 404 for a path, 422 for a query."""

    default_code = "unknown_symbol"
    status = 422

    def __init__(self, symbol: str, *, field: str) -> None:
        super().__init__(f"unknown symbol {symbol}; we trade {', '.join(SYMBOLS)}", field=field)
        if field.startswith("path"):
            self.status = 404


class UnknownVenueAsked(DomainError):
    """No such venue (or none serving candles). Name one of the venues the message lists."""

    default_code = "unknown_venue"
    status = 422

    def __init__(self, detail: str) -> None:
        super().__init__(detail, field="query.venue")


class MarketDataUnavailable(DomainError):
    """No venue answered. Try again shortly."""

    default_code = "market_unavailable"
    status = 503

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class InvalidQuoteSize(DomainError):
    """The quote's size is malformed (neither or both sizes, a budget on a sell, finer than the scale)."""

    default_code = "invalid_size"
    status = 422


class InvalidQuoteSlippage(DomainError):
    """`max_slippage` is outside 0 to 0.5."""

    default_code = "invalid_slippage"
    status = 422


@contextmanager
def _venue_errors(*, unknown: str, unavailable: str) -> Iterator[None]:
    """`MarketData`'s venue errors as the API's refusals, with these details."""
    try:
        yield
    except UnknownVenue as e:
        raise UnknownVenueAsked(unknown) from e
    except MarketUnavailable as e:
        raise MarketDataUnavailable(unavailable) from e


def check_symbol(symbol: str, *, field: str) -> str:
    if symbol not in SYMBOLS:
        raise UnknownSymbol(symbol, field=field)
    return symbol


def price_out(p: BestPrice) -> PriceOut:
    _, quote = split_symbol(p.symbol)
    return PriceOut(
        symbol=p.symbol,
        bid=money_or_none(p.bid, quote),
        bid_venue=p.bid_venue,
        ask=money_or_none(p.ask, quote),
        ask_venue=p.ask_venue,
        venues=list(p.venues),
        unavailable=dict(p.errors),
    )


async def prices(*, market: MarketData) -> PricesOut:
    """Best bid and ask per symbol across all venues."""
    return PricesOut(prices=[price_out(p) for p in await market.prices()], as_of=datetime.now(UTC))


def _level(symbol: str, price: Decimal, amount: Decimal, venues: dict[str, Decimal]) -> BookLevelOut:
    base, quote = split_symbol(symbol)
    return BookLevelOut(
        price=money(price, quote),
        amount=money(amount, base),
        venues={name: money(v, base) for name, v in venues.items()},
    )


def _venue_levels(symbol: str, levels: list[PriceLevel], venue: str) -> list[BookLevelOut]:
    return [_level(symbol, lv.price, lv.amount, {venue: lv.amount}) for lv in levels]


def _merged_levels(symbol: str, levels: list[MergedLevel]) -> list[BookLevelOut]:
    return [_level(symbol, lv.price, lv.amount, dict(lv.venues)) for lv in levels]


async def order_book(*, market: MarketData, symbol: str, depth: int, venue: str | None) -> OrderBookOut:
    """All venues' levels merged by price, or one venue's book."""
    check_symbol(symbol, field="path.symbol")
    now = datetime.now(UTC)
    unknown = f"no venue {venue}; venues: {', '.join(market.venues())}"
    with _venue_errors(unknown=unknown, unavailable="no venue answered; try again shortly"):
        if venue is not None:
            book = await market.book(symbol, venue, depth)
            return OrderBookOut(
                symbol=symbol,
                venue=venue,
                bids=_venue_levels(symbol, book.bids[:depth], venue),
                asks=_venue_levels(symbol, book.asks[:depth], venue),
                venues=[venue],
                unavailable={},
                as_of=now,
            )
        merged = await market.merged_book(symbol, depth)
    return OrderBookOut(
        symbol=symbol,
        venue="merged",
        bids=_merged_levels(symbol, merged.bids),
        asks=_merged_levels(symbol, merged.asks),
        venues=list(merged.venues),
        unavailable=dict(merged.errors),
        as_of=now,
    )


async def candles(
    *, market: MarketData, symbol: str, interval: str, limit: int, venue: str | None
) -> CandlesOut:
    """OHLCV candles from one venue, oldest first."""
    check_symbol(symbol, field="path.symbol")
    base, quote = split_symbol(symbol)
    unknown = f"no venue {venue} serving candles"
    with _venue_errors(unknown=unknown, unavailable="no venue served candles; try again shortly"):
        used, rows = await market.candles(symbol, interval, limit, venue)
    return CandlesOut(
        symbol=symbol,
        interval=interval,
        venue=used,
        candles=[
            CandleOut(
                open_time=datetime.fromtimestamp(t / 1000, tz=UTC),
                open=money(o, quote),
                high=money(h, quote),
                low=money(lo, quote),
                close=money(c, quote),
                volume=money(v, base),
            )
            for t, o, h, lo, c, v in rows
        ],
    )


async def quote(
    *,
    market: MarketData,
    symbol: str,
    side: Side,
    amount: Decimal | None,
    quote_amount: Decimal | None,
    max_slippage: Decimal | None,
) -> QuoteOut:
    """An indicative all-in price for a market order of this size (`MarketData.quote`).

    Router refusals (`NoHealthyProvider`, `NoLiquidity`, `SlippageExceeded`) pass through as they are."""
    check_symbol(symbol, field="query.symbol")
    base, quote_ccy = split_symbol(symbol)
    if (amount is None) == (quote_amount is None):
        raise InvalidQuoteSize("give exactly one of amount or quote_amount", field="query.amount")
    if quote_amount is not None and side is Side.SELL:
        raise InvalidQuoteSize("quote_amount is only for buys; give amount", field="query.quote_amount")
    field, currency, size = (
        ("query.amount", base, amount)
        if amount is not None
        else ("query.quote_amount", quote_ccy, quote_amount)
    )
    assert size is not None
    slippage = max_slippage if max_slippage is not None else DEFAULT_MAX_SLIPPAGE
    if slippage > MAX_SLIPPAGE:
        raise InvalidQuoteSlippage(
            f"max_slippage must be between 0 and {MAX_SLIPPAGE}", field="query.max_slippage"
        )
    try:
        check_scale(currency, size)  # input is never rounded
        q = await market.quote(symbol, side, amount=amount, quote_amount=quote_amount, max_slippage=slippage)
    except (PrecisionError, InvalidRouteRequest, OrderRejected) as e:
        raise InvalidQuoteSize(str(e), field=field) from e
    return QuoteOut(
        symbol=symbol,
        side=side,
        amount=money(q.amount, base),
        quote_amount=money(q.quote_amount, quote_ccy),
        price=money(q.price, quote_ccy),
        fee=money(q.fee, quote_ccy),
        fee_currency=quote_ccy,
        total=money(q.total, quote_ccy),
        all_in_price=money(q.all_in_price, quote_ccy),
        venues=list(q.venues),
        route=q.route,
    )
