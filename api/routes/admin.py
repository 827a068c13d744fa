"""Staff endpoints: the withdrawal approval queue (approver role), currency halts and float top-ups (ops).

Approve/reject go to the withdrawal saga as updates, so the answer says whether the decision counted;
the saga re-checks the approver's role in the users table itself, exactly as for a decision signalled
from the Temporal CLI or Web UI.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import text
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from api.auth_deps import problem_responses, require_role
from api.deps import EngineDep, TemporalDep
from api.errors import ProblemError
from api.routes.payments import W_COLUMNS, WithdrawalOut, withdrawal_out
from models.assets import SCALES
from models.payments import Decision, DecisionOutcome
from models.users import User
from services import payments
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


async def _decide(
    client: TemporalDep, withdrawal_id: uuid.UUID, staff: User, kind: str, reason: str
) -> DecisionOutcome:
    handle = client.get_workflow_handle(withdrawal_workflow_id(withdrawal_id))
    decision = Decision(approver_id=staff.id, reason=reason)
    try:
        # By name: the SDK's typing of async update handlers yields a coroutine type here.
        outcome = await handle.execute_update(f"{kind}_withdrawal", decision, result_type=DecisionOutcome)
    except (RPCError, WorkflowUpdateFailedError) as e:
        raise ProblemError(404, "not_found", "no such withdrawal waiting for a decision") from e
    if not outcome.accepted:
        status = 403 if outcome.code in ("self_approval", "not_an_approver", "unknown_approver") else 409
        raise ProblemError(status, outcome.code, outcome.detail or outcome.code)
    return outcome


@router.post(
    "/withdrawals/{withdrawal_id}/approve",
    response_model=DecisionOutcome,
    responses=problem_responses(401, 403, 404, 409),
)
async def approve(
    withdrawal_id: uuid.UUID, body: DecisionBody, staff: Approver, client: TemporalDep
) -> DecisionOutcome:
    """Approve a withdrawal (four eyes: never your own; above £50k two approvers)."""
    return await _decide(client, withdrawal_id, staff, "approve", body.reason)


@router.post(
    "/withdrawals/{withdrawal_id}/reject",
    response_model=DecisionOutcome,
    responses=problem_responses(401, 403, 404, 409),
)
async def reject(
    withdrawal_id: uuid.UUID, body: DecisionBody, staff: Approver, client: TemporalDep
) -> DecisionOutcome:
    """Reject a withdrawal; the funds go back to the customer."""
    return await _decide(client, withdrawal_id, staff, "reject", body.reason)


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
    """Lift a halt; waiting withdrawals carry on at their next check."""
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
            balance=format(r[3], "f"),
            threshold=format(r[4], "f"),
            target=format(r[5], "f"),
            amount=format(r[6], "f"),
            status=r[7],
            created_at=r[8],
        )
        for r in rows
    ]
