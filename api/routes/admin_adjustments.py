"""Staff endpoints of manual ledger adjustments (maker-checker, `services.adjustments`): ops propose, a
different approver approves or rejects; every step needs `X-TOTP-Code` and is audited."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from api.auth_deps import ApproverWithTotp, CurrentUser, OpsWithTotp, client_ip, problem_responses
from api.deps import EngineDep, LedgerDep
from api.errors import ProblemError
from models.adjustments import AdjustmentDecisionIn, AdjustmentOut, AdjustmentProposalIn, AdjustmentStatus
from models.users import User
from services import adjustments

router = APIRouter(prefix="/admin/adjustments", tags=["admin"])


async def _maker_or_checker(user: CurrentUser) -> User:
    """Ops (makers) and approvers (checkers) both see the proposals."""
    if not {"ops", "approver"} & set(user.roles):
        raise ProblemError(403, "forbidden", "the ops or approver role is required")
    return user


Staff = Annotated[User, Depends(_maker_or_checker)]


@router.get("", response_model=list[AdjustmentOut], responses=problem_responses(401, 403))
async def list_adjustments(
    staff: Staff, engine: EngineDep, status: Annotated[AdjustmentStatus | None, Query()] = None
) -> list[AdjustmentOut]:
    """Adjustment proposals, newest first (optionally of one status)."""
    return await adjustments.listing(engine, status=status)


@router.post(
    "", status_code=201, response_model=AdjustmentOut, responses=problem_responses(401, 403, 409, 422)
)
async def propose(
    body: AdjustmentProposalIn, request: Request, staff: OpsWithTotp, engine: EngineDep
) -> AdjustmentOut:
    """Propose a balanced correction with a reason (ops, `X-TOTP-Code`); nothing is posted until approved."""
    return await adjustments.propose(engine, maker_id=staff.id, proposal=body, ip=client_ip(request))


@router.post(
    "/{adjustment_id}/approve",
    response_model=AdjustmentOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def approve(
    adjustment_id: uuid.UUID, body: AdjustmentDecisionIn, request: Request, staff: ApproverWithTotp,
    engine: EngineDep, ledger: LedgerDep,
) -> AdjustmentOut:  # fmt: skip
    """Approve and post a proposal (approver, `X-TOTP-Code`, never your own); a repeat posts nothing more."""
    return await adjustments.approve(
        engine, ledger, adjustment_id=adjustment_id, checker_id=staff.id, reason=body.reason,
        ip=client_ip(request),
    )  # fmt: skip


@router.post(
    "/{adjustment_id}/reject",
    response_model=AdjustmentOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def reject(
    adjustment_id: uuid.UUID, body: AdjustmentDecisionIn, request: Request, staff: ApproverWithTotp,
    engine: EngineDep,
) -> AdjustmentOut:  # fmt: skip
    """Reject a proposal (approver, `X-TOTP-Code`, never your own); it is kept, nothing is posted."""
    return await adjustments.reject(
        engine, adjustment_id=adjustment_id, checker_id=staff.id, reason=body.reason, ip=client_ip(request)
    )
