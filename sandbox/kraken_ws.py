"""Kraken's WebSocket v2 `book` channel, as ccxt.pro's `kraken.watch_order_book` uses it.

- Endpoint `/v2` (ccxt's `urls['api']['ws']['publicV2']`).
- Subscription: `{"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/GBP"],
  "depth": 25}, "req_id": 1}` (depth 10 by default; 10, 25, 100, 500, 1000), acknowledged per symbol
  with `{"method": "subscribe", "result": {"channel": "book", "symbol": ..., "depth": ..., "snapshot":
  true}, "success": true, "req_id": 1, ...}`, then a `"type": "snapshot"` message and `"type":
  "update"` messages: `{"channel": "book", "type": "update", "data": [{"symbol", "bids": [{"price",
  "qty"}], "asks": [...], "checksum", "timestamp"}]}`, prices and quantities as JSON numbers, qty 0
  for a removed level. A level entering or leaving the subscribed depth is sent as an insert or a
  delete, so the client's book is always the top `depth` levels.
- `checksum`: CRC32 of the top 10 asks (ascending) then the top 10 bids (descending), each level as
  its price then its quantity printed at the pair's decimals, without the decimal point and leading
  zeros (Kraken's documented algorithm). A client whose book no longer matches must resubscribe.
- `{"method": "ping"}` is answered with `pong`; a connection with nothing else to say in a second
  gets `{"channel": "heartbeat"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from sandbox.book_feed import CHECKSUMS_KEY, BookChange, BookFeed, Outbox, PublishedBook, mount_feed
from sandbox.market import SymbolSpec, Venue

DEPTHS = (10, 25, 100, 500, 1000)
CHECKSUM_LEVELS = 10


def _places(step: Decimal) -> int:
    return max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]


def _checksum_part(value: Decimal, places: int) -> str:
    text = f"{value:.{places}f}".replace(".", "")
    return text.lstrip("0")


def book_checksum(
    spec: SymbolSpec, asks: list[tuple[Decimal, Decimal]], bids: list[tuple[Decimal, Decimal]]
) -> int:
    """Kraken's book checksum over the best 10 levels of each side (asks first)."""
    p, q = _places(spec.price_step), _places(spec.amount_step)
    payload = "".join(
        _checksum_part(price, p) + _checksum_part(qty, q)
        for price, qty in [*asks[:CHECKSUM_LEVELS], *bids[:CHECKSUM_LEVELS]]
    )
    return zlib.crc32(payload.encode()) & 0xFFFFFFFF


def _now_iso() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _levels(levels: list[tuple[Decimal, Decimal]]) -> list[dict[str, float]]:
    # Kraken v2 sends numbers; the sandbox's prices and amounts have few enough digits to be exact floats.
    return [{"price": float(p), "qty": float(q)} for p, q in levels]


