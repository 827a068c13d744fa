"""Market data for the customer API: best prices across venues, order books, candles, indicative quotes.

A live source (`services.live_books.LiveBookSource`, `shared_live`) is used as is: it already is the
process's one book per venue and symbol. Any other venue read goes through a short time-based cache
(`ttl_s`, 1 s by default) with in-flight sharing: however many customers ask in the same second, each
venue sees at most one book request per symbol per `ttl_s` (and one candle request per symbol/interval).
A failure is cached for the same time, so a venue that is down is not hammered either. The API's own
`Router` reads books through the same sources, so indicative quotes and the order endpoint's notional
estimate cost no extra venue calls.

Cached books are at most `ttl_s` old: good for display and estimates, never for execution (the order
saga's router reads its own process's live books, or fresh books through the workers' own adapters).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

from models.assets import Direction, quantum, round_for_house
from models.market import SYMBOLS, BestExecutionRecord, FeeSchedule, OrderBook, Side, split_symbol
from services.orders import protective_price, size_quote_budget
from services.router import BookSource, Router, RouterParams

T = TypeVar("T")
Candle = tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]  # open ms, open, high, low, close, volume
# What the order saga uses when the customer gives no max_slippage (activities.orders.DEFAULT_MAX_SLIPPAGE).
DEFAULT_MAX_SLIPPAGE = Decimal("0.01")
BOOK_DEPTH = 50


class TtlCache(Generic[T]):
    """An async loader's value (or its exception), kept `ttl_s` seconds; concurrent misses share one load."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[Any, tuple[float, asyncio.Task[T]]] = {}

    async def get(self, key: Any, load: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None or (entry[1].done() and now - entry[0] >= self.ttl_s):
            # A task, not the caller's own await: a caller that goes away must not cancel the shared load.
            task = asyncio.ensure_future(load())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # mark the error as seen
            entry = (now, task)
            self._entries[key] = entry
        return await asyncio.shield(entry[1])

    def clear(self) -> None:
        self._entries.clear()


class CachedBooks:
    """A `BookSource` reading another one's books through a `TtlCache` (always `BOOK_DEPTH` levels)."""

    def __init__(self, source: BookSource, cache: TtlCache[OrderBook]) -> None:
        self.source = source
        self.name = source.name
        self._cache = cache

    def fees(self, symbol: str) -> FeeSchedule:
        return self.source.fees(symbol)

    async def order_book(self, symbol: str, depth: int = BOOK_DEPTH) -> OrderBook:
        book = await self._cache.get(
            (self.name, symbol), lambda: self.source.order_book(symbol, max(depth, BOOK_DEPTH))
        )
        if depth >= len(book.bids) and depth >= len(book.asks):
            return book
        return book.model_copy(update={"bids": book.bids[:depth], "asks": book.asks[:depth]})


@dataclass(frozen=True)
class BestPrice:
    """The best bid and ask for one symbol over the venues that answered."""

    symbol: str
    bid: Decimal | None
    bid_venue: str | None
    ask: Decimal | None
    ask_venue: str | None
    venues: tuple[str, ...]  # the venues that answered
    errors: Mapping[str, str]  # the ones that did not, with why


@dataclass(frozen=True)
class MergedLevel:
    price: Decimal
    amount: Decimal
    venues: Mapping[str, Decimal]


@dataclass(frozen=True)
class MergedBook:
    symbol: str
    bids: list[MergedLevel]
    asks: list[MergedLevel]
    venues: tuple[str, ...]
    errors: Mapping[str, str]


@dataclass(frozen=True)
class IndicativeQuote:
    """What a market order of this size would cost or pay now, all in (customer fee included)."""

    symbol: str
    side: Side
    amount: Decimal  # base
    quote_amount: Decimal  # quote currency at the venue price, before our fee (a budget: what it buys)
    price: Decimal  # average venue price
    fee: Decimal  # our customer fee, quote currency
    total: Decimal  # buy: quote paid including the fee; sell: quote received after the fee
    all_in_price: Decimal  # total / amount
    venues: tuple[str, ...]
    route: str
    record: BestExecutionRecord


class UnknownVenue(LookupError):
    """No such venue (or it serves no candles). Name one of `MarketData.venues()`."""


class MarketUnavailable(RuntimeError):
    """No venue answered. Try again shortly."""


def _merge(books: list[OrderBook], side: str, depth: int) -> list[MergedLevel]:
    by_price: dict[Decimal, dict[str, Decimal]] = {}
    for book in books:
        for level in getattr(book, side):
            venues = by_price.setdefault(level.price, {})
            venues[book.provider] = venues.get(book.provider, Decimal(0)) + level.amount
    prices = sorted(by_price, reverse=(side == "bids"))[:depth]
    return [MergedLevel(p, sum(by_price[p].values(), Decimal(0)), by_price[p]) for p in prices]


class MarketData:
    """Cached market reads over the exchanges (and the OTC desk for large quotes), one per API process.

    Args:
        exchanges: exchange adapters by name; each is read through the cache.
        otc: the OTC desk, used by the indicative quote above the OTC threshold (as the order saga does).
        ttl_s: how long a venue answer is reused.
        deadline_s: how long one venue may take before it is left out of an answer.
        router_params: the router's thresholds (from settings).
        customer_fee: our taker fee rate, for all-in quotes.
    """

    def __init__(
        self,
        exchanges: Mapping[str, BookSource],
        *,
        otc: BookSource | None = None,
        ttl_s: float = 1.0,
        deadline_s: float = 1.5,
        router_params: RouterParams | None = None,
        customer_fee: Decimal = Decimal("0.0015"),
    ) -> None:
        self.books_cache: TtlCache[OrderBook] = TtlCache(ttl_s)
        self.candles_cache: TtlCache[list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]] = (
            TtlCache(ttl_s)
        )
        # A live source (services.live_books) already is the process's one copy of the book: no second cache.
        self.exchanges: dict[str, BookSource] = {
            name: src if getattr(src, "shared_live", False) else CachedBooks(src, self.books_cache)
            for name, src in exchanges.items()
        }
        self.deadline_s = deadline_s
        self.customer_fee = customer_fee
        params = router_params or RouterParams()
        self.router = Router(
            self.exchanges,
            otc=CachedBooks(otc, self.books_cache) if otc is not None else None,
            params=RouterParams(**{**params.__dict__, "deadline_s": deadline_s}),
        )

    def venues(self) -> list[str]:
        return list(self.exchanges)

    async def _book(self, name: str, symbol: str, depth: int) -> OrderBook:
        return await asyncio.wait_for(self.exchanges[name].order_book(symbol, depth), self.deadline_s)

    async def books(self, symbol: str, depth: int = BOOK_DEPTH) -> tuple[list[OrderBook], dict[str, str]]:
        """Every exchange's book for `symbol` (those that answered), and why the others did not."""
        names = list(self.exchanges)
        results = await asyncio.gather(*(self._book(n, symbol, depth) for n in names), return_exceptions=True)
        books: list[OrderBook] = []
        errors: dict[str, str] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, OrderBook):
                books.append(result)
            elif isinstance(result, TimeoutError):
                errors[name] = "timeout"
            else:
                errors[name] = type(result).__name__
        return books, errors

    async def book(self, symbol: str, venue: str, depth: int = BOOK_DEPTH) -> OrderBook:
        """One venue's book; `UnknownVenue` if there is no such venue."""
        if venue not in self.exchanges:
            raise UnknownVenue(venue)
        try:
            return await self._book(venue, symbol, depth)
        except Exception as exc:
            raise MarketUnavailable(f"{venue}: {type(exc).__name__}") from exc

    async def merged_book(self, symbol: str, depth: int = 20) -> MergedBook:
        """All exchanges' levels merged by price (amounts summed, per-venue split kept)."""
        books, errors = await self.books(symbol, BOOK_DEPTH)
        if not books:
            raise MarketUnavailable("no venue answered")
        return MergedBook(
            symbol=symbol,
            bids=_merge(books, "bids", depth),
            asks=_merge(books, "asks", depth),
            venues=tuple(b.provider for b in books),
            errors=errors,
        )

    async def best_price(self, symbol: str) -> BestPrice:
        books, errors = await self.books(symbol, BOOK_DEPTH)
        bid = max(((b.bids[0].price, b.provider) for b in books if b.bids), default=None)
        ask = min(((b.asks[0].price, b.provider) for b in books if b.asks), default=None)
        return BestPrice(
            symbol=symbol,
            bid=bid[0] if bid else None,
            bid_venue=bid[1] if bid else None,
            ask=ask[0] if ask else None,
            ask_venue=ask[1] if ask else None,
            venues=tuple(b.provider for b in books),
            errors=errors,
        )

    async def prices(self, symbols: tuple[str, ...] = SYMBOLS) -> list[BestPrice]:
        return list(await asyncio.gather(*(self.best_price(s) for s in symbols)))

    async def candles(
        self, symbol: str, interval: str, limit: int, venue: str | None = None
    ) -> tuple[str, list[Candle]]:
        """(venue, candles oldest first) from `venue`, or the first exchange that serves candles."""
        names = [venue] if venue else list(self.exchanges)
        for name in names:
            cached = self.exchanges.get(name)
            source: Any = getattr(cached, "source", None)  # the venue adapter behind a cache or live book
            if source is None or not hasattr(source, "ohlcv"):
                continue
            fetch_limit = 500 if limit <= 500 else 1000

            async def load(src: Any = source, n: int = fetch_limit) -> list[Candle]:
                rows: list[Candle] = await asyncio.wait_for(
                    src.ohlcv(symbol, interval, n), self.deadline_s * 2
                )
                return rows

            try:
                rows = await self.candles_cache.get((name, symbol, interval, fetch_limit), load)
            except Exception as exc:
                if venue:
                    raise MarketUnavailable(f"{name}: {type(exc).__name__}") from exc
                continue
            return name, rows[-limit:]
        if venue:
            raise UnknownVenue(venue)
        raise MarketUnavailable("no venue served candles")

    async def reference_price(self, symbol: str, side: Side) -> Decimal | None:
        """The best price a market order of `side` would meet now (best ask for buys, bid for sells)."""
        best = await self.best_price(symbol)
        return best.ask if side is Side.BUY else best.bid

    async def quote(
        self,
        symbol: str,
        side: Side,
        *,
        amount: Decimal | None = None,
        quote_amount: Decimal | None = None,
        max_slippage: Decimal = DEFAULT_MAX_SLIPPAGE,
    ) -> IndicativeQuote:
        """An all-in indicative quote from the router. Raises the router's `RoutingRefused` family, and
        `OrderRejected` (invalid_size) for a budget that buys not one lot.

        `quote_amount` means what it means on an order: spend at most this much, our fee included. The
        quote is sized exactly as the order saga sizes it (`services.orders.size_quote_budget`: the
        largest amount that, at the protective price and with the fee, stays within the budget), so the
        amount quoted is what an order placed now would buy, and the total is at most the budget."""
        record = await self.router.quote(
            symbol, side, amount=amount, quote_amount=quote_amount, max_slippage=max_slippage
        )
        if quote_amount is not None:
            reference = record.slippage_reference or record.all_in_price
            assert reference is not None  # the router prices every record it returns
            record = size_quote_budget(
                record,
                quote_amount=quote_amount,
                price_cap=protective_price(side, reference, max_slippage),
                fee_rate=self.customer_fee,
                lot_step=lambda provider: self._lot_step(provider, symbol),
            )
        _, quote_ccy = split_symbol(symbol)
        # As settlement will book it (services.orders): our fee rounded up, the venue amount our way.
        fee = round_for_house(quote_ccy, record.quote_amount * self.customer_fee, Direction.CUSTOMER_PAYS)
        if side is Side.BUY:
            total = round_for_house(quote_ccy, record.quote_amount, Direction.CUSTOMER_PAYS) + fee
        else:
            total = round_for_house(quote_ccy, record.quote_amount, Direction.CUSTOMER_RECEIVES) - fee
        # The venues' volume-weighted price (record.quote_amount is the notional asked for, which the
        # lot step may not buy exactly).
        price = (
            sum((leg.average_price * leg.amount for leg in record.legs), Decimal(0)) / record.amount
        ).quantize(Decimal("0.00000001"))
        all_in = (total / record.amount).quantize(Decimal("0.00000001"))
        return IndicativeQuote(
            symbol=symbol,
            side=side,
            amount=record.amount,
            quote_amount=record.quote_amount,
            price=price,
            fee=fee,
            total=total,
            all_in_price=all_in,
            venues=tuple(leg.provider for leg in record.legs),
            route=record.route.value if record.route else "",
            record=record,
        )

    def _lot_step(self, provider: str, symbol: str) -> Decimal:
        """The venue's lot step for `symbol` (as the order saga reads it), or the base scale."""
        base, _ = split_symbol(symbol)
        cached = self.exchanges.get(provider) or (self.router.otc if provider == "otc" else None)
        source = getattr(cached, "source", cached)
        rules = getattr(source, "rules", None)
        try:
            return Decimal(rules(symbol).amount_step) if rules is not None else quantum(base)
        except Exception:  # markets not loaded, or no rules for it: the base scale
            return quantum(base)


