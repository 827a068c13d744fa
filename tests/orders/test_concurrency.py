"""Many orders of one customer at once, through the real saga: every one completes, none of their
transactions deadlocks (PostgreSQL's own log is the witness), and the books balance."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from devstack.postgres import EmbeddedPostgres
from models.market import OrderType, Side
from models.order_flow import OrderStatus
from tests.orders.conftest import OrderStack

D = Decimal
ORDERS = 30


async def test_thirty_concurrent_orders_of_one_customer_complete_without_a_deadlock(
    stack: OrderStack, postgres: EmbeddedPostgres
) -> None:
    log = postgres.data_dir / "server.log"
    start = log.stat().st_size
    await stack.venues["binance"].book("BTC-GBP", [("67900", "5")], [("68000", "5")])
    user = await stack.customer(gbp="5000")
    reqs = [
        stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.001")) for _ in range(ORDERS)
    ]

    states = await asyncio.gather(*(stack.run(r) for r in reqs))

    assert [s.status for s in states] == [OrderStatus.FILLED] * ORDERS, {s.reason for s in states}
    with log.open("rb") as f:
        f.seek(start)
        written = f.read().decode(errors="replace")
    assert written.count("deadlock detected") == 0, written[written.find("deadlock detected") - 2000 :][:4000]
    btc, _, _ = await stack.balance(user, "BTC")
    assert btc == D("0.001") * ORDERS
    _, available, reserved = await stack.balance(user, "GBP")
    assert reserved == 0 and available >= 0
