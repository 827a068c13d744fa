"""The order saga end to end: real PostgreSQL, a real Temporal server, sandbox venues over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from temporalio.exceptions import WorkflowAlreadyStartedError

from models.market import OrderType, Side
from models.order_flow import CancelRequest, OrderState, OrderStatus
from tests.orders.conftest import OrderStack
from workflows.orders import OrderWorkflow

D = Decimal


async def test_buy_by_quote_amount_fills_at_the_cheapest_venue(stack: OrderStack) -> None:
    user = await stack.customer(gbp="5000")
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, quote_amount=D("1000"))
    state = await stack.run(req)
    assert state.status is OrderStatus.FILLED, state.reason
    assert state.providers == ["binance"]
    row = await stack.order_row(req.order_id)
    assert row["routed_to_provider"] == "binance" and row["execution_record"]["route"] == "single"
    # At most £1000 of BTC at £68,000 (inside binance's first level), fee included.
    btc = (await stack.balance(user, "BTC"))[0]
    assert D("0.0144") <= btc <= D("0.0148")
    gbp, available, reserved = await stack.balance(user, "GBP")
    spent = D("5000") - gbp
    assert reserved == 0 and available == gbp
    assert (
        spent == row["filled_quote_amount"].quantize(D("0.01"), rounding="ROUND_CEILING") + row["total_fee"]
    )
    assert row["total_fee"] == (row["filled_quote_amount"] * D("0.0015")).quantize(
        D("0.01"), rounding="ROUND_CEILING"
    )
    orders = await stack.venue_orders("binance", req.order_id)
    assert len(orders) == 1 and orders[0]["type"].upper() == "LIMIT" and orders[0]["time_in_force"] == "IOC"


async def test_buy_by_base_amount_and_sell(stack: OrderStack) -> None:
    user = await stack.customer(gbp="20000", tier=3)
    buy = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.1"))
    state = await stack.run(buy)
    assert state.status is OrderStatus.FILLED, state.reason
    assert (await stack.balance(user, "BTC"))[0] == D("0.1")

    sell = stack.request(user, side=Side.SELL, type=OrderType.MARKET, amount=D("0.05"))
    state = await stack.run(sell)
    assert state.status is OrderStatus.FILLED, state.reason
    assert state.providers == ["kraken"]  # the better bid
    btc = await stack.balance(user, "BTC")
    assert btc == (D("0.05"), D("0.05"), D(0))
    row = await stack.order_row(sell.order_id)
    # Proceeds 0.05 * 67950 = 3397.50, minus the 0.15 % fee rounded up.
    assert row["filled_quote_amount"] == D("3397.5")
    assert row["total_fee"] == D("5.10")


async def test_insufficient_funds_rejects_and_reserves_nothing(stack: OrderStack) -> None:
    user = await stack.customer(gbp="100")
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, quote_amount=D("1000"))
    state = await stack.run(req)
    assert state.status is OrderStatus.REJECTED
    assert "insufficient" in (state.reason or "")
    assert await stack.balance(user, "GBP") == (D("100"), D("100"), D(0))
    assert await stack.ledger.holds_for("ORDER", req.order_id) == []
    assert await stack.venue_orders("binance", req.order_id) == []


async def test_kyc_limit_exceeded_is_rejected_with_the_reason(stack: OrderStack) -> None:
    user = await stack.customer(gbp="5000", tier=1)  # £1,000 a day
    first = await stack.run(stack.request(user, side=Side.BUY, type=OrderType.MARKET, quote_amount=D("800")))
    assert first.status is OrderStatus.FILLED
    second = await stack.run(stack.request(user, side=Side.BUY, type=OrderType.MARKET, quote_amount=D("300")))
    assert second.status is OrderStatus.REJECTED
    assert "KYC tier 1" in (second.reason or "")

    nobody = await stack.customer(gbp="5000", tier=0)
    third = await stack.run(stack.request(nobody, side=Side.BUY, type=OrderType.MARKET, quote_amount=D("10")))
    assert third.status is OrderStatus.REJECTED and "tier 0" in (third.reason or "")


async def test_bad_input_is_rejected_before_anything_happens(stack: OrderStack) -> None:
    user = await stack.customer(gbp="5000")
    for fields in (
        {"symbol": "DOGE-GBP", "side": Side.BUY, "type": OrderType.MARKET, "quote_amount": D("10")},
        {"side": Side.BUY, "type": OrderType.MARKET, "quote_amount": D("10.001")},
        {"side": Side.SELL, "type": OrderType.MARKET, "quote_amount": D("10")},
        {"side": Side.BUY, "type": OrderType.LIMIT, "amount": D("0.1")},
    ):
        state = await stack.run(stack.request(user, **fields))
        assert state.status is OrderStatus.REJECTED, fields
    assert await stack.balance(user, "GBP") == (D("5000"), D("5000"), D(0))


async def test_primary_venue_down_fills_at_the_fallback(stack: OrderStack) -> None:
    user = await stack.customer(gbp="5000")
    await stack.venues["binance"].fault("maintenance", paths=["order"])
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.01"))
    state = await stack.run(req)
    assert state.status is OrderStatus.FILLED, state.reason
    assert state.providers == ["kraken"]
    assert await stack.venue_orders("binance", req.order_id) == []


async def test_timeout_after_accept_gives_one_venue_order_and_one_settlement(stack: OrderStack) -> None:
    user = await stack.customer(gbp="5000")
    await stack.venues["binance"].fault("timeout_after_accept", count=1, mode="hang", hang_ms=3000)
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.01"))
    state = await stack.run(req)
    assert state.status is OrderStatus.FILLED, state.reason
    orders = await stack.venue_orders("binance", req.order_id)
    assert len(orders) == 1
    assert (await stack.balance(user, "BTC"))[0] == D("0.01")
    entries = await stack.ledger.entries([await stack.ledger.customer_account(user, "BTC")])
    assert len(entries.entries) == 1


async def test_partial_fill_settles_what_filled_and_releases_the_rest(stack: OrderStack) -> None:
    user = await stack.customer(gbp="5000")
    await stack.venues["binance"].fault("partial_fill", ratio="0.5")
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.02"))
    state = await stack.run(req)
    assert state.status is OrderStatus.PARTIALLY_FILLED
    assert state.filled_amount == D("0.01")
    _, available, reserved = await stack.balance(user, "GBP")
    assert reserved == 0
    [hold] = await stack.ledger.holds_for("ORDER", req.order_id)
    assert hold.status == "committed" and hold.consumed < hold.amount


async def test_slippage_guard_refuses_and_protects(stack: OrderStack) -> None:
    user = await stack.customer(gbp="100000", tier=3)
    # 6 BTC walks deep into both books, even split: far beyond 0.1 % slippage.
    big = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("6"), max_slippage=D("0.001"))
    state = await stack.run(big)
    assert state.status is OrderStatus.REJECTED
    assert "slippage" in (state.reason or "").lower()
    assert await stack.venue_orders("binance", big.order_id) == []
    # Within the limit the order is placed with a protective IOC price no worse than the cap.
    ok = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.3"), max_slippage=D("0.01"))
    state = await stack.run(ok)
    assert state.status is OrderStatus.FILLED
    [placed] = await stack.venue_orders("binance", ok.order_id)
    assert D(placed["price"]) <= D("68000") * D("1.01") * D("1.001")


async def test_limit_order_rests_then_fills_when_the_price_moves(stack: OrderStack) -> None:
    user = await stack.customer(gbp="10000")
    req = stack.request(user, side=Side.BUY, type=OrderType.LIMIT, amount=D("0.05"), price=D("67000"))
    handle = await stack.start(req)
    for _ in range(100):
        if (await handle.query(OrderWorkflow.state)).status is OrderStatus.OPEN:
            break
        await asyncio.sleep(0.05)
    _, _, reserved = await stack.balance(user, "GBP")
    assert reserved > 0  # the hold stays while the order rests
    venue = stack.venues[(await handle.query(OrderWorkflow.state)).providers[0]]
    await venue.book("BTC-GBP", [("66500", "1")], [("66900", "1")])  # sellers now cross our bid
    state = await handle.result()
    assert state.status is OrderStatus.FILLED, state.reason
    assert (await stack.balance(user, "BTC"))[0] == D("0.05")
    gbp, available, reserved = await stack.balance(user, "GBP")
    assert reserved == 0 and available == gbp
    # A maker fill at our price: 0.05 * 67000 = 3350 plus the 0.10 % maker fee.
    assert gbp == D("10000") - D("3350") - D("3.35")


async def test_cancel_releases_the_hold(stack: OrderStack) -> None:
    user = await stack.customer(gbp="10000")
    req = stack.request(user, side=Side.BUY, type=OrderType.LIMIT, amount=D("0.05"), price=D("60000"))
    handle = await stack.start(req)
    for _ in range(100):
        if (await handle.query(OrderWorkflow.state)).status is OrderStatus.OPEN:
            break
        await asyncio.sleep(0.05)
    await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="changed my mind"))
    state = await handle.result()
    assert state.status is OrderStatus.CANCELLED
    assert await stack.balance(user, "GBP") == (D("10000"), D("10000"), D(0))
    venue_orders = await stack.venue_orders(state.providers[0], req.order_id)
    assert [o["status"].upper() for o in venue_orders] in (["CANCELED"], ["CANCELLED"])


async def test_same_order_id_started_twice_is_one_order(stack: OrderStack) -> None:
    user = await stack.customer(gbp="5000")
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.01"))
    handle = await stack.start(req)
    with pytest.raises(WorkflowAlreadyStartedError):
        await stack.start(req)
    await handle.result()
    with pytest.raises(WorkflowAlreadyStartedError):
        await stack.start(req)
    assert len(await stack.venue_orders("binance", req.order_id)) == 1
    assert (await stack.balance(user, "BTC"))[0] == D("0.01")


async def test_concurrent_orders_of_one_customer_never_overspend(stack: OrderStack) -> None:
    user = await stack.customer(gbp="2500")
    reqs = [
        stack.request(user, side=Side.BUY, type=OrderType.MARKET, quote_amount=D("1000")) for _ in range(4)
    ]
    states = await asyncio.gather(*(stack.run(r) for r in reqs))
    filled = [s for s in states if s.status is OrderStatus.FILLED]
    assert len(filled) == 2
    gbp, available, reserved = await stack.balance(user, "GBP")
    assert gbp >= 0 and reserved == 0


async def test_unknown_customer_is_rejected_not_failed(stack: OrderStack) -> None:
    """Business failures end the workflow normally with a status; they never fail the workflow."""
    state = await stack.run(
        stack.request(uuid.uuid4(), side=Side.BUY, type=OrderType.MARKET, amount=D("0.01"))
    )
    assert state.status is OrderStatus.REJECTED and state.reason == "no such customer"


async def test_a_long_resting_order_continues_as_new_and_still_cancels(stack: OrderStack) -> None:
    user = await stack.customer(gbp="10000")
    req = stack.request(
        user, side=Side.BUY, type=OrderType.LIMIT, amount=D("0.05"), price=D("60000"), polls_per_run=2
    )
    handle = await stack.start(req)
    first_run = (await handle.describe()).run_id
    for _ in range(200):
        if (await handle.describe()).run_id != first_run:
            break
        await asyncio.sleep(0.05)
    assert (await handle.describe()).run_id != first_run  # the order now lives in a new run
    latest = stack.client.get_workflow_handle(handle.id, result_type=OrderState)
    await latest.signal(OrderWorkflow.cancel, CancelRequest(reason="too long"))
    state = await latest.result()
    assert state.status is OrderStatus.CANCELLED and state.providers
    assert await stack.balance(user, "GBP") == (D("10000"), D("10000"), D(0))
    assert len(await stack.venue_orders(state.providers[0], req.order_id)) == 1


async def test_lagging_venue_is_asked_until_it_shows_the_order_never_resent_or_rerouted(
    stack: OrderStack,
) -> None:
    """The venue accepts, the answer is lost, and its lookups say "unknown order" for longer than the
    adapter's own lookups last: the saga keeps asking and settles the one order, sending nothing more."""
    user = await stack.customer(gbp="5000")
    await stack.venues["binance"].fault("timeout_after_accept", count=1, mode="drop")
    await stack.venues["binance"].fault("not_found_lag", lookups=7)
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.01"))
    state = await stack.run(req)
    assert state.status is OrderStatus.FILLED, state.reason
    assert state.providers == ["binance"]
    assert len(await stack.venue_orders("binance", req.order_id)) == 1
    assert await stack.venue_orders("kraken", req.order_id) == []
    assert (await stack.balance(user, "BTC"))[0] == D("0.01")
