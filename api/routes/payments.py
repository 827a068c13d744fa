"""Deposits, withdrawals, withdrawal addresses, balances and the bank webhook (seed §C.4, §C.7).

Routes validate, call services.payments or start/ask a saga, and shape the answer. Money in JSON is a
string. Customers only ever see their own records: another customer's id answers 404, not 403.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import idempotency
from api.auth_deps import RequireTotp, problem_responses
from api.deps import EngineDep, SettingsDep, TemporalDep, VenueAdapters
from api.errors import ProblemError, ServiceUnavailable
from api.ratelimit import WithdrawalRateLimit
from api.routes.accounts import Customer
from config import Settings
from models.api import DecimalStr
from models.assets import CRYPTO, FIAT, SCALES
from models.money import money_or_none as _money
from models.payments import BankPayment, Destination, WithdrawalInput, WithdrawalState
from providers import email as templates
from providers.bank import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BankClient,
    BankError,
    InvalidWebhook,
    verify_webhook,
)
from providers.email import EmailDeliveryError, EmailSender
from providers.exchanges.base import ExecutionAdapter, UnsupportedByVenue, VenueError
from services import payments
from services.decision_tokens import DecisionTokens
from temporal import search_attributes as sa
from temporal import task_queues
from workflows.deposits import DepositWorkflow, deposit_workflow_id
from workflows.withdrawals import WithdrawalWorkflow, withdrawal_workflow_id

log = logging.getLogger("broker.payments")

router = APIRouter(tags=["payments"])
START_TIMEOUT = timedelta(seconds=10)


class PaymentsState:
    """The API's clients of the outside world for payments, built on first use and closed at shutdown.

    `venues` is the process's one adapter set (shared with market data); without it the state builds and
    closes a set of its own."""

    def __init__(self, settings: Settings, venues: VenueAdapters | None = None) -> None:
        self.settings = settings
        self._bank: BankClient | None = None
        self._venues = venues or VenueAdapters(settings)
        self._owns_venues = venues is None

    def bank(self) -> BankClient:
        if self._bank is None:
            self._bank = BankClient.from_settings(self.settings)
        return self._bank

    def adapters(self) -> dict[str, ExecutionAdapter]:
        return self._venues.get()

    def crypto_adapter(self, provider: str | None = None) -> ExecutionAdapter:
        adapter = self.adapters().get(provider or self.settings.crypto_provider)
        if adapter is None:
            raise ProblemError(503, "provider_unavailable", "the crypto provider is not configured")
        return adapter

    async def close(self) -> None:
        if self._bank is not None:
            await self._bank.close()
        if self._owns_venues:
            await self._venues.close()


def payments_state(request: Request) -> PaymentsState:
    state: PaymentsState = request.app.state.payments
    return state


PaymentsDep = Annotated[PaymentsState, Depends(payments_state)]


# --- the bank's webhook -------------------------------------------------------------------


class WebhookAck(BaseModel):
    status: str
    workflow_id: str | None = None


_MALFORMED_PAYMENT = payments.Uncreditable(
    "malformed_payment", "the payment's fields are missing or mistyped"
)


def _received_payment(data: dict[str, Any]) -> tuple[BankPayment | None, payments.Uncreditable | None]:
    """The payment in a `payment.received` event, and why it cannot be credited (None: it can)."""
    if not isinstance(data.get("amount"), str):  # the bank sends amounts as strings; a float is not money
        return None, payments.Uncreditable("amount_not_a_string", "the amount is not a decimal string")
    try:
        payment = BankPayment.model_validate(data)
    except ValueError:  # pydantic's ValidationError
        return None, _MALFORMED_PAYMENT
    return payment, payments.bank_payment_problem(payment)


@router.post(
    "/webhooks/bank",
    response_model=WebhookAck,
    responses=problem_responses(400, 401),
    include_in_schema=True,
)
async def bank_webhook(
    request: Request, settings: SettingsDep, client: TemporalDep, engine: EngineDep
) -> WebhookAck:
    """The bank's signed event (payment received, payout completed or failed)."""
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
        kind = str(event["type"])
        data = event["data"]
        if not isinstance(data, dict):
            raise TypeError("data is not an object")
    except (ValueError, KeyError, TypeError) as e:
        raise ProblemError(400, "malformed_event", "not a bank event") from e
    if kind == "payment.received":
        # Checked here, at the edge: a signed event that cannot be a real Faster Payment (not GBP, not a
        # positive whole number of pence, fields missing) is held in suspense with an ops alert and
        # acknowledged, so the bank stops redelivering it and no saga retries it for ever.
        payment, problem = _received_payment(data)
        if payment is None or problem is not None:
            tx = data.get("bank_tx_id")
            external_id = tx if isinstance(tx, str) and tx else "event:" + hashlib.sha256(body).hexdigest()
            await payments.hold_bank_event(
                engine, external_id=external_id, data=data, problem=problem or _MALFORMED_PAYMENT
            )
            return WebhookAck(status="held")
        wf_id = deposit_workflow_id(payment.bank_tx_id)
        try:
            await client.start_workflow(
                DepositWorkflow.run,
                payment,
                id=wf_id,
                task_queue=task_queues.PAYMENTS,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=TypedSearchAttributes([SearchAttributePair(sa.CURRENCY, payment.currency)]),
            )
        except WorkflowAlreadyStartedError:
            return WebhookAck(status="duplicate", workflow_id=wf_id)
        return WebhookAck(status="accepted", workflow_id=wf_id)
    if kind in ("payout.completed", "payout.failed"):
        from models.payments import PayoutUpdate

        wf_id = withdrawal_workflow_id(data.get("external_id", ""))
        status = kind.removeprefix("payout.")
        payout_id = str(data.get("payout_id", ""))
        try:
            withdrawal_id = uuid.UUID(str(data.get("external_id", "")))
        except ValueError:
            return WebhookAck(status="ignored")
        # The bank's signature was verified above: sign what it said, so the saga can tell this outcome
        # from a signal anyone who reaches Temporal could send.
        proof = DecisionTokens.from_secret(settings.jwt_secret).issue(
            actor_id=None,
            withdrawal_id=withdrawal_id,
            action=f"payout_{status}",
            now=datetime.now(UTC),
            detail=payout_id,
        )
        update = PayoutUpdate(
            payout_id=payout_id, status=status, reason=str(data.get("reason") or ""), proof=proof
        )
        try:
            await client.get_workflow_handle(wf_id).signal(WithdrawalWorkflow.payout_settled, update)
        except RPCError as e:
            if e.status is not RPCStatusCode.NOT_FOUND:
                # Temporal could not take it (down, overloaded, …): 503, and the bank redelivers.
                raise ServiceUnavailable("temporal") from e
            # Finished or unknown: the saga already learned the outcome by asking the bank.
            return WebhookAck(status="ignored", workflow_id=wf_id)
        return WebhookAck(status="accepted", workflow_id=wf_id)
    return WebhookAck(status="ignored")


