"""Venues' order-book streams through ccxt.pro (`watch_order_book`), as exact `OrderBook`s.

ccxt.pro does the venue protocol: Binance's diff-depth stream joined to a REST snapshot by update ids
(a gap raises `ChecksumError` and the next watch resubscribes and takes a new snapshot), Kraken's v2
`book` channel. What ccxt leaves out, we add here, per venue:

- Kraken's checksum: ccxt's own check is off by default and reads prices as text while its book holds
  floats, so `_CheckedKraken` recomputes Kraken's CRC32 over the book ccxt holds after each message
  and marks the symbol unverified until a fresh snapshot matches again (`BookStream.verified`).
- Liveness: `last_message_ms` is the last message on the connection carrying a symbol's book
  (Kraken's heartbeats, Binance's 100 ms events), so a silent stall shows as age.

The streams read public data only; they get no keys. ccxt's REST throttle stays on (Binance's
snapshot requests go through it).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt.pro as ccxt_pro

from models.market import OrderBook, PriceLevel
from services.live_books import BookKeeper, rest_budgets

CHECKSUM_LEVELS = 10


def _exact(value: float, step: Decimal) -> Decimal:
    """A streamed price/amount (ccxt holds floats) back to the venue's decimal text at its step."""
    return Decimal(repr(value)).quantize(step)


def _step(precision: Any) -> Decimal:
    return Decimal(str(precision))


class _StreamingBinance(ccxt_pro.binance):
    """ccxt.pro's binance; as the REST adapter, spot error codes wherever the venue lives."""

    def get_exceptions_by_url(self, url: str | None, exactOrBroad: str) -> dict[str, Any]:  # noqa: N803
        spot = self.safe_dict(self.exceptions, "spot", {})
        return self.safe_dict(spot, exactOrBroad, {})


class _CheckedKraken(ccxt_pro.kraken):
    """ccxt.pro's kraken, verifying Kraken's book checksum on every book message."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.checksum_failed: dict[str, bool] = {}

    def handle_order_book(self, client: Any, message: dict[str, Any]) -> None:
        super().handle_order_book(client, message)
        first = (message.get("data") or [{}])[0]
        symbol, expected = first.get("symbol"), first.get("checksum")
        book = self.orderbooks.get(symbol) if symbol else None
        if book is None or expected is None:
            return
        matches = kraken_checksum(book, self.market(symbol)) == int(expected)
        if message.get("type") == "snapshot":
            self.checksum_failed[symbol] = not matches
        elif not matches:
            self.checksum_failed[symbol] = True  # sticky until a snapshot matches again


def kraken_checksum(book: Any, market: dict[str, Any]) -> int:
    """Kraken's CRC32 over the best 10 asks then the best 10 bids, digits only, leading zeros stripped."""
    price_step = _step(market["precision"]["price"])
    amount_step = _step(market["precision"]["amount"])

    def part(value: float, step: Decimal) -> str:
        return f"{_exact(value, step):f}".replace(".", "").lstrip("0")

    payload = "".join(
        part(level[0], price_step) + part(level[1], amount_step)
        for side in (book["asks"], book["bids"])
        for level in list(side)[:CHECKSUM_LEVELS]
    )
    return zlib.crc32(payload.encode()) & 0xFFFFFFFF


@dataclass(frozen=True)
class StreamConfig:
    name: str  # ours: "binance", "kraken"
    exchange_id: str  # ccxt class
    rest_url: str = ""  # empty: the real venue; else the sandbox origin (scheme://host:port)
    ws_url: str = ""  # empty: derived from rest_url for a sandbox (ws://host:port)
    depth: int = 100  # levels kept per side (Kraken accepts 10, 25, 100, 500, 1000)
    timeout_ms: int = 10_000


def build_stream_exchange(config: StreamConfig) -> Any:
    """A ccxt.pro exchange for public book streams, pointed at a sandbox when `rest_url` is set."""
    spec: dict[str, Any] = {"timeout": config.timeout_ms, "enableRateLimit": True}
    base = config.rest_url.rstrip("/")
    ws = config.ws_url.rstrip("/") or base.replace("http://", "ws://").replace("https://", "wss://")
    if config.exchange_id == "binance":
        spec["options"] = {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "adjustForTimeDifference": False,
            "watchOrderBookLimit": 1000,
        }
        exchange: Any = _StreamingBinance(spec)
        if base:
            exchange.urls["api"] = {
                "public": f"{base}/api/v3",
                "private": f"{base}/api/v3",
                "ws": {"spot": f"{ws}/ws"},
            }
    elif config.exchange_id == "kraken":
        spec["has"] = {"fetchCurrencies": False}
        exchange = _CheckedKraken(spec)
        if base:
            exchange.urls["api"] = {"public": base, "private": base, "ws": {"publicV2": f"{ws}/v2"}}
    else:
        raise ValueError(f"no book stream for {config.exchange_id!r}")
    return exchange


