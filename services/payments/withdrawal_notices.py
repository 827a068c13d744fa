"""The customer's withdrawal notifications (and the ops alert for a large one), written to the outbox in
the transaction that records the request or the status (issue 17).

Keyed by withdrawal and status, so a replayed saga step enqueues nothing new. No reason is ever passed to
the customer's message: a refusal or a review may stem from screening (no tipping off); a withdrawal held
for approval reads "under review".
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from models.payments import WithdrawalStatus
from services.alerts import alert
from services.notifications import NotificationEvent, enqueue

_EVENTS = {
    WithdrawalStatus.AWAITING_APPROVAL: NotificationEvent.WITHDRAWAL_AWAITING_APPROVAL,
    WithdrawalStatus.APPROVED: NotificationEvent.WITHDRAWAL_APPROVED,
    WithdrawalStatus.COMPLETED: NotificationEvent.WITHDRAWAL_COMPLETED,
    WithdrawalStatus.FAILED: NotificationEvent.WITHDRAWAL_FAILED,
    WithdrawalStatus.REJECTED: NotificationEvent.WITHDRAWAL_FAILED,
}


def _payload(withdrawal_id: uuid.UUID, currency: str, amount: Decimal) -> dict[str, str]:
    return {"withdrawal_id": str(withdrawal_id), "currency": currency, "amount": str(amount)}


async def requested(
    conn: AsyncConnection, withdrawal_id: uuid.UUID, user_id: uuid.UUID, currency: str, amount: Decimal
) -> None:
    """Written with the hold (the saga's reserve step), not with the request: a request refused before
    anything was held is discarded, and its customer got a 4xx, not a "we received it"."""
    await enqueue(
        conn,
        event=NotificationEvent.WITHDRAWAL_REQUESTED,
        user_id=user_id,
        payload=_payload(withdrawal_id, currency, amount),
        dedupe_key=f"withdrawal:{withdrawal_id}:requested",
    )


async def large_withdrawal(
    conn: AsyncConnection,
    withdrawal_id: uuid.UUID,
    user_id: uuid.UUID,
    currency: str,
    amount: Decimal,
    notional_gbp: Decimal,
) -> None:
    """The ops alert for a request over the dual-approval threshold (£50,000), with the request."""
    await alert(
        conn,
        "ops.alert.large_withdrawal",
        target_type="withdrawal",
        target_id=str(withdrawal_id),
        user_id=str(user_id),
        amount=f"{amount} {currency}",
        notional_gbp=str(notional_gbp),
    )


async def status_changed(
    conn: AsyncConnection,
    withdrawal_id: uuid.UUID,
    user_id: uuid.UUID,
    currency: str,
    amount: Decimal,
    status: WithdrawalStatus,
) -> None:
    event = _EVENTS.get(WithdrawalStatus(status))
    if event is None:  # PENDING, HALTED, PROCESSING, NEEDS_ATTENTION, CANCELLED (the customer's own act)
        return
    await enqueue(
        conn,
        event=event,
        user_id=user_id,
        payload=_payload(withdrawal_id, currency, amount),
        dedupe_key=f"withdrawal:{withdrawal_id}:{WithdrawalStatus(status).value}",
    )
