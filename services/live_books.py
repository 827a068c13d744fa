"""Live order books: one per venue and symbol per process, kept current from the venues' streams.

Why: pricing an order from a REST read per venue put every order behind ccxt's throttle (Kraken: about
one request a second), so under load Kraken's reads queued past the router's deadline and it was
skipped. Brokers and market makers keep the book locally from the venue's stream instead (Hummingbot's
order book trackers); an order then costs no venue request at all.

`BookKeeper` runs one watcher per (venue, symbol) over a `BookStreamClient` (ccxt.pro underneath,
`providers.exchanges.book_streams`). The rules:

- A book is priced only while it is *fresh*: synchronised with the venue and confirmed within
  `max_age_s` (by a book change, or by the connection's heartbeats where the venue sends them).
- A gap, a checksum mismatch, a disconnect or a stream error voids the book at once; the watcher's
  next watch resubscribes and resynchronises (ccxt takes the snapshot), and the book is fresh again
  only from a verified snapshot on. A void book is never priced, so a resync never shows a wrong price.
- A stream that goes quiet beyond `reconnect_after_s` is dropped and dialled again (a silent stall
  answers pings and sends nothing; only the age shows it).
- A stale book may be re-read by REST (`order_book`), but only within the venue's `RestBudget` for
  this process, shared by every caller (one read in flight per book, its answer reused while fresh);
  beyond the budget the venue is left out with `BookUnavailable("stale since ...")`, never queued.

Services only: no Temporal, no HTTP; streams and clocks are injected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from models.market import FeeSchedule, OrderBook

log = logging.getLogger(__name__)


class StreamedBookLike(Protocol):
    @property
    def book(self) -> OrderBook: ...

    @property
    def verified(self) -> bool: ...


class BookStreamClient(Protocol):
    """One venue's book streams (`providers.exchanges.book_streams.BookStream` qualifies)."""

    name: str

    async def load(self) -> None: ...

    async def next_book(self, symbol: str) -> StreamedBookLike: ...

    def connection_alive_ms(self) -> int | None: ...

    async def reconnect(self) -> None: ...

    async def fetch_book(self, symbol: str, depth: int) -> OrderBook: ...

    async def close(self) -> None: ...


class BookUnavailable(Exception):
    """The venue's book is stale and may not be re-read now (our budget, not the venue's fault).

    The router leaves the venue out with this text as the reason, without counting it as a venue failure.
    """


class StaleBookReadFailed(Exception):
    """The book was stale and its REST re-read failed: the venue itself is failing (counts as a failure)."""


