"""What an order costs and how it is bounded (issue 11 items 2-5, issue 12 item 2), through the real saga."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import text

from models.market import OrderType, Side
from models.order_flow import OrderStatus
from services.ledger import HouseAccount
from services.orders.prices import floor_price
from tests.orders.conftest import BTC_BOOKS, OrderStack
from workflows.orders import OrderWorkflow

D = Decimal


async def _wait_open(stack: OrderStack, handle: object) -> None:
    for _ in range(200):
        state = await handle.query(OrderWorkflow.state)  # type: ignore[attr-defined]
        if state.status is OrderStatus.OPEN:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the order never rested")


async def test_fills_rounded_one_by_one_settle_and_the_house_pays_the_dust(stack: OrderStack) -> None:
    """A limit buy fills in two pieces (taker, then maker); each piece's cost and fee round up on their
    own and together come to a penny more than the hold. The customer has exactly the hold: the fill
    still settles, the customer pays the hold and no more, and the house's rounding account the penny."""
    price = "68000.01"
    await stack.venues["binance"].book(
        "BTC-GBP", BTC_BOOKS["binance"]["bids"], [(price, "0.00001"), ("69000", "1")]
    )
    await stack.venues["kraken"].book("BTC-GBP", BTC_BOOKS["kraken"]["bids"], [("70000", "1")])
    before = (await stack.ledger.house_balance(HouseAccount.ROUNDING, "GBP")).balance
    # Hold: ceil(0.00012 * 68000.01) + ceil(8.1600012 * 0.0015) = 8.17 + 0.02.
    user = await stack.customer(gbp="8.19")
    req = stack.request(user, side=Side.BUY, type=OrderType.LIMIT, amount=D("0.00012"), price=D(price))
    handle = await stack.start(req)
    await _wait_open(stack, handle)
    # Fill 1 (taker): 0.6800001 -> 0.69 + fee 0.01. Fill 2 (maker): 7.4800011 -> 7.49 + fee 0.01.
    await stack.venues["binance"].book("BTC-GBP", BTC_BOOKS["binance"]["bids"], [(price, "1")])
    state = await handle.result()
    assert state.status is OrderStatus.FILLED, state.reason
    assert (await stack.balance(user, "BTC"))[0] == D("0.00012")
    assert await stack.balance(user, "GBP") == (D(0), D(0), D(0))
    after = (await stack.ledger.house_balance(HouseAccount.ROUNDING, "GBP")).balance
    assert after - before == D("-0.01")


async def test_a_customer_with_exactly_the_quote_amount_can_spend_it_all(stack: OrderStack) -> None:
    """quote_amount is "spend at most this much GBP, fee included": the hold never exceeds it, and the
    debit (cost plus fee) never exceeds the hold."""
    user = await stack.customer(gbp="1000")
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, quote_amount=D("1000"))
    state = await stack.run(req)
    assert state.status is OrderStatus.FILLED, state.reason
    [hold] = await stack.ledger.holds_for("ORDER", req.order_id)
    assert hold.amount <= D("1000")
    gbp, available, reserved = await stack.balance(user, "GBP")
    assert reserved == 0 and available == gbp and gbp >= 0
    row = await stack.order_row(req.order_id)
    spent = D("1000") - gbp
    cost = row["filled_quote_amount"].quantize(D("0.01"), rounding="ROUND_CEILING")
    assert spent == cost + row["total_fee"]
    # Sized at the 1 % protective price, so the fill at the touch spends a little under the budget.
    assert D("985") <= spent <= D("1000")
    assert (await stack.balance(user, "BTC"))[0] == state.filled_amount > 0


