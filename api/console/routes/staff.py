"""Staff management (admins): create staff, set roles, reset TOTP enrolment, disable and enable."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from api.console.deps import CsrfChecked, Staff, require
from api.console.templating import render
from api.deps import SessionDep
from services.staff import accounts
from services.staff.permissions import STAFF_ROLES, Permission

router = APIRouter()
Admin = Annotated[Staff, Depends(require(Permission.STAFF_MANAGE))]


def _actor(staff: Staff) -> accounts.Actor:
    return accounts.Actor(staff.user.id, staff.ip)


async def _page(request: Request, staff: Staff, session: SessionDep, notice: str = "") -> HTMLResponse:
    template = "staff_table.html" if request.headers.get("HX-Request") else "staff.html"
    members = await accounts.list_staff(session)
    return render(request, template, staff, members=members, roles=STAFF_ROLES, notice=notice)


@router.get("/staff", response_class=HTMLResponse, include_in_schema=False)
async def staff_page(request: Request, staff: Admin, session: SessionDep) -> HTMLResponse:
    """Everyone with a staff role, and the form to add one."""
    return await _page(request, staff, session)


@router.post("/staff", response_class=HTMLResponse, include_in_schema=False, dependencies=[CsrfChecked])
async def create(
    request: Request,
    staff: Admin,
    session: SessionDep,
    email: Annotated[str, Form(max_length=255)],
    password: Annotated[str, Form(max_length=1024)],
    roles: Annotated[list[str], Form()],
    first_name: Annotated[str, Form(max_length=100)] = "",
    last_name: Annotated[str, Form(max_length=100)] = "",
) -> HTMLResponse:
    """Create a staff account (TOTP is enrolled at their first login)."""
    await accounts.create_staff(
        session, _actor(staff), email=email, first_name=first_name, last_name=last_name, roles=roles,
        password=password,
    )  # fmt: skip
    return await _page(request, staff, session, f"Created {email}; they set up TOTP at their first login.")


@router.post(
    "/staff/{staff_id}/roles",
    response_class=HTMLResponse,
    include_in_schema=False,
    dependencies=[CsrfChecked],
)
async def set_roles(
    request: Request,
    staff_id: uuid.UUID,
    staff: Admin,
    session: SessionDep,
    roles: Annotated[list[str], Form()],
) -> HTMLResponse:
    """Replace a staff member's roles (their sessions end)."""
    await accounts.set_roles(session, _actor(staff), staff_id, roles)
    return await _page(request, staff, session, "Roles saved.")


@router.post(
    "/staff/{staff_id}/{change}",
    response_class=HTMLResponse,
    include_in_schema=False,
    dependencies=[CsrfChecked],
)
async def change(
    request: Request,
    staff_id: uuid.UUID,
    change: Literal["reset-totp", "disable", "enable"],
    staff: Admin,
    session: SessionDep,
) -> HTMLResponse:
    """Reset TOTP enrolment, disable or enable a staff member."""
    if change == "reset-totp":
        await accounts.reset_totp(session, _actor(staff), staff_id)
    else:
        await accounts.set_active(session, _actor(staff), staff_id, change == "enable")
    return await _page(request, staff, session, f"Done: {change}.")
