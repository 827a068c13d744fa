"""The customer view: search by email, name or id, then one customer with every section
(`services.customer_view`), each saga linked in the Temporal Web UI. Compliance staff also see the AML
part of the audit trail; nobody else does (no tipping off through support)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from api.console.deps import Staff, require
from api.console.templating import NavEntry, add_nav, render
from api.deps import EngineDep, LedgerDep
from models.payments import withdrawal_workflow_id
from services import customer_view
from services.staff.permissions import Permission
from workflows.kyc import kyc_workflow_id
from workflows.order_policies import workflow_id as order_workflow_id

router = APIRouter()
Viewer = Annotated[Staff, Depends(require(Permission.CUSTOMER_VIEW))]

add_nav(NavEntry("Customers", "/console/customers", Permission.CUSTOMER_VIEW), before="/console/withdrawals")


@router.get("/customers", response_class=HTMLResponse, include_in_schema=False)
async def search_page(
    request: Request, staff: Viewer, engine: EngineDep, q: Annotated[str, Query(max_length=200)] = ""
) -> HTMLResponse:
    """Find a customer by email, name or id."""
    hits = await customer_view.search(engine, q) if q.strip() else []
    return render(request, "customers.html", staff, q=q, hits=hits)


@router.get("/customers/{user_id}", response_class=HTMLResponse, include_in_schema=False)
async def customer_page(
    user_id: uuid.UUID,
    request: Request,
    staff: Viewer,
    engine: EngineDep,
    ledger: LedgerDep,
    ledger_cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """Everything about one customer (the look is audited)."""
    shown = await customer_view.view(
        engine,
        ledger,
        user_id,
        include_compliance=staff.can(Permission.AML_CASES),
        ledger_cursor=ledger_cursor,
    )
    await customer_view.record_view(engine, staff_id=staff.user.id, user_id=user_id, ip=staff.ip)
    return render(
        request, "customer.html", staff, c=shown, order_wf=order_workflow_id,
        kyc_wf=kyc_workflow_id, withdrawal_wf=withdrawal_workflow_id,
    )  # fmt: skip
