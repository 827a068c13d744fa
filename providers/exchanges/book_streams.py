"""Venues' order-book streams through ccxt.pro (`watch_order_book`), as exact `OrderBook`s.

ccxt.pro does the venue protocol: Binance's diff-depth stream joined to a REST snapshot by update ids
(a gap raises `ChecksumError` and the next watch resubscribes and takes a new snapshot), Kraken's v2
`book` channel. What ccxt leaves out, we add, per venue, in the venue's own module (as its REST adapter):
`BookStream(config)` builds the class of `config.exchange_id` (`stream_class`).

- Kraken's checksum (providers/exchanges/kraken.py, `KrakenBookStream`): ccxt's own check is off by
  default and reads prices as text while its book holds floats, so Kraken's CRC32 is recomputed over
  the book ccxt holds after each message and the symbol is unverified until a fresh snapshot matches
  again (`StreamedBook.verified`).
- Liveness: `connection_alive_ms` is the last message on the connection carrying every book (Kraken's
  heartbeats); Binance has a connection per symbol and an event per 100 ms, so a book's own age shows
  a silent stall there (providers/exchanges/binance.py, `BinanceBookStream`).

The streams read public data only; they get no keys. ccxt's REST throttle stays on (Binance's
snapshot requests go through it).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Self, cast

from models.market import OrderBook, PriceLevel
from services.live_books import BookKeeper, rest_budgets

# ccxt ids with a book stream: module and class name (imported on first use, so each venue's module
# can import this one).
STREAM_CLASSES: dict[str, tuple[str, str]] = {
    "binance": ("providers.exchanges.binance", "BinanceBookStream"),
    "kraken": ("providers.exchanges.kraken", "KrakenBookStream"),
}


def exact(value: float, step: Decimal) -> Decimal:
    """A streamed price/amount (ccxt holds floats) back to the venue's decimal text at its step."""
    return Decimal(repr(value)).quantize(step)


def step(precision: Any) -> Decimal:
    """A market's precision (ccxt's tick size) as a Decimal step."""
    return Decimal(str(precision))


@dataclass(frozen=True)
class StreamConfig:
    name: str  # ours: "binance", "kraken"
    exchange_id: str  # ccxt class
    rest_url: str = ""  # empty: the real venue; else the sandbox origin (scheme://host:port)
    ws_url: str = ""  # empty: derived from rest_url for a sandbox (ws://host:port)
    depth: int = 100  # levels kept per side (Kraken accepts 10, 25, 100, 500, 1000)
    timeout_ms: int = 10_000


def stream_origins(config: StreamConfig) -> tuple[str, str]:
    """(REST origin, WebSocket origin) of a sandbox; ("", "") for the real venue."""
    base = config.rest_url.rstrip("/")
    ws = config.ws_url.rstrip("/") or base.replace("http://", "ws://").replace("https://", "wss://")
    return base, ws


def stream_class(exchange_id: str) -> type[BookStream]:
    """The book-stream class of ccxt id `exchange_id`; a venue without one has no stream."""
    target = STREAM_CLASSES.get(exchange_id)
    if target is None:
        raise ValueError(f"no book stream for {exchange_id!r}")
    module, name = target
    cls: type[BookStream] = getattr(importlib.import_module(module), name)
    return cls


def build_stream_exchange(config: StreamConfig) -> Any:
    """A ccxt.pro exchange for public book streams, pointed at a sandbox when `rest_url` is set."""
    return stream_class(config.exchange_id).make_exchange(config)


@dataclass(frozen=True)
class StreamedBook:
    """One book as the stream holds it now, exact, and whether it is known to match the venue's."""

    book: OrderBook
    verified: bool


