"""Staff endpoints: the withdrawal approval queue (approver role), the NEEDS_ATTENTION queue and its
resolution, currency halts and float top-ups (ops).

Every decision on a withdrawal needs `X-TOTP-Code`: after the check, the API signs a short-lived decision
token for this staff user, withdrawal and action (`services.decision_tokens`) and sends it with the
decision. Approve/reject/resolve go to the withdrawal saga as updates, so the answer says whether the
decision counted; the saga verifies the token and re-checks the role in the users table itself, exactly
as for a decision signalled from the Temporal CLI or Web UI (whose token comes from
`POST /admin/withdrawals/{id}/decision-token` or `python -m cli approval-token`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import text
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from api.auth_deps import RequireTotp, problem_responses, require_role
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.errors import ProblemError
from api.routes.payments import W_COLUMNS, WithdrawalOut, withdrawal_out
from models.assets import SCALES
from models.money import money
from models.payments import Decision, DecisionOutcome, Resolution
from models.users import User
from services import payments
from services.decision_tokens import DecisionTokens
from workflows.withdrawals import withdrawal_workflow_id

router = APIRouter(prefix="/admin", tags=["admin"])

Approver = Annotated[User, Depends(require_role("approver"))]
Ops = Annotated[User, Depends(require_role("ops"))]


class PendingWithdrawal(WithdrawalOut):
    user_id: uuid.UUID
    approvals: list[uuid.UUID]


@router.get(
    "/withdrawals/pending", response_model=list[PendingWithdrawal], responses=problem_responses(401, 403)
)
async def approval_queue(staff: Approver, engine: EngineDep) -> list[PendingWithdrawal]:
    """Withdrawals waiting for approval, oldest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT {W_COLUMNS}, user_id, coalesce((SELECT array_agg(approver_id) "
                    "FROM withdrawal_approvals a WHERE a.withdrawal_id = w.id AND a.decision = 'approve'), "
                    "'{}') FROM withdrawals w WHERE status = 'AWAITING_APPROVAL' ORDER BY created_at"
                )
            )
        ).all()
    return [
        PendingWithdrawal(**withdrawal_out(r).model_dump(), user_id=r[13], approvals=list(r[14] or []))
        for r in rows
    ]


class DecisionBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


def _tokens(settings: SettingsDep) -> DecisionTokens:
    return DecisionTokens.from_secret(
        settings.jwt_secret, timedelta(seconds=settings.decision_token_ttl_seconds)
    )


def _sign(settings: SettingsDep, staff: User, withdrawal_id: uuid.UUID, action: str, detail: str = "") -> str:
    return _tokens(settings).issue(
        actor_id=staff.id, withdrawal_id=withdrawal_id, action=action, now=datetime.now(UTC), detail=detail
    )


async def _update(client: TemporalDep, withdrawal_id: uuid.UUID, name: str, arg: object) -> DecisionOutcome:
    handle = client.get_workflow_handle(withdrawal_workflow_id(withdrawal_id))
    try:
        # By name: the SDK's typing of async update handlers yields a coroutine type here.
        outcome = await handle.execute_update(name, arg, result_type=DecisionOutcome)
    except (RPCError, WorkflowUpdateFailedError) as e:
        raise ProblemError(404, "not_found", "no such withdrawal waiting for a decision") from e
    if not outcome.accepted:
        forbidden = ("self_approval", "not_an_approver", "unknown_approver", "unproven")
        raise ProblemError(
            403 if outcome.code in forbidden else 409, outcome.code, outcome.detail or outcome.code
        )
    return outcome


async def _decide(
    client: TemporalDep,
    settings: SettingsDep,
    withdrawal_id: uuid.UUID,
    staff: User,
    kind: str,
    reason: str,
) -> DecisionOutcome:
    token = _sign(settings, staff, withdrawal_id, kind)
    decision = Decision(approver_id=staff.id, reason=reason, token=token)
    return await _update(client, withdrawal_id, f"{kind}_withdrawal", decision)


@router.post(
    "/withdrawals/{withdrawal_id}/approve",
    response_model=DecisionOutcome,
    dependencies=[RequireTotp],
    responses=problem_responses(401, 403, 404, 409),
)
async def approve(
    withdrawal_id: uuid.UUID, body: DecisionBody, staff: Approver, client: TemporalDep, settings: SettingsDep
) -> DecisionOutcome:
    """Approve a withdrawal (needs `X-TOTP-Code`; four eyes: never your own; above £50k two approvers)."""
    return await _decide(client, settings, withdrawal_id, staff, "approve", body.reason)


@router.post(
    "/withdrawals/{withdrawal_id}/reject",
    response_model=DecisionOutcome,
    dependencies=[RequireTotp],
    responses=problem_responses(401, 403, 404, 409),
)
async def reject(
    withdrawal_id: uuid.UUID, body: DecisionBody, staff: Approver, client: TemporalDep, settings: SettingsDep
) -> DecisionOutcome:
    """Reject a withdrawal (needs `X-TOTP-Code`); the funds go back to the customer."""
    return await _decide(client, settings, withdrawal_id, staff, "reject", body.reason)


class TokenBody(BaseModel):
    action: Literal["approve", "reject"]


class TokenOut(BaseModel):
    token: str
    approver_id: uuid.UUID
    expires_in: int


