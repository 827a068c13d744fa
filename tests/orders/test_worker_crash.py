"""A worker SIGKILLed while a placement is in flight: another worker picks the saga up, asks the venue
for the order it may have sent (it had), and settles it once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from decimal import Decimal

from models.market import OrderType, Side
from models.order_flow import OrderStatus
from temporal import task_queues
from tests.orders.conftest import OrderStack
from workflows.orders import OrderWorkflow


async def _worker(stack: OrderStack, database_url: str, temporal_address: str) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",  # its users are made in the database: no FCA first-trade gates (tests/gates)
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": temporal_address,
        "BINANCE_URL": stack.venues["binance"].url,
        "KRAKEN_URL": stack.venues["kraken"].url,
        "OTC_URL": "http://127.0.0.1:9",  # no OTC desk in this test: large orders would see it down
        "SENDGRID_HOST": "http://127.0.0.1:9",  # no mail sink here: fill emails fail fast, best effort
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers", "--queue", task_queues.ORDERS, env=env
    )


async def test_worker_killed_mid_placement_and_the_order_still_completes_once(
    stack: OrderStack, database_url: str, temporal_address: str
) -> None:
    user = await stack.customer(gbp="5000")
    # Both venues take the order at once and answer slowly, so the kill lands after the venue has it
    # and before the worker hears so. (Killed before the venue has it, the outcome is unknown for good:
    # the saga waits in NEEDS_ATTENTION and never sends again; see test_unknown_placement.py.)
    for venue in stack.venues.values():
        await venue.fault("timeout_after_accept", mode="hang", hang_ms=2500, count=1)
    first = await _worker(stack, database_url, temporal_address)
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=Decimal("0.01"))
    handle = await stack.start(req, task_queue=task_queues.ORDERS)
    loop = asyncio.get_running_loop()
    try:
        # Deadlines only stop a hang (60 s: a cold worker process on a loaded 2-core machine is slow).
        deadline = loop.time() + 60
        while (state := await handle.query(OrderWorkflow.state)).status is not OrderStatus.ROUTED:
            assert loop.time() < deadline, state
            await asyncio.sleep(0.05)
        # Kill once the placement request is at the venue (its answer delayed by the fault). Not a fixed
        # sleep: the request may first wait in ccxt's throttle (Kraken: about one request a second).
        placements = ("POST /api/v3/order", "POST /0/private/AddOrder")
        seen_before = [c for v in stack.venues.values() for c in await v.calls() if c in placements]
        deadline = loop.time() + 60
        while len([c for v in stack.venues.values() for c in await v.calls() if c in placements]) <= len(
            seen_before
        ):
            assert loop.time() < deadline, "the worker never sent the placement"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        second = await _worker(stack, database_url, temporal_address)
        try:
            final = await asyncio.wait_for(handle.result(), timeout=60)
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.wait(), timeout=30)
    finally:
        if first.returncode is None:
            first.kill()
    assert final.status is OrderStatus.FILLED, final.reason
    assert len(await stack.venue_orders(final.providers[0], req.order_id)) == 1
    assert (await stack.balance(user, "BTC"))[0] == Decimal("0.01")
    assert len(stack.started) == 1
