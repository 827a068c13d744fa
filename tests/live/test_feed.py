"""The WebSocket feed from LISTEN/NOTIFY: what a customer receives, what it costs the database, its limits.

Statements are counted on the API process's engine (every query the process makes goes through its pool;
the listener's own connection only LISTENs).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from websockets.exceptions import ConnectionClosed

from models.market import OrderType, Side
from models.order_flow import OrderRequest, OrderStatus
from services.live_updates import LiveUpdates, libpq_dsn
from services.notifications.outbox import enqueue
from services.orders import store
from tests.live.conftest import MAX_SOCKETS, Customer, Feed, LiveStack


async def _closed_with(feed: Feed, timeout: float = 10) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(timeout):
            while True:
                await feed.ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def _feed_row(live: LiveStack, customer: Customer, title: str) -> uuid.UUID:
    """An in-app feed row as notify-core's dispatcher writes it (outbox row, then the feed row)."""
    outbox_key = f"live-test:{uuid.uuid4()}"
    feed_id = uuid.uuid4()
    async with live.engine.begin() as c:
        await enqueue(c, event="price_alert", user_id=customer.id, payload={}, dedupe_key=outbox_key)
        await c.execute(
            text(
                "INSERT INTO user_notifications (id, user_id, outbox_id, category, title, body) "
                "SELECT :id, :u, id, 'price_alerts', :t, 'body' FROM notification_outbox "
                "WHERE dedupe_key = :k"
            ),
            {"id": feed_id, "u": customer.id, "t": title, "k": outbox_key},
        )
    return feed_id


