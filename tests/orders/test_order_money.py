"""What an order costs and how it is bounded (issue 11 items 2-5, issue 12 item 2), through the real saga."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from models.market import OrderType, Side
from models.order_flow import OrderStatus
from services.ledger import HouseAccount
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
