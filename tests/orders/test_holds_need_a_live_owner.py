"""A hold never outlives its order: a late replay (a stalled worker waking up after another worker
finished the order) reserves nothing, finishing releases every hold of the order, and the periodic
audit reports any hold whose owner is final."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text
from temporalio.api.enums.v1 import EventType
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.errors import ErrorType
from activities.holds import HoldActivities
from activities.orders import OrderActivities
from models.holds import HoldAuditInput
from models.market import OrderType, Side
from models.order_flow import CancelRequest, MarkRequest, OrderStatus, QuoteRequest, ReserveRequest
from services.holds import WITHDRAWAL_HOLD
from temporal import task_queues
from tests.orders.conftest import OrderStack
from workflows.hold_audit import HoldAuditWorkflow
from workflows.orders import ID_REUSE_POLICY, OrderWorkflow, workflow_id

D = Decimal


def order_activities(stack: OrderStack) -> OrderActivities:
    return OrderActivities(
        engine=stack.engine,
        ledger=stack.ledger,
        router=stack.router,
        adapters=stack.adapters,
        settings=stack.settings,
        email=None,
    )


async def holds_of(stack: OrderStack, reference_id: uuid.UUID) -> list[tuple[str, Decimal]]:
    async with stack.engine.connect() as c:
        rows = await c.execute(
            text("SELECT status, amount FROM holds WHERE reference_id = :r ORDER BY created_at"),
            {"r": reference_id},
        )
        return [(r[0], r[1]) for r in rows]


async def test_a_late_reserve_for_an_order_cancelled_meanwhile_reserves_nothing(stack: OrderStack) -> None:
    """The stalled-worker reproduction without SIGSTOP: the order is cancelled before its reserve
    step (by the worker that took over), then the stalled worker's replay runs the reserve step."""
    user = await stack.customer(gbp="5000")
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, quote_amount=D("100"))
    stack.started.append(workflow_id(req.order_id))
    handle = await stack.client.start_workflow(
        OrderWorkflow.run,
        req,
        id=workflow_id(req.order_id),
        task_queue=stack.task_queue,
        id_reuse_policy=ID_REUSE_POLICY,
        start_signal="cancel",
        start_signal_args=[CancelRequest(reason="changed my mind")],
    )
    assert (await handle.result()).status is OrderStatus.CANCELLED
    assert await holds_of(stack, req.order_id) == []

    late = order_activities(stack)
    env = ActivityEnvironment()
    record = await env.run(late.quote, QuoteRequest(order=req))
    with pytest.raises(ApplicationError) as refused:
        await env.run(late.reserve, ReserveRequest(order=req, record=record))
    assert refused.value.type == ErrorType.REJECTED
    assert refused.value.details[0] == "order_finished"
    # The late replay then records its own ending; the order's real outcome stands.
    await env.run(late.mark, MarkRequest(order_id=req.order_id, status=OrderStatus.REJECTED, reason="late"))

    assert await holds_of(stack, req.order_id) == []
    assert await stack.balance(user, "GBP") == (D("5000"), D("5000"), D(0))
    assert (await stack.order_row(req.order_id))["status"] == "CANCELLED"


async def test_finishing_an_order_releases_every_hold_that_references_it(stack: OrderStack) -> None:
    user = await stack.customer(gbp="10000")
    req = stack.request(user, side=Side.BUY, type=OrderType.LIMIT, amount=D("0.05"), price=D("60000"))
    handle = await stack.start(req)
    for _ in range(200):
        if (await handle.query(OrderWorkflow.state)).status is OrderStatus.OPEN:
            break
        await asyncio.sleep(0.05)
    # A hold the workflow does not know of (a replay that raced the first reserve, say).
    account = await stack.ledger.customer_account(user, "GBP")
    await stack.ledger.reserve(
        account, "GBP", D("7.50"), reference_type="ORDER", reference_id=req.order_id, step="stray"
    )
    await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="changed my mind"))

    assert (await handle.result()).status is OrderStatus.CANCELLED
    assert [status for status, _ in await holds_of(stack, req.order_id)] == ["released", "released"]
    assert await stack.balance(user, "GBP") == (D("10000"), D("10000"), D(0))