@dataclass(frozen=True)
class StreamedBook:
    """One book as the stream holds it now, exact, and whether it is known to match the venue's."""

    book: OrderBook
    verified: bool


class BookStream:
    """One venue's book streams (all symbols), over one ccxt.pro exchange instance."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.name = config.name
        self.exchange = build_stream_exchange(config)
        self.exchange.timeout_on_exit = 0

    async def load(self) -> None:
        await self.exchange.load_markets()

    async def next_book(self, symbol: str) -> StreamedBook:
        """Wait for the next change of `symbol`'s book (ours, "BTC-GBP"); raises what ccxt raises.

        A `ccxt.ChecksumError` (Binance: an update-id gap) or a `ccxt.NetworkError` (disconnect)
        means the caller's copy is void; the next call resubscribes and resynchronises.
        """
        ccxt_symbol = symbol.replace("-", "/")
        if self.config.exchange_id == "kraken":
            failed = self.exchange.checksum_failed.get(ccxt_symbol)
            if failed:  # resubscribe: Kraken sends a fresh snapshot
                self._drop_subscription(ccxt_symbol)
                self.exchange.checksum_failed[ccxt_symbol] = False
            raw = await self.exchange.watch_order_book(ccxt_symbol, self.config.depth)
            verified = not self.exchange.checksum_failed.get(ccxt_symbol, False)
        else:
            raw = await self.exchange.watch_order_book(ccxt_symbol)
            verified = True  # ccxt itself refuses a gap in Binance's update ids
        return StreamedBook(self._exact_book(symbol, ccxt_symbol, raw), verified)

    async def fetch_book(self, symbol: str, depth: int) -> OrderBook:
        """One REST read of the book, exact (the venue's own text), through this instance's throttle.

        Only the stale-book path calls it, within the venue's budget, so it never queues behind orders:
        the order adapters have their own ccxt instances and throttles.
        """
        await self.exchange.load_markets()  # a re-read may come before the streams' own load finished
        market = self.exchange.market(symbol.replace("-", "/"))
        if self.config.exchange_id == "binance":
            limit = next(n for n in (5, 10, 20, 50, 100, 500, 1000, 5000) if n >= depth)
            raw = await self.exchange.publicGetDepth({"symbol": market["id"], "limit": limit})
            bids, asks = raw["bids"], raw["asks"]
        else:
            raw = await self.exchange.publicGetDepth({"pair": market["id"], "count": depth})
            result = raw["result"]
            only = next(iter(result.values()))
            bids, asks = only["bids"], only["asks"]
        return OrderBook(
            provider=self.name,
            symbol=symbol,
            bids=[PriceLevel(price=Decimal(lv[0]), amount=Decimal(lv[1])) for lv in bids[:depth]],
            asks=[PriceLevel(price=Decimal(lv[0]), amount=Decimal(lv[1])) for lv in asks[:depth]],
            timestamp=datetime.now(tz=UTC),
        )

    def _drop_subscription(self, ccxt_symbol: str) -> None:
        message_hash = f"orderbook@{ccxt_symbol}"
        for client in list(self.exchange.clients.values()):
            client.subscriptions.pop(message_hash, None)

    def _exact_book(self, symbol: str, ccxt_symbol: str, raw: Any) -> OrderBook:
        market = self.exchange.market(ccxt_symbol)
        price_step = _step(market["precision"]["price"])
        amount_step = _step(market["precision"]["amount"])
        depth = self.config.depth
        return OrderBook(
            provider=self.name,
            symbol=symbol,
            bids=[PriceLevel(price=_exact(p, price_step), amount=_exact(a, amount_step)) for p, a in
                  list(raw["bids"])[:depth]],
            asks=[PriceLevel(price=_exact(p, price_step), amount=_exact(a, amount_step)) for p, a in
                  list(raw["asks"])[:depth]],
            timestamp=datetime.now(tz=UTC),
        )  # fmt: skip

    def connection_alive_ms(self) -> int | None:
        """Kraken: the newest message on the one connection carrying every book, heartbeats included
        (epoch ms). Binance has a connection per symbol and an event per 100 ms: None (use the book's)."""
        if self.config.exchange_id != "kraken":
            return None
        stamps = [c.last_message_at for c in self.exchange.clients.values() if c.last_message_at]
        return max(stamps) if stamps else None

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
