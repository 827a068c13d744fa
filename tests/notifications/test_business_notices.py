"""The business flows' notices as they are written to the outbox: orders (filled, partly filled, cancelled,
large trade), withdrawal statuses (under review, no reason ever), keyed by business ids so a replayed step
writes nothing new."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from models.payments import WithdrawalStatus
from services.orders import notices as order_notices
from services.payments import withdrawal_notices
from tests.notifications.conftest import Stack


async def _events(stack: Stack, user_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    async with stack.engine.connect() as c:
        rows = await c.execute(
            text(
                "SELECT event, payload FROM notification_outbox WHERE user_id = :u "
                "AND event NOT LIKE 'security%' ORDER BY event"
            ),
            {"u": user_id},
        )
        return [(e, p) for e, p in rows.all()]


async def test_order_outcomes_are_told_once_each(stack: Stack) -> None:
    customer = await stack.customer()
    big, part, unfilled, rejected = (uuid.uuid4() for _ in range(4))
    orders = {
        big: (customer.id, "buy", "BTC-GBP", Decimal("0.2"), Decimal("0.2"), Decimal("80000"),
              Decimal("16000.004"), "FILLED"),
        part: (customer.id, "sell", "ETH-GBP", Decimal("2"), Decimal("0.5"), Decimal("2000"),
               Decimal("1000"), "CANCELLED"),
        unfilled: (customer.id, "buy", "BNB-GBP", Decimal("1"), Decimal("0"), None, Decimal("0"),
                   "CANCELLED"),
        rejected: (customer.id, "buy", "BNB-GBP", Decimal("1"), Decimal("0"), None, Decimal("0"),
                   "REJECTED"),
    }  # fmt: skip
    for _ in range(2):  # a retried activity writes nothing new
        async with stack.engine.begin() as conn:
            for order_id, row in orders.items():
                await order_notices.outcome(conn, order_id, row)
    events = await _events(stack, customer.id)
    assert [e for e, _ in events] == [
        "large_trade",
        "order_cancelled",
        "order_filled",
        "order_partially_filled",
    ]
    by_event = dict(events)
    assert by_event["order_filled"]["total_gbp"] == "16000.01"  # the customer's cost rounds up, never down
    assert by_event["large_trade"]["order_id"] == str(big)
    assert by_event["order_partially_filled"]["requested"] == "2"
    assert by_event["order_cancelled"]["order_id"] == str(unfilled)


async def test_withdrawal_statuses_are_told_without_a_reason(stack: Stack) -> None:
    customer = await stack.customer()
    withdrawal_id = uuid.uuid4()
    async with stack.engine.begin() as conn:
        await withdrawal_notices.requested(conn, withdrawal_id, customer.id, "GBP", Decimal("60000.00"))
        await withdrawal_notices.large_withdrawal(
            conn, withdrawal_id, customer.id, "GBP", Decimal("60000.00"), Decimal("60000.00")
        )
        for status in (
            WithdrawalStatus.AWAITING_APPROVAL,
            WithdrawalStatus.AWAITING_APPROVAL,  # a replayed step
            WithdrawalStatus.PROCESSING,  # not told
            WithdrawalStatus.REJECTED,
        ):
            await withdrawal_notices.status_changed(
                conn, withdrawal_id, customer.id, "GBP", Decimal("60000.00"), status
            )
    events = await _events(stack, customer.id)
    assert [e for e, _ in events] == [
        "withdrawal_awaiting_approval",
        "withdrawal_failed",
        "withdrawal_requested",
    ]
    assert all(set(p) == {"withdrawal_id", "currency", "amount"} for _, p in events)  # never a reason
    async with stack.engine.connect() as c:
        ops = (
            await c.execute(
                text("SELECT event, payload FROM notification_outbox WHERE event = 'ops_large_withdrawal' "
                     "AND payload->>'summary' LIKE :w"),
                {"w": f"%{withdrawal_id}%"},
            )
        ).all()  # fmt: skip
    assert len(ops) == 1 and ops[0][1]["details"]["notional_gbp"] == "60000.00"