async def test_the_hold_audit_reports_holds_whose_owner_is_final_or_missing(stack: OrderStack) -> None:
    user = await stack.customer(gbp="1000")
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.001"))
    assert (await stack.run(req)).status is OrderStatus.FILLED
    account = await stack.ledger.customer_account(user, "GBP")
    # Holds created behind the saga's back: for the filled order, and for a withdrawal that does not exist.
    stray = await stack.ledger.reserve(
        account, "GBP", D("3"), reference_type="ORDER", reference_id=req.order_id, step="stray"
    )
    ghost_withdrawal = uuid.uuid4()
    ghost = await stack.ledger.reserve(
        account, "GBP", D("2"), reference_type=WITHDRAWAL_HOLD, reference_id=ghost_withdrawal
    )
    live = stack.request(user, side=Side.BUY, type=OrderType.LIMIT, amount=D("0.001"), price=D("60000"))
    live_handle = await stack.start(live)

    queue = f"{stack.task_queue}-ops"
    async with Worker(
        stack.client,
        task_queue=queue,
        workflows=[HoldAuditWorkflow],
        activities=[HoldActivities(engine=stack.engine).audit],
    ):
        result = await stack.client.execute_workflow(
            HoldAuditWorkflow.run, HoldAuditInput(), id=f"hold-audit-{uuid.uuid4()}", task_queue=queue
        )

    reported = {h.hold_id: h for h in result.orphaned}
    assert reported[stray.hold_id].owner_status == "FILLED"
    assert reported[stray.hold_id].remaining == D("3")
    assert reported[ghost.hold_id].owner_status is None
    assert reported[ghost.hold_id].reference_id == ghost_withdrawal
    assert all(h.reference_id != live.order_id for h in result.orphaned)  # a live order's hold is fine
    await stack.ledger.release(stray.hold_id)
    await stack.ledger.release(ghost.hold_id)
    await live_handle.signal(OrderWorkflow.cancel, CancelRequest(reason="done"))
    await live_handle.result()


async def _worker_process(
    stack: OrderStack, database_url: str, temporal_address: str, log: Path
) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",  # its users are made in the database: no FCA first-trade gates (tests/gates)
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": temporal_address,
        "BINANCE_URL": stack.venues["binance"].url,
        "KRAKEN_URL": stack.venues["kraken"].url,
        "OTC_URL": "http://127.0.0.1:9",  # no OTC desk here
        "SENDGRID_HOST": "",
    }
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers", "--queue", task_queues.ORDERS, env=env, stdout=out, stderr=out
        )


async def test_a_frozen_worker_that_wakes_with_a_stale_task_reserves_nothing(
    stack: OrderStack, database_url: str, temporal_address: str, tmp_path: Path
) -> None:
    """The reported reproduction, with real processes: worker A is frozen (SIGSTOP) while its pollers
    wait; an order is posted (its first workflow task goes to A) and cancelled; worker B takes the saga
    over once A's task times out and finishes it CANCELLED; A wakes (SIGCONT) and runs the stale task,
    reserve step included. No hold may come of it."""
    user = await stack.customer(gbp="5000")
    first_log, second_log = tmp_path / "worker-a.log", tmp_path / "worker-b.log"
    first = await _worker_process(stack, database_url, temporal_address, first_log)
    second: asyncio.subprocess.Process | None = None
    try:
        for _ in range(600):
            if "worker polling" in first_log.read_text(errors="replace"):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)  # its polls are now waiting at the server
        first.send_signal(signal.SIGSTOP)
        req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, quote_amount=D("100"))
        handle = await stack.start(req, task_queue=task_queues.ORDERS)
        for _ in range(500):  # A's (frozen) poller has taken the first task: its history ends here
            events = [e.event_type for e in (await handle.fetch_history()).events]
            if EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED in events:
                break
            await asyncio.sleep(0.01)
        await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="changed my mind"))
        second = await _worker_process(stack, database_url, temporal_address, second_log)
        final = await asyncio.wait_for(handle.result(), timeout=90)
        assert final.status is OrderStatus.CANCELLED
        assert await holds_of(stack, req.order_id) == []

        first.send_signal(signal.SIGCONT)
        # A now runs the stale task from its start, reserve step included, and then learns from the
        # server that the task is no longer its to complete.
        for _ in range(300):
            if "Workflow task not found" in first_log.read_text(errors="replace"):
                break
            await asyncio.sleep(0.1)
        woke = first_log.read_text(errors="replace")
        assert "Workflow task not found" in woke, "A never finished its stale task"
        assert await holds_of(stack, req.order_id) == []
        assert "nothing may be reserved for it" in woke  # its reserve step ran, and was refused
        assert await stack.balance(user, "GBP") == (D("5000"), D("5000"), D(0))
        assert (await stack.order_row(req.order_id))["status"] == "CANCELLED"
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), timeout=30)
                except TimeoutError:
                    proc.kill()
