"""The console's request dependencies: who the staff member is (session cookie), what they may do
(`require(Permission.X)`), and the CSRF check every state-changing request passes.

    @router.post("/things/{id}/do", dependencies=[CsrfChecked])
    async def do(staff: Annotated[Staff, Depends(require(Permission.THING_DO))], ...): ...
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.auth_deps import client_ip
from api.deps import SessionDep, SettingsDep
from api.errors import ProblemError
from models.staff import StaffSession
from models.users import User
from services import audit
from services.staff import sessions as staff_sessions
from services.staff.permissions import Permission, permissions_of

COOKIE = "broker_console"
LOGIN_CSRF_COOKIE = "broker_console_login"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


class ConsoleLoginRequired(Exception):
    """No valid console session: the console sends the browser to its login page."""


class ConsoleForbidden(Exception):
    """A signed-in staff member lacks `permission`: 403, and the page says which permission."""

    def __init__(self, permission: Permission) -> None:
        super().__init__(permission.value)
        self.permission = permission


@dataclass(frozen=True)
class Staff:
    """The signed-in staff member, their session and what their roles allow."""

    user: User
    session: StaffSession
    permissions: frozenset[Permission]
    ip: str

    def can(self, permission: Permission | str) -> bool:
        return Permission(permission) in self.permissions


def session_limits(settings: SettingsDep) -> staff_sessions.SessionLimits:
    return staff_sessions.SessionLimits.from_secret(
        settings.jwt_secret,
        idle_seconds=settings.console_idle_timeout_seconds,
        max_seconds=settings.console_session_max_seconds,
    )


SessionLimitsDep = Annotated[staff_sessions.SessionLimits, Depends(session_limits)]


async def current_staff(request: Request, session: SessionDep, limits: SessionLimitsDep) -> Staff:
    try:
        user, sess = await staff_sessions.authenticate(session, limits, request.cookies.get(COOKIE))
    except staff_sessions.StaffSessionInvalid as e:
        raise ConsoleLoginRequired(e.detail) from e
    request.state.user_id = str(user.id)
    staff = Staff(user=user, session=sess, permissions=permissions_of(user.roles), ip=client_ip(request))
    request.state.console_staff = staff  # for the 403 page's navigation
    return staff


CurrentStaff = Annotated[Staff, Depends(current_staff)]


def require(permission: Permission) -> Callable[..., Awaitable[Staff]]:
    """A dependency admitting staff whose roles grant `permission` (403 page otherwise)."""

    async def check(staff: CurrentStaff) -> Staff:
        if permission not in staff.permissions:
            raise ConsoleForbidden(permission)
        return staff

    return check


async def csrf_checked(request: Request, staff: CurrentStaff, session: SessionDep) -> None:
    """Synchroniser token: a state-changing request carries its session's CSRF token in the
    `X-CSRF-Token` header (htmx sends it from the page) or the `csrf_token` form field."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not secrets.compare_digest(sent, staff.session.csrf_token):
        await audit.record(
            session, "staff.csrf_refused", actor_id=staff.user.id, actor_type="staff",
            target_type="path", target_id=request.url.path[:100], ip=staff.ip,
        )  # fmt: skip
        await session.commit()
        raise ProblemError(403, "csrf_invalid", "the form is stale or forged; reload the page")


CsrfChecked = Depends(csrf_checked)
