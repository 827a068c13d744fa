"""Withdrawal approvals: the queue, and approve/reject with a TOTP code per decision (four eyes).

A decision goes to the withdrawal saga exactly as from the admin API (`decide_withdrawal`): signed for
this staff member after their TOTP check; the saga verifies the token, re-checks the approver role,
refuses the requester and counts one approval per person (two distinct approvers above the dual
threshold).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from api.auth_deps import require_totp
from api.console.deps import CsrfChecked, Staff, require
from api.console.templating import render
from api.deps import EngineDep, SessionDep, SettingsDep
from api.routes.admin import decide_withdrawal
from api.sagas import PaymentSagasDep
from services import audit, payments
from services.staff.permissions import Permission

router = APIRouter()
Viewer = Annotated[Staff, Depends(require(Permission.WITHDRAWAL_VIEW))]
Decider = Annotated[Staff, Depends(require(Permission.WITHDRAWAL_DECIDE))]


async def _queue(request: Request, staff: Staff, engine: EngineDep, notice: str = "") -> HTMLResponse:
    pending = await payments.approval_queue(engine)
    attention = await payments.attention_queue(engine)
    template = "withdrawals_queue.html" if request.headers.get("HX-Request") else "withdrawals.html"
    return render(request, template, staff, pending=pending, attention=attention, notice=notice)


@router.get("/withdrawals", response_class=HTMLResponse, include_in_schema=False)
async def withdrawals_page(request: Request, staff: Viewer, engine: EngineDep) -> HTMLResponse:
    """Withdrawals waiting for approval, and those needing attention."""
    return await _queue(request, staff, engine)


@router.post(
    "/withdrawals/{withdrawal_id}/{decision}",
    response_class=HTMLResponse,
    include_in_schema=False,
    dependencies=[CsrfChecked],
)
async def decide(
    request: Request,
    withdrawal_id: uuid.UUID,
    decision: Literal["approve", "reject"],
    staff: Decider,
    session: SessionDep,
    engine: EngineDep,
    sagas: PaymentSagasDep,
    settings: SettingsDep,
    totp_code: Annotated[str, Form(max_length=16)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> HTMLResponse:
    """Approve or reject one withdrawal; needs a fresh TOTP code."""
    await require_totp(request, session, staff.user, totp_code or None)
    outcome = await decide_withdrawal(
        sagas, settings, staff.user, withdrawal_id, decision, reason or f"{decision}d in the console"
    )
    await audit.record(
        session, f"staff.withdrawal.{decision}", actor_id=staff.user.id, actor_type="staff",
        target_type="withdrawal", target_id=withdrawal_id, ip=staff.ip,
        details={"reason": reason, "outcome": outcome.code, "before": {"status": "AWAITING_APPROVAL"},
                 "after": {"status": outcome.status or None}},
    )  # fmt: skip
    await session.commit()
    return await _queue(request, staff, engine, notice=f"{decision.capitalize()}: {outcome.code}")
