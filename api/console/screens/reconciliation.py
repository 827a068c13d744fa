"""Reconciliation runs with their unmatched items, and the two-person resume of a halted currency
(`services.reconciliation.acknowledge`: two different staff, each with a reason and a TOTP code)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from activities.reconciliation import policy_from
from api.console.deps import CsrfChecked, Staff, require
from api.console.screens.common import done, totp_checked
from api.console.templating import NavEntry, add_nav, render
from api.deps import EngineDep, SessionDep, SettingsDep
from api.errors import ProblemError
from models.assets import SCALES
from services import reconciliation as recon
from services.reconciliation import views
from services.staff.permissions import Permission
from workflows.reconciliation import reconciliation_workflow_id

router = APIRouter()
Viewer = Annotated[Staff, Depends(require(Permission.RECONCILIATION_VIEW))]
Resumer = Annotated[Staff, Depends(require(Permission.RECONCILIATION_RESUME))]

add_nav(
    NavEntry("Reconciliation", "/console/reconciliation", Permission.RECONCILIATION_VIEW),
    before="/console/audit",
)


@router.get("/reconciliation", response_class=HTMLResponse, include_in_schema=False)
async def runs_page(
    request: Request, staff: Viewer, engine: EngineDep, settings: SettingsDep
) -> HTMLResponse:
    """Halts (with the acknowledgements so far) and the recent runs."""
    return render(
        request, "reconciliation.html", staff, halts=await views.halts(engine),
        runs=await views.recent_runs(engine), clean_needed=settings.reconciliation_clean_runs_to_resume,
        workflow_id=reconciliation_workflow_id,
    )  # fmt: skip


@router.get("/reconciliation/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
async def run_page(run_id: uuid.UUID, request: Request, staff: Viewer, engine: EngineDep) -> HTMLResponse:
    """One run: each currency's balances, reasons and unmatched items."""
    return render(
        request, "reconciliation_run.html", staff, run_id=run_id, rows=await views.run_detail(engine, run_id),
        workflow_id=reconciliation_workflow_id(run_id),
    )  # fmt: skip


@router.post(
    "/reconciliation/halts/{currency}/acknowledge", include_in_schema=False, dependencies=[CsrfChecked]
)
async def acknowledge(
    currency: str,
    request: Request,
    staff: Resumer,
    engine: EngineDep,
    session: SessionDep,
    settings: SettingsDep,
    reason: Annotated[str, Form(min_length=1, max_length=500)],
    totp_code: Annotated[str, Form(max_length=16)] = "",
    override: Annotated[bool, Form()] = False,
) -> Response:
    """One staff member's acknowledgement (TOTP); the second different person's resumes the currency."""
    if currency not in SCALES:
        raise ProblemError(404, "unknown_currency", f"no currency {currency}")
    await totp_checked(request, session, staff, totp_code)
    resumed = await recon.acknowledge(
        engine, currency=currency, staff_id=staff.user.id, reason=reason, override=override,
        policy=policy_from(settings),
    )  # fmt: skip
    return done(
        f"{currency} resumed" if resumed else f"{currency}: acknowledged; a second person must confirm"
    )
