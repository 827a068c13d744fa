"""The order-book stream behind the sandbox venues' WebSockets: numbered book changes, listeners, faults.

A real venue publishes every change of its book as a numbered event (Binance: update ids `U`..`u`),
and its REST snapshot names the last change it contains (`lastUpdateId`), so a client can join the
two. `BookFeed` gives the sandbox engine (`sandbox.market.Venue`) the same property: every change of a
symbol's book is observed by `sync()`, which numbers it and hands it to every listener, and the REST
depth handlers call `sync()` before answering so a snapshot always corresponds to a published id.

The protocol front ends (`sandbox.binance_ws`, `sandbox.kraken_ws`) are listeners: each connection
turns changes into the venue's own messages. `run()` calls `sync()` for every symbol each
`interval_s` (Binance's `@100ms`), so walks, fills and control-API books reach the streams.

Stream faults (`POST /_control/stream`, see `stream_control_routes`), as real venues misbehave:
- `disconnect`: every open stream connection is closed now (clients must reconnect and resync).
- `stall`: connections stay open (pings are answered) but no data is sent until cleared: only a
  freshness bound notices.
- `gap` (`count`): the next `count` changes are lost on the wire; Binance's ids jump, Kraken's next
  checksum no longer matches what the client holds.
- `bad_checksum` (`count`, Kraken only): the next `count` updates carry a corrupted amount; the
  checksum is the true book's, so a client that checks it resyncs instead of pricing a wrong book.
- `slow` (`delay_ms`, `max_queue`): each message is sent `delay_ms` late; a connection whose backlog
  passes `max_queue` messages is closed, as venues drop consumers that cannot keep up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Protocol

from aiohttp import web

from sandbox.market import Venue

Levels = dict[Decimal, Decimal]  # price -> amount


@dataclass(frozen=True)
class BookChange:
    """One numbered change of a symbol's book: the levels whose amount changed (0 = removed)."""

    symbol: str
    first_id: int
    last_id: int
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    time_ms: int


@dataclass
class PublishedBook:
    """The book as the stream has published it, and the id of its last change."""

    bids: Levels = field(default_factory=dict)
    asks: Levels = field(default_factory=dict)
    update_id: int = 0

    def top(self, side: str, depth: int) -> list[tuple[Decimal, Decimal]]:
        levels = self.bids if side == "bids" else self.asks
        ordered = sorted(levels.items(), key=lambda lv: -lv[0] if side == "bids" else lv[0])
        return ordered[:depth]


STREAM_FAULTS = frozenset({"disconnect", "stall", "gap", "bad_checksum", "slow"})


@dataclass
class StreamFaults:
    stall: bool = False
    gap: int = 0  # changes still to lose
    bad_checksum: int = 0  # updates still to corrupt
    slow_delay_ms: int = 0
    max_queue: int = 50


class Listener(Protocol):
    """One stream connection: told about every change; closes itself when asked."""

    def on_change(self, change: BookChange, book: PublishedBook, lost: bool, corrupt: bool) -> None: ...

    async def close(self) -> None: ...


class BookFeed:
    """Numbered changes of one venue's books, fanned out to the venue's stream connections."""

    def __init__(self, venue: Venue, interval_s: float = 0.1) -> None:
        self.venue = venue
        self.interval_s = interval_s
        self.books: dict[str, PublishedBook] = {s: PublishedBook() for s in venue.specs}
        self.listeners: set[Listener] = set()
        self.faults = StreamFaults()
        self.heartbeat_empty = True  # an empty event per interval: a liquid market's steady traffic
        for symbol in venue.specs:
            self.sync(symbol)

    def sync(self, symbol: str) -> PublishedBook:
        """Publish the venue's book for `symbol` (a numbered change if it moved); return what is published."""
        book = self.books[symbol]
        current = self.venue.market(symbol).book
        bids = _diff(book.bids, {lv[0]: lv[1] for lv in current.bids})
        asks = _diff(book.asks, {lv[0]: lv[1] for lv in current.asks})
        if not bids and not asks and not self.heartbeat_empty:
            return book
        first = book.update_id + 1
        book.update_id += max(1, len(bids) + len(asks))
        _apply(book.bids, bids)
        _apply(book.asks, asks)
        change = BookChange(symbol, first, book.update_id, bids, asks, self.venue.now_ms())
        lost = False
        if self.faults.gap > 0 and (bids or asks):
            self.faults.gap -= 1
            lost = True
        corrupt = False
        if self.faults.bad_checksum > 0 and (bids or asks):
            self.faults.bad_checksum -= 1
            corrupt = True
        for listener in list(self.listeners):
            listener.on_change(change, book, lost, corrupt)
        return book

    def sync_all(self) -> None:
        for symbol in self.books:
            self.sync(symbol)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            async with self.venue.lock:
                self.venue.tick()
                self.sync_all()

    async def disconnect_all(self) -> None:
        for listener in list(self.listeners):
            await listener.close()