# --- deposits -----------------------------------------------------------------------------


class DepositInstructions(BaseModel):
    currency: str
    # GBP: pay by Faster Payments to this account with this reference.
    reference: str | None = None
    sort_code: str | None = None
    account_number: str | None = None
    account_name: str | None = None
    # Crypto: send to this address at the provider.
    address: str | None = None
    tag: str | None = None
    network: str | None = None
    confirmations_required: int | None = None


@router.get(
    "/deposits/instructions",
    response_model=DepositInstructions,
    responses=problem_responses(401, 403, 422, 503),
)
async def deposit_instructions(
    user: Customer,
    engine: EngineDep,
    state: PaymentsDep,
    settings: SettingsDep,
    currency: Annotated[str, Query(pattern="^[A-Z]{3,5}$")] = "GBP",
) -> DepositInstructions:
    """How to pay in: your bank reference (GBP) or your deposit address (crypto)."""
    if currency in FIAT:
        return await _bank_instructions(engine, state, user.id, user.email)
    if currency in CRYPTO:
        return await _crypto_instructions(engine, state, settings, user.id, currency)
    raise ProblemError(422, "unknown_currency", f"{currency} cannot be deposited")


async def _bank_instructions(
    engine: Any, state: PaymentsState, user_id: uuid.UUID, email: str
) -> DepositInstructions:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT reference, sort_code, account_number, account_name FROM deposit_references "
                    "WHERE user_id = :u"
                ),
                {"u": user_id},
            )
        ).first()
    if row is None:
        try:
            ref = await state.bank().customer_reference(str(user_id), email)
        except BankError as e:
            raise ProblemError(503, "bank_unavailable", "the bank is unavailable; try again") from e
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO deposit_references (id, user_id, provider, reference, sort_code, "
                    "account_number, account_name) VALUES (:id, :u, 'bank', :r, :sc, :an, :n) "
                    "ON CONFLICT (user_id) DO NOTHING"
                ),
                {
                    "id": uuid.uuid4(),
                    "u": user_id,
                    "r": ref.reference,
                    "sc": ref.sort_code,
                    "an": ref.account_number,
                    "n": ref.account_name,
                },
            )
        return await _bank_instructions(engine, state, user_id, email)
    return DepositInstructions(
        currency="GBP", reference=row[0], sort_code=row[1], account_number=row[2], account_name=row[3]
    )


