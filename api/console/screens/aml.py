"""AML alerts and cases (compliance): the case queue, a case's file (alerts, notes, linked transactions,
SAR, freeze) with its SAR saga linked in the Temporal Web UI; take a case, add a note, the SAR workflow's
decisions (through `api.aml_sagas`, signed after the officer's TOTP), and lifting a freeze by two
different people (`services.aml.freeze`). Every change takes the officer's TOTP code. Staff only."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from api.aml_sagas import SarSagasDep
from api.console.deps import CsrfChecked, Staff, require
from api.console.screens.common import done, totp_checked
from api.console.templating import NavEntry, add_nav, render
from api.deps import EngineDep, SessionDep
from models.aml_cases_api import SarDecision
from services.aml import cases, freeze
from services.staff.permissions import Permission

router = APIRouter()
Officer = Annotated[Staff, Depends(require(Permission.AML_CASES))]

add_nav(NavEntry("AML cases", "/console/aml", Permission.AML_CASES), before="/console/audit")


@router.get("/aml", response_class=HTMLResponse, include_in_schema=False)
async def queue_page(request: Request, staff: Officer, engine: EngineDep) -> HTMLResponse:
    """Open cases, newest first."""
    page = await cases.case_queue(engine, status=None, assignee_id=None, limit=100, cursor=None)
    return render(request, "aml.html", staff, cases=page.cases)


@router.get("/aml/cases/{case_id}", response_class=HTMLResponse, include_in_schema=False)
async def case_page(case_id: uuid.UUID, request: Request, staff: Officer, engine: EngineDep) -> HTMLResponse:
    """One case's file and what can be done with it."""
    case = await cases.case_detail(engine, case_id)
    async with engine.connect() as conn:
        frozen = await freeze.active_freeze(conn, case.user_id)
    return render(request, "aml_case.html", staff, case=case, freeze=frozen)


@router.post("/aml/cases/{case_id}/take", include_in_schema=False, dependencies=[CsrfChecked])
async def take(
    case_id: uuid.UUID,
    request: Request,
    staff: Officer,
    engine: EngineDep,
    session: SessionDep,
    totp_code: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Assign the case to oneself (a pending case becomes investigating)."""
    await totp_checked(request, session, staff, totp_code)
    await cases.assign(engine, case_id=case_id, assignee_id=staff.user.id, staff_id=staff.user.id)
    return done("case taken")


@router.post("/aml/cases/{case_id}/notes", include_in_schema=False, dependencies=[CsrfChecked])
async def note(
    case_id: uuid.UUID,
    request: Request,
    staff: Officer,
    engine: EngineDep,
    session: SessionDep,
    body: Annotated[str, Form(min_length=1, max_length=10_000)],
    totp_code: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Append a note (never edited or removed)."""
    await totp_checked(request, session, staff, totp_code)
    await cases.add_note(engine, case_id=case_id, author_id=staff.user.id, body=body)
    return done("note added")


@router.post("/aml/cases/{case_id}/decision", include_in_schema=False, dependencies=[CsrfChecked])
async def decision(
    case_id: uuid.UUID,
    request: Request,
    staff: Officer,
    session: SessionDep,
    sagas: SarSagasDep,
    kind: Annotated[Literal["freeze", "clear", "decline", "file_sar"], Form()],
    reason: Annotated[str, Form(max_length=2000)] = "",
    nca_reference: Annotated[str, Form(max_length=100)] = "",
    narrative: Annotated[str, Form(max_length=20_000)] = "",
    totp_code: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """A SAR workflow decision: freeze the customer, clear or decline, or record the SAR filed."""
    await totp_checked(request, session, staff, totp_code)
    sar = {"nca_reference": nca_reference, "narrative": narrative} if kind == "file_sar" else {}
    out = await sagas.decide(
        case_id, SarDecision(kind=kind, staff_id=staff.user.id, token="", reason=reason, **sar)
    )
    return done(f"{kind}: {out.code}")


@router.post("/aml/customers/{user_id}/unfreeze/{step}", include_in_schema=False, dependencies=[CsrfChecked])
async def unfreeze(
    user_id: uuid.UUID,
    step: Literal["request", "confirm"],
    request: Request,
    staff: Officer,
    engine: EngineDep,
    session: SessionDep,
    totp_code: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Lifting a freeze takes two different people: one asks, another confirms."""
    await totp_checked(request, session, staff, totp_code)
    if step == "request":
        await freeze.request_unfreeze(engine, user_id=user_id, staff_id=staff.user.id)
        return done("unfreeze requested; a second person must confirm")
    await freeze.confirm_unfreeze(engine, user_id=user_id, staff_id=staff.user.id)
    return done("freeze lifted")
