"""Paying in: the bank's signed webhook, a customer's deposit instructions and their deposits."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from api.auth_deps import problem_responses
from api.deps import EngineDep, SettingsDep
from api.errors import ProblemError
from api.payment_clients import PaymentsDep
from api.routes.accounts import Customer
from api.sagas import PaymentSagasDep
from models.payments_api import DepositInstructions, DepositPage, WebhookAck
from providers.bank import SIGNATURE_HEADER, TIMESTAMP_HEADER, InvalidWebhook, verify_webhook
from services import payments
from services.pagination import CURSOR_MAX_LENGTH

log = logging.getLogger("broker.payments")

router = APIRouter(tags=["payments"])


@dataclass(frozen=True, slots=True)
class BankEvent:
    kind: str
    data: dict[str, Any]
    body: bytes


async def signed_bank_event(request: Request, settings: SettingsDep) -> BankEvent:
    """The bank event in the request, once its signature and age are checked (401 otherwise; 400 if it
    is signed but not an event)."""
    body = await request.body()
    try:
        verify_webhook(
            settings.bank_webhook_secret,
            body,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            window=settings.bank_webhook_tolerance_seconds,
        )
    except InvalidWebhook as e:
        log.warning(json.dumps({"event": "bank_webhook.refused", "why": str(e)}))
        raise ProblemError(401, "invalid_signature", str(e)) from e
    try:
        event = json.loads(body)
        kind, data = str(event["type"]), event["data"]
        if not isinstance(data, dict):
            raise TypeError("data is not an object")
    except (ValueError, KeyError, TypeError) as e:
        raise ProblemError(400, "malformed_event", "not a bank event") from e
    return BankEvent(kind, data, body)


SignedBankEvent = Annotated[BankEvent, Depends(signed_bank_event)]


@router.post("/webhooks/bank", response_model=WebhookAck, responses=problem_responses(400, 401))
async def bank_webhook(sagas: PaymentSagasDep, event: SignedBankEvent, engine: EngineDep) -> WebhookAck:
    """The bank's signed event (payment received, payout completed or failed)."""
    # Temporal first (as before this route was split): while it is down the bank is told 503 and redelivers.
    return await payments.receive_bank_event(
        engine, kind=event.kind, data=event.data, body=event.body, sagas=sagas
    )


@router.get(
    "/deposits/instructions",
    response_model=DepositInstructions,
    responses=problem_responses(401, 403, 422, 503),
)
async def deposit_instructions(
    user: Customer,
    engine: EngineDep,
    clients: PaymentsDep,
    settings: SettingsDep,
    currency: Annotated[str, Query(pattern="^[A-Z]{3,5}$")] = "GBP",
) -> DepositInstructions:
    """How to pay in: your bank reference (GBP) or your deposit address (crypto)."""
    return await payments.deposit_instructions(
        engine, user_id=user.id, email=user.email, currency=currency, accounts=clients,
        provider=settings.crypto_deposit_provider, confirmations=settings.crypto_deposit_confirmations,
    )  # fmt: skip


@router.get("/deposits", response_model=DepositPage, responses=problem_responses(401, 403, 422))
async def list_deposits(
    user: Customer,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=CURSOR_MAX_LENGTH)] = None,
) -> DepositPage:
    """Your deposits, newest first."""
    return await payments.list_deposits(engine, user_id=user.id, limit=limit, cursor=cursor)
