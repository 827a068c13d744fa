"""Public market data (docs/architecture.md §B): best prices, order books, candles and an indicative all-in
quote.

No login needed; the rate-limit middleware applies the per-IP limit (100/min) like any anonymous call.
Books come from the process's live books (`services.live_books`, the venues' streams), shared with the
router and the WebSocket ticks, so these endpoints cost the venues nothing while the books are fresh; with
`MARKET_DATA_STREAMS` off, venue answers are cached for about a second (`services.market_data`).

The order book is **merged** by default: every exchange's levels combined by price, amounts summed and
the split per venue kept on each level (what a customer can reach through our router). `?venue=binance`
returns that one venue's book instead. Each route is one call into `services.market_view`, which checks the
request, reads `MarketData` and shapes the answer (money at its asset's scale).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from api.auth_deps import problem_responses
from api.deps import VenueAdapters
from config import Settings
from models.api import SYMBOL_PATTERN, CandlesOut, DecimalStr, OrderBookOut, PricesOut, QuoteOut
from models.market import SYMBOLS, Side
from services import market_view
from services.live_books import BookKeeper, LiveBookSource
from services.market_data import MarketData, PriceTicker
from services.router import RouterParams

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

    def health_sources(self) -> tuple[Any, BookKeeper | None, list[str]]:
        """For the console's dashboard: the router's circuit breakers, the live books (None when not
        streamed) and the venues, without building anything that is not built yet."""
        if self._market is None:
            return None, self._keeper, []
        return self._market.router.breakers, self._keeper, self._market.venues()

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


async def market_data(request: Request) -> MarketData:
    state: MarketState = request.app.state.market
    return state.market()


MarketDep = Annotated[MarketData, Depends(market_data)]
SymbolPath = Annotated[str, Path(pattern=SYMBOL_PATTERN, max_length=21, examples=["BTC-GBP"])]
Symbol = Annotated[
    str, Query(pattern=SYMBOL_PATTERN, max_length=21, description="e.g. BTC-GBP", examples=["BTC-GBP"])
]


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


@router.get("/prices", response_model=PricesOut)
async def prices(market: MarketDep) -> PricesOut:
    """Best bid and ask per symbol across all venues."""
    return await market_view.prices(market=market)


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
    return await market_view.order_book(market=market, symbol=symbol, depth=depth, venue=venue)


@router.get("/candles/{symbol}", response_model=CandlesOut, responses=problem_responses(404, 422, 503))
async def candles(
    symbol: SymbolPath,
    market: MarketDep,
    interval: Annotated[Literal["1m"], Query(description="Candle width (1-minute candles).")] = "1m",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    venue: Annotated[str | None, Query(max_length=32, description="Default: the first venue.")] = None,
) -> CandlesOut:
    """OHLCV candles for a symbol from one venue, oldest first."""
    return await market_view.candles(
        market=market, symbol=symbol, interval=interval, limit=limit, venue=venue
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
    return await market_view.quote(
        market=market,
        symbol=symbol,
        side=side,
        amount=_dec(amount),
        quote_amount=_dec(quote_amount),
        max_slippage=_dec(max_slippage),
    )
