"""What the investigation screens share: a page open to staff holding any of several permissions, the
TOTP check of a four-eyes decision, the answer to a successful htmx action, and links to a saga in the
Temporal Web UI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response
from sqlmodel.ext.asyncio.session import AsyncSession

from api.auth_deps import require_totp
from api.console.deps import ConsoleForbidden, CurrentStaff, Staff
from config import Settings
from services.staff.permissions import Permission


def require_any(*permissions: Permission) -> Callable[..., Awaitable[Staff]]:
    """A dependency admitting staff holding at least one of `permissions` (403 page naming the first)."""

    async def check(staff: CurrentStaff) -> Staff:
        if not any(staff.can(p) for p in permissions):
            raise ConsoleForbidden(permissions[0])
        return staff

    return check


async def totp_checked(request: Request, session: AsyncSession, staff: Staff, code: str) -> None:
    """The staff member's code for this one decision (mandatory, accepted once); 403 problem otherwise."""
    await require_totp(request, session, staff.user, code.strip() or None, mandatory=True)


def done(notice: str) -> Response:
    """A successful htmx action: the page reloads to show the new state (the notice goes to the log)."""
    return Response(status_code=200, headers={"HX-Refresh": "true", "X-Console-Notice": notice[:200]})


def temporal_ui(settings: Settings) -> Callable[[str], str]:
    """`link(workflow_id)`: the saga's page in the Temporal Web UI (`settings.temporal_ui_url`, or the
    dev UI)."""
    base = (settings.temporal_ui_url or f"http://localhost:{settings.temporal_ui_port}").rstrip("/")
    namespace = quote(settings.temporal_namespace, safe="")

    def link(workflow_id: str) -> str:
        return f"{base}/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}"

    return link