async def _crypto_instructions(
    engine: Any, state: PaymentsState, settings: Settings, user_id: uuid.UUID, currency: str
) -> DepositInstructions:
    provider = settings.crypto_deposit_provider
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT address, tag FROM crypto_deposit_addresses "
                    "WHERE user_id = :u AND provider = :p AND currency = :c"
                ),
                {"u": user_id, "p": provider, "c": currency},
            )
        ).first()
    if row is None:
        try:
            # A fresh address per customer: deposits are attributed by the address they arrive at.
            given = await state.crypto_adapter(provider).deposit_address(currency, new=True)
        except UnsupportedByVenue as e:
            raise ProblemError(
                503, "deposit_address_unavailable", f"{provider} cannot give each customer their own address"
            ) from e
        except VenueError as e:
            raise ProblemError(503, "provider_unavailable", "the provider is unavailable; try again") from e
        async with engine.begin() as conn:
            inserted = (
                await conn.execute(
                    text(
                        "INSERT INTO crypto_deposit_addresses "
                        "(id, user_id, provider, currency, address, tag) "
                        "VALUES (:id, :u, :p, :c, :a, :t) ON CONFLICT DO NOTHING RETURNING id"
                    ),
                    {"id": uuid.uuid4(), "u": user_id, "p": provider, "c": currency, "a": given.address,
                     "t": given.tag or ""},
                )
            ).first()  # fmt: skip
            if inserted is None:
                mine = (
                    await conn.execute(
                        text(
                            "SELECT 1 FROM crypto_deposit_addresses WHERE user_id = :u AND provider = :p "
                            "AND currency = :c"
                        ),
                        {"u": user_id, "p": provider, "c": currency},
                    )
                ).first()
                if mine is None:
                    # The provider handed out an address another customer already has (one omnibus
                    # address): attributing deposits to it would be guesswork, so refuse and tell ops.
                    await payments.alert(
                        conn,
                        "ops.alert.deposit_address_shared",
                        target_type="user",
                        target_id=str(user_id),
                        provider=provider,
                        currency=currency,
                    )
        if inserted is None and mine is None:
            raise ProblemError(
                503,
                "deposit_address_unavailable",
                f"no personal {currency} deposit address is available right now; support has been told",
            )
        return await _crypto_instructions(engine, state, settings, user_id, currency)
    return DepositInstructions(
        currency=currency,
        address=row[0],
        tag=row[1] or None,
        network=currency,
        confirmations_required=settings.crypto_deposit_confirmations,
    )


class DepositOut(BaseModel):
    id: uuid.UUID
    currency: str
    amount: str
    status: str
    payment_method: str | None
    reference: str | None
    created_at: datetime
    confirmed_at: datetime | None


