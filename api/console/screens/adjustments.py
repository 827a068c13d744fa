"""Manual ledger adjustments by maker-checker (`services.adjustments`): ops propose on one page, approvers
decide on another; every step takes the staff member's TOTP code and is audited by the service."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from api.console.deps import CsrfChecked, Staff, require
from api.console.screens.common import done, totp_checked
from api.console.templating import NavEntry, add_nav, render
from api.deps import EngineDep, LedgerDep, SessionDep
from api.errors import ProblemError
from models.adjustments import AdjustmentLeg, AdjustmentProposalIn, AdjustmentStatus
from models.assets import SCALES
from services import adjustments, customer_view
from services.staff.permissions import Permission

router = APIRouter()
Maker = Annotated[Staff, Depends(require(Permission.ADJUSTMENT_PROPOSE))]
Checker = Annotated[Staff, Depends(require(Permission.ADJUSTMENT_APPROVE))]
HOUSE_PREFIX = "house:"
LEG_ROWS = 3

add_nav(
    NavEntry("Adjustments", "/console/adjustments", Permission.ADJUSTMENT_PROPOSE), before="/console/audit"
)
add_nav(
    NavEntry("Adjustment approvals", "/console/adjustments/approvals", Permission.ADJUSTMENT_APPROVE),
    before="/console/audit",
)


@router.get("/adjustments", response_class=HTMLResponse, include_in_schema=False)
async def maker_page(request: Request, staff: Maker, engine: EngineDep) -> HTMLResponse:
    """Propose an adjustment; every recent proposal with its state."""
    return render(
        request, "adjustments.html", staff, mode="maker", rows=await adjustments.listing(engine, limit=50),
        currencies=list(SCALES), leg_rows=range(LEG_ROWS), proposal_id=uuid.uuid4(),
    )  # fmt: skip


@router.get("/adjustments/approvals", response_class=HTMLResponse, include_in_schema=False)
async def checker_page(request: Request, staff: Checker, engine: EngineDep) -> HTMLResponse:
    """Proposals waiting for a checker (never one's own), then the recently decided."""
    waiting = await adjustments.listing(engine, status=AdjustmentStatus.PROPOSED)
    recent = [a for a in await adjustments.listing(engine, limit=30) if a.status != AdjustmentStatus.PROPOSED]
    return render(request, "adjustments.html", staff, mode="checker", rows=waiting, decided=recent)


async def _leg(engine: EngineDep, i: int, account: str, amount: str) -> AdjustmentLeg:
    """A form row: `house:<code>` or a customer's email or id, and a signed amount."""
    try:
        if account.startswith(HOUSE_PREFIX):
            return AdjustmentLeg(house=account.removeprefix(HOUSE_PREFIX), amount=amount)
        user_id = await customer_view.find_id(engine, account)
        return AdjustmentLeg(user_id=user_id, amount=amount)
    except ValidationError as e:
        raise ProblemError(
            422, "validation_error", f"leg {i + 1}: {e.errors()[0]['msg']}",
            errors=[{"field": f"form.leg_amount.{i}", "message": e.errors()[0]["msg"]}],
        ) from e  # fmt: skip


@router.post("/adjustments", include_in_schema=False, dependencies=[CsrfChecked])
async def propose(
    request: Request,
    staff: Maker,
    engine: EngineDep,
    session: SessionDep,
    currency: Annotated[str, Form(max_length=10)],
    reason: Annotated[str, Form(max_length=2000)],
    proposal_id: Annotated[uuid.UUID, Form()],
    totp_code: Annotated[str, Form(max_length=16)] = "",
    leg_account: Annotated[list[str] | None, Form(max_length=320)] = None,
    leg_amount: Annotated[list[str] | None, Form(max_length=40)] = None,
) -> Response:
    """Propose (checked in full first; the TOTP code is taken only for a proposal that can be stored)."""
    rows = [(a.strip(), m.strip()) for a, m in zip(leg_account or [], leg_amount or [], strict=False)]
    legs = [await _leg(engine, i, a, m) for i, (a, m) in enumerate(rows) if a or m]
    try:
        proposal = AdjustmentProposalIn(id=proposal_id, currency=currency, legs=legs, reason=reason.strip())
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ProblemError(
            422, "validation_error", f"{field}: {first['msg']}", errors=[{"field": f"form.{field}",
            "message": first["msg"]}],
        ) from e  # fmt: skip
    adjustments.checked_amounts(proposal.currency, proposal.legs)
    await totp_checked(request, session, staff, totp_code)
    made = await adjustments.propose(engine, maker_id=staff.user.id, proposal=proposal, ip=staff.ip)
    return done(f"adjustment {made.id} proposed; another staff member must approve it")


@router.post("/adjustments/{adjustment_id}/approve", include_in_schema=False, dependencies=[CsrfChecked])
async def approve(
    adjustment_id: uuid.UUID,
    request: Request,
    staff: Checker,
    engine: EngineDep,
    ledger: LedgerDep,
    session: SessionDep,
    reason: Annotated[str, Form(min_length=1, max_length=2000)],
    totp_code: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Approve and post (TOTP; never one's own: the service refuses and audits it)."""
    await totp_checked(request, session, staff, totp_code)
    posted = await adjustments.approve(
        engine, ledger, adjustment_id=adjustment_id, checker_id=staff.user.id, reason=reason, ip=staff.ip
    )
    return done(f"adjustment {posted.id} posted as journal {posted.transaction_id}")


@router.post("/adjustments/{adjustment_id}/reject", include_in_schema=False, dependencies=[CsrfChecked])
async def reject(
    adjustment_id: uuid.UUID,
    request: Request,
    staff: Checker,
    engine: EngineDep,
    session: SessionDep,
    reason: Annotated[str, Form(min_length=1, max_length=2000)],
    totp_code: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Reject (TOTP; the proposal is kept)."""
    await totp_checked(request, session, staff, totp_code)
    await adjustments.reject(
        engine, adjustment_id=adjustment_id, checker_id=staff.user.id, reason=reason, ip=staff.ip
    )
    return done(f"adjustment {adjustment_id} rejected")
