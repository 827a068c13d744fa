"""Orders accepted while no worker runs complete once one starts, even when the venues are slow to
answer a cold client: the worker warms its venue adapters (markets, fee tables, first books) before it
takes a task, so the first quotes are not asked of cold adapters inside the router's 1.5 s deadline."""

from __future__ import annotations

import asyncio
import signal
from decimal import Decimal

from models.market import OrderType, Side
from models.order_flow import OrderStatus
from temporal import task_queues
from tests.orders.conftest import OrderStack
from tests.orders.test_worker_crash import _worker


async def test_orders_waiting_for_a_worker_complete_when_a_cold_worker_starts(
    stack: OrderStack, database_url: str, temporal_address: str
) -> None:
    users = [await stack.customer(gbp="5000") for _ in range(6)]
    # Each venue's market list is slow to come the first time, as a real venue's big exchangeInfo is:
    # longer than the router's per-venue deadline for a book.
    await stack.venues["binance"].fault("latency", latency_ms=2000, paths=["exchangeInfo"], count=1)
    await stack.venues["kraken"].fault("latency", latency_ms=2000, paths=["AssetPairs"], count=1)
    requests = [
        stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=Decimal("0.01")) for user in users
    ]
    handles = [await stack.start(req, task_queue=task_queues.ORDERS) for req in requests]
    worker = await _worker(stack, database_url, temporal_address)
    try:
        finals = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=120)
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), timeout=30)
    assert [f.status for f in finals] == [OrderStatus.FILLED] * 6, [f.reason for f in finals]
    for req, final in zip(requests, finals, strict=True):
        assert len(await stack.venue_orders(final.providers[0], req.order_id)) == 1