@router.get("/deposits", response_model=list[DepositOut], responses=problem_responses(401, 403))
async def list_deposits(
    user: Customer, engine: EngineDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[DepositOut]:
    """Your deposits, newest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, currency, amount, status, payment_method, reference, created_at, "
                    "confirmed_at "
                    "FROM deposits WHERE user_id = :u ORDER BY created_at DESC LIMIT :l"
                ),
                {"u": user.id, "l": limit},
            )
        ).all()
    return [
        DepositOut(
            id=r[0],
            currency=r[1],
            amount=_money(r[2], r[1]) or "0",
            status=r[3],
            payment_method=r[4],
            reference=r[5],
            created_at=r[6],
            confirmed_at=r[7],
        )
        for r in rows
    ]


# --- withdrawals --------------------------------------------------------------------------


class WithdrawalCreate(BaseModel):
    currency: str = Field(pattern="^[A-Z]{3,5}$")
    # A string, never a JSON number (a float cannot hold money exactly): `10.5` is a 422.
    amount: DecimalStr = Field(description='as a string at the currency\'s scale, e.g. "500.00"')
    address_id: uuid.UUID | None = Field(default=None, description="a whitelisted address (crypto)")
    bank_account_id: uuid.UUID | None = Field(
        default=None, description="GBP: required, one of your confirmed bank accounts (GET /bank-accounts)"
    )


class WithdrawalOut(BaseModel):
    id: uuid.UUID
    currency: str
    amount: str
    fee: str
    notional_gbp: str | None
    status: str
    reason: str | None
    destination: str | None
    approvals_required: int
    provider_ref: str | None
    tx_hash: str | None
    created_at: datetime
    completed_at: datetime | None
    workflow_id: str


W_COLUMNS = (
    "id, currency, amount, fee, notional_gbp, status, reason, destination_address, approvals_required, "
    "provider_ref, tx_hash, created_at, completed_at"
)


def withdrawal_out(r: Any) -> WithdrawalOut:
    return WithdrawalOut(
        id=r[0],
        currency=r[1],
        amount=_money(r[2], r[1]) or "0",
        fee=_money(r[3], r[1]) or "0",
        notional_gbp=_money(r[4], "GBP"),
        status=r[5],
        reason=r[6],
        destination=r[7],
        approvals_required=r[8],
        provider_ref=r[9],
        tx_hash=r[10],
        created_at=r[11],
        completed_at=r[12],
        workflow_id=withdrawal_workflow_id(r[0]),
    )


async def _own_withdrawal(engine: Any, user_id: uuid.UUID, withdrawal_id: uuid.UUID) -> WithdrawalOut:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(f"SELECT {W_COLUMNS} FROM withdrawals WHERE id = :id AND user_id = :u"),
                {"id": withdrawal_id, "u": user_id},
            )
        ).first()
    if row is None:
        raise ProblemError(404, "not_found", "no such withdrawal")
    return withdrawal_out(row)


async def gbp_price(state: PaymentsState, currency: str) -> Decimal | None:
    """A GBP value for a crypto amount: the provider's best ask (the higher side of the book, so the
    limit check never undervalues what leaves). None when no price can be had."""
    try:
        book = await state.crypto_adapter().order_book(f"{currency}-GBP", depth=1)
    except (VenueError, ProblemError):
        return None
    if not book.asks:
        return None
    return book.asks[0].price


@router.post(
    "/withdrawals",
    status_code=201,
    response_model=WithdrawalOut,
    dependencies=[RequireTotp, WithdrawalRateLimit],
    responses=problem_responses(401, 403, 404, 409, 422, 429, 503),
)
async def create_withdrawal(
    body: WithdrawalCreate,
    user: Customer,
    engine: EngineDep,
    client: TemporalDep,
    settings: SettingsDep,
    state: PaymentsDep,
    idempotency_key: idempotency.IdempotencyKey = None,
) -> JSONResponse:
    """Request a withdrawal (needs `X-TOTP-Code`); large ones wait for approval. With an
    `Idempotency-Key`, a repeat returns the first answer instead of withdrawing twice."""
    if body.currency not in SCALES:
        raise ProblemError(422, "unknown_currency", f"{body.currency} cannot be withdrawn")
    path = "/api/v1/withdrawals"
    request_hash = idempotency.fingerprint("POST", path, body.model_dump(mode="json", exclude_none=True))
    withdrawal_id = (
        idempotency.derived_id(user.id, idempotency_key, request_hash) if idempotency_key else uuid.uuid4()
    )
    if idempotency_key:
        stored = await idempotency.claim(
            engine, user_id=user.id, key=idempotency_key, method="POST", path=path, request_hash=request_hash
        )
        if stored is not None:
            return JSONResponse(
                stored.body, status_code=stored.status, headers={"Idempotent-Replayed": "true"}
            )
    try:
        out = await _create_withdrawal(body, user.id, withdrawal_id, engine, client, settings, state)
    except Exception:
        if idempotency_key:
            await idempotency.release(engine, user_id=user.id, key=idempotency_key)
        raise
    body_out = out.model_dump(mode="json")
    if idempotency_key:
        await idempotency.complete(engine, user_id=user.id, key=idempotency_key, status=201, body=body_out)
    return JSONResponse(body_out, status_code=201)


async def _create_withdrawal(
    body: WithdrawalCreate,
    user_id: uuid.UUID,
    withdrawal_id: uuid.UUID,
    engine: Any,
    client: Client,
    settings: Settings,
    state: PaymentsState,
) -> WithdrawalOut:
    """Record the request and start its saga as one unit: the row commits only once the saga has started,
    and a request refused (4xx) leaves no withdrawal behind."""
    existing = await _find_withdrawal(engine, user_id, withdrawal_id)
    if existing is not None:  # a retry (same Idempotency-Key) of a request that was recorded and started
        return existing
    amount = Decimal(body.amount)
    price = await gbp_price(state, body.currency) if body.currency in CRYPTO else None
    policy = payments.WithdrawalPolicy(
        approval_threshold_gbp=settings.withdrawal_approval_threshold_gbp,
        dual_approval_threshold_gbp=settings.withdrawal_dual_approval_threshold_gbp,
        fees=settings.withdrawal_fees,
    )

    async def start(accepted: payments.AcceptedWithdrawal) -> None:
        data = WithdrawalInput(
            withdrawal_id=withdrawal_id,
            user_id=user_id,
            currency=body.currency,
            amount=amount,
            fee=accepted.fee,
            notional_gbp=accepted.notional_gbp,
            destination=accepted.destination,
            provider=accepted.provider,
            approvals_required=accepted.approvals_required,
            approval_timeout_seconds=settings.withdrawal_approval_timeout_hours * 3600,
            halt_poll_seconds=settings.withdrawal_halt_poll_seconds,
            settle_poll_seconds=settings.withdrawal_settle_poll_seconds,
            absence_checks=settings.withdrawal_absence_checks,
            absence_interval_seconds=settings.withdrawal_absence_interval_seconds,
            requested_at=datetime.now(UTC),
        )
        try:
            await start_withdrawal(client, data)
        except WorkflowAlreadyStartedError as e:
            # A retry (same Idempotency-Key) whose first attempt started the saga, then lost its
            # transaction: go on if that saga still waits for its row, else nothing is recorded.
            described = await client.get_workflow_handle(withdrawal_workflow_id(withdrawal_id)).describe()
            if described.status != WorkflowExecutionStatus.RUNNING:
                raise ProblemError(
                    409,
                    "withdrawal_not_started",
                    "this request could not be completed; send it again with a new Idempotency-Key",
                ) from e
        except RPCError as e:
            raise ProblemError(
                503, "temporal_unavailable", "the withdrawal could not be started; try again"
            ) from e

    try:
        await payments.accept_withdrawal(
            engine,
            withdrawal_id=withdrawal_id,
            user_id=user_id,
            currency=body.currency,
            amount=amount,
            price_gbp=price,
            address_id=body.address_id,
            bank_account_id=body.bank_account_id,
            policy=policy,
            crypto_provider=settings.crypto_provider,
            on_recorded=start,
        )
    except payments.WithdrawalRefused as e:
        raise ProblemError(e.status, e.code, e.reason) from e
    except ValueError as e:  # finer than the currency's scale
        raise ProblemError(422, "invalid_amount", str(e)) from e
    handle = client.get_workflow_handle(withdrawal_workflow_id(withdrawal_id), result_type=WithdrawalState)
    try:
        outcome = await handle.execute_update("accepted", result_type=WithdrawalState)
    except (RPCError, WorkflowUpdateFailedError):  # the saga ended before it could be asked
        outcome = await handle.result()
    if outcome.status == "FAILED":  # the hold was refused (a concurrent spend): the request is discarded
        raise ProblemError(422, "insufficient_funds", outcome.reason or "the funds could not be held")
    return await _own_withdrawal(engine, user_id, withdrawal_id)


async def _find_withdrawal(engine: Any, user_id: uuid.UUID, withdrawal_id: uuid.UUID) -> WithdrawalOut | None:
    try:
        return await _own_withdrawal(engine, user_id, withdrawal_id)
    except ProblemError:
        return None


async def start_withdrawal(client: Client, data: WithdrawalInput) -> Any:
    """Start the saga with the attributes ops filter on (customer, currency, status). Bounded in time: the
    request's transaction (and the customer's row lock) stays open until the start answers."""
    return await client.start_workflow(
        WithdrawalWorkflow.run,
        data,
        id=withdrawal_workflow_id(data.withdrawal_id),
        task_queue=task_queues.PAYMENTS,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.CUSTOMER_ID, str(data.user_id)),
                SearchAttributePair(sa.CURRENCY, data.currency),
                SearchAttributePair(sa.WITHDRAWAL_STATUS, "PENDING"),
            ]
        ),
        rpc_timeout=START_TIMEOUT,
    )


@router.get("/withdrawals", response_model=list[WithdrawalOut], responses=problem_responses(401, 403))
async def list_withdrawals(
    user: Customer, engine: EngineDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[WithdrawalOut]:
    """Your withdrawals, newest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT {W_COLUMNS} FROM withdrawals WHERE user_id = :u "
                    "ORDER BY created_at DESC LIMIT :l"
                ),
                {"u": user.id, "l": limit},
            )
        ).all()
    return [withdrawal_out(r) for r in rows]


