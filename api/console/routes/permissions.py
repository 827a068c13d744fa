"""The permission matrix, as the code enforces it (services/staff/permissions.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from api.console.deps import Staff, require
from api.console.templating import render
from services.staff.permissions import DESCRIPTIONS, MATRIX, Permission

router = APIRouter()
Admin = Annotated[Staff, Depends(require(Permission.PERMISSIONS_VIEW))]


@router.get("/permissions", response_class=HTMLResponse, include_in_schema=False)
async def permissions_page(request: Request, staff: Admin) -> HTMLResponse:
    """Which role may do what."""
    return render(
        request,
        "permissions.html",
        staff,
        matrix=MATRIX,
        permissions=list(Permission),
        descriptions=DESCRIPTIONS,
    )
