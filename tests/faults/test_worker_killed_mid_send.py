"""A worker SIGKILLed while the bank holds its payout request: the saga notices through the send's
heartbeat (not after the send's whole start-to-close timeout), reads the outcome as unknown, finds the
payout by our id and completes the withdrawal, paid once.

Found by the fault test: a GBP withdrawal whose send was in flight on the killed worker sat PROCESSING
for the send's 60 s start-to-close before anyone asked the bank, which pushed the customer's next steps
past the run's deadline.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

from temporalio.api.enums.v1 import EventType, TimeoutType

from tests.faults.conftest import FaultWorld
from tests.faults.test_money_under_faults import (
    DEPOSIT_GBP,
    Run,
    _confirm_bank_account,
    _customer_total,
    _fund,
    _status,
)


async def test_a_send_in_flight_on_a_killed_worker_is_noticed_by_its_heartbeat_and_paid_once(
    world: FaultWorld,
) -> None:
    worker = await world.start_worker()
    customer = await world.customer()
    run = Run(customers=[customer])
    await _fund(world, customer)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while await _customer_total(world, run, "GBP") != DEPOSIT_GBP:
        assert loop.time() < deadline, "the deposit was not credited"
        await asyncio.sleep(0.2)
    account = await _confirm_bank_account(world, customer)
    # The bank takes the payout and answers only after the worker is gone.
    world.bank_state.faults.append({"kind": "payout_timeout", "count": 1, "hang_ms": 120_000})

    r = await world.api(
        "POST",
        "/withdrawals",
        customer,
        totp=True,
        json={"currency": "GBP", "amount": "100.00", "bank_account_id": str(account)},
    )
    assert r.status_code == 201, r.text
    withdrawal_id = uuid.UUID(r.json()["id"])
    while not any(p.external_id == str(withdrawal_id) for p in world.bank_state.payouts.values()):
        assert loop.time() < deadline, "the payout never reached the bank"
        await asyncio.sleep(0.1)
    await world.kill_worker(worker)
    await world.start_worker()

    while await _status(world, "withdrawals", withdrawal_id) != "COMPLETED":
        assert loop.time() < deadline + 90, await _status(world, "withdrawals", withdrawal_id)
        await asyncio.sleep(0.3)

    history = await world.client.get_workflow_handle(f"withdrawal-{withdrawal_id}").fetch_history()
    sends = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "payments.send_withdrawal"
    }
    timeouts = [
        e.activity_task_timed_out_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT
        and e.activity_task_timed_out_event_attributes.scheduled_event_id in sends
    ]
    assert len(sends) == 1  # sent once, never again
    assert [TimeoutType.Name(t.failure.timeout_failure_info.timeout_type) for t in timeouts] == [
        "TIMEOUT_TYPE_HEARTBEAT"
    ], json.loads(history.to_json())["events"][-5:]
    paid = [p for p in world.bank_state.payouts.values() if p.external_id == str(withdrawal_id)]
    assert len(paid) == 1 and Decimal(paid[0].amount) == Decimal("100.00")