@router.get(
    "/withdrawals/{withdrawal_id}", response_model=WithdrawalOut, responses=problem_responses(401, 403, 404)
)
async def get_withdrawal(withdrawal_id: uuid.UUID, user: Customer, engine: EngineDep) -> WithdrawalOut:
    """One of your withdrawals."""
    return await _own_withdrawal(engine, user.id, withdrawal_id)


@router.post(
    "/withdrawals/{withdrawal_id}/cancel",
    response_model=WithdrawalOut,
    responses=problem_responses(401, 403, 404, 409, 503),
)
async def cancel_withdrawal(
    withdrawal_id: uuid.UUID, user: Customer, engine: EngineDep, client: TemporalDep
) -> WithdrawalOut:
    """Cancel your withdrawal; possible until it is sent."""
    await _own_withdrawal(engine, user.id, withdrawal_id)
    handle = client.get_workflow_handle(withdrawal_workflow_id(withdrawal_id))
    try:
        await handle.execute_update(WithdrawalWorkflow.cancel)
    except WorkflowUpdateFailedError as e:  # the saga's refusal: it is being sent, or final
        raise ProblemError(409, "not_cancellable", "the withdrawal can no longer be cancelled") from e
    except RPCError as e:
        if e.status is not RPCStatusCode.NOT_FOUND:
            raise ServiceUnavailable("temporal") from e  # nothing was cancelled: 503, try again
        # The saga has finished: the withdrawal is final.
        raise ProblemError(409, "not_cancellable", "the withdrawal can no longer be cancelled") from e
    except WorkflowUpdateRPCTimeoutOrCancelledError as e:  # no answer in time: unknown, ask again
        raise ServiceUnavailable("temporal") from e
    result = await handle.result()
    del result
    return await _own_withdrawal(engine, user.id, withdrawal_id)