@router.post(
    "/withdrawals/{withdrawal_id}/decision-token",
    response_model=TokenOut,
    dependencies=[RequireTotp],
    responses=problem_responses(401, 403, 422),
)
async def decision_token(
    withdrawal_id: uuid.UUID, body: TokenBody, staff: Approver, settings: SettingsDep
) -> TokenOut:
    """A short-lived token proving your decision, for the Temporal Web UI/CLI signal (needs `X-TOTP-Code`)."""
    return TokenOut(
        token=_sign(settings, staff, withdrawal_id, body.action),
        approver_id=staff.id,
        expires_in=settings.decision_token_ttl_seconds,
    )


@router.get(
    "/withdrawals/attention", response_model=list[PendingWithdrawal], responses=problem_responses(401, 403)
)
async def attention_queue(staff: Ops, engine: EngineDep) -> list[PendingWithdrawal]:
    """Withdrawals in NEEDS_ATTENTION (outcome unknown or books incomplete; funds held), oldest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT {W_COLUMNS}, user_id, '{{}}'::uuid[] FROM withdrawals w "
                    "WHERE status = 'NEEDS_ATTENTION' ORDER BY updated_at"
                )
            )
        ).all()
    return [PendingWithdrawal(**withdrawal_out(r).model_dump(), user_id=r[13], approvals=[]) for r in rows]


class ResolveBody(BaseModel):
    paid: bool = Field(description="true: the money reached the destination (complete the books); false: it "
                       "did not (release the hold)")  # fmt: skip
    reason: str = Field(min_length=1, max_length=500)
    provider_ref: str | None = Field(default=None, max_length=100)


@router.post(
    "/withdrawals/{withdrawal_id}/resolve",
    response_model=DecisionOutcome,
    dependencies=[RequireTotp],
    responses=problem_responses(401, 403, 404, 409),
)
async def resolve(
    withdrawal_id: uuid.UUID, body: ResolveBody, staff: Ops, client: TemporalDep, settings: SettingsDep
) -> DecisionOutcome:
    """Resolve a withdrawal in NEEDS_ATTENTION after checking the bank/venue (needs `X-TOTP-Code`)."""
    action = "resolve_paid" if body.paid else "resolve_not_paid"
    resolution = Resolution(
        staff_id=staff.id,
        paid=body.paid,
        reason=body.reason,
        provider_ref=body.provider_ref,
        token=_sign(settings, staff, withdrawal_id, action, body.reason),
    )
    return await _update(client, withdrawal_id, "resolve", resolution)


class HaltBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class HaltOut(BaseModel):
    currency: str
    reason: str
    halted_by: uuid.UUID | None
    created_at: datetime


def _currency(currency: str) -> str:
    if currency not in SCALES:
        raise ProblemError(404, "unknown_currency", f"no currency {currency}")
    return currency


@router.get("/halts", response_model=list[HaltOut], responses=problem_responses(401, 403))
async def list_halts(staff: Ops, engine: EngineDep) -> list[HaltOut]:
    """Currencies whose withdrawals are halted."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT currency, reason, halted_by, created_at FROM currency_halts"))
        ).all()
    return [HaltOut.model_validate(dict(r._mapping)) for r in rows]


@router.put("/halts/{currency}", status_code=204, responses=problem_responses(401, 403, 404))
async def halt(currency: str, body: HaltBody, staff: Ops, engine: EngineDep) -> None:
    """Halt withdrawals of a currency: new and approved ones wait (funds held) until lifted."""
    await payments.set_halt(engine, _currency(currency), body.reason, staff.id, "staff")


@router.delete("/halts/{currency}", status_code=204, responses=problem_responses(401, 403, 404))
async def unhalt(currency: str, staff: Ops, engine: EngineDep) -> None:
    """Lift a halt; waiting withdrawals carry on at their next check. A halt set by reconciliation is
    lifted only by two staff (`POST /admin/reconciliation/halts/{currency}/acknowledge`)."""
    async with engine.connect() as conn:
        by_recon = (
            await conn.execute(
                text("SELECT 1 FROM reconciliation_halts WHERE currency = :c"), {"c": currency}
            )
        ).first()
    if by_recon is not None:
        raise ProblemError(409, "reconciliation_halt", "this halt needs two staff acknowledgements")
    await payments.lift_halt(engine, _currency(currency), staff.id, "staff")


class TopUpOut(BaseModel):
    id: uuid.UUID
    provider: str
    currency: str
    balance: str
    threshold: str
    target: str
    amount: str
    status: str
    created_at: datetime


@router.get("/float-topups", response_model=list[TopUpOut], responses=problem_responses(401, 403))
async def float_topups(staff: Ops, engine: EngineDep) -> list[TopUpOut]:
    """Top-up requests of the provider omnibus balances (hot-wallet float), newest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, provider, currency, balance, threshold, target, amount, status, created_at "
                    "FROM float_topups ORDER BY created_at DESC LIMIT 100"
                )
            )
        ).all()
    return [
        TopUpOut(
            id=r[0],
            provider=r[1],
            currency=r[2],
            balance=money(r[3], r[2]),
            threshold=money(r[4], r[2]),
            target=money(r[5], r[2]),
            amount=money(r[6], r[2]),
            status=r[7],
            created_at=r[8],
        )
        for r in rows
    ]