class BookStream:
    """One venue's book streams (all symbols), over one ccxt.pro exchange instance.

    `BookStream(config)` is an instance of the venue's own class (`stream_class`), which says how its
    ccxt.pro exchange is built, how a book is watched and verified, and how one is read over REST."""

    def __new__(cls, config: StreamConfig) -> Self:
        target = stream_class(config.exchange_id) if cls is BookStream else cls
        return cast(Self, object.__new__(target))

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.name = config.name
        self.exchange = self.make_exchange(config)
        self.exchange.timeout_on_exit = 0

    @classmethod
    def make_exchange(cls, config: StreamConfig) -> Any:
        """The venue's ccxt.pro exchange for `config` (public data only: no keys)."""
        raise NotImplementedError

    async def load(self) -> None:
        await self.exchange.load_markets()

    async def next_book(self, symbol: str) -> StreamedBook:
        """Wait for the next change of `symbol`'s book (ours, "BTC-GBP"); raises what ccxt raises.

        A `ccxt.ChecksumError` (Binance: an update-id gap) or a `ccxt.NetworkError` (disconnect)
        means the caller's copy is void; the next call resubscribes and resynchronises.
        """
        ccxt_symbol = symbol.replace("-", "/")
        raw, verified = await self._watch(ccxt_symbol)
        return StreamedBook(self._exact_book(symbol, ccxt_symbol, raw), verified)

    async def _watch(self, ccxt_symbol: str) -> tuple[Any, bool]:
        """The next book ccxt.pro holds for the symbol, and whether it is known to match the venue's."""
        raise NotImplementedError

    async def fetch_book(self, symbol: str, depth: int) -> OrderBook:
        """One REST read of the book, exact (the venue's own text), through this instance's throttle.

        Only the stale-book path calls it, within the venue's budget, so it never queues behind orders:
        the order adapters have their own ccxt instances and throttles.
        """
        await self.exchange.load_markets()  # a re-read may come before the streams' own load finished
        market = self.exchange.market(symbol.replace("-", "/"))
        bids, asks = await self._rest_levels(market, depth)
        return OrderBook(
            provider=self.name,
            symbol=symbol,
            bids=[PriceLevel(price=Decimal(lv[0]), amount=Decimal(lv[1])) for lv in bids[:depth]],
            asks=[PriceLevel(price=Decimal(lv[0]), amount=Decimal(lv[1])) for lv in asks[:depth]],
            timestamp=datetime.now(tz=UTC),
        )

    async def _rest_levels(self, market: dict[str, Any], depth: int) -> tuple[list[Any], list[Any]]:
        """(bids, asks) of one REST read, levels as the venue's text."""
        raise NotImplementedError

    def _exact_book(self, symbol: str, ccxt_symbol: str, raw: Any) -> OrderBook:
        market = self.exchange.market(ccxt_symbol)
        price_step = step(market["precision"]["price"])
        amount_step = step(market["precision"]["amount"])
        depth = self.config.depth
        return OrderBook(
            provider=self.name,
            symbol=symbol,
            bids=[PriceLevel(price=exact(p, price_step), amount=exact(a, amount_step)) for p, a in
                  list(raw["bids"])[:depth]],
            asks=[PriceLevel(price=exact(p, price_step), amount=exact(a, amount_step)) for p, a in
                  list(raw["asks"])[:depth]],
            timestamp=datetime.now(tz=UTC),
        )  # fmt: skip

    def connection_alive_ms(self) -> int | None:
        """The newest message on a connection carrying every book (epoch ms), where the venue has one;
        None: use each book's own age."""
        return None

    async def reconnect(self) -> None:
        """Drop every connection: the next watch dials again and resynchronises from scratch."""
        await self.exchange.close_ws_clients()

    async def close(self) -> None:
        await self.exchange.close()


def build_book_keeper(settings: Any, symbols: Sequence[str], **overrides: Any) -> BookKeeper:
    """The process's `BookKeeper` over Binance's and Kraken's streams, with this process's REST budgets.

    `overrides` go to `BookKeeper` (tests: a short `max_age_s`)."""
    from providers.exchanges.ccxt_adapter import sandbox_or_configured_url

    streams = {
        name: BookStream(StreamConfig(name, name, rest_url=sandbox_or_configured_url(settings, name)))
        for name in ("binance", "kraken")
    }
    kwargs: dict[str, Any] = {
        "budgets": rest_budgets(list(streams), settings.market_data_processes),
        "max_age_s": settings.book_max_age_s,
        **overrides,
    }
    return BookKeeper(streams, symbols, **kwargs)