# --- whitelist and bank accounts ----------------------------------------------------------


class AddressCreate(BaseModel):
    currency: str = Field(pattern="^[A-Z]{3,5}$")
    address: str = Field(min_length=10, max_length=128, pattern="^[A-Za-z0-9:]+$")
    tag: str = Field(default="", max_length=64)
    label: str | None = Field(default=None, max_length=100)


class AddressOut(BaseModel):
    id: uuid.UUID
    currency: str
    address: str
    tag: str
    label: str | None
    usable_from: datetime
    created_at: datetime


@router.post(
    "/withdrawal-addresses",
    status_code=201,
    response_model=AddressOut,
    dependencies=[RequireTotp],
    responses=problem_responses(401, 403, 422),
)
async def add_withdrawal_address(body: AddressCreate, user: Customer, engine: EngineDep) -> AddressOut:
    """Whitelist a crypto address (needs `X-TOTP-Code`); usable 24 h after it is added."""
    if body.currency not in CRYPTO:
        raise ProblemError(422, "unknown_currency", f"{body.currency} addresses are not supported")
    row = await payments.add_address(
        engine, user_id=user.id, currency=body.currency, address=body.address, tag=body.tag, label=body.label
    )
    return AddressOut.model_validate(row)


@router.get("/withdrawal-addresses", response_model=list[AddressOut], responses=problem_responses(401, 403))
async def list_withdrawal_addresses(user: Customer, engine: EngineDep) -> list[AddressOut]:
    """Your whitelisted addresses."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, currency, address, tag, label, usable_from, created_at "
                    "FROM withdrawal_addresses "
                    "WHERE user_id = :u AND removed_at IS NULL ORDER BY created_at"
                ),
                {"u": user.id},
            )
        ).all()
    return [AddressOut.model_validate(dict(r._mapping)) for r in rows]


@router.delete(
    "/withdrawal-addresses/{address_id}", status_code=204, responses=problem_responses(401, 403, 404)
)
async def remove_withdrawal_address(address_id: uuid.UUID, user: Customer, engine: EngineDep) -> None:
    """Remove one of your whitelisted addresses."""
    if not await payments.remove_address(engine, user_id=user.id, address_id=address_id):
        raise ProblemError(404, "not_found", "no such address")


class BankAccountOut(BaseModel):
    id: uuid.UUID
    holder_name: str
    sort_code: str
    account_number: str
    verified: bool
    status: str = Field(description="UNCONFIRMED, HELD_FOR_REVIEW, CONFIRMED or REJECTED")
    name_match: str | None = Field(description="the holder name against yours: match, close_match, no_match")
    usable_from: datetime | None = Field(description="when a confirmed account can first receive GBP")


_BANK_ACCOUNT_COLUMNS = (
    "id, holder_name, sort_code, account_number, verified, status, name_match, usable_from"
)


@router.get("/bank-accounts", response_model=list[BankAccountOut], responses=problem_responses(401, 403))
async def list_bank_accounts(user: Customer, engine: EngineDep) -> list[BankAccountOut]:
    """Your bank accounts. One you paid in from becomes a GBP withdrawal destination once you confirm it
    (if its holder name matches yours) and its cooling-off period has passed."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT {_BANK_ACCOUNT_COLUMNS} FROM bank_accounts "
                    "WHERE user_id = :u ORDER BY created_at"
                ),
                {"u": user.id},
            )
        ).all()
    return [BankAccountOut.model_validate(dict(r._mapping)) for r in rows]


