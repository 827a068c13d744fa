"""Public market data (seed §B): best prices, order books, candles and an indicative all-in quote.

No login needed; the rate-limit middleware applies the per-IP limit (100/min) like any anonymous call.
Books come from the process's live books (`services.live_books`, the venues' streams), shared with the
router and the WebSocket ticks, so these endpoints cost the venues nothing while the books are fresh; with
`MARKET_DATA_STREAMS` off, venue answers are cached for about a second (`services.market_data`).

The order book is **merged** by default: every exchange's levels combined by price, amounts summed and
the split per venue kept on each level (what a customer can reach through our router). `?venue=binance`
returns that one venue's book instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from api.auth_deps import problem_responses
from api.deps import VenueAdapters
from api.errors import ProblemError
from config import Settings
from models.api import (
    SYMBOL_PATTERN,
    BookLevelOut,
    CandleOut,
    CandlesOut,
    DecimalStr,
    OrderBookOut,
    PriceOut,
    PricesOut,
    QuoteOut,
)
from models.market import SYMBOLS, PriceLevel, Side, split_symbol
from services.live_books import BookKeeper, LiveBookSource
from services.market_data import (
    DEFAULT_MAX_SLIPPAGE,
    BestPrice,
    MarketData,
    MarketUnavailable,
    PriceTicker,
    UnknownVenue,
)
from services.orders import OrderRejected
from services.router import InvalidRouteRequest, NoHealthyProvider, NoLiquidity, RouterParams, RoutingRefused

router = APIRouter(prefix="/market", tags=["market"])


class MarketState:
    """The API process's cached market data and price ticker over its venue adapters, built on first use.

    `venues` is the process's one adapter set (shared with payments); without it the state builds and
    closes a set of its own.
    """

    def __init__(self, settings: Settings, venues: VenueAdapters | None = None) -> None:
        self.settings = settings
        self._venues = venues or VenueAdapters(settings)
        self._owns_venues = venues is None
        self._market: MarketData | None = None
        self._ticker: PriceTicker | None = None
        self._keeper: BookKeeper | None = None

    def market(self) -> MarketData:
        if self._market is None:
            adapters = self._venues.get()
            exchanges: dict[str, Any] = {name: a for name, a in adapters.items() if name != "otc"}
            if self.settings.market_data_streams and self._venues.owned:  # injected ones: read directly
                exchanges = self._live_sources(exchanges)
            self._market = MarketData(
                exchanges,
                otc=adapters.get("otc"),
                router_params=RouterParams.from_settings(self.settings),
                customer_fee=self.settings.customer_taker_fee,
            )
        return self._market

    def _live_sources(self, adapters: dict[str, Any]) -> dict[str, Any]:
        """The API process's live books: one `BookKeeper`, shared by quotes, book endpoints and ticks."""
        from providers.exchanges.book_streams import build_book_keeper

        self._keeper = build_book_keeper(self.settings, SYMBOLS)
        self._keeper.start()
        return {name: LiveBookSource(name, self._keeper, adapter) for name, adapter in adapters.items()}

    def start(self) -> None:
        """Called once from the API lifespan: builds the market data (and starts the live books)."""
        self.market()

    def ticker(self) -> PriceTicker:
        if self._ticker is None:
            self._ticker = PriceTicker(self.market())
        return self._ticker

    async def close(self) -> None:
        if self._ticker is not None:
            await self._ticker.close()
        if self._keeper is not None:
            await self._keeper.stop()
        if self._owns_venues:
            await self._venues.close()


def market_data(request: Request) -> MarketData:
    state: MarketState = request.app.state.market
    return state.market()


MarketDep = Annotated[MarketData, Depends(market_data)]
SymbolPath = Annotated[str, Path(pattern=SYMBOL_PATTERN, max_length=21, examples=["BTC-GBP"])]
Symbol = Annotated[
    str, Query(pattern=SYMBOL_PATTERN, max_length=21, description="e.g. BTC-GBP", examples=["BTC-GBP"])
]