async def test_limits_and_funds_are_checked_before_any_venue_is_asked(stack: OrderStack) -> None:
    """With every venue down, an order the customer cannot afford, or may not make, is refused for that
    reason, not for the venues'; nothing reaches a venue."""
    for venue in stack.venues.values():
        await venue.fault("maintenance")
    user = await stack.customer(gbp="100", btc="0.5", tier=1)
    cases = [
        ({"side": Side.BUY, "type": OrderType.MARKET, "quote_amount": D("500")}, "insufficient GBP"),
        ({"side": Side.SELL, "type": OrderType.MARKET, "amount": D("0.6")}, "insufficient BTC"),
        (
            {"side": Side.BUY, "type": OrderType.LIMIT, "amount": D("0.01"), "price": D("60000")},
            "insufficient GBP",
        ),
        ({"side": Side.SELL, "type": OrderType.LIMIT, "amount": D("0.1"), "price": D("60000")}, "KYC tier 1"),
    ]
    for fields, reason in cases:
        req = stack.request(user, **fields)
        state = await stack.run(req)
        assert state.status is OrderStatus.REJECTED, fields
        assert reason in (state.reason or ""), (fields, state.reason)
        for name in stack.venues:
            assert await stack.venue_orders(name, req.order_id) == []
    assert await stack.balance(user, "GBP") == (D("100"), D("100"), D(0))
    assert await stack.balance(user, "BTC") == (D("0.5"), D("0.5"), D(0))


async def test_absurd_sizes_are_refused_by_validation(stack: OrderStack) -> None:
    user = await stack.customer(gbp="5000", tier=3)
    for fields, code_text in (
        (
            {"side": Side.BUY, "type": OrderType.MARKET, "quote_amount": D("999999999999999999.99")},
            "no account",
        ),
        (
            {"side": Side.BUY, "type": OrderType.LIMIT, "amount": D(10) ** 18, "price": D("68000")},
            "above the maximum",
        ),
        ({"side": Side.SELL, "type": OrderType.MARKET, "amount": D("0.00012345")}, "steps of 0.00001"),
    ):
        state = await stack.run(stack.request(user, **fields))
        assert state.status is OrderStatus.REJECTED and code_text in (state.reason or ""), state.reason


async def test_a_remainder_finer_than_the_venues_lot_step_is_reported_not_dropped(stack: OrderStack) -> None:
    """The API refuses amounts off our lot step (tests/api_trading/test_order_bounds.py); should a venue
    trade in coarser steps than that table (its rules changed), the saga says what was not sent."""
    for adapter in stack.adapters.values():
        rules = adapter.rules("BTC-GBP")
        adapter._rules["BTC-GBP"] = rules.model_copy(update={"amount_step": D("0.0001")})
    try:
        user = await stack.customer(btc="0.5")
        req = stack.request(user, side=Side.SELL, type=OrderType.MARKET, amount=D("0.00012"))
        state = await stack.run(req)
    finally:
        for adapter in stack.adapters.values():
            await adapter.load()
    assert state.status is OrderStatus.PARTIALLY_FILLED, state.reason
    assert state.filled_amount == D("0.0001")
    assert "0.00002 was not sent" in (state.reason or "") and "lot step" in (state.reason or "")
    assert await stack.balance(user, "BTC") == (D("0.4999"), D("0.4999"), D(0))


async def test_a_limit_sell_at_a_token_price_is_valued_at_the_bids(stack: OrderStack) -> None:
    """Issue 12 item 2: a tier-1 customer (£1,000 a day) sells 0.2 BTC "at £50": it would fill at the
    bids (£13,590), so it is over the limit, not a £10 order."""
    user = await stack.customer(btc="0.5", tier=1)
    req = stack.request(user, side=Side.SELL, type=OrderType.LIMIT, amount=D("0.2"), price=D("50"))
    state = await stack.run(req)
    assert state.status is OrderStatus.REJECTED, state.reason
    assert "KYC tier 1" in (state.reason or "")
    assert await stack.balance(user, "BTC") == (D("0.5"), D("0.5"), D(0))
    for name in stack.venues:
        assert await stack.venue_orders(name, req.order_id) == []


async def test_the_rolling_limit_counts_what_filled_not_what_was_asked(stack: OrderStack) -> None:
    from services import orders as svc

    user = await stack.customer(btc="0.5", tier=2)  # £10,000 a day
    earlier = stack.request(user, side=Side.SELL, type=OrderType.LIMIT, amount=D("0.2"), price=D("50"))
    async with stack.engine.begin() as conn:
        await svc.insert_order(conn, earlier)
        # Valued at £10 when placed, it filled for £13,546.80.
        await conn.execute(
            text(
                "UPDATE orders SET status = 'FILLED', notional_gbp = 10, filled_amount = 0.2, "
                "filled_quote_amount = 13546.80 WHERE id = :o"
            ),
            {"o": earlier.order_id},
        )
    nxt = stack.request(user, side=Side.SELL, type=OrderType.MARKET, amount=D("0.001"))
    async with stack.engine.begin() as conn:
        assert await svc.trading_used(conn, user_id=user, order_id=nxt.order_id) == D("13546.80")
        with pytest.raises(svc.OrderRejected, match="KYC tier 2"):
            await svc.check_trading_limit(
                conn, user_id=user, order_id=nxt.order_id, kyc_tier=2, notional_gbp=D("68")
            )


