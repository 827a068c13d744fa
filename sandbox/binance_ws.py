"""Binance's diff-depth WebSocket stream, as ccxt.pro's `binance.watch_order_book` uses it.

- Raw streams at `/ws/<n>` (ccxt opens `urls['api']['ws']['spot'] + '/' + <stream index>`), and the
  combined endpoint `/stream` (events wrapped as `{"stream": ..., "data": ...}`).
- Subscription: `{"method": "SUBSCRIBE", "params": ["btcgbp@depth@100ms"], "id": 1}` answered with
  `{"result": null, "id": 1}`; `UNSUBSCRIBE` the same way. `<symbol>@depth` (1000 ms) is accepted
  too, and served at the feed's interval.
- Events: `{"e": "depthUpdate", "E": ms, "s": "BTCGBP", "U": first id, "u": last id,
  "b": [[price, amount], ...], "a": [...]}` with amounts as text and "0" for a removed level. The
  REST snapshot's `lastUpdateId` (`GET /api/v3/depth`) is the feed's id, so a client joins them as
  Binance documents: drop events with `u <= lastUpdateId`, apply the first with
  `U <= lastUpdateId + 1 <= u`, then each event's `U` must be the previous `u + 1`.
"""

from __future__ import annotations

import json
from decimal import Decimal

from aiohttp import WSMsgType, web

from sandbox.book_feed import BookChange, BookFeed, Outbox, PublishedBook, mount_feed
from sandbox.market import SymbolSpec, Venue, fmt


def _places(step: Decimal) -> int:
    return max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]


class BinanceStream:
    """One WebSocket connection and the depth streams it subscribed to."""

    def __init__(self, ws: web.WebSocketResponse, feed: BookFeed, by_stream_id: dict[str, SymbolSpec],
                 combined: bool) -> None:  # fmt: skip
        self.ws = ws
        self.feed = feed
        self.by_stream_id = by_stream_id  # "btcgbp" -> spec
        self.combined = combined
        self.outbox = Outbox(ws, feed)
        self.streams: dict[str, str] = {}  # our symbol -> stream name as subscribed

    def on_change(self, change: BookChange, book: PublishedBook, lost: bool, corrupt: bool) -> None:
        name = self.streams.get(change.symbol)
        if name is None or lost:
            return
        spec = self.feed.venue.specs[change.symbol]
        p, a = _places(spec.price_step), _places(spec.amount_step)
        event = {
            "e": "depthUpdate",
            "E": change.time_ms,
            "s": spec.base + spec.quote,
            "U": change.first_id,
            "u": change.last_id,
            "b": [[fmt(price, p), fmt(amount, a)] for price, amount in reversed(change.bids)],
            "a": [[fmt(price, p), fmt(amount, a)] for price, amount in change.asks],
        }
        self.outbox.put(json.dumps({"stream": name, "data": event} if self.combined else event))

    async def close(self) -> None:
        await self.ws.close(code=1001, message=b"going away")

    def handle(self, text: str) -> None:
        try:
            request = json.loads(text)
            method, params, req_id = request["method"], request.get("params", []), request["id"]
        except (ValueError, KeyError, TypeError):
            self.outbox.put(json.dumps({"error": {"code": 2, "msg": "Invalid request"}}))
            return
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list):
            self.outbox.put(json.dumps({"error": {"code": 1, "msg": "Unknown method"}, "id": req_id}))
            return
        for name in params:
            pair, _, channel = str(name).partition("@")
            spec = self.by_stream_id.get(pair)
            if spec is None or channel not in ("depth", "depth@100ms", "depth@1000ms"):
                self.outbox.put(
                    json.dumps({"error": {"code": 2, "msg": f"Invalid stream {name}"}, "id": req_id})
                )
                return
            if method == "SUBSCRIBE":
                self.streams[spec.symbol] = name
            else:
                self.streams.pop(spec.symbol, None)
        self.outbox.put(json.dumps({"result": None, "id": req_id}))


def mount_binance_streams(app: web.Application, venue: Venue, interval_s: float = 0.1) -> BookFeed:
    """Add the stream endpoints and the feed to the Binance sandbox app; returns the feed."""
    feed = BookFeed(venue, interval_s)
    by_stream_id = {(s.base + s.quote).lower(): s for s in venue.specs.values()}

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = BinanceStream(ws, feed, by_stream_id, combined=request.path.startswith("/stream"))
        feed.listeners.add(conn)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    conn.handle(msg.data)
        finally:
            feed.listeners.discard(conn)
            conn.outbox.stop()
        return ws

    app.router.add_get("/ws", stream)
    app.router.add_get("/ws/{index}", stream)
    app.router.add_get("/stream", stream)
    mount_feed(app, feed)
    return feed
