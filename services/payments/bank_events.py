"""The bank's signed events (the webhook verified the signature): a payment received starts the deposit
saga, a payout's outcome goes to the withdrawal saga waiting for it, anything else is acknowledged.

Checked here, at the edge: a signed event that cannot be a real Faster Payment (not GBP, not a positive
whole number of pence, fields missing) is held in suspense with an ops alert and acknowledged, so the bank
stops redelivering it and no saga retries it for ever.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from models.payments import BankPayment
from models.payments_api import WebhookAck
from services.payments.bank_deposits import hold_bank_event
from services.payments.suspense import received_payment


class BankEventSagas(Protocol):
    """The sagas a bank event is for (the API implements it over Temporal)."""

    async def start_deposit(self, payment: BankPayment) -> WebhookAck: ...

    async def payout_settled(self, kind: str, data: dict[str, Any]) -> WebhookAck: ...


async def receive_bank_event(
    engine: AsyncEngine, *, kind: str, data: dict[str, Any], body: bytes, sagas: BankEventSagas
) -> WebhookAck:
    """Act on one verified bank event; answers what the bank is told (accepted, duplicate, held, ignored)."""
    if kind == "payment.received":
        payment, problem = received_payment(data)
        if problem is not None:
            tx = data.get("bank_tx_id")
            external_id = tx if isinstance(tx, str) and tx else "event:" + hashlib.sha256(body).hexdigest()
            await hold_bank_event(engine, external_id=external_id, data=data, problem=problem)
            return WebhookAck(status="held")
        assert payment is not None  # received_payment gives a payment or a problem
        return await sagas.start_deposit(payment)
    if kind in ("payout.completed", "payout.failed"):
        return await sagas.payout_settled(kind, data)
    return WebhookAck(status="ignored")
