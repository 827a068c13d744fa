"""A placement whose outcome is unknown is never sent again and never sent elsewhere: the saga asks the
venue (order lookup and trade history) until it knows, showing NEEDS_ATTENTION with the hold kept past
a bound, and takes ops' word when they have it."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowHandle

from config import Settings
from models.market import OrderType, Side
from models.order_flow import CancelRequest, OrderState, OrderStatus, PlacementResolution
from temporal import search_attributes as sa
from tests.orders.conftest import OrderStack
from workflows.orders import OrderWorkflow

D = Decimal


@pytest.fixture
def settings(database_url: str, temporal_address: str) -> Settings:
    """Quick re-checks, and NEEDS_ATTENTION after 2 s of not knowing (production: 15 min)."""
    return Settings(
        environment="test",
        database_url=database_url,
        temporal_address=temporal_address,
        order_unknown_recheck_first_s=0.2,
        order_unknown_recheck_max_s=0.5,
        order_unknown_attention_after_s=2,
    )


async def active_holds(stack: OrderStack, order_id: uuid.UUID) -> list[Decimal]:
    async with stack.engine.connect() as c:
        rows = await c.execute(
            text("SELECT amount - consumed FROM holds WHERE reference_id = :o AND status = 'active'"),
            {"o": order_id},
        )
        return [r[0] for r in rows]


async def wait_for_status(stack: OrderStack, order_id: uuid.UUID, status: OrderStatus) -> None:
    for _ in range(300):
        async with stack.engine.connect() as c:
            now = (await c.execute(text("SELECT status FROM orders WHERE id = :o"), {"o": order_id})).scalar()
        if now == status.value:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order_id} never reached {status}")


async def assert_flagged(stack: OrderStack, handle: WorkflowHandle[OrderWorkflow, OrderState]) -> None:
    state = await handle.query(OrderWorkflow.state)
    assert state.status is OrderStatus.NEEDS_ATTENTION
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(sa.ORDER_STATUS) == OrderStatus.NEEDS_ATTENTION.value


async def test_timeout_after_accept_with_lagging_lookups_and_other_venues_down_executes_once(
    stack: OrderStack,
) -> None:
    """The reproduction of the double execution: Binance accepts and fills, the answer never comes,
    its lookups say "unknown order" for a long time, and Kraken refuses (maintenance). One Binance
    order for the client order id, its fill booked once, nothing sent anywhere else."""
    user = await stack.customer(gbp="5000")
    await stack.venues["binance"].fault("timeout_after_accept", count=1, mode="hang", hang_ms=3000)
    await stack.venues["binance"].fault("not_found_lag", lookups=30)
    await stack.venues["kraken"].fault("maintenance", paths=["AddOrder"])
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.01"))

    state = await stack.run(req)

    assert state.status is OrderStatus.FILLED, state.reason
    assert state.providers == ["binance"]
    binance = await stack.venue_orders("binance", req.order_id)
    assert len(binance) == 1
    assert len({o["client_order_id"] for o in binance}) == 1
    assert await stack.venue_orders("kraken", req.order_id) == []
    assert (await stack.balance(user, "BTC"))[0] == D("0.01")
    btc = await stack.ledger.entries([await stack.ledger.customer_account(user, "BTC")])
    assert len(btc.entries) == 1
    assert await active_holds(stack, req.order_id) == []
    _, available, reserved = await stack.balance(user, "GBP")
    row = await stack.order_row(req.order_id)
    assert reserved == 0
    assert available == D("5000") - row["filled_quote_amount"] - row["total_fee"]  # charged once


async def test_still_unknown_after_the_bound_needs_attention_keeps_the_hold_then_settles_on_the_truth(
    stack: OrderStack,
) -> None:
    user = await stack.customer(gbp="5000")
    await stack.venues["binance"].fault("timeout_after_accept", count=1, mode="drop")
    await stack.venues["binance"].fault("not_found_lag", lookups=45)
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.01"))
    handle = await stack.start(req)

    await wait_for_status(stack, req.order_id, OrderStatus.NEEDS_ATTENTION)
    await assert_flagged(stack, handle)
    assert len(await active_holds(stack, req.order_id)) == 1  # the money stays reserved
    row = await stack.order_row(req.order_id)
    assert "binance" not in (row["reject_reason"] or "")  # our words, not the venue's

    state = await handle.result()  # the venue shows the order in the end: settled, once

    assert state.status is OrderStatus.FILLED, state.reason
    assert len(await stack.venue_orders("binance", req.order_id)) == 1
    assert await stack.venue_orders("kraken", req.order_id) == []
    assert (await stack.balance(user, "BTC"))[0] == D("0.01")
    assert await active_holds(stack, req.order_id) == []
    row = await stack.order_row(req.order_id)
    assert row["status"] == "FILLED" and row["reject_reason"] is None and state.reason is None


async def test_ops_resolution_that_the_venue_never_received_it_lets_another_venue_fill(
    stack: OrderStack,
) -> None:
    """A 502 from the venue's edge while placing: the order may or may not exist, so the saga waits
    (never re-sends). Ops establish with the venue that it never arrived; only then Kraken gets it."""
    user = await stack.customer(gbp="5000")
    await stack.venues["binance"].fault("http_error", status=502, count=1, paths=["/api/v3/order"])
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.01"))
    handle = await stack.start(req)

    await wait_for_status(stack, req.order_id, OrderStatus.NEEDS_ATTENTION)
    await assert_flagged(stack, handle)
    assert await stack.venue_orders("kraken", req.order_id) == []
    await handle.signal(
        OrderWorkflow.resolve_placement,
        PlacementResolution(absent=True, resolved_by="ops@test", note="venue support: no such order"),
    )
    state = await handle.result()

    assert state.status is OrderStatus.FILLED, state.reason
    assert state.providers == ["kraken"]
    assert await stack.venue_orders("binance", req.order_id) == []
    assert len(await stack.venue_orders("kraken", req.order_id)) == 1
    assert (await stack.balance(user, "BTC"))[0] == D("0.01")


async def test_a_limit_order_whose_placement_is_unknown_keeps_its_hold_until_the_venue_shows_it(
    stack: OrderStack,
) -> None:
    """A GTC order may be live at the venue: its hold is never released on an unknown."""
    user = await stack.customer(gbp="5000")
    await stack.venues["binance"].fault("timeout_after_accept", count=1, mode="drop")
    await stack.venues["binance"].fault("not_found_lag", lookups=25)
    req = stack.request(user, side=Side.BUY, type=OrderType.LIMIT, amount=D("0.01"), price=D("60000"))
    handle = await stack.start(req)

    await wait_for_status(stack, req.order_id, OrderStatus.OPEN)
    assert len(await active_holds(stack, req.order_id)) == 1
    assert len(await stack.venue_orders("binance", req.order_id)) == 1
    await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="changed my mind"))
    state = await handle.result()
    assert state.status is OrderStatus.CANCELLED
    assert await active_holds(stack, req.order_id) == []