def check_symbol(symbol: str, field: str) -> str:
    if symbol not in SYMBOLS:
        raise ProblemError(
            404 if field.startswith("path") else 422,
            "unknown_symbol",
            f"unknown symbol {symbol}; we trade {', '.join(SYMBOLS)}",
            errors=[{"field": field, "message": "unknown symbol", "type": "unknown_symbol"}],
        )
    return symbol


def _s(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def price_out(p: BestPrice) -> PriceOut:
    return PriceOut(
        symbol=p.symbol,
        bid=_s(p.bid),
        bid_venue=p.bid_venue,
        ask=_s(p.ask),
        ask_venue=p.ask_venue,
        venues=list(p.venues),
        unavailable=dict(p.errors),
    )


@router.get("/prices", response_model=PricesOut)
async def prices(market: MarketDep) -> PricesOut:
    """Best bid and ask per symbol across all venues."""
    return PricesOut(prices=[price_out(p) for p in await market.prices()], as_of=datetime.now(UTC))


def _levels(levels: list[PriceLevel], venue: str) -> list[BookLevelOut]:
    return [
        BookLevelOut(
            price=_s(lv.price) or "0", amount=_s(lv.amount) or "0", venues={venue: _s(lv.amount) or "0"}
        )
        for lv in levels
    ]


@router.get("/orderbook/{symbol}", response_model=OrderBookOut, responses=problem_responses(404, 422, 503))
async def orderbook(
    symbol: SymbolPath,
    market: MarketDep,
    depth: Annotated[int, Query(ge=1, le=50)] = 20,
    venue: Annotated[
        str | None, Query(max_length=32, description="One venue's book instead of merged.")
    ] = None,
) -> OrderBookOut:
    """The order book for a symbol: all venues merged by price, or one venue's (`?venue=`)."""
    check_symbol(symbol, "path.symbol")
    now = datetime.now(UTC)
    try:
        if venue is not None:
            book = await market.book(symbol, venue, depth)
            return OrderBookOut(
                symbol=symbol,
                venue=venue,
                bids=_levels(book.bids[:depth], venue),
                asks=_levels(book.asks[:depth], venue),
                venues=[venue],
                unavailable={},
                as_of=now,
            )
        merged = await market.merged_book(symbol, depth)
    except UnknownVenue as e:
        raise ProblemError(
            422,
            "unknown_venue",
            f"no venue {venue}; venues: {', '.join(market.venues())}",
            errors=[{"field": "query.venue", "message": "unknown venue", "type": "unknown_venue"}],
        ) from e
    except MarketUnavailable as e:
        raise ProblemError(503, "market_unavailable", "no venue answered; try again shortly") from e
    return OrderBookOut(
        symbol=symbol,
        venue="merged",
        bids=[
            BookLevelOut(
                price=_s(lv.price) or "0",
                amount=_s(lv.amount) or "0",
                venues={k: _s(v) or "0" for k, v in lv.venues.items()},
            )
            for lv in merged.bids
        ],
        asks=[
            BookLevelOut(
                price=_s(lv.price) or "0",
                amount=_s(lv.amount) or "0",
                venues={k: _s(v) or "0" for k, v in lv.venues.items()},
            )
            for lv in merged.asks
        ],
        venues=list(merged.venues),
        unavailable=dict(merged.errors),
        as_of=now,
    )


@router.get("/candles/{symbol}", response_model=CandlesOut, responses=problem_responses(404, 422, 503))
async def candles(
    symbol: SymbolPath,
    market: MarketDep,
    interval: Annotated[Literal["1m"], Query(description="Candle width (1-minute candles).")] = "1m",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    venue: Annotated[str | None, Query(max_length=32, description="Default: the first venue.")] = None,
) -> CandlesOut:
    """OHLCV candles for a symbol from one venue, oldest first."""
    check_symbol(symbol, "path.symbol")
    try:
        used, rows = await market.candles(symbol, interval, limit, venue)
    except UnknownVenue as e:
        raise ProblemError(
            422,
            "unknown_venue",
            f"no venue {venue} serving candles",
            errors=[{"field": "query.venue", "message": "unknown venue", "type": "unknown_venue"}],
        ) from e
    except MarketUnavailable as e:
        raise ProblemError(503, "market_unavailable", "no venue served candles; try again shortly") from e
    return CandlesOut(
        symbol=symbol,
        interval=interval,
        venue=used,
        candles=[
            CandleOut(
                open_time=datetime.fromtimestamp(t / 1000, tz=UTC),
                open=_s(o) or "0",
                high=_s(h) or "0",
                low=_s(lo) or "0",
                close=_s(c) or "0",
                volume=_s(v) or "0",
            )
            for t, o, h, lo, c, v in rows
        ],
    )


@router.get("/quote", response_model=QuoteOut, responses=problem_responses(422, 503))
async def quote(
    market: MarketDep,
    symbol: Symbol,
    side: Side,
    amount: Annotated[DecimalStr | None, Query(description="Base amount.")] = None,
    quote_amount: Annotated[
        DecimalStr | None,
        Query(description="Buys: spend at most this much, our fee included (as on an order)."),
    ] = None,
    max_slippage: Annotated[DecimalStr | None, Query(description="Fraction; default 0.01.")] = None,
) -> QuoteOut:
    """An indicative all-in price for a market order of this size: venue, price, our fee, total.

    With `quote_amount` the answer is what an order with that `quote_amount` would buy now: `amount` is
    sized as the order saga sizes it, and `total` (fee included) is at most `quote_amount`."""
    check_symbol(symbol, "query.symbol")
    _, quote_ccy = split_symbol(symbol)
    if (amount is None) == (quote_amount is None):
        raise ProblemError(
            422,
            "invalid_size",
            "give exactly one of amount or quote_amount",
            errors=[
                {"field": "query.amount", "message": "give amount or quote_amount", "type": "invalid_size"}
            ],
        )
    if quote_amount is not None and side is Side.SELL:
        raise ProblemError(
            422,
            "invalid_size",
            "quote_amount is only for buys; give amount",
            errors=[{"field": "query.quote_amount", "message": "buys only", "type": "invalid_size"}],
        )
    slippage = Decimal(max_slippage) if max_slippage is not None else DEFAULT_MAX_SLIPPAGE
    if slippage > Decimal("0.5"):
        raise ProblemError(
            422,
            "invalid_slippage",
            "max_slippage must be between 0 and 0.5",
            errors=[{"field": "query.max_slippage", "message": "at most 0.5", "type": "invalid_slippage"}],
        )
    try:
        q = await market.quote(
            symbol,
            side,
            amount=Decimal(amount) if amount is not None else None,
            quote_amount=Decimal(quote_amount) if quote_amount is not None else None,
            max_slippage=slippage,
        )
    except (InvalidRouteRequest, OrderRejected) as e:
        field = "query.amount" if amount is not None else "query.quote_amount"
        raise ProblemError(
            422, "invalid_size", str(e), errors=[{"field": field, "message": str(e), "type": "invalid_size"}]
        ) from e
    except NoHealthyProvider as e:
        raise ProblemError(503, "market_unavailable", e.record.reason or "no venue answered") from e
    except NoLiquidity as e:
        raise ProblemError(
            422, "no_liquidity", e.record.reason or "not enough liquidity for this size"
        ) from e
    except RoutingRefused as e:
        raise ProblemError(422, "slippage_exceeded", e.record.reason or "beyond the slippage limit") from e
    return QuoteOut(
        symbol=symbol,
        side=side,
        amount=_s(q.amount) or "0",
        quote_amount=_s(q.quote_amount) or "0",
        price=_s(q.price) or "0",
        fee=_s(q.fee) or "0",
        fee_currency=quote_ccy,
        total=_s(q.total) or "0",
        all_in_price=_s(q.all_in_price) or "0",
        venues=list(q.venues),
        route=q.route,
    )
