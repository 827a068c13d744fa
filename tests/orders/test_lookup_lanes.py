"""Asking about unknown placements never starves placing (activities/lookup_lanes.py).

Found by the fault test: a handful of Kraken orders whose outcome was unknown each looked themselves
up (inside the placement, then every few seconds from the saga), and Kraken's calls go one at a time
under ccxt's throttle. New sell orders waited behind minutes of those lookups, their `order.place`
outlived its start-to-close timeout, was retried as "maybe sent" and became unknown orders too; at
the test's deadline six sells were still ROUTED. Now the placement never looks up (the saga does),
and the saga's lookup rounds take turns per venue: one round in the venue's queue at a time, and a
round that gets no turn in time answers "still unknown" without asking.

These run the activities against the Kraken sandbox over HTTP (the order stack's adapters); the
venue's own call log shows which calls were made.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from decimal import Decimal

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.lookup_lanes import LookupLanes
from activities.orders import ErrorType, OrderActivities
from models.market import ExecutionLeg, OrderType, Side, TimeInForce, VenueOrderStatus
from models.order_flow import PlaceRequest, ResolveRequest
from tests.orders.conftest import OrderStack

D = Decimal
PRIVATE = ("OpenOrders", "ClosedOrders", "QueryOrders", "TradesHistory", "AddOrder")


def activities(stack: OrderStack, lanes: LookupLanes) -> OrderActivities:
    return OrderActivities(
        engine=stack.engine,
        ledger=stack.ledger,
        router=stack.router,
        adapters=stack.adapters,
        settings=stack.settings,
        lanes=lanes,
    )


def sell(order_id: uuid.UUID, attempt: int = 1) -> PlaceRequest:
    return PlaceRequest(
        order_id=order_id,
        attempt=attempt,
        symbol="BTC-GBP",
        side=Side.SELL,
        type=OrderType.MARKET,
        leg=ExecutionLeg(
            provider="kraken",
            amount=D("0.001"),
            quote_amount=D("67.95"),
            average_price=D("67950"),
            fee_rate=D("0.001"),
            fee=D("0.07"),
            all_in_price=D("67882"),
            limit_price=D("67950"),
            levels_used=1,
        ),
        price=D("67000"),
        time_in_force=TimeInForce.IOC,
    )


def lookup(order_id: uuid.UUID) -> ResolveRequest:
    return ResolveRequest(order_id=order_id, attempt=1, provider="kraken", symbol="BTC-GBP")


async def private_calls(stack: OrderStack) -> list[str]:
    calls = await stack.venues["kraken"].calls()
    return [c for c in calls if any(c.endswith(p) for p in PRIVATE)]


def env(attempt: int = 1) -> ActivityEnvironment:
    e = ActivityEnvironment()
    e.info = dataclasses.replace(e.info, attempt=attempt)
    return e


async def test_a_placement_without_an_answer_is_not_looked_up_inside_the_placement(
    stack: OrderStack,
) -> None:
    acts = activities(stack, LookupLanes())
    await stack.venues["kraken"].fault("http_error", status=502, count=1, paths=["AddOrder"])
    before = len(await private_calls(stack))

    with pytest.raises(ApplicationError) as raised:
        await env().run(acts.place, sell(uuid.uuid4()))

    assert raised.value.type == ErrorType.UNRESOLVED  # unknown: the saga asks, never a fallback
    assert [c.rsplit("/", 1)[-1] for c in (await private_calls(stack))[before:]] == ["AddOrder"]


async def test_a_retried_placement_neither_sends_nor_looks_up(stack: OrderStack) -> None:
    acts = activities(stack, LookupLanes())
    order_id = uuid.uuid4()
    before = len(await private_calls(stack))

    with pytest.raises(ApplicationError) as raised:
        await env(attempt=2).run(acts.place, sell(order_id))

    assert raised.value.type == ErrorType.UNRESOLVED
    assert (await private_calls(stack))[before:] == []
    assert await stack.venue_orders("kraken", order_id) == []


async def test_lookup_rounds_take_turns_per_venue_and_placing_does_not_wait_for_them(
    stack: OrderStack,
) -> None:
    """One round holds Kraken's lane (its lookups answer slowly); a second round for another unknown
    order gets no turn within the wait and answers "unknown" without a call; a sell placed meanwhile
    fills; the round holding the lane still ends with its own answer."""
    lanes = LookupLanes(wait_s=0.5)
    acts = activities(stack, lanes)
    kraken = stack.venues["kraken"]
    await kraken.fault("latency", latency_ms=700, count=4, paths=["ClosedOrders"])
    first, second = uuid.uuid4(), uuid.uuid4()

    holding = asyncio.create_task(env().run(acts.resolve_placement, lookup(first)))
    for _ in range(1000):  # the first round is in the lane once its first call is out
        if lanes.busy("kraken"):
            break
        await asyncio.sleep(0.01)
    assert lanes.busy("kraken"), "the first lookup round never took Kraken's lane"
    calls_before = await private_calls(stack)
    waited = await env().run(acts.resolve_placement, lookup(second))
    placed = await env().run(acts.place, sell(uuid.uuid4()))
    held = await holding

    assert waited.order is None and lanes.skipped == 1  # no turn: still unknown, asked again later
    made = [c for c in (await private_calls(stack))[len(calls_before) :] if "AddOrder" in c]
    assert made == ["POST /0/private/AddOrder"]  # the sell went while the lane was held
    assert placed.status is VenueOrderStatus.FILLED
    assert held.order is None  # the first round did its lookups to the end: nothing there
