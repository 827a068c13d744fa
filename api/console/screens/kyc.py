"""KYC review: each submission waiting for compliance with the customer's details, the vendor's result,
the screening matches with their explanations and the evidence; decided with the reviewer's TOTP through
the same `review` update of the KYC saga as the admin API (`api.routes.kyc.decide_review`: a decision
token proves who decided; the saga re-checks the compliance role and refuses the customer themself)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from api.console.deps import CsrfChecked, Staff, require
from api.console.screens.common import totp_checked
from api.console.templating import NavEntry, add_nav, render
from api.deps import EngineDep, SessionDep, SettingsDep, TemporalDep
from api.routes.kyc import decide_review
from services import kyc_review
from services.staff.permissions import Permission
from workflows.kyc import kyc_workflow_id

router = APIRouter()
Reviewer = Annotated[Staff, Depends(require(Permission.KYC_REVIEW))]

add_nav(NavEntry("KYC review", "/console/kyc", Permission.KYC_REVIEW), before="/console/audit")


@router.get("/kyc", response_class=HTMLResponse, include_in_schema=False)
async def queue_page(request: Request, staff: Reviewer, engine: EngineDep) -> HTMLResponse:
    """Submissions waiting for compliance, oldest first."""
    return render(
        request, "kyc.html", staff, items=await kyc_review.review_queue(engine), workflow_id=kyc_workflow_id,
    )  # fmt: skip


@router.post("/kyc/{submission_id}/decide", include_in_schema=False, dependencies=[CsrfChecked])
async def decide(
    submission_id: uuid.UUID,
    request: Request,
    staff: Reviewer,
    session: SessionDep,
    client: TemporalDep,
    settings: SettingsDep,
    decision: Annotated[Literal["approve", "reject"], Form()],
    reason: Annotated[str, Form(min_length=1, max_length=1000)],
    totp_code: Annotated[str, Form(max_length=16)] = "",
) -> HTMLResponse:
    """Grant or refuse the tier under review (TOTP); the customer is told without the reason. The saga takes
    the decision at once and records it just after, so the answer replaces the case with that news."""
    await totp_checked(request, session, staff, totp_code)
    outcome = await decide_review(client, settings, staff.user, submission_id, decision == "approve", reason)
    return render(
        request, "kyc_decided.html", staff, submission_id=submission_id, outcome=outcome,
        workflow_id=kyc_workflow_id(submission_id),
    )  # fmt: skip