async def test_venue_text_never_becomes_the_customers_reason(stack: OrderStack) -> None:
    """Issue 12 item 12: every venue refuses the placement; the customer reads our words, staff find the
    venues' own text in the stored best-execution record."""
    from services import order_reasons

    await stack.venues["binance"].fault("maintenance", paths=["/order"])
    await stack.venues["kraken"].fault("maintenance", paths=["AddOrder"])
    user = await stack.customer(gbp="5000")
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.01"))
    state = await stack.run(req)
    assert state.status is OrderStatus.FAILED
    row = await stack.order_row(req.order_id)
    assert row["reject_reason"] == order_reasons.NOT_EXECUTED
    detail = row["execution_record"]["staff_detail"]
    assert "binance" in detail and "kraken" in detail
    assert await stack.balance(user, "GBP") == (D("5000"), D("5000"), D(0))


async def test_our_lot_steps_are_tradeable_whole_at_every_exchange(stack: OrderStack) -> None:
    """SIZE_RULES is what the API enforces; each exchange's own step must divide it, or an amount we
    accept would be rounded at the venue (the saga would then report PARTIALLY_FILLED)."""
    from services.orders import SIZE_RULES

    for name, adapter in stack.adapters.items():
        for symbol, rules in SIZE_RULES.items():
            venue = adapter.rules(symbol)
            assert rules.lot_step % venue.amount_step == 0, (name, symbol, venue.amount_step)
            assert rules.min_amount >= venue.min_amount, (name, symbol, venue.min_amount)


async def test_the_order_store_reads_replays_and_totals_in_fewer_round_trips(stack: OrderStack) -> None:
    """Issue 19: the insert returns its status (a replay reads the status the order has moved on to),
    the customer's lock reads the KYC tier, and the totals come from one read and one update."""
    from services import orders as svc

    user = await stack.customer(gbp="5000", tier=2)
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.01"))
    async with stack.engine.begin() as conn:
        assert await svc.insert_order(conn, req) == (OrderStatus.PENDING, 2, "ACTIVE")
        assert await svc.lock_customer(conn, user) == 2
        # No fills yet: nothing filled, no venue named, the status left as it is.
        assert await svc.refresh_totals(conn, req.order_id, None, None) == (
            OrderStatus.PENDING, D(0), D(0), None, D(0),
        )  # fmt: skip
        await conn.execute(text("UPDATE orders SET status = 'ROUTED' WHERE id = :o"), {"o": req.order_id})
    async with stack.engine.begin() as conn:  # a replay of the insert: the order as it is now
        assert (await svc.insert_order(conn, req))[0] is OrderStatus.ROUTED
        for venue, venue_order, amount, quote in (("kraken", "K-2", "0.004", "272.20"),
                                                  ("binance", "B-1", "0.006", "408.00")):  # fmt: skip
            await conn.execute(
                text(
                    "INSERT INTO provider_fills (id, provider, provider_order_id, client_order_id, "
                    "our_order_id, symbol, side, amount, price, quote_amount, fee, fee_currency, status, "
                    "raw_response, executed_at) VALUES (gen_random_uuid(), :p, :po, :co, :o, 'BTC-GBP', "
                    "'BUY', :a, 68000, :q, 0, 'GBP', 'closed', '{}', now())"
                ),
                {"p": venue, "po": venue_order, "co": f"c-{venue_order}", "o": req.order_id, "a": D(amount),
                 "q": D(quote)},
            )  # fmt: skip
        status, filled, quote_total, avg, fee = await svc.refresh_totals(
            conn, req.order_id, OrderStatus.FILLED, None
        )
    assert (status, filled, quote_total, fee) == (OrderStatus.FILLED, D("0.010"), D("680.20"), D(0))
    assert avg is not None and avg == floor_price(D("680.20") / D("0.010"))
    row = await stack.order_row(req.order_id)
    assert (row["routed_to_provider"], row["provider_order_id"]) == ("binance,kraken", "B-1,K-2")
