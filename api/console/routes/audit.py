"""The audit log viewer (search, newest first, paged back by `seq`) and the hash-chain verification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from api.console.deps import CsrfChecked, Staff, require
from api.console.templating import render
from api.deps import EngineDep, SessionDep
from services import audit
from services.staff.permissions import Permission

router = APIRouter()
Viewer = Annotated[Staff, Depends(require(Permission.AUDIT_VIEW))]
Verifier = Annotated[Staff, Depends(require(Permission.AUDIT_VERIFY))]


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
async def audit_page(
    request: Request,
    staff: Viewer,
    engine: EngineDep,
    q: Annotated[str, Query(max_length=200)] = "",
    action: Annotated[str, Query(max_length=100)] = "",
    target: Annotated[str, Query(max_length=100)] = "",
    actor: Annotated[str, Query(max_length=255)] = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    """Search the audit log."""
    query = audit.AuditQuery(text=q, action=action, target_id=target, actor_email=actor, before_seq=before)
    rows = await audit.search(engine, query)
    older = rows[-1].seq if len(rows) == query.limit and rows[-1].seq else None
    return render(request, "audit.html", staff, rows=rows, query=query, older=older)


@router.post(
    "/audit/verify", response_class=HTMLResponse, include_in_schema=False, dependencies=[CsrfChecked]
)
async def verify(request: Request, staff: Verifier, engine: EngineDep, session: SessionDep) -> HTMLResponse:
    """Recompute the whole chain; show OK or the first broken row."""
    report = await audit.verify_chain(engine)
    await audit.record(
        session, "staff.audit.verified", actor_id=staff.user.id, actor_type="staff", ip=staff.ip,
        details={"ok": report.ok, "rows": report.rows, "first_broken_seq": report.first_broken_seq},
    )  # fmt: skip
    await session.commit()
    return render(request, "audit_verify.html", staff, report=report)