def _has_price(n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda seen: len([m for m in seen if m["type"] == "price"]) >= n


async def test_a_change_reaches_every_socket_of_its_customer_for_one_load_not_one_per_socket(
    live: LiveStack,
) -> None:
    ann = await live.customer(gbp="100")
    bob = await live.customer(gbp="100")
    anns = [await live.feed(ann) for _ in range(MAX_SOCKETS)]
    bobs = await live.feed(bob)
    for f in [*anns, bobs]:  # the snapshot at connect, then the shared ticker
        await f.until(lambda s: any(m["type"] == "balance" for m in s) and _has_price(1)(s))
        assert [m for m in f.of("balance") if m["currency"] == "GBP"][-1]["balance"] == "100.00"

    before = live.statements.count
    await live.deposit(ann.id, "25.50")  # one transaction: a customer account changes
    order_id = uuid.uuid4()
    async with live.engine.begin() as c:  # one transaction: the order is recorded
        await store.insert_order(
            c,
            OrderRequest(
                order_id=order_id, user_id=ann.id, symbol="BTC-GBP", side=Side.BUY, type=OrderType.MARKET,
                quote_amount=Decimal("10.00"),
            ),
        )  # fmt: skip
    async with live.engine.begin() as c:  # one transaction: it is cancelled
        await store.set_status(c, order_id, OrderStatus.CANCELLED, "test")
    feed_id = await _feed_row(live, ann, "BTC-GBP went above £70,000.00")  # one transaction: a feed row

    for f in anns:
        await f.until(
            lambda s: (
                any(m["type"] == "balance" and m["balance"] == "125.50" for m in s)
                and any(m["type"] == "order" and m["order"]["status"] == "CANCELLED" for m in s)
                and any(m["type"] == "notification" for m in s)
            )
        )
        orders = f.of("order")
        assert {m["order"]["id"] for m in orders} == {str(order_id)}
        assert [m["order"]["status"] for m in orders][-1] == "CANCELLED"
        balance = [m for m in f.of("balance") if m["balance"] == "125.50"][0]
        assert balance == {"type": "balance", "currency": "GBP", "balance": "125.50",
                           "available": "125.50", "reserved": "0.00"}  # fmt: skip
        (note,) = f.of("notification")
        assert note["notification"]["id"] == str(feed_id) and note["notification"]["read_at"] is None
        assert note["notification"]["category"] == "price_alerts"
        assert note["notification"]["title"] == "BTC-GBP went above £70,000.00"
    # Four announcing transactions: at most one load each, however many sockets Ann has (3 here).
    loads = live.statements.count - before
    assert 1 <= loads <= 4, live.statements.statements[before:]

    # Bob saw none of it; the next price tick proves his feed is alive.
    await bobs.until(_has_price(len(bobs.of("price")) + 1))
    assert not bobs.of("order") and not bobs.of("notification")
    assert all(m["balance"] == "100.00" for m in bobs.of("balance"))

    # Idle sockets cost the database nothing: two more ticks on every socket, not one statement.
    before = live.statements.count
    for f in [*anns, bobs]:
        await f.until(_has_price(len(f.of("price")) + 2))
    assert live.statements.count == before
    for f in [*anns, bobs]:
        await f.ws.close()


async def test_one_socket_more_than_the_cap_is_refused_and_a_freed_slot_can_be_used(live: LiveStack) -> None:
    cara = await live.customer()
    feeds = [await live.feed(cara) for _ in range(MAX_SOCKETS)]
    extra = await live.connect(cara)
    assert await _closed_with(extra) == 4429
    await feeds[0].ws.close()
    hub: LiveUpdates = live.app.state.live_updates
    async with asyncio.timeout(10):
        while hub.connections(cara.id) >= MAX_SOCKETS:
            await asyncio.sleep(0.01)
    again = await live.feed(cara)
    await again.until(_has_price(1))
    for f in [*feeds[1:], again]:
        await f.ws.close()


async def test_a_client_sending_more_than_100_messages_a_second_is_closed_with_1008(live: LiveStack) -> None:
    dan = await live.customer()
    calm = await live.feed(dan)
    for _ in range(50):  # under the limit: ignored, the feed goes on
        await calm.ws.send("{}")
    await calm.until(_has_price(len(calm.of("price")) + 1))
    noisy = await live.feed(dan)
    for _ in range(150):
        try:
            await noisy.ws.send("{}")
        except ConnectionClosed:
            break
    assert await _closed_with(noisy) == 1008
    await calm.until(_has_price(len(calm.of("price")) + 1))  # the other socket is unaffected
    await calm.ws.close()


async def test_a_revoked_session_ends_its_open_feed_at_once(live: LiveStack) -> None:
    eve = await live.customer()
    feed = await live.feed(eve)
    r = await live.http.post("/api/v1/auth/logout", headers=eve.headers())
    assert r.status_code in (200, 204), r.text
    assert await _closed_with(feed) == 4401


async def test_after_the_listener_loses_its_connection_it_reconnects_and_catches_up(live: LiveStack) -> None:
    fay = await live.customer(gbp="10")
    feed = await live.feed(fay)
    await feed.until(lambda s: any(m["type"] == "balance" for m in s))
    hub: LiveUpdates = live.app.state.live_updates
    reconnects = hub.reconnects
    good_dsn = hub.dsn
    hub.dsn = good_dsn.replace("postgresql://", "postgresql://nobody@", 1)  # reconnecting fails for now
    try:
        async with live.engine.begin() as c:
            await c.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": hub.listener_pid})
        async with asyncio.timeout(10):
            while hub.listening.is_set():
                await asyncio.sleep(0.01)
        await live.deposit(fay.id, "5")  # announced to nobody
    finally:
        hub.dsn = good_dsn
    await feed.until(lambda s: any(m["type"] == "balance" and m["balance"] == "15.00" for m in s))
    assert hub.reconnects == reconnects + 1
    await live.deposit(fay.id, "1")  # and live again
    await feed.until(lambda s: any(m["type"] == "balance" and m["balance"] == "16.00" for m in s))
    await feed.ws.close()


async def test_closed_sockets_give_their_slots_back(live: LiveStack) -> None:
    gus = await live.customer()
    hub: LiveUpdates = live.app.state.live_updates
    for _ in range(2 * MAX_SOCKETS):  # one at a time, each closed by the client
        feed = await live.feed(gus)
        await feed.ws.close()
    async with asyncio.timeout(10):
        while hub.connections(gus.id):
            await asyncio.sleep(0.01)
    feeds = [await live.feed(gus) for _ in range(MAX_SOCKETS)]
    for f in feeds:
        await f.until(_has_price(1))
        await f.ws.close()


async def _announced_until(live: LiveStack, marker: Customer, *writes: Any) -> list[str]:
    """Run `writes` (then a deposit for `marker`, who has a socket open) and return every announcement up to
    the marker's: PostgreSQL delivers notifications in commit order."""
    settings = live.app.state.settings
    async with await psycopg.AsyncConnection.connect(libpq_dsn(settings.database_url), autocommit=True) as c:
        await c.execute("LISTEN live_updates")
        for write in writes:
            await write()
        await live.deposit(marker.id, "1")
        seen: list[str] = []
        async with asyncio.timeout(10):
            async for note in c.notifies():
                seen.append(note.payload)
                if str(marker.id) in note.payload:
                    return seen
    return seen


async def test_changes_of_a_customer_without_a_socket_are_not_announced(live: LiveStack) -> None:
    """NOTIFY serialises the commits of the transactions that send it: only listened-for customers pay."""
    quiet = await live.customer()
    loud = await live.customer()
    marker = await live.customer()
    marker_feed = await live.feed(marker)
    loud_feed = await live.feed(loud)
    seen = await _announced_until(
        live, marker, lambda: live.deposit(quiet.id, "1"), lambda: live.deposit(loud.id, "1")
    )
    assert not any(str(quiet.id) in p for p in seen)
    assert any(p.startswith(f"a:{loud.id}:") for p in seen)

    await loud_feed.ws.close()  # the last socket of that customer: no longer announced
    async with asyncio.timeout(10):
        while True:
            async with live.engine.connect() as c:
                rows = await c.execute(
                    text("SELECT 1 FROM live_listeners WHERE user_id = :u"), {"u": loud.id}
                )
                if rows.first() is None:
                    break
            await asyncio.sleep(0.02)
    seen = await _announced_until(live, marker, lambda: live.deposit(loud.id, "1"))
    assert not any(str(loud.id) in p for p in seen)
    await marker_feed.ws.close()