class KrakenBookStream:
    """One v2 connection: its subscribed symbols, and the top-`depth` book it has sent for each."""

    def __init__(
        self, ws: web.WebSocketResponse, feed: BookFeed, by_ws_symbol: dict[str, SymbolSpec]
    ) -> None:
        self.ws = ws
        self.feed = feed
        self.by_ws_symbol = by_ws_symbol
        self.outbox = Outbox(ws, feed)
        self.depth: dict[str, int] = {}  # our symbol -> subscribed depth
        self.sent: dict[str, PublishedBook] = {}  # our symbol -> the book as this connection published it
        self.last_sent = asyncio.get_running_loop().time()

    def _put(self, message: dict[str, Any]) -> None:
        self.last_sent = asyncio.get_running_loop().time()
        self.outbox.put(json.dumps(message))

    def _window(
        self, symbol: str, book: PublishedBook
    ) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        depth = self.depth[symbol]
        return dict(book.top("bids", depth)), dict(book.top("asks", depth))

    def snapshot(self, symbol: str) -> None:
        book = self.feed.sync(symbol)
        spec = self.feed.venue.specs[symbol]
        bids, asks = self._window(symbol, book)
        sent = PublishedBook(bids=bids, asks=asks)
        self.sent[symbol] = sent
        top_bids, top_asks = sent.top("bids", len(bids)), sent.top("asks", len(asks))
        self._put(
            {
                "channel": "book",
                "type": "snapshot",
                "data": [
                    {
                        "symbol": f"{spec.base}/{spec.quote}",
                        "bids": _levels(top_bids),
                        "asks": _levels(top_asks),
                        "checksum": book_checksum(spec, top_asks, top_bids),
                    }
                ],
            }
        )

    def on_change(self, change: BookChange, book: PublishedBook, lost: bool, corrupt: bool) -> None:
        symbol = change.symbol
        sent = self.sent.get(symbol)
        if sent is None:
            return
        spec = self.feed.venue.specs[symbol]
        bids, asks = self._window(symbol, book)
        bid_changes = _changes(sent.bids, bids)
        ask_changes = _changes(sent.asks, asks)
        if not bid_changes and not ask_changes:
            return
        sent.bids, sent.asks = bids, asks
        if lost:
            return
        checksum = book_checksum(spec, sent.top("asks", CHECKSUM_LEVELS), sent.top("bids", CHECKSUM_LEVELS))
        if corrupt:  # the wire garbles one amount; the checksum still describes the true book
            target = ask_changes if ask_changes else bid_changes
            price, qty = target[0]
            target[0] = (price, qty + spec.amount_step * 7)
        self._put(
            {
                "channel": "book",
                "type": "update",
                "data": [
                    {
                        "symbol": f"{spec.base}/{spec.quote}",
                        "bids": _levels(sorted(bid_changes, reverse=True)),
                        "asks": _levels(ask_changes),
                        "checksum": checksum,
                        "timestamp": _now_iso(),
                    }
                ],
            }
        )

    async def close(self) -> None:
        await self.ws.close(code=1001, message=b"going away")

    async def heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(asyncio.CancelledError):
            while not self.ws.closed:
                await asyncio.sleep(1.0)
                if loop.time() - self.last_sent >= 1.0:
                    self._put({"channel": "heartbeat"})

    async def handle(self, text: str) -> None:
        try:
            request = json.loads(text)
            method = request["method"]
        except (ValueError, KeyError, TypeError):
            await self.ws.send_str(json.dumps({"error": "Malformed request", "success": False}))
            return
        req_id = request.get("req_id")
        stamp = {"time_in": _now_iso(), "time_out": _now_iso()}
        if method == "ping":
            # Answered even while the data is stalled: the connection looks alive, only its data stops.
            await self.ws.send_str(json.dumps({"method": "pong", "req_id": req_id, **stamp}))
            return
        params = request.get("params") or {}
        if method not in ("subscribe", "unsubscribe") or params.get("channel") != "book":
            self._put({"error": f"Unsupported request {method}", "method": method, "req_id": req_id,
                       "success": False, **stamp})  # fmt: skip
            return
        depth = int(params.get("depth", 10))
        symbols = params.get("symbol")
        if depth not in DEPTHS or not isinstance(symbols, list):
            self._put(
                {"error": "Malformed request", "method": method, "req_id": req_id, "success": False, **stamp}
            )
            return
        for ws_symbol in symbols:
            spec = self.by_ws_symbol.get(ws_symbol)
            if spec is None:
                self._put({"error": f"Currency pair not supported {ws_symbol}", "method": method,
                           "req_id": req_id, "success": False, "symbol": ws_symbol, **stamp})  # fmt: skip
                continue
            result = {"channel": "book", "symbol": ws_symbol, "depth": depth, "snapshot": True}
            self._put({"method": method, "req_id": req_id, "result": result, "success": True, **stamp})
            if method == "subscribe":
                self.depth[spec.symbol] = depth
                self.snapshot(spec.symbol)
            else:
                self.depth.pop(spec.symbol, None)
                self.sent.pop(spec.symbol, None)


def _changes(old: dict[Decimal, Decimal], new: dict[Decimal, Decimal]) -> list[tuple[Decimal, Decimal]]:
    out = [(p, q) for p, q in new.items() if old.get(p) != q]
    out += [(p, Decimal(0)) for p in old if p not in new]
    return sorted(out)


def mount_kraken_streams(app: web.Application, venue: Venue, interval_s: float = 0.1) -> BookFeed:
    """Add `/v2` and the feed to the Kraken sandbox app; returns the feed."""
    feed = BookFeed(venue, interval_s)
    feed.heartbeat_empty = False  # Kraken says "heartbeat" instead
    by_ws_symbol = {f"{s.base}/{s.quote}": s for s in venue.specs.values()}
    app[CHECKSUMS_KEY] = True

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = KrakenBookStream(ws, feed, by_ws_symbol)
        feed.listeners.add(conn)
        beats = asyncio.ensure_future(conn.heartbeats())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await conn.handle(msg.data)
        finally:
            feed.listeners.discard(conn)
            beats.cancel()
            conn.outbox.stop()
        return ws

    app.router.add_get("/v2", stream)
    mount_feed(app, feed)
    return feed
