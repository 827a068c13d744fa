"""A customer's withdrawals: request (TOTP, rate limited, idempotent), list, show, cancel."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api import idempotency
from api.auth_deps import RequireTotp, problem_responses
from api.deps import EngineDep, SettingsDep
from api.payment_clients import PaymentsDep
from api.ratelimit import WithdrawalRateLimit
from api.routes.accounts import Customer
from api.sagas import PaymentSagasDep
from models.payments_api import WithdrawalCreate, WithdrawalOut, WithdrawalPage
from services import payments
from services.aml.travel_rule import travel_rule_info
from services.pagination import CURSOR_MAX_LENGTH
from services.screening.service import ScreeningConfig

router = APIRouter(tags=["payments"])


@router.post(
    "/withdrawals",
    status_code=201,
    response_model=WithdrawalOut,
    # The limit first: requests are counted before the second factor is checked, so no TOTP code is
    # spent on a refused request and guessed codes count against the limit too.
    dependencies=[WithdrawalRateLimit, RequireTotp],
    responses=problem_responses(401, 403, 404, 409, 422, 429, 503),
)
async def create_withdrawal(
    body: WithdrawalCreate,
    user: Customer,
    engine: EngineDep,
    settings: SettingsDep,
    sagas: PaymentSagasDep,
    clients: PaymentsDep,
    idempotency_key: idempotency.IdempotencyKey = None,
) -> JSONResponse:
    """Request a withdrawal (needs `X-TOTP-Code`); large ones wait for approval. With an
    `Idempotency-Key`, a repeat returns the first answer instead of withdrawing twice."""
    policy = payments.WithdrawalPolicy(
        approval_threshold_gbp=settings.withdrawal_approval_threshold_gbp,
        dual_approval_threshold_gbp=settings.withdrawal_dual_approval_threshold_gbp,
        fees=settings.withdrawal_fees,
    )

    async def withdraw(withdrawal_id: uuid.UUID) -> WithdrawalOut:
        return await payments.request_withdrawal(
            engine, withdrawal_id=withdrawal_id, user_id=user.id, currency=body.currency,
            amount=Decimal(body.amount), address_id=body.address_id, bank_account_id=body.bank_account_id,
            policy=policy, crypto_provider=settings.crypto_provider, prices=clients, sagas=sagas,
            travel_rule=travel_rule_info(body.travel_rule),
            screening=ScreeningConfig.from_settings(settings),
        )  # fmt: skip

    return await idempotency.respond_once(
        engine, user_id=user.id, key=idempotency_key, method="POST", path="/api/v1/withdrawals",
        body=body.model_dump(mode="json", exclude_none=True), status=201, act=withdraw,
    )  # fmt: skip


@router.get("/withdrawals", response_model=WithdrawalPage, responses=problem_responses(401, 403, 422))
async def list_withdrawals(
    user: Customer,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=CURSOR_MAX_LENGTH)] = None,
) -> WithdrawalPage:
    """Your withdrawals, newest first."""
    return await payments.list_withdrawals(engine, user_id=user.id, limit=limit, cursor=cursor)


@router.get(
    "/withdrawals/{withdrawal_id}", response_model=WithdrawalOut, responses=problem_responses(401, 403, 404)
)
async def get_withdrawal(withdrawal_id: uuid.UUID, user: Customer, engine: EngineDep) -> WithdrawalOut:
    """One of your withdrawals."""
    return await payments.own_withdrawal(engine, user_id=user.id, withdrawal_id=withdrawal_id)


@router.post(
    "/withdrawals/{withdrawal_id}/cancel",
    response_model=WithdrawalOut,
    responses=problem_responses(401, 403, 404, 409, 503),
)
async def cancel_withdrawal(
    withdrawal_id: uuid.UUID, user: Customer, engine: EngineDep, sagas: PaymentSagasDep
) -> WithdrawalOut:
    """Cancel your withdrawal; possible until it is sent."""
    return await payments.cancel_withdrawal(engine, user_id=user.id, withdrawal_id=withdrawal_id, sagas=sagas)