@router.post(
    "/bank-accounts/{account_id}/confirm",
    response_model=BankAccountOut,
    dependencies=[RequireTotp],
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
async def confirm_bank_account(
    account_id: uuid.UUID, user: Customer, engine: EngineDep, settings: SettingsDep, request: Request
) -> BankAccountOut:
    """Confirm that an account you paid in from is yours (needs `X-TOTP-Code`): it can receive GBP
    withdrawals after the cooling-off period, and we email you. An account whose holder name does not
    match yours is reviewed by our team instead (409)."""
    try:
        confirmed = await payments.confirm_bank_account(
            engine,
            user_id=user.id,
            account_id=account_id,
            cooling_off=timedelta(seconds=settings.bank_account_cooling_off_seconds),
        )
    except payments.BankAccountRefused as e:
        raise ProblemError(e.status, e.code, e.reason) from e
    if confirmed.newly_confirmed:
        sender: EmailSender = request.app.state.email_sender
        message = templates.bank_account_confirmed(
            account_ending=confirmed.account_number[-4:], usable_from=confirmed.usable_from
        )
        try:
            await sender.send(user.email, message)
        except EmailDeliveryError:  # the confirmation stands; the alert mail is retried by nobody: log it
            log.error(
                json.dumps({"event": "bank_account.confirm_email_failed", "bank_account": str(account_id)})
            )
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(f"SELECT {_BANK_ACCOUNT_COLUMNS} FROM bank_accounts WHERE id = :id"), {"id": account_id}
            )
        ).one()
    return BankAccountOut.model_validate(dict(row._mapping))


async def ensure_payment_schedules(request_app: Any) -> None:
    """Create the float-monitor and crypto-deposit schedules once Temporal is reachable (background)."""
    from temporal.schedules import ensure_schedules

    if request_app.state.settings.environment == "test":
        return  # tests run their own workers on their own queues; nothing should poll on a timer
    for _ in range(30):
        try:
            client = await request_app.state.temporal.get()
            await ensure_schedules(client, request_app.state.settings)
            return
        except Exception as e:  # Temporal not up yet: try again shortly
            log.info("payments schedules not created yet: %s", type(e).__name__)
            await asyncio.sleep(2)


__all__ = ["PaymentsState", "Destination", "ensure_payment_schedules", "router", "start_withdrawal"]
