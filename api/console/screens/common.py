"""What the investigation screens share: the TOTP check of a four-eyes decision and the answer to a
successful htmx action. (A saga's page in the Temporal Web UI is `workflow_url(...)` in every template.)"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from sqlmodel.ext.asyncio.session import AsyncSession

from api.auth_deps import require_totp
from api.console.deps import Staff


async def totp_checked(request: Request, session: AsyncSession, staff: Staff, code: str) -> None:
    """The staff member's code for this one decision (mandatory, accepted once); 403 problem otherwise."""
    await require_totp(request, session, staff.user, code.strip() or None, mandatory=True)


def done(notice: str) -> Response:
    """A successful htmx action: the page reloads to show the new state (the notice goes to the log)."""
    return Response(status_code=200, headers={"HX-Refresh": "true", "X-Console-Notice": notice[:200]})