def _diff(old: Levels, new: Levels) -> list[tuple[Decimal, Decimal]]:
    changes = [(p, a) for p, a in new.items() if old.get(p) != a]
    changes += [(p, Decimal(0)) for p in old if p not in new]
    return sorted(changes)


def _apply(levels: Levels, changes: list[tuple[Decimal, Decimal]]) -> None:
    for price, amount in changes:
        if amount > 0:
            levels[price] = amount
        else:
            levels.pop(price, None)


class Outbox:
    """A connection's send queue: the `slow` fault's delay and its drop of a consumer that falls behind."""

    def __init__(self, ws: web.WebSocketResponse, feed: BookFeed) -> None:
        self.ws = ws
        self.feed = feed
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._pump())

    def put(self, text: str) -> None:
        if self.feed.faults.stall or self.ws.closed:
            return
        self.queue.put_nowait(text)
        if self.feed.faults.slow_delay_ms and self.queue.qsize() > self.feed.faults.max_queue:
            asyncio.ensure_future(self.ws.close(code=1008, message=b"slow consumer"))

    async def _pump(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.CancelledError):
            while not self.ws.closed:
                text = await self.queue.get()
                if self.feed.faults.slow_delay_ms:
                    await asyncio.sleep(self.feed.faults.slow_delay_ms / 1000)
                await self.ws.send_str(text)

    def stop(self) -> None:
        self._task.cancel()


FEED_KEY: web.AppKey[BookFeed] = web.AppKey("book_feed", BookFeed)
CHECKSUMS_KEY: web.AppKey[bool] = web.AppKey("book_feed_checksums", bool)  # set by venues whose book has one


def mount_feed(app: web.Application, feed: BookFeed) -> None:
    """Run `feed` for the app's lifetime and mount its `/_control/stream` routes."""
    app[FEED_KEY] = feed

    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.ensure_future(feed.run())
        yield
        task.cancel()
        await feed.disconnect_all()

    app.cleanup_ctx.append(lifetime)
    stream_control_routes(app)


def stream_control_routes(app: web.Application) -> None:
    """`GET/POST/DELETE /_control/stream`: the stream faults above, and the feed's state."""

    def feed_of(request: web.Request) -> BookFeed:
        return request.app[FEED_KEY]

    async def show(request: web.Request) -> web.Response:
        feed = feed_of(request)
        return web.json_response(
            {
                "faults": asdict(feed.faults),
                "connections": len(feed.listeners),
                "update_ids": {s: b.update_id for s, b in feed.books.items()},
            }
        )

    async def add(request: web.Request) -> web.Response:
        feed = feed_of(request)
        body = await request.json()
        kind = body.get("kind")
        if kind not in STREAM_FAULTS:
            return web.json_response({"error": f"unknown stream fault {kind!r}"}, status=400)
        count = int(body.get("count", 1))
        if kind == "disconnect":
            await feed.disconnect_all()
        elif kind == "stall":
            feed.faults.stall = True
        elif kind == "gap":
            feed.faults.gap += count
        elif kind == "bad_checksum":
            if not app.get(CHECKSUMS_KEY, False):
                return web.json_response({"error": "this venue's book stream has no checksum"}, status=400)
            feed.faults.bad_checksum += count
        elif kind == "slow":
            feed.faults.slow_delay_ms = int(body.get("delay_ms", 200))
            feed.faults.max_queue = int(body.get("max_queue", 50))
        return await show(request)

    async def clear(request: web.Request) -> web.Response:
        feed_of(request).faults = StreamFaults()
        return await show(request)

    app.router.add_get("/_control/stream", show)
    app.router.add_post("/_control/stream", add)
    app.router.add_delete("/_control/stream", clear)