@dataclass
class RestBudget:
    """A token bucket: this process's share of a venue's published request limit for book re-reads."""

    rate_per_s: float
    burst: float = 1.0
    tokens: float = -1.0  # starts full
    updated: float = 0.0

    def try_take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class LiveBook:
    """One venue's book for one symbol, and how much it can be trusted."""

    venue: str
    symbol: str
    book: OrderBook | None = None
    synced: bool = False
    confirmed_at: float | None = None  # epoch s of the last verified book from the stream
    voided_at: float | None = None  # epoch s the book was last voided (gap, checksum, disconnect)
    void_reason: str = "not yet synchronised"
    resyncs: int = 0
    rest_book: OrderBook | None = None
    rest_at: float | None = None
    rest_task: asyncio.Task[OrderBook] | None = field(default=None, repr=False)

    def void(self, now: float, reason: str) -> None:
        """Stop pricing this book; `voided_at` keeps the first moment of an unbroken void."""
        if self.synced or self.voided_at is None:
            self.voided_at = now
        self.synced = False
        self.void_reason = reason


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BookKeeper:
    """Every venue's live books for the symbols we trade. One per process; `start()` once.

    Args:
        streams: venue name -> its stream client.
        symbols: ours ("BTC-GBP").
        budgets: venue name -> this process's REST budget for stale-book re-reads (none: no re-reads).
        max_age_s: the freshness bound; an older book is stale and not priced from the stream.
        reconnect_after_s: a venue whose streams said nothing this long is dialled again.
        rest_depth: levels asked by a REST re-read.
        now: wall clock (epoch seconds).
    """

    def __init__(
        self,
        streams: Mapping[str, BookStreamClient],
        symbols: Sequence[str],
        *,
        budgets: Mapping[str, RestBudget] | None = None,
        max_age_s: float = 2.0,
        reconnect_after_s: float | None = None,
        rest_depth: int = 50,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.streams = dict(streams)
        self.symbols = list(symbols)
        self.budgets = dict(budgets or {})
        self.max_age_s = max_age_s
        self.reconnect_after_s = reconnect_after_s if reconnect_after_s is not None else 2 * max_age_s
        self.rest_depth = rest_depth
        self.now = now
        self.books = {(v, s): LiveBook(v, s) for v in self.streams for s in self.symbols}
        self._tasks: list[asyncio.Task[None]] = []
        self._last_reconnect: dict[str, float] = {}
        self._started_at = now()

    # -- lifecycle --

    def start(self) -> None:
        """Start one task per venue (it loads markets, then watches every symbol). Idempotent."""
        if self._tasks:
            return
        self._started_at = self.now()
        self._tasks = [asyncio.ensure_future(self._run_venue(v)) for v in self.streams]

    @property
    def started(self) -> bool:
        return bool(self._tasks)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: S110 - stopping: outcomes no longer matter
                pass
        self._tasks.clear()
        for stream in self.streams.values():
            try:
                await stream.close()
            except Exception:
                log.warning("closing the %s book stream failed", stream.name, exc_info=True)

    async def _run_venue(self, venue: str) -> None:
        stream = self.streams[venue]
        delay = 0.1
        while True:
            try:
                await stream.load()
                break
            except Exception as exc:
                log.warning("loading %s markets for its book streams failed: %s", venue, type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        watchers = [asyncio.ensure_future(self._watch(venue, s)) for s in self.symbols]
        try:
            await asyncio.gather(*watchers)
        finally:
            for w in watchers:
                w.cancel()

    async def _watch(self, venue: str, symbol: str) -> None:
        stream = self.streams[venue]
        live = self.books[(venue, symbol)]
        pending: asyncio.Future[StreamedBookLike] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(stream.next_book(symbol))
                done, _ = await asyncio.wait({pending}, timeout=max(0.05, self.max_age_s / 2))
                if not done:
                    await self._reconnect_if_quiet(venue, symbol)
                    continue
                task, pending = pending, None
                now = self.now()
                if task.cancelled():
                    live.void(now, "stream connection closed")
                elif (exc := task.exception()) is not None:
                    live.resyncs += 1
                    live.void(now, f"resynchronising after {type(exc).__name__}")
                    log.info("%s %s book voided (%s); resynchronising", venue, symbol, type(exc).__name__)
                    await asyncio.sleep(0.05)
                else:
                    got = task.result()
                    if got.verified:
                        live.book, live.synced, live.confirmed_at = got.book, True, now
                    else:
                        live.resyncs += 1
                        live.void(now, "checksum mismatch; resynchronising")
                        log.info("%s %s book checksum mismatch; resynchronising", venue, symbol)
        finally:
            if pending is not None:
                pending.cancel()

    def _quiet_s(self, venue: str, symbol: str, now: float) -> float:
        """How long this book has gone without being confirmed current (void books count from the void)."""
        age = self.age_s(venue, symbol)
        if age is not None:
            return age
        live = self.books[(venue, symbol)]
        return now - (live.voided_at if live.voided_at is not None else self._started_at)

    async def _reconnect_if_quiet(self, venue: str, symbol: str) -> None:
        """A silent stall (pings answered, no data) or a subscription that never got its snapshot:
        either way this book is quiet too long, and only a new connection brings it back."""
        now = self.now()
        quiet = self._quiet_s(venue, symbol, now)
        last = self._last_reconnect.get(venue, self._started_at)
        if quiet > self.reconnect_after_s and now - last > self.reconnect_after_s:
            self._last_reconnect[venue] = now
            for (v, _), book in self.books.items():
                if v == venue:
                    book.void(now, f"stream silent for {quiet:.1f} s; reconnecting")
            log.warning("%s %s book silent for %.1f s: reconnecting its streams", venue, symbol, quiet)
            await self.streams[venue].reconnect()

    # -- reads --

    def age_s(self, venue: str, symbol: str) -> float | None:
        """Seconds since the book was last confirmed current; None while it is void."""
        live = self.books[(venue, symbol)]
        if not live.synced or live.book is None or live.confirmed_at is None:
            return None
        last = live.confirmed_at
        alive = self.streams[venue].connection_alive_ms()
        if alive is not None:
            last = max(last, alive / 1000)
        return max(0.0, self.now() - last)

    def stale_since(self, venue: str, symbol: str) -> float | None:
        """When the book stopped being fresh (epoch s); None if it is fresh."""
        live = self.books[(venue, symbol)]
        age = self.age_s(venue, symbol)
        if age is not None and age <= self.max_age_s:
            return None
        if age is not None:
            return self.now() - age + self.max_age_s
        return live.voided_at if live.voided_at is not None else self.now()

    def fresh_book(self, venue: str, symbol: str) -> OrderBook | None:
        """The streamed book if it is fresh, stamped with when it was last confirmed; else None."""
        age = self.age_s(venue, symbol)
        live = self.books[(venue, symbol)]
        if age is None or age > self.max_age_s or live.book is None:
            return None
        confirmed = datetime.fromtimestamp(self.now() - age, tz=UTC)
        return live.book.model_copy(update={"timestamp": confirmed, "source": "stream"})

    async def order_book(self, venue: str, symbol: str, depth: int = 50) -> OrderBook:
        """The venue's book for pricing: the live one if fresh, else a REST re-read within budget.

        Raises `BookUnavailable` (stale and no budget: leave the venue out) or `StaleBookReadFailed`.
        """
        book = self.fresh_book(venue, symbol)
        if book is None:
            book = await self._rest_book(venue, symbol)
        return _trim(book, depth)

    async def _rest_book(self, venue: str, symbol: str) -> OrderBook:
        live = self.books[(venue, symbol)]
        now = self.now()
        since = self.stale_since(venue, symbol) or now
        cause = live.void_reason if not live.synced else "no update within the freshness bound"
        why = f"{venue} {symbol} book stale since {_iso(since)} ({cause})"
        if live.rest_book is not None and live.rest_at is not None and now - live.rest_at <= self.max_age_s:
            return live.rest_book
        if live.rest_task is None or live.rest_task.done():
            budget = self.budgets.get(venue)
            if budget is None or not budget.try_take(now):
                raise BookUnavailable(f"{why}; REST re-read budget for {venue} spent")
            live.rest_task = asyncio.ensure_future(self._read_rest(live))
            live.rest_task.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            return await asyncio.shield(live.rest_task)
        except Exception as exc:
            raise StaleBookReadFailed(f"{why}; REST re-read failed ({type(exc).__name__})") from exc

    async def _read_rest(self, live: LiveBook) -> OrderBook:
        book = await self.streams[live.venue].fetch_book(live.symbol, self.rest_depth)
        live.rest_at = self.now()
        live.rest_book = book.model_copy(
            update={"timestamp": datetime.fromtimestamp(live.rest_at, tz=UTC), "source": "rest"}
        )
        return live.rest_book


def _trim(book: OrderBook, depth: int) -> OrderBook:
    if len(book.bids) <= depth and len(book.asks) <= depth:
        return book
    return book.model_copy(update={"bids": book.bids[:depth], "asks": book.asks[:depth]})


class FeeSource(Protocol):
    def fees(self, symbol: str) -> FeeSchedule: ...


class LiveBookSource:
    """A router `BookSource` over the keeper's shared book for one venue (fees from the venue adapter).

    `shared_live` tells caches not to wrap it: the keeper's book is already the one copy per process.
    """

    shared_live = True

    def __init__(self, name: str, keeper: BookKeeper, fees_from: FeeSource) -> None:
        self.name = name
        self.keeper = keeper
        self._fees = fees_from
        self.source = fees_from  # the venue adapter, for reads other than the book (candles)

    def fees(self, symbol: str) -> FeeSchedule:
        return self._fees.fees(symbol)

    async def order_book(self, symbol: str, depth: int = 50) -> OrderBook:
        self.keeper.start()  # idempotent: the first read in a process starts the streams if nobody did
        book = await self.keeper.order_book(self.name, symbol, depth)
        await self._ensure_fees(symbol)
        return book

    async def _ensure_fees(self, symbol: str) -> None:
        """The adapter's fee table loads with its markets: once, on first use, if nobody loaded it yet."""
        try:
            self._fees.fees(symbol)
        except Exception:
            # `_ensure_loaded` loads only if nobody has: a second load would spend the venue's throttle.
            load = getattr(self._fees, "_ensure_loaded", None) or getattr(self._fees, "load", None)
            if load is None:
                raise
            await load()


@dataclass(frozen=True)
class VenueLimit:
    """A venue's published public request limit (per IP), and the share we give stale-book re-reads."""

    requests_per_s: float  # book reads per second the whole IP may make within the published limit
    source: str  # where the figure comes from


# Binance: 6,000 request weight per minute per IP; a depth read of up to 100 levels weighs 5. A quarter
# of the weight goes to book re-reads (the rest stays for orders, snapshots and account reads):
# 1,500 / 5 = 300 reads a minute = 5 a second. Kraken: public endpoints about 1 request a second per IP
# (what ccxt's throttle enforces); orders use the private counter, so re-reads may take all of it.
PUBLISHED_LIMITS: dict[str, VenueLimit] = {
    "binance": VenueLimit(5.0, "REQUEST_WEIGHT 6000/min per IP, depth<=100 weighs 5; a quarter for re-reads"),
    "kraken": VenueLimit(1.0, "public endpoints ~1 request/s per IP"),
}


def rest_budgets(venues: Sequence[str], processes: int) -> dict[str, RestBudget]:
    """Each process's share of every venue's re-read limit when `processes` processes share one IP."""
    out = {}
    for venue in venues:
        limit = PUBLISHED_LIMITS.get(venue)
        if limit is not None:
            out[venue] = RestBudget(rate_per_s=limit.requests_per_s / processes, burst=1.0)
    return out
