"""Reconciliation reads every source after its cut-off, while the order sagas go on: an order the venue
filled before the cut-off and its saga settled after it, or one the venue filled after the cut-off, must be
explained exactly, never called drift.

The race is reproduced deterministically: a real order saga fills and settles a market order at Kraken,
then the run's reads (the very activities the workflow runs) are made for a cut-off placed between the
venue's execution and our settlement, or before both.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.aml import AmlActivities
from activities.orders import OrderActivities
from activities.reconciliation import ReconciliationActivities
from models.market import OrderType, Side
from models.order_flow import OrderRequest, OrderStatus
from models.reconciliation import ChainRead, CutOff, RecordInput, RunResult, RunStatus, SourceQuery
from providers.exchanges.ccxt_adapter import CcxtAdapter
from providers.exchanges.trades import venue_trades
from services.router import Router, RouterParams
from tests.reconciliation.conftest import World
from tests.reconciliation.test_mixed_session import _gbp_deposit
from workflows.orders import OrderWorkflow


async def _filled(world: World, router: Router, request: OrderRequest) -> None:
    """The order through the real order saga, to FILLED."""
    orders = OrderActivities(
        engine=world.engine, ledger=world.ledger, adapters=world.adapters, settings=world.settings,
        router=router, email=None,
    )  # fmt: skip
    queue = f"{world.task_queue}-orders"
    await _gbp_deposit(world, request.user_id, "5000.00")
    async with Worker(
        world.client,
        task_queue=queue,
        workflows=[OrderWorkflow],
        activities=[
            orders.accept, orders.quote, orders.reserve, orders.place, orders.settle, orders.mark,
            orders.venue_status, orders.cancel_at_venue, orders.resolve_placement, orders.notify,
            AmlActivities(engine=world.engine, settings=world.settings).screen_trade,
        ],
    ):  # fmt: skip
        state = await world.client.execute_workflow(
            OrderWorkflow.run, request, id=f"order-{request.order_id}", task_queue=queue
        )
    assert state.status is OrderStatus.FILLED, state


async def _settled_at(world: World, order_id: uuid.UUID) -> tuple[str, datetime]:
    """The venue order id and when our books settled it (the settlement's transaction time)."""
    async with world.engine.connect() as conn:
        venue_order_id, settled_at = (
            await conn.execute(
                text("SELECT provider_trade_id, executed_at FROM trades WHERE order_id = :o"), {"o": order_id}
            )
        ).one()
    return str(venue_order_id), settled_at


async def _settled_order(world: World) -> tuple[uuid.UUID, datetime, datetime]:
    """A market buy of 0.5 ETH filled at Kraken and settled by the real order saga: its id, when the venue
    executed it and when our books settled it."""
    kraken = world.adapters["kraken"]
    request = OrderRequest(
        order_id=uuid.uuid4(), user_id=await world.customer(), symbol="ETH-GBP", side=Side.BUY,
        type=OrderType.MARKET, amount=Decimal("0.5"),
    )  # fmt: skip
    await _filled(world, Router({"kraken": kraken}, params=RouterParams(deadline_s=3.0)), request)
    venue_order_id, settled_at = await _settled_at(world, request.order_id)
    assert isinstance(kraken, CcxtAdapter)
    executed_ms = max(
        t.timestamp_ms or 0 for t in await venue_trades(kraken, None) if t.order_id == venue_order_id
    )
    executed_at = datetime.fromtimestamp(executed_ms / 1000, tz=settled_at.tzinfo)
    assert executed_at < settled_at  # the venue fills first, then the saga books what it filled
    return request.order_id, executed_at, settled_at


async def _run_at(world: World, cut_off: datetime) -> tuple[RunResult, RecordInput]:
    """One run's reads for `cut_off`, made now (after it), recorded as the workflow records them."""
    acts = ReconciliationActivities(
        engine=world.engine, settings=world.settings, bank=lambda: world.bank,
        adapters=lambda: world.adapters, chains=lambda: {},
    )  # fmt: skip
    env = ActivityEnvironment()
    cut = CutOff(run_id=uuid.uuid4(), cut_off=cut_off, venues=sorted(world.adapters), since=None)
    sources = [await env.run(acts.read_venue, SourceQuery(source=v, cut_off=cut_off)) for v in cut.venues] + [
        await env.run(acts.read_bank, SourceQuery(source="bank", cut_off=cut_off))
    ]
    ledger = await env.run(acts.read_ledger, cut)
    fills = await env.run(acts.read_fills, cut)
    data = RecordInput(
        run_id=cut.run_id, cut_off=cut_off, trigger="test", sources=sources, ledger=ledger,
        in_flight=fills.in_flight, fills=fills.fills, chain=ChainRead(),
    )  # fmt: skip
    return await env.run(acts.record, data), data


async def test_an_order_filled_before_the_cut_off_and_settled_after_it_is_in_flight_not_drift(
    world: World,
) -> None:
    order_id, executed_at, settled_at = await _settled_order(world)
    # The cut-off fell after the venue's execution and before our settlement; the reads came after both.
    cut_off = settled_at - timedelta(microseconds=1)
    assert executed_at <= cut_off
    result, data = await _run_at(world, cut_off)
    assert {c.currency: c.status for c in result.currencies} == dict.fromkeys(
        ("GBP", "BTC", "ETH", "BNB"), RunStatus.MATCHED
    ), result.currencies
    eth = next(c for c in result.currencies if c.currency == "ETH")
    assert eth.in_flight == Decimal("0.5")  # bought at the venue, not in the books as of the cut-off
    assert [i["id"] for i in data.in_flight.items if i["kind"] == "order"] == [str(order_id)]
    assert data.fills.unmatched_venue == [] and data.fills.unmatched_ours == []
    # The same books read after the settlement, with no race, match with nothing in flight.
    later, _ = await _run_at(world, datetime.now(settled_at.tzinfo))
    assert next(c for c in later.currencies if c.currency == "ETH").in_flight == 0
    assert {c.status for c in later.currencies} == {RunStatus.MATCHED}


async def test_an_order_filled_after_the_cut_off_is_taken_off_the_venue_balance_not_drift(
    world: World,
) -> None:
    order_id, executed_at, settled_at = await _settled_order(world)
    # The cut-off came before the venue executed the order; the balances were read after it filled.
    cut_off = executed_at - timedelta(milliseconds=1)
    result, data = await _run_at(world, cut_off)
    assert {c.currency: c.status for c in result.currencies} == dict.fromkeys(
        ("GBP", "BTC", "ETH", "BNB"), RunStatus.MATCHED
    ), result.currencies
    kraken = next(s for s in data.sources if s.source == "kraken")
    assert [i["kind"] for i in kraken.items] == ["trade_after_cut_off"]
    assert next(c for c in result.currencies if c.currency == "ETH").in_flight == 0
    assert data.fills.unmatched_venue == [] and data.fills.unmatched_ours == []
    assert not [i for i in data.in_flight.items if i["kind"] == "order"], order_id


async def test_an_otc_trade_settled_after_the_cut_off_is_in_flight_as_booked_not_drift(world: World) -> None:
    """The OTC desk lists no trades: its binding quote moved its balance when accepted, before the cut-off;
    the settlement our books made after it explains the difference exactly."""
    a = world.adapters
    router = Router(
        {"binance": a["binance"]},
        otc=a["otc"],
        params=RouterParams(deadline_s=3.0, otc_threshold=Decimal(100)),
    )
    request = OrderRequest(
        order_id=uuid.uuid4(), user_id=await world.customer(), symbol="ETH-GBP", side=Side.BUY,
        type=OrderType.MARKET, amount=Decimal("1"),
    )  # fmt: skip
    await _filled(world, router, request)
    _, settled_at = await _settled_at(world, request.order_id)
    async with world.engine.connect() as conn:
        venue = (
            await conn.execute(
                text("SELECT routed_to_provider FROM orders WHERE id = :o"), {"o": request.order_id}
            )
        ).scalar_one()
    assert venue == "otc"
    result, data = await _run_at(world, settled_at - timedelta(microseconds=1))
    assert {c.currency: c.status for c in result.currencies} == dict.fromkeys(
        ("GBP", "BTC", "ETH", "BNB"), RunStatus.MATCHED
    ), result.currencies
    items = [i for i in data.in_flight.items if i["kind"] == "order"]
    assert {(i["id"], i["venue"], i["currency"]) for i in items} == {
        (str(request.order_id), "otc", "ETH"),
        (str(request.order_id), "otc", "GBP"),
    }
    assert next(c for c in result.currencies if c.currency == "ETH").in_flight == Decimal("1")