class PriceTicker:
    """One task per process polling best prices every `interval_s` and fanning them out to subscribers.

    It runs only while someone listens: the first `subscribe` starts it, the last `unsubscribe` stops it.
    A subscriber that does not keep up loses ticks (its queue is bounded), never slows the others.
    """

    def __init__(
        self, market: MarketData, interval_s: float = 1.0, symbols: tuple[str, ...] = SYMBOLS
    ) -> None:
        self.market = market
        self.interval_s = interval_s
        self.symbols = symbols
        self._subscribers: set[asyncio.Queue[BestPrice]] = set()
        self._task: asyncio.Task[None] | None = None

    def subscribe(self) -> asyncio.Queue[BestPrice]:
        queue: asyncio.Queue[BestPrice] = asyncio.Queue(maxsize=4 * len(self.symbols))
        self._subscribers.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="price-ticker")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[BestPrice]) -> None:
        self._subscribers.discard(queue)
        if not self._subscribers and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while self._subscribers:
            for price in await self.market.prices(self.symbols):
                for queue in list(self._subscribers):
                    if queue.full():
                        queue.get_nowait()  # drop the oldest tick for a slow reader
                    queue.put_nowait(price)
            await asyncio.sleep(self.interval_s)

    async def close(self) -> None:
        self._subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
